"""No phone number in the logs: what the service writes shows a phone masked, 138****8000 (+86138****8000).

`MaskPhones` is a logging filter on the handlers of settings.LOGGING (the root console, runserver's
`django.server` access log) and of Celery's loggers (loyalty.celery). gunicorn's access and error logs have it too
(loyalty.access_log.GunicornLogger): a request such as GET /api/v1/members/?phone=13800138000 is
logged as ...?phone=138****8000.

Masked are: the value of a query parameter that names a phone (`phone`, `mobile`, `recipient`, their variants) or a
search (`q`, `search`) when it holds 7 digits or more; a number written with a plus (E.164, also `%2B`-encoded);
and a mainland China mobile number (11 digits starting 13-19, optionally after 86) standing on its own. Elsewhere
card numbers (12 digits), ids, dates and times are left alone. No Django import: gunicorn's master loads this module
before Django is set up.
"""

import logging
import re
from urllib.parse import unquote_plus

MASK = "****"

_QUERY_VALUE = re.compile(
    r"(?:(?<=[?&;\s\"'])|^)(?P<key>\w*(?:phone|mobile|recipient)\w*|q|search)=(?P<value>[^&;#\s\"']*)", re.I
)
_PLUS_NUMBER = re.compile(r"(?:\+|%2B)(?P<digits>\d{7,15})(?!\d)", re.I)
_CN_MOBILE = re.compile(r"(?<![\d+])(?P<digits>(?:86)?1[3-9]\d{9})(?!\d)")


def mask_phone(value):
    """'13800138000' → '138****8000', '+8613800138000' → '+86138****8000' (the last four digits and what comes
    before the hidden four beyond eight digits stay); separators are dropped. Fewer than 7 digits: unchanged."""
    text = str(value)
    digits = re.sub(r"\D", "", text)
    if len(digits) < 7:
        return text
    plus = "+" if text.lstrip().startswith("+") else ""
    return f"{plus}{digits[: max(0, len(digits) - 8)]}{MASK}{digits[-4:]}"


def _masked_query_value(match):
    value = unquote_plus(match["value"])
    if len(re.sub(r"\D", "", value)) < 7:
        return match[0]
    return f"{match['key']}={mask_phone(value)}"


def mask_phones(text):
    """`text` with every phone number in it masked (see the module's docstring)."""
    if not text:
        return text
    text = _QUERY_VALUE.sub(_masked_query_value, text)
    text = _PLUS_NUMBER.sub(lambda match: mask_phone("+" + match["digits"]), text)
    return _CN_MOBILE.sub(lambda match: mask_phone(match["digits"]), text)


class MaskPhones(logging.Filter):
    """Masks the phone numbers in a record's message and traceback before any handler formats it."""

    def filter(self, record):
        message = record.getMessage()
        masked = mask_phones(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_phones(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_phones(record.stack_info)
        return True


def add_mask_to_handlers(logger):
    """Put MaskPhones on every handler of `logger` that does not have it yet (Celery's handlers)."""
    for handler in logger.handlers:
        if not any(isinstance(existing, MaskPhones) for existing in handler.filters):
            handler.addFilter(MaskPhones())

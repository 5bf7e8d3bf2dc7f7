"""Phone numbers in one form: E.164 (+8613800138000), parsed with libphonenumber in the default region (CN)."""

import contextlib

import phonenumbers
from django.conf import settings
from django.utils.translation import gettext as _

from loyalty import log_masking


class InvalidPhoneNumber(ValueError):
    pass


def normalise_phone(raw):
    """'138 0013 8000', '+86 13800138000' and '8613800138000' all give '+8613800138000'.

    Raises InvalidPhoneNumber for anything libphonenumber does not consider a valid number.
    """
    text = str(raw or "").strip()
    if not text or len(text) > 32:
        raise InvalidPhoneNumber(_("Enter a valid phone number."))
    region = settings.PHONE_DEFAULT_REGION
    try:
        number = phonenumbers.parse(text, region)
        valid = phonenumbers.is_valid_number(number)  # once per parse: the check is most of the cost
        if not valid and not text.startswith("+"):
            # '8613800138000' without the plus: try it as an international number.
            number = phonenumbers.parse("+" + text, None)
            valid = phonenumbers.is_valid_number(number)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumber(_("Enter a valid phone number.")) from None
    if not valid:
        raise InvalidPhoneNumber(_("Enter a valid phone number."))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164):
    """+8613800138000 → +86138****8000, for logs and staff lists that need no full number (loyalty.log_masking)."""
    if not e164 or len(e164) < 8:
        return e164
    return log_masking.mask_phone(e164)


def phone_forms(e164):
    """The ways a stored phone may be written in free text: +8613800138000, 8613800138000 and 13800138000."""
    forms = {e164, e164.lstrip("+")}
    with contextlib.suppress(phonenumbers.NumberParseException):
        forms.add(str(phonenumbers.parse(e164, None).national_number))
    return {form for form in forms if len(form) >= 7}

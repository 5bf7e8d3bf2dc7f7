"""The reasons the services store with a row, on ledger entries ("purchase", "points expired on 2026-12-01",
"transfer to 100000000017: gift") and on messages ("no consent for sms"), are stored in English: the API answers
them as written, and clients build on them. The admin shows them in the reader's language: each app registers
the reasons it writes, as a pattern over the stored text and a translatable text with the pattern's named parts,
and `shown_reason` turns a stored reason into what a clerk reads. A reason a person typed (an adjustment's) or a
provider gave matches no pattern and is shown as written."""

import re

_READINGS = []


def register(pattern, text):
    """`pattern` matches the whole stored reason; its named groups fill `text`'s %(name)s placeholders."""
    _READINGS.append((re.compile(pattern), text))


def shown_reason(reason):
    """The stored reason in the active language, or as stored when no registered pattern matches it."""
    for pattern, text in _READINGS:
        match = pattern.fullmatch(reason or "")
        if match:
            parts = {name: part or "" for name, part in match.groupdict().items()}
            return str(text) % parts if parts else str(text)
    return reason

"""CSV cells a spreadsheet will not run (CSV / formula injection, OWASP): the one place that decides it, used by
every CSV the service writes (loyalty.api.csv_response for the reports, members.imports' rejects file) and by the
importers that read a rejects file back.

A text cell that starts with =, +, -, @, a tab or a carriage return is written with a ' in front, which spreadsheet
programs show as text and do not evaluate. So that reading back gives the value exactly, a text cell that is
already one or more apostrophes before such a character gets one more: `restore` takes exactly one off any cell
of the form '...'<trigger>. Numbers (int, Decimal, float) and None the service writes itself are left as they are:
their text (`-1.00`, `3`) is a number to a spreadsheet, never a formula, and a numeric column stays numeric.
"""

import re

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NEUTRALISED = re.compile(r"'+[=+\-@\t\r]", re.DOTALL)


def neutralise(value):
    """The cell to write for `value`: text starting like a formula gets a leading '; anything else as it is."""
    if isinstance(value, str) and (value.startswith(TRIGGERS) or _NEUTRALISED.match(value)):
        return "'" + value
    return value


def neutralise_row(row):
    return [neutralise(value) for value in row]


def restore(text):
    """The value `neutralise` was given, from the text of a cell it wrote (the import of a rejects file)."""
    if _NEUTRALISED.match(text):
        return text[1:]
    return text

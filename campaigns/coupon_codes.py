"""Coupon codes: 12 characters from a 31-character alphabet without the look-alikes 0/O, 1/I/L, the last one a
check character, so a code typed or read wrong is refused before anything is looked up.

The alphabet has 31 characters, a prime, and the check makes sum(position × value) ≡ 0 (mod 31) over positions
1…12 (the ISBN-10 scheme over GF(31)). A single changed character at position i changes the sum by i × d with
d ≢ 0, and two swapped neighbours at i, i+1 by (i − (i+1)) × d = −d: neither is 0 mod a prime, so every single
substitution and every adjacent transposition is detected. The 11 other characters come from `secrets`: 31¹¹ ≈
2.5 × 10¹⁶ codes (54 bits), so codes cannot be guessed or enumerated."""

import secrets

from django.utils.translation import gettext

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
MODULUS = len(ALPHABET)  # 31, a prime: what the detection above rests on
LENGTH = 12
_VALUES = {char: value for value, char in enumerate(ALPHABET)}
assert MODULUS == 31  # noqa: S101 - the scheme's proof needs a prime modulus


class MalformedCode(ValueError):
    """The text is not a coupon code: wrong length, a character outside the alphabet, or a wrong check character."""


def _weighted_sum(chars):
    return sum(position * _VALUES[char] for position, char in enumerate(chars, start=1))


def check_character(payload):
    """The character that, put after `payload` (LENGTH - 1 characters), makes the weighted sum 0 mod 31."""
    position = len(payload) + 1
    # position × c ≡ −sum (mod 31); 31 is prime, so position has an inverse.
    value = (-_weighted_sum(payload) * pow(position, -1, MODULUS)) % MODULUS
    return ALPHABET[value]


def new_code():
    payload = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH - 1))
    return payload + check_character(payload)


# Random bytes below 248 = 8 × 31 map evenly onto the alphabet (byte mod 31); the 8 above are dropped, so every
# character is equally likely, as with secrets.choice, at C speed for a bulk issue's many codes.
_UNBIASED = 8 * MODULUS
_BYTE_TO_CHAR = bytes(ord(ALPHABET[byte % MODULUS]) if byte < _UNBIASED else 0 for byte in range(256))
_DROPPED = bytes(range(_UNBIASED, 256))
# check_character for a whole code at a time: position × value per position, and the check for each sum mod 31.
_WEIGHTED = [{char: position * value % MODULUS for char, value in _VALUES.items()} for position in range(1, LENGTH)]
_CHECK_FOR_SUM = [ALPHABET[(-total * pow(LENGTH, -1, MODULUS)) % MODULUS] for total in range(MODULUS)]


def new_codes(count):
    """`count` new codes at once (a bulk issue), drawn like new_code from `secrets`."""
    needed = count * (LENGTH - 1)
    chars = b""
    while len(chars) < needed:
        chars += secrets.token_bytes(needed - len(chars) + 64).translate(_BYTE_TO_CHAR, _DROPPED)
    text = chars[:needed].decode()
    payloads = (text[start : start + LENGTH - 1] for start in range(0, needed, LENGTH - 1))
    return [payload + _CHECK_FOR_SUM[sum(map(dict.__getitem__, _WEIGHTED, payload)) % MODULUS] for payload in payloads]


def normalise(text):
    """The code as stored, from what a clerk typed or a scanner read: upper case, without spaces or dashes.
    Raises MalformedCode when it cannot be a coupon code (no database lookup needed to say so)."""
    if not isinstance(text, str):
        raise MalformedCode(gettext("A coupon code is text."))
    code = text.strip().upper().replace(" ", "").replace("-", "")
    if len(code) != LENGTH:
        raise MalformedCode(gettext("A coupon code has %(length)s characters.") % {"length": LENGTH})
    if any(char not in _VALUES for char in code):
        raise MalformedCode(gettext("A coupon code uses only 2-9 and the letters A-Z but I, L and O."))
    if _weighted_sum(code) % MODULUS:
        raise MalformedCode(gettext("This is not a valid coupon code: a character was probably mistyped."))
    return code

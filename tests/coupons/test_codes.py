from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.coupon_codes import ALPHABET, LENGTH, MalformedCode, check_character, new_code, new_codes, normalise

payloads = st.text(alphabet=ALPHABET, min_size=LENGTH - 1, max_size=LENGTH - 1)


def test_a_new_code_has_12_characters_without_look_alikes_and_passes_its_check():
    for _ in range(200):
        code = new_code()
        assert len(code) == LENGTH
        assert not set(code) & set("0O1IL")
        assert normalise(code) == code


def test_typed_in_lower_case_with_spaces_and_dashes_is_the_same_code():
    code = new_code()
    typed = f" {code[:4].lower()}-{code[4:8]} {code[8:]} "
    assert normalise(typed) == code


@given(payloads, st.integers(0, LENGTH - 1), st.sampled_from(ALPHABET))
def test_every_single_character_substitution_is_refused(payload, position, replacement):
    code = payload + check_character(payload)
    if code[position] == replacement:
        return
    typo = code[:position] + replacement + code[position + 1 :]
    with pytest.raises(MalformedCode):
        normalise(typo)


@given(payloads, st.integers(0, LENGTH - 2))
def test_every_adjacent_transposition_is_refused(payload, position):
    code = payload + check_character(payload)
    if code[position] == code[position + 1]:
        return
    swapped = code[:position] + code[position + 1] + code[position] + code[position + 2 :]
    with pytest.raises(MalformedCode):
        normalise(swapped)


def test_exhaustively_every_substitution_and_transposition_of_one_code_is_refused():
    code = new_code()
    for position in range(LENGTH):
        for char in ALPHABET.replace(code[position], ""):
            with pytest.raises(MalformedCode):
                normalise(code[:position] + char + code[position + 1 :])
    for position in range(LENGTH - 1):
        if code[position] != code[position + 1]:
            with pytest.raises(MalformedCode):
                normalise(code[:position] + code[position + 1] + code[position] + code[position + 2 :])


@pytest.mark.parametrize("text", ["", "ABC", "2345678923456", "O2345678ABCD", None, 12])
def test_malformed_text_is_refused(text):
    with pytest.raises(MalformedCode):
        normalise(text)


def test_codes_made_in_bulk_pass_their_check_and_use_every_character_evenly():
    codes = new_codes(20_000)
    assert len(codes) == len(set(codes)) == 20_000
    assert all(normalise(code) == code for code in codes[:2000])
    counts = Counter("".join(code[:-1] for code in codes))
    assert set(counts) == set(ALPHABET)
    expected = 20_000 * (LENGTH - 1) / len(ALPHABET)  # about 7,100 each
    assert all(abs(count - expected) < 0.06 * expected for count in counts.values())

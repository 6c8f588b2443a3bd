"""Codes with check digits (docs/domain.md §3).

The error-detection tests state exactly what each modulus-11 scheme guarantees, derived
here from the weights in domain.md (an oracle independent of ``codes.py``):

- 11 is prime and every weight and every digit difference lies in 1..10, so changing one
  digit of the body, or swapping two adjacent distinct body digits (adjacent weights differ,
  by 1 or by 5), always changes the remainder of the weighted sum mod 11.
- The check digit is not a one-to-one function of the remainder: two remainders share a
  check digit (local government code: 0 and 10 both give 1; resident code and individual
  number: 0 and 1 both give 0). A change that moves the remainder between those two is the
  schemes' one blind spot, and it is tested as such rather than hidden.
- Nothing is guaranteed for a swap of the last body digit with the check digit.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from jukinet.domain.codes import IndividualNumber, LocalGovernmentCode, ResidentCode
from jukinet.domain.errors import ValidationError

from .strategies import individual_numbers, local_government_codes, resident_codes


def _remainder(body: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11


SCHEMES = {
    # class: (weights from domain.md, strategy, remainders that share a check digit)
    LocalGovernmentCode: ((6, 5, 4, 3, 2), local_government_codes, {0, 10}),
    ResidentCode: ((5, 4, 3, 2, 7, 6, 5, 4, 3, 2), resident_codes, {0, 1}),
    IndividualNumber: ((6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2), individual_numbers, {0, 1}),
}
CODE_CLASSES = list(SCHEMES)


def _rejects(cls: type, value: str) -> bool:
    try:
        cls.parse(value)
    except ValidationError as exc:
        assert exc.rule == "check_digit"
        return True
    return False


# --- the examples of domain.md -------------------------------------------------------------

@pytest.mark.parametrize("value", ["202011", "202029", "131016", "011011", "200000"])
def test_domain_md_local_government_code_examples_parse(value):
    assert LocalGovernmentCode.parse(value).value == value


@pytest.mark.parametrize("value", ["24727059608", "50000000016", "31415926530"])
def test_domain_md_resident_code_examples_parse(value):
    assert ResidentCode.parse(value).value == value


@pytest.mark.parametrize("value", ["123456789018", "983205673214"])
def test_domain_md_individual_number_examples_parse(value):
    assert IndividualNumber.parse(value).value == value


def test_sapporo_whose_sum_is_exactly_eleven_gets_check_digit_one():
    assert LocalGovernmentCode.from_body("01101").value == "011011"


def test_prefecture_level_code_of_nagano_is_200000():
    code = LocalGovernmentCode.prefecture("20")
    assert code.value == "200000"
    assert code.is_prefecture and code.prefecture_number == "20"
    assert not LocalGovernmentCode.parse("202011").is_prefecture


# --- generated valid codes -------------------------------------------------------------------

@pytest.mark.parametrize("cls", CODE_CLASSES)
@given(data=st.data())
def test_generated_valid_code_parses_to_itself(cls, data):
    code = data.draw(SCHEMES[cls][1])
    assert cls.parse(code.value) == code
    assert cls.parse(f" {code.value} ") == code  # surrounding blanks from CSV exports
    assert str(code) == code.value


# --- single-digit errors ---------------------------------------------------------------------

@pytest.mark.parametrize("cls", CODE_CLASSES)
@given(data=st.data())
def test_single_digit_change_in_body_is_detected_except_between_the_colliding_remainders(cls, data):
    weights, strategy, blind_spot = SCHEMES[cls]
    value = data.draw(strategy).value
    position = data.draw(st.integers(0, len(weights) - 1))
    digit = data.draw(st.sampled_from("0123456789").filter(lambda d: d != value[position]))
    changed = value[:position] + digit + value[position + 1:]
    before, after = _remainder(value[:-1], weights), _remainder(changed[:-1], weights)
    assert before != after  # the mathematical guarantee
    assert _rejects(cls, changed) == ({before, after} != blind_spot)


@pytest.mark.parametrize("cls", CODE_CLASSES)
@given(data=st.data())
def test_any_change_of_the_check_digit_is_detected(cls, data):
    value = data.draw(SCHEMES[cls][1]).value
    digit = data.draw(st.sampled_from("0123456789").filter(lambda d: d != value[-1]))
    assert _rejects(cls, value[:-1] + digit)


@pytest.mark.parametrize("cls", CODE_CLASSES)
@given(data=st.data())
def test_adjacent_transposition_in_body_is_detected_except_between_the_colliding_remainders(cls, data):
    weights, strategy, blind_spot = SCHEMES[cls]
    value = data.draw(strategy).value
    i = data.draw(st.integers(0, len(weights) - 2))  # both digits in the body
    assume(value[i] != value[i + 1])
    swapped = value[:i] + value[i + 1] + value[i] + value[i + 2:]
    before, after = _remainder(value[:-1], weights), _remainder(swapped[:-1], weights)
    assert before != after
    assert _rejects(cls, swapped) == ({before, after} != blind_spot)


@pytest.mark.parametrize(("cls", "valid", "undetected"), [
    # remainder 0 gives check digit 0; 9 × 5 = 45 ≡ 1 gives remainder 1, check digit 0 again
    (ResidentCode, "00000000000", "90000000000"),
    (IndividualNumber, "000000000000", "200000000000"),  # 2 × 6 = 12 ≡ 1
    # remainder 0 gives 1, and 9 × 6 = 54 ≡ 10 gives 11 − 10 = 1 as well
    (LocalGovernmentCode, "000001", "900001"),
])
def test_the_schemes_blind_spot_is_real_and_documented(cls, valid, undetected):
    weights = SCHEMES[cls][0]
    assert {_remainder(valid[:-1], weights), _remainder(undetected[:-1], weights)} == SCHEMES[cls][2]
    assert cls.parse(valid) and cls.parse(undetected)


# --- malformed input: each failure names its rule and field ---------------------------------

LENGTHS = {LocalGovernmentCode: 6, ResidentCode: 11, IndividualNumber: 12}


@pytest.mark.parametrize("cls", CODE_CLASSES)
@given(data=st.data())
def test_non_digit_anywhere_is_rejected_with_rule_digits(cls, data):
    value = data.draw(SCHEMES[cls][1]).value
    position = data.draw(st.integers(0, len(value) - 1))
    bad = data.draw(st.characters(exclude_categories=("Nd", "Zs", "Cc")).filter(lambda c: not c.isspace()))
    with pytest.raises(ValidationError) as exc:
        cls.parse(value[:position] + bad + value[position + 1:], field="x.code")
    assert (exc.value.field, exc.value.rule) == ("x.code", "digits")


@pytest.mark.parametrize("cls", CODE_CLASSES)
@given(data=st.data())
def test_full_width_digits_are_rejected_with_rule_digits(cls, data):
    value = data.draw(SCHEMES[cls][1]).value
    full_width = value.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    with pytest.raises(ValidationError) as exc:
        cls.parse(full_width)
    assert (exc.value.field, exc.value.rule) == (cls.FIELD, "digits")


@pytest.mark.parametrize("cls", CODE_CLASSES)
@given(digits=st.text("0123456789", min_size=1, max_size=20))
def test_wrong_length_is_rejected_with_rule_length(cls, digits):
    assume(len(digits) != LENGTHS[cls])
    with pytest.raises(ValidationError) as exc:
        cls.parse(digits, field="f")
    assert (exc.value.field, exc.value.rule) == ("f", "length")


@pytest.mark.parametrize("cls", CODE_CLASSES)
@pytest.mark.parametrize("raw", [None, "", "   "])
def test_missing_code_is_rejected_with_rule_required(cls, raw):
    with pytest.raises(ValidationError) as exc:
        cls.parse(raw)
    assert (exc.value.field, exc.value.rule) == (cls.FIELD, "required")


@pytest.mark.parametrize("cls", CODE_CLASSES)
def test_code_given_as_a_number_is_rejected_with_rule_format(cls):
    # An integer would have lost its leading zeros (011011 → 11011) somewhere upstream.
    with pytest.raises(ValidationError) as exc:
        cls.parse(202011)
    assert exc.value.rule == "format"


@pytest.mark.parametrize(("cls", "value"), [
    (LocalGovernmentCode, "202012"), (ResidentCode, "24727059609"), (IndividualNumber, "123456789019"),
])
def test_wrong_check_digit_is_rejected_with_rule_check_digit(cls, value):
    with pytest.raises(ValidationError) as exc:
        cls.parse(value, field="facts.code")
    assert (exc.value.field, exc.value.rule) == ("facts.code", "check_digit")


def test_validation_error_serialises_field_rule_and_detail():
    with pytest.raises(ValidationError) as exc:
        ResidentCode.parse("1234")
    assert exc.value.to_dict() == {"field": "resident_code", "rule": "length", "detail": exc.value.detail}

"""Identity facts (本人確認情報), reasons of change, sex, dates and names."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jukinet.domain.errors import ValidationError
from jukinet.domain.facts import (
    MAX_NAME_LENGTH,
    ChangeKind,
    ChangeReason,
    IdentityFacts,
    PersonName,
    Sex,
    parse_date,
)

from .strategies import identity_facts

# --- ChangeReason ------------------------------------------------------------------------------

@pytest.mark.parametrize("reason", list(ChangeReason))
def test_change_reason_parses_from_code_label_and_name(reason):
    assert ChangeReason.parse(reason.value) is reason
    assert ChangeReason.parse(reason.label_ja) is reason
    assert ChangeReason.parse(reason.name) is reason
    assert ChangeReason.parse(reason.name.lower()) is reason
    assert ChangeReason.parse(f" {reason.label_ja}\u3000") is reason


def test_change_reason_accepts_full_width_code_digits():
    assert ChangeReason.parse("１１") is ChangeReason.MOVE_IN


@pytest.mark.parametrize(("label", "kind"), [
    ("転入", ChangeKind.ENTRY), ("特例転入", ChangeKind.ENTRY), ("出生", ChangeKind.ENTRY),
    ("職権記載", ChangeKind.ENTRY), ("転出", ChangeKind.DELETION), ("死亡", ChangeKind.DELETION),
    ("職権消除", ChangeKind.DELETION), ("転居", ChangeKind.UPDATE), ("職権修正", ChangeKind.UPDATE),
    ("住民票コード変更", ChangeKind.UPDATE), ("氏名変更", ChangeKind.UPDATE),
])
def test_every_reason_of_domain_md_has_its_kind(label, kind):
    assert ChangeReason.parse(label).kind is kind


def test_change_reason_codes_and_labels_are_unique():
    assert len({r.value for r in ChangeReason}) == len({r.label_ja for r in ChangeReason}) == len(ChangeReason)


def test_same_day_precedence_puts_move_out_before_move_in_and_death_last():
    p = {r: r.precedence for r in ChangeReason}
    assert p[ChangeReason.MOVE_OUT] < p[ChangeReason.MOVE_IN]
    assert p[ChangeReason.MOVE_IN] == p[ChangeReason.SPECIAL_MOVE_IN] == p[ChangeReason.BIRTH]
    assert p[ChangeReason.MOVE_IN] < p[ChangeReason.MOVE_WITHIN] < p[ChangeReason.DELETION_BY_AUTHORITY]
    assert max(p.values()) == p[ChangeReason.DEATH]


@pytest.mark.parametrize("raw", ["99", "転勤", "MOVE", "1"])
def test_unknown_reason_is_rejected_with_rule_enum(raw):
    with pytest.raises(ValidationError) as exc:
        ChangeReason.parse(raw, "row.reason")
    assert (exc.value.field, exc.value.rule) == ("row.reason", "enum")


@pytest.mark.parametrize("raw", [None, "", "  "])
def test_missing_reason_is_rejected_with_rule_required(raw):
    with pytest.raises(ValidationError) as exc:
        ChangeReason.parse(raw)
    assert (exc.value.field, exc.value.rule) == ("reason", "required")


# --- Sex ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "sex"), [
    ("1", Sex.MALE), ("男", Sex.MALE), ("male", Sex.MALE), ("M", Sex.MALE), ("１", Sex.MALE), (1, Sex.MALE),
    ("2", Sex.FEMALE), ("女", Sex.FEMALE), ("Female", Sex.FEMALE), ("f", Sex.FEMALE), (2, Sex.FEMALE),
])
def test_sex_parses_register_code_label_and_english(raw, sex):
    assert Sex.parse(raw) is sex


@pytest.mark.parametrize("raw", ["0", "3", "9", "x", "男性"])
def test_unknown_sex_is_rejected_with_rule_enum(raw):
    with pytest.raises(ValidationError) as exc:
        Sex.parse(raw, "facts.sex")
    assert (exc.value.field, exc.value.rule) == ("facts.sex", "enum")


def test_sex_labels_follow_the_register():
    assert (Sex.MALE.label_ja, Sex.FEMALE.label_ja) == ("男", "女")


# --- dates --------------------------------------------------------------------------------------

@given(st.dates(min_value=dt.date(1000, 1, 1)))
def test_date_parses_from_iso_compact_and_slashed_forms(day):
    iso = day.isoformat()
    assert parse_date(iso, "d") == day
    assert parse_date(iso.replace("-", ""), "d") == day
    assert parse_date(iso.replace("-", "/"), "d") == day
    assert parse_date(day, "d") == day


def test_date_accepts_full_width_digits_and_surrounding_blanks():
    assert parse_date(" ２０２４－０３－３１ ", "d") == dt.date(2024, 3, 31)


@pytest.mark.parametrize("raw", ["2024-02-30", "20230229", "2024-13-01", "0000-01-01"])
def test_impossible_calendar_date_is_rejected_with_rule_date(raw):
    with pytest.raises(ValidationError) as exc:
        parse_date(raw, "change_date")
    assert (exc.value.field, exc.value.rule) == ("change_date", "date")
    assert "calendar" in exc.value.detail


@pytest.mark.parametrize("raw", [
    "2024-1-5", "2024/01-05", "24-01-05", "2024.01.05", "R6-01-05", "2024-01-05T00:00",
    # signs and blanks inside the parts: int() would accept them, the date must not
    "2024-+1-05", "2024- 1- 5", "2024-01-+5",
    # digits of other scripts (Thai) that NFKC does not turn into ASCII
    "๒๐๒๔๐๑๐๕",
])
def test_malformed_date_is_rejected_with_rule_date(raw):
    with pytest.raises(ValidationError) as exc:
        parse_date(raw, "d")
    assert exc.value.rule == "date"


def test_datetime_is_not_taken_for_a_date():
    with pytest.raises(ValidationError):
        parse_date(dt.datetime(2024, 1, 1, 12, 0), "d")


@pytest.mark.parametrize("raw", [None, "", " "])
def test_missing_date_is_rejected_with_rule_required(raw):
    with pytest.raises(ValidationError) as exc:
        parse_date(raw, "facts.birth_date")
    assert (exc.value.field, exc.value.rule) == ("facts.birth_date", "required")


# --- names --------------------------------------------------------------------------------------

def test_half_width_kana_is_stored_as_full_width():
    name = PersonName.parse({"kanji": "山田　太郎", "kana": "ﾔﾏﾀﾞ ﾀﾛｳ"})
    assert name.kana == "ヤマダ\u3000タロウ"


def test_kanji_name_is_kept_as_written():
    # No folding of 髙/﨑: the register keeps the character the resident uses.
    name = PersonName.parse({"kanji": "髙橋　﨑子", "kana": "タカハシ　サキコ"})
    assert name.kanji == "髙橋　﨑子"


@pytest.mark.parametrize("kana", ["やまだ たろう", "Yamada Taro", "ヤマダ　太郎", "ヤマダ1"])
def test_kana_name_that_is_not_katakana_is_rejected_with_rule_kana(kana):
    with pytest.raises(ValidationError) as exc:
        PersonName.parse({"kanji": "山田　太郎", "kana": kana})
    assert (exc.value.field, exc.value.rule) == ("name.kana", "kana")


def test_former_surname_kana_is_validated_like_the_name_kana():
    with pytest.raises(ValidationError) as exc:
        PersonName.parse({"kanji": "山田　花子", "kana": "ヤマダ　ハナコ", "former_surname": "佐藤",
                          "former_surname_kana": "さとう"}, "facts.name")
    assert (exc.value.field, exc.value.rule) == ("facts.name.former_surname_kana", "kana")


def test_kana_with_middle_dot_long_vowel_and_vu_is_accepted():
    name = PersonName.parse({"kanji": "ヴィクトリア・ローズ", "kana": "ヴィクトリア・ローズ"})
    assert name.kana == "ヴィクトリア・ローズ"


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("kanji", None, "required"), ("kanji", "", "required"), ("kana", None, "required"),
    ("kanji", "山" * (MAX_NAME_LENGTH + 1), "length"), ("kanji", "山田\u200b太郎", "format"),
    ("kanji", "山田\n太郎", "format"), ("kanji", 42, "format"),
])
def test_name_field_rules(field, value, rule):
    raw = {"kanji": "山田　太郎", "kana": "ヤマダ　タロウ", field: value}
    with pytest.raises(ValidationError) as exc:
        PersonName.parse(raw)
    assert (exc.value.field, exc.value.rule) == (f"name.{field}", rule)


# --- IdentityFacts ------------------------------------------------------------------------------

@given(identity_facts())
def test_identity_facts_round_trip_through_dict(facts):
    assert IdentityFacts.parse(facts.to_dict()) == facts


def _facts_dict(**changes):
    raw = {
        "resident_code": "24727059608", "name": {"kanji": "山田　太郎", "kana": "ヤマダ　タロウ"},
        "birth_date": "1970-04-01", "sex": "1", "address": "長野県長野市大字鶴賀緑町1613番地",
    }
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not None}


@pytest.mark.parametrize(("changes", "field", "rule"), [
    ({"birth_date": "1849-12-31"}, "facts.birth_date", "range"),
    ({"name": None}, "facts.name", "required"),
    ({"address": "  "}, "facts.address", "required"),
    ({"address": "長" * 201}, "facts.address", "length"),
    ({"individual_number": "123456789019"}, "facts.individual_number", "check_digit"),
    ({"resident_code": "24727059600"}, "facts.resident_code", "check_digit"),
    ({"sex": "9"}, "facts.sex", "enum"),
])
def test_identity_facts_rules_name_the_nested_field(changes, field, rule):
    with pytest.raises(ValidationError) as exc:
        IdentityFacts.parse(_facts_dict(**changes))
    assert (exc.value.field, exc.value.rule) == (field, rule)


def test_identity_facts_must_be_an_object():
    with pytest.raises(ValidationError) as exc:
        IdentityFacts.parse(["not", "a", "dict"])  # type: ignore[arg-type]
    assert exc.value.rule == "format"


def test_empty_individual_number_means_none():
    assert IdentityFacts.parse(_facts_dict(individual_number="")).individual_number is None

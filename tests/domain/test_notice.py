"""The update notice (更新通知): parsing, every consistency rule, ids and the order key."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jukinet.domain.codes import LocalGovernmentCode, ResidentCode
from jukinet.domain.errors import ValidationError
from jukinet.domain.facts import ChangeKind, ChangeReason
from jukinet.domain.notice import JST, MAX_SEQUENCE, UpdateNotice

from .strategies import UTC, update_notices

CODE = "24727059608"
OTHER_CODE = "50000000016"


def _notice_dict(**changes) -> dict:
    raw = {
        "municipality": "202011",
        "sequence": 1,
        "resident_code": CODE,
        "reason": "転入",
        "change_date": "2024-03-25",
        "notice_time": "2024-03-26T01:02:03.000004Z",
        "facts": {
            "resident_code": CODE, "name": {"kanji": "山田　太郎", "kana": "ヤマダ　タロウ"},
            "birth_date": "1970-04-01", "sex": "1", "address": "長野県長野市大字鶴賀緑町1613番地",
        },
    }
    raw.update(changes)
    return raw


def _rejected(raw: object) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        UpdateNotice.from_dict(raw)
    return exc.value


# --- round trip -----------------------------------------------------------------------------

@given(update_notices())
def test_notice_round_trips_through_dict(notice):
    assert UpdateNotice.from_dict(notice.to_dict()) == notice


@given(update_notices())
def test_notice_round_trips_through_json_text(notice):
    text = json.dumps(notice.to_dict(), ensure_ascii=False)
    assert UpdateNotice.from_dict(json.loads(text)) == notice


def test_notice_accepts_labels_compact_dates_and_half_width_kana_from_existing_systems():
    raw = _notice_dict(reason="11", change_date="20240325")
    raw["facts"]["name"]["kana"] = "ﾔﾏﾀﾞ ﾀﾛｳ"
    notice = UpdateNotice.from_dict(raw)
    assert notice.reason is ChangeReason.MOVE_IN
    assert notice.change_date == dt.date(2024, 3, 25)
    assert notice.facts.name.kana == "ヤマダ\u3000タロウ"


# --- every consistency rule -----------------------------------------------------------------

def test_notice_must_be_an_object():
    assert (_rejected([1, 2]).field, _rejected([1, 2]).rule) == ("notice", "format")


@pytest.mark.parametrize("sequence", ["1", 1.0, True, None])
def test_sequence_must_be_an_integer(sequence):
    error = _rejected(_notice_dict(sequence=sequence))
    assert (error.field, error.rule) == ("sequence", "format")


@pytest.mark.parametrize("sequence", [0, -1, MAX_SEQUENCE + 1])
def test_sequence_outside_twelve_digits_is_rejected_with_rule_range(sequence):
    error = _rejected(_notice_dict(sequence=sequence))
    assert (error.field, error.rule) == ("sequence", "range")


def test_notice_from_a_prefecture_code_is_rejected():
    error = _rejected(_notice_dict(municipality="200000"))
    assert (error.field, error.rule) == ("municipality", "consistency")


def test_municipality_code_with_wrong_check_digit_is_rejected():
    error = _rejected(_notice_dict(municipality="202012"))
    assert (error.field, error.rule) == ("municipality", "check_digit")


@pytest.mark.parametrize(("value", "rule"), [
    ("2024-03-26T01:02:03", "format"),  # no time zone
    ("yesterday", "format"),
    (None, "required"),
    ("", "required"),
    # offsets that push the instant out of datetime's range, and years that cannot be written
    # with four digits (order keys and to_dict would stop sorting and re-parsing)
    ("0001-01-01T00:00:00+09:00", "range"),
    ("9999-12-31T23:59:59-09:00", "range"),
    ("0999-06-01T00:00:00Z", "range"),
])
def test_notice_time_rules(value, rule):
    error = _rejected(_notice_dict(notice_time=value))
    assert (error.field, error.rule) == ("notice_time", rule)


def test_notice_time_is_kept_in_utc_whatever_offset_it_came_with():
    notice = UpdateNotice.from_dict(_notice_dict(notice_time="2024-04-01T09:00:00+09:00"))
    assert notice.notice_time == dt.datetime(2024, 4, 1, 0, 0, tzinfo=UTC)
    assert notice.to_dict()["notice_time"] == "2024-04-01T00:00:00.000000Z"


@given(update_notices())
def test_notice_built_with_a_japan_time_writes_the_same_instant_in_utc(notice):
    in_jst = dataclasses.replace(notice, notice_time=notice.notice_time.astimezone(JST))
    assert in_jst.to_dict()["notice_time"] == notice.to_dict()["notice_time"]
    assert in_jst.order_key == notice.order_key


def test_notice_built_with_a_naive_time_is_rejected():
    notice = UpdateNotice.from_dict(_notice_dict())
    with pytest.raises(ValidationError) as exc:
        dataclasses.replace(notice, notice_time=dt.datetime(2024, 1, 1))
    assert (exc.value.field, exc.value.rule) == ("notice_time", "format")


@pytest.mark.parametrize("reason", [r for r in ChangeReason if r.kind is ChangeKind.DELETION])
def test_deletion_carrying_facts_is_rejected(reason):
    error = _rejected(_notice_dict(reason=reason.value))
    assert (error.field, error.rule) == ("facts", "consistency")


@pytest.mark.parametrize("reason", [r for r in ChangeReason if r.kind is not ChangeKind.DELETION])
def test_entry_or_update_without_facts_is_rejected(reason):
    error = _rejected(_notice_dict(reason=reason.value, facts=None, previous_resident_code=OTHER_CODE))
    assert (error.field, error.rule) == ("facts", "required")


def test_deletion_without_facts_is_accepted():
    notice = UpdateNotice.from_dict(_notice_dict(reason="転出", facts=None))
    assert notice.facts is None and notice.to_dict()["facts"] is None


def test_facts_of_another_resident_are_rejected():
    raw = _notice_dict()
    raw["facts"]["resident_code"] = OTHER_CODE
    error = _rejected(raw)
    assert (error.field, error.rule) == ("facts.resident_code", "consistency")


def test_birth_after_the_date_of_change_is_rejected():
    raw = _notice_dict(change_date="1970-03-31")
    error = _rejected(raw)
    assert (error.field, error.rule) == ("facts.birth_date", "consistency")


def test_birth_notice_dated_the_birth_day_is_accepted():
    raw = _notice_dict(reason="出生", change_date="1970-04-01")
    assert UpdateNotice.from_dict(raw).reason is ChangeReason.BIRTH


def test_code_change_without_previous_code_is_rejected():
    error = _rejected(_notice_dict(reason="住民票コード変更"))
    assert (error.field, error.rule) == ("previous_resident_code", "required")


def test_code_change_to_the_same_code_is_rejected():
    error = _rejected(_notice_dict(reason="住民票コード変更", previous_resident_code=CODE))
    assert (error.field, error.rule) == ("previous_resident_code", "consistency")


def test_previous_code_on_any_other_reason_is_rejected():
    error = _rejected(_notice_dict(previous_resident_code=OTHER_CODE))
    assert (error.field, error.rule) == ("previous_resident_code", "consistency")


def test_previous_code_with_wrong_check_digit_is_rejected():
    error = _rejected(_notice_dict(reason="住民票コード変更", previous_resident_code="50000000017"))
    assert (error.field, error.rule) == ("previous_resident_code", "check_digit")


def test_code_change_names_both_codes():
    notice = UpdateNotice.from_dict(_notice_dict(reason="住民票コード変更", previous_resident_code=OTHER_CODE))
    assert notice.previous_resident_code == ResidentCode(OTHER_CODE)
    assert notice.to_dict()["previous_resident_code"] == OTHER_CODE


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("resident_code", "2472705960", "length"), ("reason", "転勤", "enum"),
    ("change_date", "2024-02-30", "date"), ("municipality", None, "required"),
])
def test_field_errors_name_the_top_level_field(field, value, rule):
    error = _rejected(_notice_dict(**{field: value}))
    assert (error.field, error.rule) == (field, rule)


# --- identity, month and order --------------------------------------------------------------

def test_notice_id_is_municipality_and_zero_padded_sequence():
    notice = UpdateNotice.from_dict(_notice_dict(sequence=42))
    assert notice.notice_id == "202011-000000000042"


def test_reporting_month_is_the_month_in_japan_time():
    # 2003-01-31 15:30 UTC is already 1 February in Japan.
    notice = UpdateNotice.from_dict(_notice_dict(notice_time="2003-01-31T15:30:00Z", change_date="2003-01-31"))
    assert notice.reporting_month == "2003-02"


def _order_tuple(n: UpdateNotice) -> tuple:
    return (n.change_date, n.reason.precedence, n.notice_time, n.municipality.value, n.sequence)


@given(update_notices(), update_notices())
def test_order_key_string_order_equals_the_rule_tuple_order(a, b):
    assert (a.order_key < b.order_key) == (_order_tuple(a) < _order_tuple(b))
    assert (a.order_key == b.order_key) == (_order_tuple(a) == _order_tuple(b))


@given(st.data())
def test_order_key_breaks_ties_on_the_same_day_and_time(data):
    # Same date, same reason, same instant: municipality then sequence decide.
    base = data.draw(update_notices())
    other_sequence = data.draw(st.integers(1, MAX_SEQUENCE))
    other_municipality = data.draw(st.integers(1, 999).map(lambda n: LocalGovernmentCode.from_body(f"20{n:03d}")))
    other = dataclasses.replace(base, sequence=other_sequence, municipality=other_municipality)
    assert (base.order_key < other.order_key) == (_order_tuple(base) < _order_tuple(other))


@given(update_notices(), st.integers(1, MAX_SEQUENCE))
def test_order_key_made_once_follows_every_replace(notice, sequence):
    # The key is made at construction; a copy with another sequence or time must not keep the old one.
    changed = dataclasses.replace(notice, sequence=sequence,
                                  notice_time=notice.notice_time + dt.timedelta(microseconds=1))
    assert changed.order_key == UpdateNotice.from_dict(changed.to_dict()).order_key
    assert changed.order_key.endswith(f"|{sequence:012d}")
    assert changed.order_key != notice.order_key
    assert UpdateNotice.from_dict(notice.to_dict()) == notice  # the made key is not compared


def test_payload_that_inflates_beyond_the_cap_is_refused_without_inflating_it():
    import gzip

    from jukinet.domain.message import MAX_INFLATED_BYTES, Payload

    bomb = gzip.compress(b"[" + b" " * (MAX_INFLATED_BYTES * 4) + b"]")
    with pytest.raises(ValidationError) as info:
        Payload.from_bytes(bomb)
    assert (info.value.field, info.value.rule) == ("payload", "size")


def test_notice_time_with_no_japan_time_is_out_of_range():
    from jukinet.domain.notice import parse_notice_time

    with pytest.raises(ValidationError) as info:
        parse_notice_time("9999-12-31T23:00:00Z")
    assert info.value.rule == "range"

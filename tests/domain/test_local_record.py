"""The municipality-only record fields (domain/local_record.py): every rule through the export
parser, old files still valid, the notice untouched by them, and the record derived on read."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jukinet.domain.export import COLUMNS, REQUIRED_COLUMNS
from jukinet.domain.facts import ChangeReason
from jukinet.domain.local_record import (
    ACTIVE,
    CODE_CHANGED,
    DELETED,
    LOCAL_COLUMNS,
    LocalRecordEntry,
    LocalRecordFields,
    Relationship,
    fold,
)

from .test_export import CODE, VALID, csv_file, jsonl_file, only_notice, only_rejection, parse

DOC = Path(__file__).resolve().parents[2] / "docs" / "export-format.md"
LOCAL = {
    "household_number": "000123", "householder_name": "丸山　健一", "relationship": "世帯主",
    "resident_since": "2024-04-01", "address_since": "2024-04-01", "notification_date": "2024-04-05",
    "previous_address": "東京都千代田区霞が関1-1", "registered_domicile": "長野県長野市大字鶴賀1234番地",
    "family_register_head": "丸山　健一",
}
ROW = {**VALID, **LOCAL}
BASIC_HEADER = list(REQUIRED_COLUMNS)


def parse_one(row: dict[str, str], fmt: str = "csv"):
    if fmt == "csv":
        return parse(csv_file(row))
    return parse(jsonl_file({k: v for k, v in row.items() if v != ""}), "export.jsonl")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_row_with_every_local_field_is_accepted_and_the_fields_are_kept_beside_the_notice(fmt):
    result = parse_one(ROW, fmt)
    notice = only_notice(result)
    [(row_number, _)] = result.notices
    local = result.local_fields[row_number]
    assert local == LocalRecordFields(
        household_number="000123", householder_name="丸山　健一", relationship=Relationship.HEAD,
        resident_since=dt.date(2024, 4, 1), address_since=dt.date(2024, 4, 1),
        notification_date=dt.date(2024, 4, 5), previous_address=LOCAL["previous_address"],
        registered_domicile=LOCAL["registered_domicile"], family_register_head="丸山　健一")
    # The notice is exactly the one a row without the local columns gives: nothing of them in it.
    plain = only_notice(parse(csv_file(VALID, header=BASIC_HEADER)))
    assert notice == plain
    sent = str(notice.to_dict())
    for value in ("000123", "霞が関", "筆頭者", "世帯主", "2024-04-05"):
        assert value not in sent


def test_an_old_file_without_the_local_columns_stays_valid_and_gives_no_local_fields():
    result = parse(csv_file(VALID, header=BASIC_HEADER))
    only_notice(result)
    assert result.local_fields == {}


def test_japanese_column_names_and_full_width_digits_are_accepted():
    header = [*BASIC_HEADER, "世帯番号", "世帯主氏名", "続柄", "住民となった年月日", "住所を定めた年月日", "届出年月日",
              "前住所", "本籍", "筆頭者"]
    values = {**VALID, "世帯番号": "１２３", "世帯主氏名": "丸山　健一", "続柄": "01", "住民となった年月日": "20240401",
              "住所を定めた年月日": "2024/04/01", "届出年月日": "２０２４０４０５", "前住所": "東京都",
              "本籍": "長野県長野市", "筆頭者": "丸山　健一"}
    import csv
    import io
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerow([values.get(h, VALID.get(h, "")) for h in header])
    result = parse(buffer.getvalue().encode("cp932"))
    only_notice(result)
    local = next(iter(result.local_fields.values()))
    assert (local.household_number, local.relationship, local.notification_date) == (
        "123", Relationship.HEAD, dt.date(2024, 4, 5))


def test_every_local_column_is_an_optional_export_column_with_a_japanese_name():
    for column, names in LOCAL_COLUMNS.items():
        assert COLUMNS[column] == names and column not in REQUIRED_COLUMNS
        assert any(ord(c) > 0x3000 for c in names[1])


MEMBER = {"household_number": "000123", "householder_name": "丸山　健一", "relationship": "子"}
BAD = [
    pytest.param({"household_number": "12-3"}, "household_number", "digits", id="household-not-digits"),
    pytest.param({"household_number": "1" * 16}, "household_number", "length", id="household-too-long"),
    pytest.param({"relationship": "長男"}, "relationship", "enum", id="relationship-not-in-list"),
    pytest.param({"relationship": "30"}, "relationship", "enum", id="relationship-unknown-code"),
    pytest.param({"household_number": ""}, "household_number", "required", id="household-trio-incomplete"),
    pytest.param({"relationship": ""}, "relationship", "required", id="relationship-missing"),
    pytest.param({"householder_name": ""}, "householder_name", "required", id="householder-missing"),
    pytest.param({"householder_name": "x" * 101}, "householder_name", "length", id="householder-too-long"),
    pytest.param({"householder_name": "丸山\ue000"}, "householder_name", "format", id="householder-gaiji"),
    pytest.param({"relationship": "世帯主", "householder_name": "丸山　花子"}, "householder_name", "consistency",
                 id="head-is-someone-else"),
    pytest.param({"resident_since": "2024-04-31"}, "resident_since", "date", id="resident-since-no-such-day"),
    pytest.param({"resident_since": "R060401"}, "resident_since", "date", id="resident-since-era"),
    pytest.param({"resident_since": "1849-12-31"}, "resident_since", "range", id="resident-since-before-1850"),
    pytest.param({"resident_since": "2024-04-02"}, "resident_since", "consistency", id="resident-after-change"),
    pytest.param({"resident_since": "1985-06-11"}, "resident_since", "consistency", id="resident-before-birth"),
    pytest.param({"address_since": "2024-04-02"}, "address_since", "consistency", id="address-after-change"),
    pytest.param({"resident_since": "2024-03-01", "address_since": "2024-02-01"}, "address_since", "consistency",
                 id="address-before-resident"),
    pytest.param({"notification_date": "2024-04-16"}, "notification_date", "consistency",
                 id="notified-after-the-file"),
    pytest.param({"notification_date": "1984-01-01"}, "notification_date", "consistency",
                 id="notified-before-birth"),
    pytest.param({"previous_address": "y" * 201}, "previous_address", "length", id="previous-address-too-long"),
    pytest.param({"previous_address": "東京都\x07"}, "previous_address", "format", id="previous-address-control"),
    pytest.param({"registered_domicile": ""}, "registered_domicile", "required", id="head-without-domicile"),
    pytest.param({"family_register_head": ""}, "family_register_head", "required", id="domicile-without-head"),
    pytest.param({"registered_domicile": "z" * 201}, "registered_domicile", "length", id="domicile-too-long"),
    pytest.param({"family_register_head": "z" * 101}, "family_register_head", "length", id="head-too-long"),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("change", "field", "rule"), BAD)
def test_each_broken_rule_rejects_the_row_naming_the_column_and_the_rule(fmt, change, field, rule):
    rejection = only_rejection(parse_one({**ROW, **change}, fmt))
    assert (rejection.field, rejection.rule) == (field, rule), rejection
    assert rejection.detail and rejection.resident_code == CODE


def test_a_birth_has_no_previous_address_and_a_move_within_a_different_one():
    birth = {**VALID, "reason": "出生", "birth_date": "2024-04-01", "previous_address": "東京都"}
    assert (only_rejection(parse_one(birth)).field, only_rejection(parse_one(birth)).rule) == (
        "previous_address", "consistency")
    within = {**VALID, "reason": "転居", "previous_address": VALID["address"]}
    assert only_rejection(parse_one(within)).rule == "consistency"


def test_a_json_number_is_not_a_household_number():
    result = parse(jsonl_file({**{k: v for k, v in VALID.items()}, **MEMBER, "household_number": 123}), "x.jsonl")
    rejection = only_rejection(result)
    assert (rejection.field, rejection.rule) == ("household_number", "format")


def test_on_a_deletion_only_the_notification_date_is_read():
    move_out = {"resident_code": CODE, "reason": "転出", "change_date": "2024-04-20", "relationship": "長男",
                "household_number": "x", "notification_date": "2024-04-10"}
    result = parse_one(move_out)
    only_notice(result)
    assert list(result.local_fields.values()) == [LocalRecordFields(notification_date=dt.date(2024, 4, 10))]
    late = parse_one({**move_out, "notification_date": "2024-04-16"})
    assert (only_rejection(late).field, only_rejection(late).rule) == ("notification_date", "consistency")


def test_the_relationship_table_of_the_doc_is_the_code_list():
    table = DOC.read_text().split("<!-- relationship table")[1].split("\n\n")[0]
    rows = {cells[0]: cells[1:3] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("|"))}
    del rows["code"], rows["---"]
    assert rows == {r.value: [r.label_ja, r.name] for r in Relationship}


def test_the_doc_example_row_is_accepted():
    example = DOC.read_text().split("<!-- local fields example")[1].split("```csv\n")[1].split("```")[0]
    result = parse(example.encode())
    assert result.rejections == [] and len(result.notices) == len(result.local_fields) == 2


# --- properties ----------------------------------------------------------------------------------

_texts = st.text(alphabet=st.sampled_from("山田花子鶴賀長野市大字番地一二三ーの"), min_size=1, max_size=30)
_dates = st.dates(min_value=dt.date(1985, 6, 12), max_value=dt.date(2024, 4, 1))


@st.composite
def local_rows(draw: st.DrawFn) -> dict[str, str]:
    row: dict[str, str] = {}
    if draw(st.booleans()):
        relationship = draw(st.sampled_from([r for r in Relationship if r is not Relationship.HEAD]))
        row |= {"household_number": str(draw(st.integers(1, 10**15 - 1))), "householder_name": draw(_texts),
                "relationship": draw(st.sampled_from([relationship.value, relationship.label_ja, relationship.name]))}
    since = sorted(draw(st.lists(_dates, min_size=2, max_size=2)))
    if draw(st.booleans()):
        row["resident_since"] = since[0].isoformat()
    if draw(st.booleans()):
        row["address_since"] = since[1].strftime("%Y%m%d")
    if draw(st.booleans()):
        row["notification_date"] = draw(st.dates(dt.date(1985, 6, 12), dt.date(2024, 4, 15))).isoformat()
    if draw(st.booleans()):
        row["previous_address"] = draw(_texts)
    if draw(st.booleans()):
        row |= {"registered_domicile": draw(_texts), "family_register_head": draw(_texts)}
    return row


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(local=local_rows(), fmt=st.sampled_from(["csv", "jsonl"]))
def test_any_valid_local_fields_are_accepted_kept_as_given_and_never_change_the_notice(local, fmt):
    result = parse_one({**VALID, **local}, fmt)
    notice = only_notice(result)
    assert notice == only_notice(parse(csv_file(VALID, header=BASIC_HEADER)))
    kept = result.local_fields.get(result.notices[0][0], LocalRecordFields())
    assert set(kept.given()) == set(local)
    assert LocalRecordFields.from_given(kept.given()) == kept
    for name in ("householder_name", "previous_address", "registered_domicile", "family_register_head"):
        if name in local:
            assert getattr(kept, name) == local[name]


def _entry(n: int, reason: ChangeReason, local: LocalRecordFields, day: int, **kw) -> LocalRecordEntry:
    return LocalRecordEntry(municipality="202011", resident_code=CODE,
                            order_key=f"2024-04-{day:02d}|{reason.precedence}|t|202011|{n:012d}",
                            notice_id=f"202011-{n:012d}", reason=reason, change_date=dt.date(2024, 4, day),
                            facts=None if reason.kind.value == "deletion" else {"address": f"a{n}"}, local=local, **kw)


STORY = [
    _entry(1, ChangeReason.MOVE_IN, LocalRecordFields(household_number="7", householder_name="丸山　健一",
                                                      relationship=Relationship.HEAD, registered_domicile="長野",
                                                      family_register_head="丸山　健一"), 1),
    _entry(2, ChangeReason.MOVE_WITHIN, LocalRecordFields(previous_address="a1"), 3),
    _entry(3, ChangeReason.CORRECTION_BY_AUTHORITY, LocalRecordFields(), 4),
    _entry(4, ChangeReason.MOVE_WITHIN, LocalRecordFields(household_number="9", householder_name="丸山　花子",
                                                          relationship=Relationship.HUSBAND), 5),
]


@settings(max_examples=50, deadline=None)
@given(st.permutations(STORY))
def test_the_current_record_is_the_fold_in_order_whatever_order_the_entries_are_read_in(entries):
    record = fold(list(entries))
    assert record.status == ACTIVE and record.last_notice_id == "202011-000000000004"
    assert record.facts == {"address": "a4"}
    # a new household replaces the trio; fields a later row leaves empty keep their value
    assert (record.local.household_number, record.local.householder_name, record.local.relationship) == (
        "9", "丸山　花子", Relationship.HUSBAND)
    assert (record.local.previous_address, record.local.registered_domicile) == ("a1", "長野")


def test_a_deletion_ends_the_record_keeping_its_values_and_a_new_entry_starts_afresh():
    out = _entry(5, ChangeReason.MOVE_OUT, LocalRecordFields(notification_date=dt.date(2024, 4, 6)), 6)
    ended = fold([*STORY, out])
    assert ended.status == DELETED and ended.local.household_number == "9" and ended.facts == {"address": "a4"}
    back = _entry(6, ChangeReason.MOVE_IN, LocalRecordFields(previous_address="東京都"), 20)
    again = fold([*STORY, out, back])
    assert again.status == ACTIVE and again.local == LocalRecordFields(previous_address="東京都")
    assert fold([]) is None


def test_the_old_code_of_a_code_change_ends_as_code_changed():
    old = dataclasses.replace(_entry(7, ChangeReason.CODE_CHANGE, LocalRecordFields(), 8), facts=None,
                              replaced_by="17263549082")
    record = fold([*STORY, old])
    assert (record.status, record.replaced_by) == (CODE_CHANGED, "17263549082")


def test_relationship_codes_labels_and_names_are_unique():
    for a, b in itertools.combinations(Relationship, 2):
        assert a.label_ja != b.label_ja
    assert Relationship.parse("4") is Relationship.CHILD and Relationship.parse("妻（未届）") is Relationship.WIFE_UNREGISTERED
    assert Relationship.parse("妻(未届)") is Relationship.WIFE_UNREGISTERED  # half-width brackets (NFKC)

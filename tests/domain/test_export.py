"""The existing system's export file: formats, encodings, every rejection rule, the reports,
and the example files that docs/export-format.md promises."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jukinet.domain.codes import LocalGovernmentCode, ResidentCode
from jukinet.domain.errors import ValidationError
from jukinet.domain.export import (
    COLUMNS,
    MAX_FILE_BYTES,
    MAX_ROWS,
    ExportParseResult,
    Rejection,
    parse_export,
    rejection_report_csv,
    summary_json,
)
from jukinet.domain.facts import ChangeKind, ChangeReason, Sex
from jukinet.domain.message import pack
from jukinet.domain.notice import UpdateNotice

from .strategies import UTC, update_notices

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
DOC = ROOT / "docs" / "export-format.md"

NAGANO = LocalGovernmentCode("202011")  # 長野市
NOW = dt.datetime(2024, 4, 15, 1, 0, tzinfo=UTC)
CODE = ResidentCode.from_body("2473851906").value  # 24738519066
OTHER = ResidentCode.from_body("1726354908").value  # 17263549082
VALID = {
    "resident_code": CODE, "reason": "転入", "change_date": "2024-04-01", "name_kanji": "丸山　健一",
    "name_kana": "マルヤマ　ケンイチ", "birth_date": "1985-06-12", "sex": "1", "address": "長野県長野市大字鶴賀1234番地",
}
HEADER = list(COLUMNS)  # every column, English names


def csv_text(*rows: dict[str, str], header: list[str] = HEADER) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(column, "") for column in header])
    return buffer.getvalue()


def csv_file(*rows: dict[str, str], header: list[str] = HEADER, encoding: str = "utf-8") -> bytes:
    return csv_text(*rows, header=header).encode(encoding)


def jsonl_file(*rows: dict[str, object]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def parse(data: bytes, filename: str = "export.csv", **limits: int) -> ExportParseResult:
    return parse_export(data, municipality=NAGANO, notice_time=NOW, filename=filename, **limits)


def parse_row(fmt: str, row: dict[str, str]) -> ExportParseResult:
    if fmt == "csv":
        return parse(csv_file(row))
    return parse(jsonl_file({k: v for k, v in row.items() if v != ""}), "export.jsonl")


def only_rejection(result: ExportParseResult) -> Rejection:
    assert result.file_error is None
    assert result.notices == [] and len(result.rejections) == 1, result.rejections
    return result.rejections[0]


def only_notice(result: ExportParseResult) -> UpdateNotice:
    assert result.file_error is None and result.rejections == [], result.rejections
    assert len(result.notices) == 1
    return result.notices[0][1]


# --- a valid row ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_valid_row_becomes_a_notice_from_this_municipality_at_the_given_time(fmt):
    notice = only_notice(parse_row(fmt, VALID))
    assert (notice.municipality, notice.sequence, notice.notice_time) == (NAGANO, 1, NOW)
    assert (notice.resident_code.value, notice.reason, notice.change_date) == (CODE, ChangeReason.MOVE_IN,
                                                                               dt.date(2024, 4, 1))
    facts = notice.facts
    assert facts is not None and facts.resident_code.value == CODE
    assert (facts.name.kanji, facts.name.kana) == ("丸山　健一", "マルヤマ　ケンイチ")
    assert (facts.birth_date, facts.sex, facts.address) == (dt.date(1985, 6, 12), Sex.MALE, VALID["address"])
    assert facts.individual_number is None and notice.previous_resident_code is None


def test_code_change_row_is_sent_under_the_new_code_naming_the_old_one():
    notice = only_notice(parse(csv_file({**VALID, "reason": "住民票コード変更", "previous_resident_code": OTHER})))
    assert notice.reason is ChangeReason.CODE_CHANGE
    assert (notice.resident_code.value, notice.previous_resident_code.value) == (CODE, OTHER)


def test_blank_only_optional_cells_count_as_empty():
    notice = only_notice(parse(csv_file({**VALID, "individual_number": "   ", "former_surname": "\u3000"})))
    assert notice.facts.individual_number is None and notice.facts.name.former_surname is None


def test_own_local_government_code_is_accepted():
    assert only_notice(parse(csv_file({**VALID, "local_government_code": "202011"}))).municipality == NAGANO


# --- every row rule ------------------------------------------------------------------------------

MALFORMED = [
    pytest.param({"resident_code": "24738519067"}, "resident_code", "check_digit", id="check-digit"),
    pytest.param({"resident_code": "2473851906"}, "resident_code", "length", id="too-short"),
    pytest.param({"resident_code": "247385190660"}, "resident_code", "length", id="too-long"),
    pytest.param({"resident_code": "2473851906X"}, "resident_code", "digits", id="non-digit"),
    pytest.param({"resident_code": "２４７３８５１９０６６"}, "resident_code", "digits", id="full-width-digits"),
    pytest.param({"resident_code": ""}, "resident_code", "required", id="no-resident-code"),
    pytest.param({"change_date": "2024-02-30"}, "change_date", "date", id="no-such-day"),
    pytest.param({"change_date": "R060401"}, "change_date", "date", id="era-date"),
    pytest.param({"birth_date": "1985/13/01"}, "birth_date", "date", id="no-such-month"),
    pytest.param({"birth_date": "1849-12-31"}, "birth_date", "range", id="birth-before-1850"),
    pytest.param({"reason": "引越"}, "reason", "enum", id="unknown-reason"),
    pytest.param({"reason": "99"}, "reason", "enum", id="unknown-reason-code"),
    pytest.param({"sex": "3"}, "sex", "enum", id="unknown-sex"),
    pytest.param({"name_kana": "まるやま　けんいち"}, "name_kana", "kana", id="hiragana-kana"),
    pytest.param({"name_kana": "Maruyama Kenichi"}, "name_kana", "kana", id="latin-kana"),
    pytest.param({"name_kana": "丸山"}, "name_kana", "kana", id="kanji-kana"),
    pytest.param({"former_surname": "山田", "former_surname_kana": "やまだ"}, "former_surname_kana", "kana",
                 id="former-surname-kana"),
    pytest.param({"address": ""}, "address", "required", id="no-address"),
    pytest.param({"name_kanji": ""}, "name_kanji", "required", id="no-name"),
    pytest.param({"name_kana": ""}, "name_kana", "required", id="no-kana"),
    pytest.param({"birth_date": ""}, "birth_date", "required", id="no-birth-date"),
    pytest.param({"sex": ""}, "sex", "required", id="no-sex"),
    pytest.param({"reason": ""}, "reason", "required", id="no-reason"),
    pytest.param({"change_date": ""}, "change_date", "required", id="no-change-date"),
    pytest.param({"address": "長" * 201}, "address", "length", id="address-too-long"),
    pytest.param({"name_kanji": "丸" * 101}, "name_kanji", "length", id="name-too-long"),
    pytest.param({"address": "長野\x07市"}, "address", "format", id="control-character"),
    pytest.param({"name_kanji": "丸\ue000　健一"}, "name_kanji", "format", id="private-use-gaiji"),
    pytest.param({"individual_number": "850612003411"}, "individual_number", "check_digit",
                 id="individual-number-check-digit"),
    pytest.param({"individual_number": "85061200341"}, "individual_number", "length", id="individual-number-length"),
    pytest.param({"birth_date": "2024-04-02"}, "birth_date", "consistency", id="born-after-the-change"),
    pytest.param({"local_government_code": "202029"}, "local_government_code", "consistency",
                 id="other-municipality"),
    pytest.param({"local_government_code": "202012"}, "local_government_code", "check_digit",
                 id="municipality-check-digit"),
    pytest.param({"reason": "住民票コード変更"}, "previous_resident_code", "required", id="code-change-without-old-code"),
    pytest.param({"reason": "住民票コード変更", "previous_resident_code": CODE}, "previous_resident_code", "consistency",
                 id="code-change-to-itself"),
    pytest.param({"reason": "住民票コード変更", "previous_resident_code": "17263549083"}, "previous_resident_code",
                 "check_digit", id="code-change-bad-old-code"),
    pytest.param({"previous_resident_code": OTHER}, "previous_resident_code", "consistency",
                 id="move-in-naming-an-old-code"),
    pytest.param({"reason": "転出", "previous_resident_code": OTHER}, "previous_resident_code", "consistency",
                 id="deletion-naming-an-old-code"),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("changes", "field", "rule"), MALFORMED)
def test_malformed_row_is_rejected_naming_its_column_and_rule(fmt, changes, field, rule):
    rejection = only_rejection(parse_row(fmt, {**VALID, **changes}))
    assert (rejection.row_number, rejection.field, rejection.rule) == ((2 if fmt == "csv" else 1), field, rule)
    assert rejection.detail
    # The code as written, wrong or not, so that the clerk can find the row.
    assert rejection.resident_code == ({**VALID, **changes}["resident_code"] or None)


def test_gaiji_rejection_tells_the_clerk_what_to_do():
    detail = only_rejection(parse(csv_file({**VALID, "name_kanji": "丸\ue000"}))).detail
    assert "外字" in detail and "U+E000" in detail


# --- deletions -----------------------------------------------------------------------------------

@pytest.mark.parametrize("reason", [r for r in ChangeReason if r.kind is ChangeKind.DELETION])
def test_deletion_with_empty_fact_columns_carries_no_facts(reason):
    notice = only_notice(parse(csv_file({"resident_code": CODE, "reason": reason.label_ja,
                                         "change_date": "2024-04-04"})))
    assert notice.reason is reason and notice.facts is None


def test_deletion_ignores_whatever_stands_in_the_fact_columns():
    row = {**VALID, "reason": "死亡", "name_kana": "まちがい", "birth_date": "not a date", "sex": "9", "address": ""}
    assert only_notice(parse(csv_file(row))).facts is None


def test_deletion_still_needs_a_valid_resident_code():
    rejection = only_rejection(parse(csv_file({"resident_code": "58370126495", "reason": "転出",
                                               "change_date": "2024-04-04"})))
    assert (rejection.field, rejection.rule) == ("resident_code", "check_digit")


# --- encodings -----------------------------------------------------------------------------------

def test_cp932_file_with_half_width_kana_is_read_and_kana_stored_full_width():
    row = {**VALID, "name_kanji": "髙橋　直樹", "name_kana": "ﾀｶﾊｼ ﾅｵｷ", "former_surname": "﨑山",
           "former_surname_kana": "ｻｷﾔﾏ"}
    result = parse(csv_file(row, encoding="cp932"))
    notice = only_notice(result)
    assert result.encoding == "cp932"
    assert notice.facts.name.kanji == "髙橋　直樹"  # an IBM extension character: CP932, not Shift_JIS
    assert (notice.facts.name.kana, notice.facts.name.former_surname_kana) == ("タカハシ　ナオキ", "サキヤマ")


def test_cp932_gaiji_decodes_to_private_use_and_the_row_is_rejected():
    data = csv_file(VALID, encoding="cp932").replace("健一".encode("cp932"), b"\xf0\x40\xe8\xea")
    result = parse(data)
    assert result.encoding == "cp932"
    assert (only_rejection(result).field, only_rejection(result).rule) == ("name_kanji", "format")


def test_utf8_with_bom_is_read_and_the_bom_does_not_spoil_the_first_column_name():
    result = parse(b"\xef\xbb\xbf" + csv_file(VALID, header=["resident_code", *HEADER[1:]]))
    assert result.encoding == "utf-8-sig"
    assert only_notice(result).resident_code.value == CODE


def test_plain_utf8_is_recorded_as_utf8():
    assert parse(csv_file(VALID)).encoding == "utf-8"


def test_file_neither_utf8_nor_cp932_is_rejected_as_a_whole():
    data = csv_file(VALID) + b"\x82\x20broken\r\n"  # 0x82 opens a CP932 pair, 0x20 cannot end one
    result = parse(data)
    assert result.file_error == Rejection(0, "file", "encoding", result.file_error.detail)
    assert "UTF-8" in result.file_error.detail and "CP932" in result.file_error.detail
    assert (result.encoding, result.notices, result.rejections, result.rows_read) == (None, [], [], 0)


def test_utf16_file_is_rejected_with_rule_encoding():
    result = parse(csv_text(VALID).encode("utf-16"))
    assert (result.file_error.field, result.file_error.rule) == ("file", "encoding")
    assert "UTF-16" in result.file_error.detail


def test_json_lines_must_be_utf8():
    result = parse(jsonl_file(VALID).decode().encode("cp932"), "export.jsonl")
    assert (result.format, result.file_error.rule) == ("jsonl", "encoding")


# --- the CSV header ------------------------------------------------------------------------------

def test_japanese_column_names_are_accepted_in_full_and_half_width():
    header = ["住民票コード", "異動事由", "異動年月日", "氏名", "ﾌﾘｶﾞﾅ", "生年月日", "性別", "住所", "市区町村コード"]
    values = [CODE, "転入", "20240401", "丸山　健一", "ﾏﾙﾔﾏ ｹﾝｲﾁ", "19850612", "男", VALID["address"], "202011"]
    data = ",".join(header) + "\r\n" + ",".join(values) + "\r\n"
    notice = only_notice(parse(data.encode("cp932")))
    assert notice.facts.name.kana == "マルヤマ　ケンイチ" and notice.facts.sex is Sex.MALE


def test_english_column_names_ignore_case_and_width():
    data = csv_file(VALID).replace(b"resident_code,reason,", "Resident_Code,ＲＥＡＳＯＮ,".encode(), 1)
    assert only_notice(parse(data)).reason is ChangeReason.MOVE_IN


def test_unknown_column_rejects_the_whole_file_and_names_the_column():
    result = parse(csv_file(VALID, header=[*HEADER, "住所2"]))
    assert (result.file_error.row_number, result.file_error.field, result.file_error.rule) == (1, "file", "header")
    assert "'住所2'" in result.file_error.detail
    assert (result.notices, result.rejections, result.rows_read) == ([], [], 0)


def test_tab_separated_file_gets_a_hint():
    data = "\t".join(HEADER).encode() + b"\r\n"
    assert "tab-separated" in parse(data).file_error.detail


def test_missing_required_column_rejects_the_file_naming_it_in_both_languages():
    result = parse(csv_file(VALID, header=[c for c in HEADER if c != "sex"]))
    assert result.file_error.rule == "header" and "sex/性別" in result.file_error.detail


def test_column_named_twice_rejects_the_file():
    header = ["resident_code", "reason", "change_date", "name_kanji", "氏名カナ", "フリガナ", "birth_date", "sex",
              "address"]
    result = parse(csv_file(VALID, header=header))
    assert result.file_error.rule == "header" and "name_kana" in result.file_error.detail


def test_header_cell_without_a_name_rejects_the_file():
    assert parse(csv_file(VALID, header=[*HEADER, ""])).file_error.rule == "header"


def test_empty_file_is_rejected_for_want_of_a_header():
    result = parse(b"")
    assert (result.file_error.field, result.file_error.rule) == ("file", "header")


def test_header_only_file_is_accepted_with_no_rows():
    result = parse(csv_file())
    assert (result.file_error, result.rows_read, result.notices, result.rejections) == (None, 0, [], [])


# --- CSV structure and row numbers ---------------------------------------------------------------

def test_row_numbers_are_file_lines_and_provisional_sequences_count_valid_rows_only():
    bad = {**VALID, "change_date": "2024-02-30"}
    text = csv_text(VALID)  # header line 1, valid row line 2
    text += "\r\n"  # line 3: blank
    text += csv_text(bad).split("\r\n", 1)[1]  # line 4: rejected
    text += csv_text(VALID).split("\r\n", 1)[1]  # line 5
    text += "," * (len(HEADER) - 1) + "\r\n"  # line 6: only empty cells, as spreadsheets leave behind
    text += csv_text(VALID).split("\r\n", 1)[1]  # line 7
    result = parse(text.encode())
    assert [(row, n.sequence) for row, n in result.notices] == [(2, 1), (5, 2), (7, 3)]
    assert [r.row_number for r in result.rejections] == [4]
    assert result.rows_read == 4


def test_row_with_wrong_number_of_cells_is_rejected_with_rule_columns():
    text = csv_text(VALID) + csv_text(VALID).split("\r\n", 1)[1].replace("\r\n", ",extra\r\n")
    result = parse(text.encode())
    assert [row for row, _ in result.notices] == [2]
    rejection = result.rejections[0]
    assert (rejection.row_number, rejection.field, rejection.rule, rejection.resident_code) == (3, "row", "columns",
                                                                                                CODE)


def test_text_after_a_closing_quote_rejects_only_that_row():
    row = csv_text(VALID).split("\r\n", 1)[1]
    text = csv_text(VALID) + row.replace(VALID["address"], '"長野市"中央') + row
    result = parse(text.encode())
    assert [row for row, _ in result.notices] == [2, 4]
    assert [(r.row_number, r.field, r.rule) for r in result.rejections] == [(3, "row", "csv")]


def test_unclosed_quote_rejects_the_file_naming_the_line_it_opened_on():
    row = csv_text(VALID).split("\r\n", 1)[1]
    text = csv_text(VALID) + row.replace(VALID["address"], '"長野市') + row + row
    result = parse(text.encode())
    assert (result.file_error.row_number, result.file_error.rule) == (3, "csv")
    assert "line 3" in result.file_error.detail and result.notices == []


# --- JSON Lines ----------------------------------------------------------------------------------

def test_jsonl_broken_line_is_rejected_and_the_other_lines_are_accepted():
    good = json.dumps(VALID, ensure_ascii=False)
    data = f'{good}\n\n{{"resident_code": "2473\n{good}\n'.encode()
    result = parse(data, "export.jsonl")
    assert result.format == "jsonl"
    assert [(row, n.sequence) for row, n in result.notices] == [(1, 1), (4, 2)]
    assert [(r.row_number, r.field, r.rule) for r in result.rejections] == [(3, "row", "json")]
    assert result.rows_read == 3


@pytest.mark.parametrize("line", ['["a", "b"]', '"text"', "42", "null"])
def test_jsonl_line_that_is_not_an_object_is_rejected(line):
    assert only_rejection(parse(line.encode() + b"\n", "export.jsonl")).rule == "json"


def test_jsonl_key_given_twice_is_rejected():
    line = json.dumps(VALID, ensure_ascii=False)[:-1] + ', "address": "長野県松本市"}'
    rejection = only_rejection(parse(line.encode(), "export.jsonl"))
    assert rejection.rule == "json" and "'address'" in rejection.detail


def test_jsonl_japanese_key_is_rejected_with_the_english_key_to_use():
    row = {k: v for k, v in VALID.items() if k != "address"} | {"住所": VALID["address"]}
    rejection = only_rejection(parse(jsonl_file(row), "export.jsonl"))
    assert (rejection.field, rejection.rule) == ("住所", "unknown_field") and "'address'" in rejection.detail


def test_jsonl_resident_code_as_a_number_is_rejected_since_leading_zeros_would_be_lost():
    rejection = only_rejection(parse(jsonl_file({**VALID, "resident_code": int(CODE)}), "export.jsonl"))
    assert (rejection.field, rejection.rule) == ("resident_code", "format")


def test_jsonl_nested_value_is_rejected_with_rule_format():
    rejection = only_rejection(parse(jsonl_file({**VALID, "address": {"city": "長野市"}}), "export.jsonl"))
    assert (rejection.field, rejection.rule) == ("address", "format")


def test_jsonl_numbers_are_accepted_for_sex_and_dates():
    notice = only_notice(parse(jsonl_file({**VALID, "sex": 2, "birth_date": 19850612}), "export.jsonl"))
    assert (notice.facts.sex, notice.facts.birth_date) == (Sex.FEMALE, dt.date(1985, 6, 12))


def test_jsonl_lone_surrogate_is_rejected_instead_of_crashing_the_sender():
    line = json.dumps(VALID, ensure_ascii=True).replace("\\u5065\\u4e00", "\\ud800")
    rejection = only_rejection(parse(line.encode(), "export.jsonl"))
    assert (rejection.field, rejection.rule) == ("name_kanji", "format")


def test_jsonl_deletion_needs_only_code_reason_and_date():
    notice = only_notice(parse(jsonl_file({"resident_code": CODE, "reason": "21", "change_date": "2024-04-04"}),
                               "x.ndjson"))
    assert notice.reason is ChangeReason.MOVE_OUT and notice.facts is None


@pytest.mark.parametrize("filename", ["export.jsonl", "EXPORT.NDJSON", "export.txt", "export.csv"])
def test_jsonl_is_recognised_by_extension_or_by_a_leading_brace(filename):
    result = parse(b"\xef\xbb\xbf\n  " + jsonl_file(VALID), filename)
    assert (result.format, result.encoding, result.accepted) == ("jsonl", "utf-8-sig", 1)


# --- limits and caller errors --------------------------------------------------------------------

def test_file_over_the_size_limit_is_rejected_before_it_is_read():
    result = parse(b"x" * (MAX_FILE_BYTES + 1))
    assert (result.file_error.row_number, result.file_error.rule, result.encoding) == (0, "limit", None)
    assert "50 MB" in result.file_error.detail


def test_file_over_the_row_limit_is_rejected_as_a_whole():
    result = parse(csv_text(VALID, VALID, VALID, VALID).encode(), max_rows=3)
    assert (result.file_error.row_number, result.file_error.rule) == (5, "limit")
    assert (result.notices, result.rejections) == ([], [])
    assert parse(csv_text(VALID, VALID, VALID).encode(), max_rows=3).accepted == 3


def test_documented_limits_are_the_ones_enforced():
    text = DOC.read_text()
    assert MAX_FILE_BYTES == 50 * 1024 * 1024 and f"{MAX_FILE_BYTES:,} bytes" in text and "50 MB" in text
    assert f"{MAX_ROWS:,} rows" in text


def test_prefecture_code_as_sender_is_the_callers_error():
    with pytest.raises(ValidationError) as exc:
        parse_export(csv_file(VALID), municipality=LocalGovernmentCode("200000"), notice_time=NOW, filename="x.csv")
    assert exc.value.field == "municipality"


def test_notice_time_without_time_zone_is_the_callers_error():
    with pytest.raises(ValidationError):
        parse_export(csv_file(VALID), municipality=NAGANO, notice_time=dt.datetime(2024, 4, 15), filename="x.csv")


# --- reports -------------------------------------------------------------------------------------

def test_rejection_report_is_utf8_with_bom_and_crlf_for_excel():
    result = parse(csv_file(VALID, {**VALID, "change_date": "2024-02-30"}, {**VALID, "sex": "3"}))
    report = rejection_report_csv(result, "export.csv")
    assert report.startswith(b"\xef\xbb\xbf")
    lines = report.decode("utf-8-sig").split("\r\n")
    assert lines[0] == "row,field,rule,detail,resident_code" and lines[-1] == ""
    assert [line.split(",")[:3] for line in lines[1:-1]] == [["3", "change_date", "date"], ["4", "sex", "enum"]]


def test_report_of_a_clean_file_holds_only_its_header():
    assert rejection_report_csv(parse(csv_file(VALID)), "x.csv") == "\ufeffrow,field,rule,detail,resident_code\r\n" \
        .encode("utf-8")


def test_report_cells_that_excel_would_run_as_formulas_are_made_text():
    result = parse(jsonl_file({**VALID, "resident_code": "=1+1"}, {"=cmd": "x"}), "export.jsonl")
    rows = list(csv.reader(io.StringIO(rejection_report_csv(result, "x").decode("utf-8-sig"))))
    assert rows[1][4] == "'=1+1" and rows[2][1] == "'=cmd"


def test_report_of_a_rejected_file_has_the_file_line():
    result = parse(csv_file(VALID, header=[*HEADER, "bogus"]))
    rows = list(csv.reader(io.StringIO(rejection_report_csv(result, "x").decode("utf-8-sig"))))
    assert rows[1][:3] == ["1", "file", "header"] and len(rows) == 2


def test_summary_counts_rows_and_rules():
    result = parse(csv_file(VALID, {**VALID, "sex": "3"}, {**VALID, "sex": "4"}, {**VALID, "reason": "x"}))
    summary = json.loads(summary_json(result))
    assert summary == {
        "file": "export.csv", "format": "csv", "encoding": "utf-8", "status": "processed", "rows_read": 4,
        "accepted": 1, "rejected": 3, "rejected_by_rule": {"enum": 3}, "file_error": None,
    }


def test_summary_of_a_rejected_file_says_so():
    summary = json.loads(summary_json(parse(b"\xff\xfe")))
    assert summary["status"] == "rejected" and summary["file_error"]["rule"] == "encoding"


def test_accepted_notices_pack_into_messages():
    result = parse((EXAMPLES / "export.jsonl").read_bytes(), "export.jsonl")
    notices = [dataclasses.replace(n, sequence=1000 + i) for i, (_, n) in enumerate(result.notices)]
    payloads = list(pack(notices, sender=NAGANO.value, created=NOW))
    assert sum(len(p.notices) for p in payloads) == len(notices) == 9


# --- the example files of docs/export-format.md --------------------------------------------------

def _example(name: str) -> ExportParseResult:
    return parse((EXAMPLES / name).read_bytes(), name)


def test_example_files_hold_the_same_nine_accepted_changes_in_three_formats():
    results = {name: _example(name) for name in ("export-utf8.csv", "export-cp932.csv", "export.jsonl")}
    assert {n: (r.format, r.encoding) for n, r in results.items()} == {
        "export-utf8.csv": ("csv", "utf-8"), "export-cp932.csv": ("csv", "cp932"), "export.jsonl": ("jsonl", "utf-8"),
    }
    for result in results.values():
        assert (result.file_error, result.rows_read, result.accepted, result.rejected) == (None, 9, 9, 0)
    utf8, cp932, jsonl = ([n for _, n in r.notices] for r in results.values())
    assert utf8 == cp932 == jsonl


def test_example_files_cover_the_reasons_the_docs_name():
    reasons = {n.reason.label_ja for _, n in _example("export-utf8.csv").notices}
    assert reasons == {"転入", "出生", "転居", "転出", "死亡", "職権修正", "氏名変更", "住民票コード変更", "特例転入"}
    notices = {n.reason: n for _, n in _example("export-utf8.csv").notices}
    assert notices[ChangeReason.NAME_CHANGE].facts.name.former_surname == "山田"
    assert notices[ChangeReason.CODE_CHANGE].previous_resident_code is not None
    assert notices[ChangeReason.MOVE_OUT].facts is None and notices[ChangeReason.DEATH].facts is None


def test_example_with_errors_gives_exactly_the_report_shown_in_the_docs():
    result = _example("export-with-errors.csv")
    assert (result.rows_read, result.accepted, result.rejected) == (7, 2, 5)
    assert [(r.row_number, r.field, r.rule) for r in result.rejections] == [
        (3, "resident_code", "check_digit"), (4, "change_date", "date"), (5, "reason", "enum"),
        (6, "name_kana", "kana"), (7, "address", "required"),
    ]
    block = re.search(r"<!-- report of export-with-errors.csv[^>]*-->\s*```csv\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert block is not None
    assert rejection_report_csv(result, "export-with-errors.csv").decode("utf-8-sig") == \
        block.group(1).replace("\n", "\r\n")


def test_summary_shown_in_the_docs_is_the_real_one():
    block = re.search(r"\*\*`reports/<file>.summary.json`\*\*.*?```json\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert json.loads(block.group(1)) == json.loads(summary_json(_example("export-with-errors.csv")))


def test_reason_table_in_the_docs_lists_every_reason_with_its_code_label_and_kind():
    table = DOC.read_text().split("<!-- reasons table")[1].split("\n\n")[0]
    rows = {cells[0]: cells[1:4] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("|"))}
    del rows["code"], rows["---"]  # the table's head
    assert rows == {r.value: [r.label_ja, r.name, r.kind.value] for r in ChangeReason}


# --- property: every row is accounted for --------------------------------------------------------

_REASON_SPELLINGS = st.sampled_from(["value", "label_ja", "name"])


def _render(notice: UpdateNotice, spelling: str, compact_dates: bool) -> dict[str, str]:
    def date(d: dt.date) -> str:
        return d.strftime("%Y%m%d") if compact_dates else d.isoformat()

    reason = notice.reason.name if spelling == "name" else getattr(notice.reason, spelling)
    row = {"resident_code": notice.resident_code.value, "reason": reason, "change_date": date(notice.change_date)}
    if notice.previous_resident_code is not None:
        row["previous_resident_code"] = notice.previous_resident_code.value
    if notice.facts is not None:
        f = notice.facts
        row |= {"name_kanji": f.name.kanji, "name_kana": f.name.kana, "former_surname": f.name.former_surname or "",
                "former_surname_kana": f.name.former_surname_kana or "", "birth_date": date(f.birth_date),
                "sex": f.sex.value, "address": f.address,
                "individual_number": "" if f.individual_number is None else f.individual_number.value}
    return row


def _flip_check_digit(row: dict) -> dict:
    code = row["resident_code"]
    return row | {"resident_code": code[:-1] + str((int(code[-1]) + 1) % 10)}


# Corruptions that reject a row whatever its reason (a deletion ignores its fact columns).
CORRUPTIONS = {
    "check_digit": _flip_check_digit,
    "date": lambda row: row | {"change_date": "2024-02-30"},
    "reason": lambda row: row | {"reason": "引越"},
    "municipality": lambda row: row | {"local_government_code": "202029"},
    "no_code": lambda row: row | {"resident_code": ""},
    "digits": lambda row: row | {"resident_code": row["resident_code"][:10] + "X"},
}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(update_notices(municipality=NAGANO, notice_time=NOW), _REASON_SPELLINGS, st.booleans(),
                       st.none() | st.sampled_from(sorted(CORRUPTIONS)), st.booleans()), max_size=12),
    st.sampled_from(["utf-8", "utf-8-sig", "cp932", "jsonl"]),
)
def test_every_row_is_accepted_or_rejected_and_never_dropped(rows, style):
    lines: list[str] = []
    expected: list[tuple[int, UpdateNotice | None]] = []  # (line, notice or None when corrupted)
    line_number = 0 if style == "jsonl" else 1
    for notice, spelling, compact, corruption, blank_before in rows:
        if blank_before:
            lines.append("")
            line_number += 1
        row = _render(notice, spelling, compact)
        if corruption is not None:
            row = CORRUPTIONS[corruption](row)
        if style == "jsonl":
            lines.append(json.dumps({k: v for k, v in row.items() if v}, ensure_ascii=False))
        else:
            lines.append(csv_text(row).split("\r\n", 1)[1].removesuffix("\r\n"))
        line_number += 1
        expected.append((line_number, None if corruption else notice))
    if style == "jsonl":
        data, filename = ("\n".join(lines) + "\n").encode("utf-8"), "export.jsonl"
    else:
        header = csv_text().removesuffix("\r\n")
        data, filename = "\r\n".join([header, *lines, ""]).encode(style), "export.csv"

    result = parse(data, filename)

    assert result.file_error is None
    assert result.rows_read == result.accepted + result.rejected == len(rows)
    assert sorted([row for row, _ in result.notices] + [r.row_number for r in result.rejections]) == \
        [line for line, _ in expected]
    assert [r.row_number for r in result.rejections] == [line for line, n in expected if n is None]
    valid = [n for _, n in expected if n is not None]
    assert [n for _, n in result.notices] == [
        dataclasses.replace(n, sequence=i, notice_time=NOW) for i, n in enumerate(valid, start=1)
    ]

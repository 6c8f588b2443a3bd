"""The existing system's export (既存住基システムの異動データ): a file of register changes, parsed.

Each municipality's existing resident-registry system drops a file of register changes into
its CS's drop zone. ``parse_export`` turns every row of that file into either a validated
``UpdateNotice`` or a ``Rejection`` naming row, field and rule; the CS then numbers the valid
notices, signs and sends them, and writes ``rejection_report_csv`` and ``summary_json`` back to
the drop zone. The format is specified for municipal IT staff in ``docs/export-format.md``;
this module is its one implementation.

Formats:
- CSV with a header row, comma-separated, English or Japanese column names (``COLUMNS``),
  encoded UTF-8 (with or without BOM) or CP932 (Shift_JIS as Windows writes it).
- JSON Lines (``.jsonl``/``.ndjson``, or any file whose first non-blank character is ``{``):
  one flat object per line with the English column names as keys, UTF-8.

A file-level problem (size, encoding, header, broken CSV quoting) rejects the whole file:
no row of it is sent. Otherwise every non-blank row is accounted for, accepted or rejected.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from .codes import LocalGovernmentCode
from .errors import ValidationError
from .facts import ChangeKind, ChangeReason
from .local_record import LOCAL_COLUMNS, LocalRecordFields, parse_local_fields
from .notice import UpdateNotice, parse_notice_time

# Limits: the largest municipality sends a few tens of thousands of notices a month (Nagano's
# 77 sent 18,692 in all in January 2003), so these leave an order of magnitude to spare while
# bounding the CS's memory: the whole file, its decoded text and one notice object per row
# are held at once.
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ROWS = 200_000

CSV = "csv"
JSONL = "jsonl"
UTF8 = "utf-8"
UTF8_BOM = "utf-8-sig"
CP932 = "cp932"

FILE = "file"  # the ``field`` of a file-level rejection
ROW = "row"  # the ``field`` of a rejection that concerns a row as a whole

_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_MAX_ECHO = 32  # characters of a raw value echoed into the report (resident code, key names)

# Column → names accepted in a CSV header (matched after NFKC and case folding, so half-width
# ﾌﾘｶﾞﾅ and full-width Ｒｅａｓｏｎ are the same name). The first name is the canonical one,
# used as JSON Lines key and in rejections; the second is the Japanese name.
COLUMNS: dict[str, tuple[str, ...]] = {
    "resident_code": ("resident_code", "住民票コード"),
    "reason": ("reason", "異動事由"),
    "change_date": ("change_date", "異動年月日"),
    "name_kanji": ("name_kanji", "氏名"),
    "name_kana": ("name_kana", "氏名カナ", "フリガナ"),
    "former_surname": ("former_surname", "旧氏"),
    "former_surname_kana": ("former_surname_kana", "旧氏カナ", "旧氏フリガナ"),
    "alias": ("alias", "通称"),
    "birth_date": ("birth_date", "生年月日"),
    "sex": ("sex", "性別"),
    "address": ("address", "住所"),
    "individual_number": ("individual_number", "個人番号"),
    "previous_resident_code": ("previous_resident_code", "旧住民票コード"),
    "local_government_code": ("local_government_code", "市区町村コード"),
    # The municipality-only record fields (domain/local_record.py): optional, stored in the
    # municipality tier, never part of a notice (docs/export-format.md §3.5).
    **LOCAL_COLUMNS,
}
REQUIRED_COLUMNS = ("resident_code", "reason", "change_date", "name_kanji", "name_kana", "birth_date", "sex",
                    "address")

_HEADER_NAMES = {unicodedata.normalize("NFKC", name).casefold(): column
                 for column, names in COLUMNS.items() for name in names}
# Domain field (``UpdateNotice.from_dict``) → the column a municipal clerk can find in the file.
_FIELD_TO_COLUMN = {
    "facts.resident_code": "resident_code",
    "facts.name.kanji": "name_kanji",
    "facts.name.kana": "name_kana",
    "facts.name.former_surname": "former_surname",
    "facts.name.former_surname_kana": "former_surname_kana",
    "facts.name.alias": "alias",
    "facts.birth_date": "birth_date",
    "facts.sex": "sex",
    "facts.address": "address",
    "facts.individual_number": "individual_number",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """One rejected row (or, with ``field == "file"``, the whole file).

    ``row_number`` is the line in the file where the row starts (CSV: the header is line 1);
    0 when a file-level problem has no line (size, encoding). ``field`` is the canonical
    column name (``COLUMNS``), ``"row"`` or ``"file"``; ``rule`` is the ``ValidationError``
    rule code; ``resident_code`` is the row's resident code as written, valid or not.
    """

    row_number: int
    field: str
    rule: str
    detail: str
    resident_code: str | None = None


@dataclass(frozen=True, slots=True)
class ExportParseResult:
    """What became of every row of one file.

    ``notices`` pairs each valid row's line number with its notice (provisional sequence
    1, 2, 3 … in file order); ``local_fields`` holds, by the same line number, the
    municipality-only fields of the valid rows that gave any (never part of the notice). ``rows_read == len(notices) + len(rejections)`` unless
    ``file_error`` is set, in which case the whole file is rejected and both lists are empty.
    """

    filename: str
    format: str  # "csv" | "jsonl"
    encoding: str | None  # "utf-8" | "utf-8-sig" (with BOM) | "cp932"; None when undecodable
    rows_read: int = 0
    notices: list[tuple[int, UpdateNotice]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    file_error: Rejection | None = None
    local_fields: dict[int, LocalRecordFields] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return len(self.notices)

    @property
    def rejected(self) -> int:
        return len(self.rejections)


# A row as read: values by canonical column name, or the reader's rejection of the row.
_Row = dict[str, object] | Rejection


class _FileRejected(Exception):
    """Raised inside the parser to abandon the file; never leaves this module."""

    def __init__(self, row_number: int, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(row_number, FILE, rule, detail)


# --- the entry point -----------------------------------------------------------------------------

def parse_export(data: bytes, *, municipality: LocalGovernmentCode, notice_time: dt.datetime, filename: str,
                 max_bytes: int = MAX_FILE_BYTES, max_rows: int = MAX_ROWS) -> ExportParseResult:
    """Parse and validate an export file; see the module docstring and ``docs/export-format.md``.

    Each valid row becomes an ``UpdateNotice`` from ``municipality`` at ``notice_time`` with a
    provisional ``sequence``: its 1-based position among the valid rows. The CS replaces it
    (``dataclasses.replace``) once it has reserved the municipality's next numbers.
    A wrong ``municipality`` or ``notice_time`` is the caller's error and raises.
    """
    if municipality.is_prefecture:
        raise ValidationError("municipality", "consistency", "an export comes from a municipality, not a prefecture")
    notice_time = parse_notice_time(notice_time)
    fmt = JSONL if _looks_like_jsonl(data, filename) else CSV
    builder = _Builder(municipality, notice_time, max_rows)
    encoding: str | None = None
    try:
        if len(data) > max_bytes:
            raise _FileRejected(0, "limit", f"file is {len(data):,} bytes; the limit is {max_bytes:,} bytes "
                                            f"({max_bytes // (1024 * 1024)} MB): split it into several files")
        text, encoding = _decode(data, fmt)
        rows = _jsonl_rows(text) if fmt == JSONL else _csv_rows(text)
        for row_number, values in rows:
            builder.add(row_number, values)
    except _FileRejected as exc:
        return ExportParseResult(filename, fmt, encoding, builder.rows_read, file_error=exc.rejection)
    return ExportParseResult(filename, fmt, encoding, builder.rows_read, builder.notices, builder.rejections,
                             local_fields=builder.local_fields)


def _looks_like_jsonl(data: bytes, filename: str) -> bool:
    if filename.lower().endswith(_JSONL_SUFFIXES):
        return True
    return data.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[:1] == b"{"


# --- decoding ------------------------------------------------------------------------------------

def _decode(data: bytes, fmt: str) -> tuple[str, str]:
    # UTF-16 (Excel's "Unicode text") and binary files carry NUL bytes; CP932 would decode
    # them into NULs and private-use characters rather than fail, so catch them first.
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise _FileRejected(0, "encoding", "file contains NUL bytes (UTF-16 or not a text file): "
                                           "save it as UTF-8 or Shift_JIS (CP932) CSV")
    encoding = UTF8_BOM if data.startswith(b"\xef\xbb\xbf") else UTF8
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        utf8_error = exc
    if fmt == JSONL:  # JSON text is UTF-8 (RFC 8259 §8.1)
        raise _FileRejected(0, "encoding", f"JSON Lines must be UTF-8: invalid byte 0x{data[utf8_error.start]:02X} "
                                           f"at byte offset {utf8_error.start}")
    try:
        return data.decode(CP932), CP932
    except UnicodeDecodeError as exc:
        raise _FileRejected(0, "encoding", (
            f"file is neither UTF-8 (invalid byte 0x{data[utf8_error.start]:02X} at byte offset {utf8_error.start}) "
            f"nor CP932/Shift_JIS (invalid byte 0x{data[exc.start]:02X} at byte offset {exc.start}): "
            "save it as UTF-8 or Shift_JIS (CP932)"
        )) from None


# --- CSV -----------------------------------------------------------------------------------------

def _csv_rows(text: str) -> Iterator[tuple[int, _Row]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line = 0
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
            error = None
        except StopIteration:
            break
        except csv.Error as exc:
            cells, error = [], str(exc)
        if reader.line_num > start:
            # No valid value holds a line break, so a record over several lines is an unclosed
            # quote that has swallowed the rows after it: they can no longer be told apart.
            raise _FileRejected(start, "csv", f"a quoted value opened on line {start} runs to line "
                                              f"{reader.line_num}: check the quotes (\") in line {start}")
        if error is not None:
            if header is None:
                raise _FileRejected(start, "csv", f"header row is not valid CSV ({error})")
            yield start, Rejection(start, ROW, "csv", f"row is not valid CSV ({error}): check the quotes (\")")
            continue
        if not any(c.strip() for c in cells):
            continue  # a blank line, or a row of empty cells as spreadsheets leave behind
        if header is None:
            header, header_line = _header(cells, start), start
            continue
        if len(cells) != len(header):
            yield start, Rejection(start, ROW, "columns", f"row has {len(cells)} columns but the header "
                                   f"(line {header_line}) has {len(header)}", _echo(_cell_for(header, cells)))
            continue
        yield start, {name: (value.strip() or None) for name, value in zip(header, cells, strict=True)}
    if header is None:
        raise _FileRejected(1, "header", "file is empty: a CSV export starts with a header row naming its columns")


def _cell_for(header: list[str], cells: list[str]) -> str | None:
    if "resident_code" in header and header.index("resident_code") < len(cells):
        return cells[header.index("resident_code")].strip() or None
    return None


def _header(cells: list[str], line: int) -> list[str]:
    columns: list[str] = []
    unknown: list[str] = []
    for position, cell in enumerate(cells, start=1):
        name = unicodedata.normalize("NFKC", cell.replace("\ufeff", "")).strip()
        if not name:
            raise _FileRejected(line, "header", f"column {position} of the header has no name")
        column = _HEADER_NAMES.get(name.casefold())
        if column is None:
            unknown.append(name)
        columns.append(column or name)
    if unknown:
        hint = " (the file looks tab-separated: use commas)" if any("\t" in u for u in unknown) else ""
        accepted = ", ".join("/".join(names) for names in COLUMNS.values())
        raise _FileRejected(line, "header", f"unknown column(s) {', '.join(map(repr, unknown))}{hint}; "
                                            f"accepted columns: {accepted}")
    duplicated = [c for c, n in Counter(columns).items() if n > 1]
    if duplicated:
        raise _FileRejected(line, "header", f"column(s) given more than once: {', '.join(duplicated)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        names = ", ".join(f"{c}/{COLUMNS[c][1]}" for c in missing)
        raise _FileRejected(line, "header", f"required column(s) missing: {names}")
    return columns


# --- JSON Lines ----------------------------------------------------------------------------------

class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"key {key[:_MAX_ECHO]!r} appears twice")
        out[key] = value
    return out


def _jsonl_rows(text: str) -> Iterator[tuple[int, _Row]]:
    # Split on "\n" only: str.splitlines would also split on U+2028 and friends, which JSON
    # allows unescaped inside strings.
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_no_duplicate_keys)
        except _DuplicateKey as exc:
            yield line_number, Rejection(line_number, ROW, "json", f"line is not a valid JSON object: {exc}")
            continue
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long integers, deep nesting
            yield line_number, Rejection(line_number, ROW, "json", f"line is not valid JSON ({str(exc)[:200]})")
            continue
        if not isinstance(obj, dict):
            yield line_number, Rejection(line_number, ROW, "json",
                                         f"line must hold one JSON object, found {type(obj).__name__}")
            continue
        yield line_number, {key: (value.strip() or None) if isinstance(value, str) else value
                            for key, value in obj.items()}


# --- rows to notices -----------------------------------------------------------------------------

class _Builder:
    """Accounts for every row: a notice with the next provisional number, or a rejection."""

    def __init__(self, municipality: LocalGovernmentCode, notice_time: dt.datetime, max_rows: int) -> None:
        self.municipality = municipality
        self.notice_time = notice_time
        self.max_rows = max_rows
        self.rows_read = 0
        self.notices: list[tuple[int, UpdateNotice]] = []
        self.rejections: list[Rejection] = []
        self.local_fields: dict[int, LocalRecordFields] = {}

    def add(self, row_number: int, values: _Row) -> None:
        if self.rows_read >= self.max_rows:
            raise _FileRejected(row_number, "limit", f"file has more than {self.max_rows:,} rows: "
                                                     "split it into several files")
        self.rows_read += 1
        if isinstance(values, Rejection):  # the reader could not make a row of it
            self.rejections.append(values)
            return
        echo = _echo(values.get("resident_code"))
        try:
            notice = self._notice(values)
            local = parse_local_fields(values, notice)  # the whole row is checked before it is sent
        except ValidationError as exc:
            column = _FIELD_TO_COLUMN.get(exc.field, exc.field)
            self.rejections.append(Rejection(row_number, column, exc.rule, exc.detail, echo))
            return
        self.notices.append((row_number, notice))
        if local:
            self.local_fields[row_number] = local

    def _notice(self, values: dict[str, object]) -> UpdateNotice:
        unknown = [k for k in values if k not in COLUMNS]
        if unknown:
            key = unknown[0][:_MAX_ECHO]
            suggestion = _HEADER_NAMES.get(unicodedata.normalize("NFKC", unknown[0]).strip().casefold())
            hint = f"; use the key {suggestion!r}" if suggestion else f"; keys are: {', '.join(COLUMNS)}"
            raise ValidationError(key, "unknown_field", f"unknown key {key!r}{hint}")
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
                raise ValidationError(key, "format", f"{key} must be a string, got {type(value).__name__}")
        local = values.get("local_government_code")
        if local is not None:
            code = LocalGovernmentCode.parse(local, "local_government_code")
            if code != self.municipality:
                raise ValidationError("local_government_code", "consistency",
                                      f"row is for municipality {code}, but this CS serves {self.municipality}")
        reason = ChangeReason.parse(values.get("reason"), "reason")
        facts = None
        if reason.kind is not ChangeKind.DELETION:
            facts = {
                "resident_code": values.get("resident_code"),
                "name": {
                    "kanji": values.get("name_kanji"),
                    "kana": values.get("name_kana"),
                    "former_surname": values.get("former_surname"),
                    "former_surname_kana": values.get("former_surname_kana"),
                    "alias": values.get("alias"),
                },
                "birth_date": values.get("birth_date"),
                "sex": values.get("sex"),
                "address": values.get("address"),
                "individual_number": values.get("individual_number"),
            }
        return UpdateNotice.from_dict({
            "municipality": self.municipality.value,
            "sequence": len(self.notices) + 1,
            "resident_code": values.get("resident_code"),
            "reason": reason.value,
            "change_date": values.get("change_date"),
            "notice_time": self.notice_time,
            "facts": facts,
            "previous_resident_code": values.get("previous_resident_code"),
        })


def _echo(raw: object) -> str | None:
    if raw is None or isinstance(raw, (dict, list)):
        return None
    return str(raw).strip()[:_MAX_ECHO] or None


# --- reports -------------------------------------------------------------------------------------

REPORT_COLUMNS = ("row", "field", "rule", "detail", "resident_code")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    # Excel runs a cell that starts with = + - @ as a formula (CSV injection); the report
    # echoes values from the file, so such cells are quoted as text with a leading apostrophe.
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def rejection_report_csv(result: ExportParseResult, filename: str) -> bytes:
    """The rejection report: UTF-8 with BOM and CRLF, so Excel on Japanese Windows opens it as is.

    One line per rejection (a file-level error first). ``filename`` is not written: the
    report's object key (``reports/<file>.rejections.csv``) already names the file.
    """
    del filename
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    for r in ([result.file_error] if result.file_error else []) + result.rejections:
        writer.writerow([r.row_number, _cell(r.field), r.rule, _cell(r.detail), _cell(r.resident_code)])
    return buffer.getvalue().encode(UTF8_BOM)


def summary_json(result: ExportParseResult) -> str:
    """The summary beside the report: counts, encoding, format and the count per rule."""
    error = result.file_error
    return json.dumps({
        "file": result.filename,
        "format": result.format,
        "encoding": result.encoding,
        "status": "rejected" if error else "processed",
        "rows_read": result.rows_read,
        "accepted": result.accepted,
        "rejected": result.rejected,
        "rejected_by_rule": dict(sorted(Counter(r.rule for r in result.rejections).items())),
        "file_error": None if error is None else {
            "row": error.row_number, "rule": error.rule, "detail": error.detail,
        },
    }, ensure_ascii=False, indent=2) + "\n"

"""住民票の記載事項 kept only in the municipality tier: the local record fields.

A wide-area copy of a resident record (住民票の写しの広域交付) shows more than the four basic
facts the network carries upward (name, birth date, sex, address — plus the resident code and
the change): the household, the relationship to the householder, the dates of becoming a
resident and of setting the address, the notification date, the previous address, and (on an
ordinary copy, never on a wide-area one) the registered domicile and its head. These stay in
the municipality's own store (``adapters/local_records.py``); they are never part of an
``UpdateNotice``, so nothing that is signed and sent upward can carry them
(``docs/decisions/0044-*``).

The export file (``domain/export.py``) takes them as nine optional columns (``LOCAL_COLUMNS``);
``parse_local_fields`` validates one row's values against the row's notice. Every failure is a
``ValidationError`` naming the column and the rule, as for the other columns
(``docs/export-format.md`` §3.5). The relationship codes (``Relationship``) are this project's
own: the official code table is not published.

On a deletion (転出, 死亡, 職権消除) only ``notification_date`` is read; the other local
columns are ignored, as the fact columns are.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum

from .errors import ValidationError
from .facts import EARLIEST_BIRTH_DATE, MAX_ADDRESS_LENGTH, MAX_NAME_LENGTH, ChangeKind, ChangeReason, parse_date
from .facts import _optional_text as optional_text
from .notice import JST, UpdateNotice

MAX_HOUSEHOLD_NUMBER_DIGITS = 15
EARLIEST_DATE = EARLIEST_BIRTH_DATE

# Column → names accepted in a CSV header (first: canonical English name, JSON Lines key; second:
# the Japanese name). Merged into ``domain.export.COLUMNS``; all optional.
LOCAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "household_number": ("household_number", "世帯番号"),
    "householder_name": ("householder_name", "世帯主氏名", "世帯主"),
    "relationship": ("relationship", "続柄", "世帯主との続柄"),
    "resident_since": ("resident_since", "住民となった年月日"),
    "address_since": ("address_since", "住所を定めた年月日"),
    "notification_date": ("notification_date", "届出年月日"),
    "previous_address": ("previous_address", "前住所"),
    "registered_domicile": ("registered_domicile", "本籍"),
    "family_register_head": ("family_register_head", "筆頭者", "筆頭者氏名"),
}
HOUSEHOLD_FIELDS = ("household_number", "householder_name", "relationship")
DOMICILE_FIELDS = ("registered_domicile", "family_register_head")
# What a wide-area copy (広域交付) must leave out by law (住民基本台帳法 12条の4): read by item 3.
EXCLUDED_FROM_WIDE_AREA_COPY = DOMICILE_FIELDS


class Relationship(Enum):
    """続柄 (relationship to the householder). Value = the project's two-digit code.

    Since 1995 the register writes every child as 子 (no 長男/長女); a relationship not in
    this list is rejected (rule ``enum``) rather than guessed.
    """

    HEAD = "01"
    WIFE = "02"
    HUSBAND = "03"
    CHILD = "04"
    FATHER = "05"
    MOTHER = "06"
    GRANDCHILD = "07"
    GRANDFATHER = "08"
    GRANDMOTHER = "09"
    ELDER_BROTHER = "10"
    ELDER_SISTER = "11"
    YOUNGER_BROTHER = "12"
    YOUNGER_SISTER = "13"
    CHILDS_WIFE = "14"
    CHILDS_HUSBAND = "15"
    WIFES_FATHER = "16"
    WIFES_MOTHER = "17"
    HUSBANDS_FATHER = "18"
    HUSBANDS_MOTHER = "19"
    UNCLE = "20"
    AUNT = "21"
    NEPHEW = "22"
    NIECE = "23"
    WIFE_UNREGISTERED = "24"
    HUSBAND_UNREGISTERED = "25"
    WIFES_CHILD = "26"
    HUSBANDS_CHILD = "27"
    RELATIVE = "28"
    LODGER = "29"

    @property
    def label_ja(self) -> str:
        return _RELATIONSHIP_LABELS[self]

    @classmethod
    def parse(cls, raw: object, field: str = "relationship") -> Relationship:
        """Accept the code (``"04"``, also ``"4"``), the Japanese label (``"子"``) or the name (``"CHILD"``)."""
        if not isinstance(raw, str):
            raise ValidationError(field, "format", f"relationship must be text, got {type(raw).__name__}")
        text = unicodedata.normalize("NFKC", raw).strip()
        found = _RELATIONSHIP_BY_ANY.get(text) or _RELATIONSHIP_BY_ANY.get(text.upper())
        if found is None and text.isascii() and text.isdigit() and len(text) == 1:
            found = _RELATIONSHIP_BY_ANY.get(f"0{text}")
        if found is None:
            allowed = ", ".join(f"{r.value}={r.label_ja}" for r in cls)
            raise ValidationError(field, "enum", f"unknown relationship {text[:32]!r}; allowed: {allowed}")
        return found


_RELATIONSHIP_LABELS = {
    Relationship.HEAD: "世帯主", Relationship.WIFE: "妻", Relationship.HUSBAND: "夫", Relationship.CHILD: "子",
    Relationship.FATHER: "父", Relationship.MOTHER: "母", Relationship.GRANDCHILD: "孫",
    Relationship.GRANDFATHER: "祖父", Relationship.GRANDMOTHER: "祖母", Relationship.ELDER_BROTHER: "兄",
    Relationship.ELDER_SISTER: "姉", Relationship.YOUNGER_BROTHER: "弟", Relationship.YOUNGER_SISTER: "妹",
    Relationship.CHILDS_WIFE: "子の妻", Relationship.CHILDS_HUSBAND: "子の夫", Relationship.WIFES_FATHER: "妻の父",
    Relationship.WIFES_MOTHER: "妻の母", Relationship.HUSBANDS_FATHER: "夫の父", Relationship.HUSBANDS_MOTHER: "夫の母",
    Relationship.UNCLE: "おじ", Relationship.AUNT: "おば", Relationship.NEPHEW: "甥", Relationship.NIECE: "姪",
    Relationship.WIFE_UNREGISTERED: "妻（未届）", Relationship.HUSBAND_UNREGISTERED: "夫（未届）",
    Relationship.WIFES_CHILD: "妻の子", Relationship.HUSBANDS_CHILD: "夫の子", Relationship.RELATIVE: "縁故者",
    Relationship.LODGER: "同居人",
}
_RELATIONSHIP_BY_ANY: dict[str, Relationship] = {}
for _r in Relationship:
    _RELATIONSHIP_BY_ANY[_r.value] = _r
    _RELATIONSHIP_BY_ANY[unicodedata.normalize("NFKC", _RELATIONSHIP_LABELS[_r])] = _r
    _RELATIONSHIP_BY_ANY[_r.name] = _r


@dataclass(frozen=True, slots=True)
class LocalRecordFields:
    """The local fields one row gave (``None`` = not given). See the module docstring."""

    household_number: str | None = None
    householder_name: str | None = None
    relationship: Relationship | None = None
    resident_since: dt.date | None = None
    address_since: dt.date | None = None
    notification_date: dt.date | None = None
    previous_address: str | None = None
    registered_domicile: str | None = None
    family_register_head: str | None = None

    def given(self) -> dict[str, str]:
        """The fields given, as stored: text, ISO dates, relationship codes."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = value.value if isinstance(value, Relationship) else (
                value.isoformat() if isinstance(value, dt.date) else value)
        return out

    @classmethod
    def from_given(cls, raw: Mapping[str, str]) -> LocalRecordFields:
        """The inverse of ``given`` (stored values are valid: no rule is checked again)."""
        values: dict[str, object] = {}
        for name, value in raw.items():
            if name == "relationship":
                values[name] = Relationship(value)
            elif name in ("resident_since", "address_since", "notification_date"):
                values[name] = dt.date.fromisoformat(value)
            else:
                values[name] = value
        return cls(**values)  # type: ignore[arg-type]

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


def _blank(raw: object) -> bool:
    return raw is None or (isinstance(raw, str) and raw.strip() == "")


def _household_number(raw: object, field: str = "household_number") -> str:
    if not isinstance(raw, str):
        raise ValidationError(field, "format", f"household number must be a string of digits, got {type(raw).__name__}")
    value = unicodedata.normalize("NFKC", raw).strip()  # full-width digits as the register prints them
    if not (value.isascii() and value.isdigit()):
        raise ValidationError(field, "digits", "household number must contain digits only")
    if len(value) > MAX_HOUSEHOLD_NUMBER_DIGITS:
        raise ValidationError(field, "length", f"household number must be at most {MAX_HOUSEHOLD_NUMBER_DIGITS} "
                                               f"digits, got {len(value)}")
    return value


def _date(raw: object, field: str, label: str) -> dt.date:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise ValidationError(field, "format", f"{label} must be a date, got {type(raw).__name__}")
    value = parse_date(raw, field)
    if value < EARLIEST_DATE:
        raise ValidationError(field, "range", f"{label} {value.isoformat()} is before {EARLIEST_DATE.isoformat()}")
    return value


def _squeeze(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def parse_local_fields(values: Mapping[str, object], notice: UpdateNotice) -> LocalRecordFields | None:
    """Validate the local columns of one export row whose notice is ``notice``.

    ``values`` maps canonical column names to raw values (``None`` or ``""`` = empty). Returns
    ``None`` when the row gives none of them. Raises ``ValidationError(column, rule, detail)``.
    """
    raw = {name: values.get(name) for name in LOCAL_COLUMNS}
    notice_day = notice.notice_time.astimezone(JST).date()
    notification = None
    if not _blank(raw["notification_date"]):
        notification = _date(raw["notification_date"], "notification_date", "notification date")
        if notification > notice_day:
            raise ValidationError("notification_date", "consistency",
                                  f"notification date {notification.isoformat()} is after the day the file was sent "
                                  f"({notice_day.isoformat()})")
    if notice.reason.kind is ChangeKind.DELETION:  # only the notification date is kept on a deletion
        return LocalRecordFields(notification_date=notification) if notification else None
    if all(_blank(raw[name]) for name in LOCAL_COLUMNS):
        return None

    facts = notice.facts
    assert facts is not None  # an entry or update carries facts (UpdateNotice.validate)
    birth = facts.birth_date
    if notification is not None and notification < birth:
        raise ValidationError("notification_date", "consistency",
                              f"notification date {notification.isoformat()} is before the birth date {birth.isoformat()}")

    given = [name for name in HOUSEHOLD_FIELDS if not _blank(raw[name])]
    if given:
        for name in HOUSEHOLD_FIELDS:
            if _blank(raw[name]):
                raise ValidationError(name, "required", f"{name} is required with {', '.join(given)}: household "
                                      "number, householder name and relationship go together")
    household = _household_number(raw["household_number"]) if given else None
    householder = optional_text(raw["householder_name"], "householder_name", "householder name", MAX_NAME_LENGTH)
    relationship = Relationship.parse(raw["relationship"]) if given else None
    if relationship is Relationship.HEAD and householder is not None and _squeeze(householder) != _squeeze(
            facts.name.kanji):
        raise ValidationError("householder_name", "consistency",
                              "the householder (relationship 01=世帯主) must be this resident: householder name "
                              "differs from name_kanji")

    dates: dict[str, dt.date] = {}
    for name, label in (("resident_since", "date of becoming a resident"), ("address_since", "date of setting the address")):
        if _blank(raw[name]):
            continue
        value = _date(raw[name], name, label)
        if value > notice.change_date:
            raise ValidationError(name, "consistency", f"{label} {value.isoformat()} is after the date of change "
                                                       f"{notice.change_date.isoformat()}")
        if value < birth:
            raise ValidationError(name, "consistency", f"{label} {value.isoformat()} is before the birth date "
                                                       f"{birth.isoformat()}")
        dates[name] = value
    if "resident_since" in dates and "address_since" in dates and dates["address_since"] < dates["resident_since"]:
        raise ValidationError("address_since", "consistency",
                              "date of setting the address is before the date of becoming a resident")

    previous = optional_text(raw["previous_address"], "previous_address", "previous address", MAX_ADDRESS_LENGTH)
    if previous is not None and notice.reason is ChangeReason.BIRTH:
        raise ValidationError("previous_address", "consistency", "a birth (出生) has no previous address")
    if previous is not None and notice.reason is ChangeReason.MOVE_WITHIN and _squeeze(previous) == _squeeze(
            facts.address):
        raise ValidationError("previous_address", "consistency",
                              "previous address equals the address after the move (転居)")

    domicile = optional_text(raw["registered_domicile"], "registered_domicile", "registered domicile",
                             MAX_ADDRESS_LENGTH)
    head = optional_text(raw["family_register_head"], "family_register_head", "head of the family register",
                         MAX_NAME_LENGTH)
    if (domicile is None) != (head is None):
        missing = "family_register_head" if head is None else "registered_domicile"
        raise ValidationError(missing, "required", "registered domicile (本籍) and head of the family register "
                                                   "(筆頭者) go together")
    return LocalRecordFields(
        household_number=household, householder_name=householder, relationship=relationship,
        resident_since=dates.get("resident_since"), address_since=dates.get("address_since"),
        notification_date=notification, previous_address=previous, registered_domicile=domicile,
        family_register_head=head,
    )


# --- the record derived on read ------------------------------------------------------------------

ACTIVE, DELETED, CODE_CHANGED = "active", "deleted", "code_changed"


@dataclass(frozen=True, slots=True)
class LocalRecordEntry:
    """One change as the municipality stored it (never rewritten): the notice's identity and
    order, its facts (``None`` on a deletion) and the local fields the row gave."""

    municipality: str
    resident_code: str
    order_key: str
    notice_id: str
    reason: ChangeReason
    change_date: dt.date
    facts: Mapping[str, object] | None
    local: LocalRecordFields
    replaced_by: str | None = None  # on the old code's entry of a 住民票コード変更


@dataclass(frozen=True, slots=True)
class LocalRecord:
    """A resident's current record in one municipality: the fold of its entries in order."""

    municipality: str
    resident_code: str
    status: str  # active | deleted | code_changed
    reason: ChangeReason
    change_date: dt.date
    facts: Mapping[str, object] | None
    local: LocalRecordFields
    last_notice_id: str
    replaced_by: str | None = None

    @property
    def household_number(self) -> str | None:
        return self.local.household_number


def fold(entries: list[LocalRecordEntry]) -> LocalRecord | None:
    """The current record from a resident's entries (any order: sorted by the ordering rule here).

    Each entry sets the local fields it gives and keeps the others, so a row without local
    columns (an old file, a 転居 with the address only) changes nothing local. An entry
    (転入, 出生 …) after a deletion starts a new record; a deletion ends the record and keeps
    its last values (除票). The facts are the latest entry's or update's.
    """
    if not entries:
        return None
    current: dict[str, str] = {}
    facts: Mapping[str, object] | None = None
    status, replaced_by = ACTIVE, None
    for entry in sorted(entries, key=lambda e: e.order_key):
        kind = entry.reason.kind
        if kind is ChangeKind.ENTRY and status != ACTIVE:
            current, facts = {}, None
        if kind is ChangeKind.DELETION:
            status = DELETED
        elif entry.replaced_by is not None:
            status, replaced_by = CODE_CHANGED, entry.replaced_by
        else:
            status, replaced_by = ACTIVE, None
        if entry.facts is not None:
            facts = entry.facts
        given = entry.local.given()
        if HOUSEHOLD_FIELDS[0] in given:  # a new household replaces the whole trio
            for name in HOUSEHOLD_FIELDS:
                current.pop(name, None)
        current.update(given)
    last = max(entries, key=lambda e: e.order_key)
    return LocalRecord(municipality=last.municipality, resident_code=last.resident_code, status=status,
                       reason=last.reason, change_date=last.change_date, facts=facts,
                       local=LocalRecordFields.from_given(current), last_notice_id=last.notice_id,
                       replaced_by=replaced_by)

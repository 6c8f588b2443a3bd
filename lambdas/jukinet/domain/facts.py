"""本人確認情報 — the identity facts, and the reasons of change (異動事由).

The official numeric table of change reasons is unconfirmed (``docs/domain.md`` §2): the
codes below are the project's own enumeration and are defined only in ``ChangeReason``.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from enum import Enum

from .codes import IndividualNumber, ResidentCode
from .errors import ValidationError

MAX_NAME_LENGTH = 100
MAX_ADDRESS_LENGTH = 200
EARLIEST_BIRTH_DATE = dt.date(1850, 1, 1)


class ChangeKind(Enum):
    ENTRY = "entry"  # the resident appears in this municipality's register
    UPDATE = "update"  # the resident stays, a fact changes
    DELETION = "deletion"  # the resident leaves this municipality's register


class ChangeReason(Enum):
    """異動事由. Value = the project's two-digit code; see ``label_ja``, ``kind``, ``precedence``."""

    MOVE_IN = "11"
    SPECIAL_MOVE_IN = "12"
    BIRTH = "13"
    ENTRY_BY_AUTHORITY = "14"
    MOVE_OUT = "21"
    DEATH = "22"
    DELETION_BY_AUTHORITY = "23"
    MOVE_WITHIN = "31"
    CORRECTION_BY_AUTHORITY = "32"
    CODE_CHANGE = "33"
    NAME_CHANGE = "34"

    @property
    def label_ja(self) -> str:
        return _LABELS_JA[self]

    @property
    def kind(self) -> ChangeKind:
        return _KINDS[self]

    @property
    def precedence(self) -> int:
        """Rank among changes dated the same day; see ``domain.ordering``."""
        return _PRECEDENCE[self]

    @classmethod
    def parse(cls, raw: object, field: str = "reason") -> ChangeReason:
        """Accept the code (``"11"``), the Japanese label (``"転入"``) or the name (``"MOVE_IN"``)."""
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            raise ValidationError(field, "required", "reason of change is required")
        text = unicodedata.normalize("NFKC", str(raw)).strip()
        found = _BY_ANY.get(text) or _BY_ANY.get(text.upper())
        if found is None:
            allowed = ", ".join(f"{r.value}={r.label_ja}" for r in cls)
            raise ValidationError(field, "enum", f"unknown reason of change {text!r}; allowed: {allowed}")
        return found


_LABELS_JA = {
    ChangeReason.MOVE_IN: "転入",
    ChangeReason.SPECIAL_MOVE_IN: "特例転入",
    ChangeReason.BIRTH: "出生",
    ChangeReason.ENTRY_BY_AUTHORITY: "職権記載",
    ChangeReason.MOVE_OUT: "転出",
    ChangeReason.DEATH: "死亡",
    ChangeReason.DELETION_BY_AUTHORITY: "職権消除",
    ChangeReason.MOVE_WITHIN: "転居",
    ChangeReason.CORRECTION_BY_AUTHORITY: "職権修正",
    ChangeReason.CODE_CHANGE: "住民票コード変更",
    ChangeReason.NAME_CHANGE: "氏名変更",
}
_KINDS = {
    ChangeReason.MOVE_IN: ChangeKind.ENTRY,
    ChangeReason.SPECIAL_MOVE_IN: ChangeKind.ENTRY,
    ChangeReason.BIRTH: ChangeKind.ENTRY,
    ChangeReason.ENTRY_BY_AUTHORITY: ChangeKind.ENTRY,
    ChangeReason.MOVE_OUT: ChangeKind.DELETION,
    ChangeReason.DEATH: ChangeKind.DELETION,
    ChangeReason.DELETION_BY_AUTHORITY: ChangeKind.DELETION,
    ChangeReason.MOVE_WITHIN: ChangeKind.UPDATE,
    ChangeReason.CORRECTION_BY_AUTHORITY: ChangeKind.UPDATE,
    ChangeReason.CODE_CHANGE: ChangeKind.UPDATE,
    ChangeReason.NAME_CHANGE: ChangeKind.UPDATE,
}
# Same-day precedence (the project's rule, documented in docs/architecture.md, "The ordering rule"):
# a resident leaves the old municipality (転出) before entering the new one; updates follow
# the entry; a deletion by authority follows those; death is final.
_PRECEDENCE = {
    ChangeReason.MOVE_OUT: 0,
    ChangeReason.MOVE_IN: 1,
    ChangeReason.SPECIAL_MOVE_IN: 1,
    ChangeReason.BIRTH: 1,
    ChangeReason.ENTRY_BY_AUTHORITY: 1,
    ChangeReason.MOVE_WITHIN: 2,
    ChangeReason.CORRECTION_BY_AUTHORITY: 2,
    ChangeReason.CODE_CHANGE: 2,
    ChangeReason.NAME_CHANGE: 2,
    ChangeReason.DELETION_BY_AUTHORITY: 3,
    ChangeReason.DEATH: 4,
}
_BY_ANY: dict[str, ChangeReason] = {}
for _r in ChangeReason:
    _BY_ANY[_r.value] = _r
    _BY_ANY[_LABELS_JA[_r]] = _r
    _BY_ANY[_r.name] = _r


class Sex(Enum):
    """性別, coded 1 = 男 (male), 2 = 女 (female) as in the resident register."""

    MALE = "1"
    FEMALE = "2"

    @property
    def label_ja(self) -> str:
        return "男" if self is Sex.MALE else "女"

    @classmethod
    def parse(cls, raw: object, field: str = "sex") -> Sex:
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            raise ValidationError(field, "required", "sex is required")
        text = unicodedata.normalize("NFKC", str(raw)).strip().lower()
        found = _SEX_BY_ANY.get(text)
        if found is None:
            raise ValidationError(field, "enum", f"sex must be 1 (男/male) or 2 (女/female), got {text!r}")
        return found


_SEX_BY_ANY = {
    "1": Sex.MALE, "男": Sex.MALE, "male": Sex.MALE, "m": Sex.MALE,
    "2": Sex.FEMALE, "女": Sex.FEMALE, "female": Sex.FEMALE, "f": Sex.FEMALE,
}


def parse_date(raw: object, field: str) -> dt.date:
    """ISO ``YYYY-MM-DD`` or the compact ``YYYYMMDD`` that existing systems often emit."""
    if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
        return raw
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        raise ValidationError(field, "required", "date is required")
    text = unicodedata.normalize("NFKC", str(raw)).strip()
    try:
        # ASCII digits only (as for codes): int() would also take "+1", " 1" and Thai digits.
        if len(text) == 8 and text.isascii() and text.isdigit():
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        if len(text) == 10 and text[4] in "-/" and text[7] == text[4]:
            digits = text[:4] + text[5:7] + text[8:]
            if digits.isascii() and digits.isdigit():
                return dt.date(int(text[:4]), int(text[5:7]), int(text[8:]))
    except ValueError as exc:
        raise ValidationError(field, "date", f"{text!r} is not a calendar date ({exc})") from None
    raise ValidationError(field, "date", f"{text!r} is not a date in YYYY-MM-DD or YYYYMMDD form")


def _required_text(raw: object, field: str, label: str, max_length: int) -> str:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        raise ValidationError(field, "required", f"{label} is required")
    if not isinstance(raw, str):
        raise ValidationError(field, "format", f"{label} must be text")
    # NFC, not NFKC: NFKC would rewrite characters in names that the register keeps as written.
    text = unicodedata.normalize("NFC", raw).strip()
    if len(text) > max_length:
        raise ValidationError(field, "length", f"{label} must be at most {max_length} characters, got {len(text)}")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise ValidationError(field, "format", f"{label} must not contain control characters")
    # A lone surrogate (from a JSON "\ud800" escape) cannot be encoded as UTF-8, so it would
    # crash the CS when the notice is packed; a private-use character (外字 of one
    # municipality's system, e.g. CP932 0xF040–0xF9FC) means a different glyph everywhere else.
    for c in text:
        category = unicodedata.category(c)
        if category == "Cs":
            raise ValidationError(field, "format", f"{label} contains a lone surrogate U+{ord(c):04X}")
        if category == "Co":
            raise ValidationError(field, "format", f"{label} contains the private-use character (外字) "
                                  f"U+{ord(c):04X}; replace it with a standard character")
    return text


def _optional_text(raw: object, field: str, label: str, max_length: int) -> str | None:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    return _required_text(raw, field, label, max_length)


def _kana(raw: object, field: str, label: str, required: bool) -> str | None:
    if not required and (raw is None or (isinstance(raw, str) and raw.strip() == "")):
        return None
    text = _required_text(raw, field, label, MAX_NAME_LENGTH)
    # Half-width katakana (what many existing systems emit) becomes full-width here, once.
    text = unicodedata.normalize("NFKC", text).replace(" ", "\u3000")
    for ch in text:
        if not ("\u30a1" <= ch <= "\u30fa" or ch in "ー・\u3000ヽヾ"):
            raise ValidationError(field, "kana", f"{label} must be katakana, found {ch!r}")
    return text


@dataclass(frozen=True, slots=True)
class PersonName:
    """氏名: kanji and kana; optionally a former surname (旧氏) and an alias (通称)."""

    kanji: str
    kana: str
    former_surname: str | None = None
    former_surname_kana: str | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, raw: dict, field: str = "name") -> PersonName:
        return cls(
            kanji=_required_text(raw.get("kanji"), f"{field}.kanji", "name", MAX_NAME_LENGTH),
            kana=_kana(raw.get("kana"), f"{field}.kana", "kana name", True),  # type: ignore[arg-type]
            former_surname=_optional_text(raw.get("former_surname"), f"{field}.former_surname", "former surname", MAX_NAME_LENGTH),
            former_surname_kana=_kana(raw.get("former_surname_kana"), f"{field}.former_surname_kana", "former surname kana", False),
            alias=_optional_text(raw.get("alias"), f"{field}.alias", "alias", MAX_NAME_LENGTH),
        )

    def to_dict(self) -> dict:
        out = {"kanji": self.kanji, "kana": self.kana}
        if self.former_surname:
            out["former_surname"] = self.former_surname
        if self.former_surname_kana:
            out["former_surname_kana"] = self.former_surname_kana
        if self.alias:
            out["alias"] = self.alias
        return out


@dataclass(frozen=True, slots=True)
class IdentityFacts:
    """本人確認情報 after a change: the facts the prefecture and national tiers keep."""

    resident_code: ResidentCode
    name: PersonName
    birth_date: dt.date
    sex: Sex
    address: str
    individual_number: IndividualNumber | None = None

    @classmethod
    def parse(cls, raw: dict, field: str = "facts") -> IdentityFacts:
        if not isinstance(raw, dict):
            raise ValidationError(field, "format", "identity facts must be an object")
        name_raw = raw.get("name")
        if not isinstance(name_raw, dict):
            raise ValidationError(f"{field}.name", "required", "name (kanji and kana) is required")
        birth_date = parse_date(raw.get("birth_date"), f"{field}.birth_date")
        if birth_date < EARLIEST_BIRTH_DATE:
            raise ValidationError(f"{field}.birth_date", "range", f"birth date must not be before {EARLIEST_BIRTH_DATE}")
        number_raw = raw.get("individual_number")
        return cls(
            resident_code=ResidentCode.parse(raw.get("resident_code"), f"{field}.resident_code"),
            name=PersonName.parse(name_raw, f"{field}.name"),
            birth_date=birth_date,
            sex=Sex.parse(raw.get("sex"), f"{field}.sex"),
            address=_required_text(raw.get("address"), f"{field}.address", "address", MAX_ADDRESS_LENGTH),
            individual_number=(
                IndividualNumber.parse(number_raw, f"{field}.individual_number")
                if number_raw not in (None, "") else None
            ),
        )

    def to_dict(self) -> dict:
        out = {
            "resident_code": self.resident_code.value,
            "name": self.name.to_dict(),
            "birth_date": self.birth_date.isoformat(),
            "sex": self.sex.value,
            "address": self.address,
        }
        if self.individual_number is not None:
            out["individual_number"] = self.individual_number.value
        return out

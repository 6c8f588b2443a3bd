"""The wide-area copy of a resident record (住民票の写しの広域交付; issue 16, part 3). No AWS here.

A resident (the *applicant*) asks at the counter of municipality B for a copy of their record
held by their home municipality A. B's counter proves the applicant's identity — a card
authentication done at this counter (the server vouches for it: ``CardProof`` names the
authentication, never a claim of the caller) or a documented ID check recorded by the clerk
(``DocumentProof``) — and sends A a ``wide-area-copy`` query through the channel between
municipalities. A answers from its own local-record table (``domain.local_record``): the
applicant's current record, and the members of the applicant's household the applicant asked
for. B renders the copy (``services/copy_pdf.py``).

What a copy shows is a **whitelist** (``ROW_FIELDS``): the registered domicile (本籍) and the
head of the family register (筆頭者) are never part of the answer — 住民基本台帳法 12条の4
excludes them from a wide-area copy — nor is the individual number (個人番号). So nothing B can
render, store or log carries them, whatever the record holds.

Refusals (``REFUSALS``) are the channel's documented codes: the home municipality refuses with
one of them and a detail; B's counter shows the code.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .codes import LocalGovernmentCode, ResidentCode
from .errors import ValidationError
from .facts import ChangeReason, Sex
from .local_record import ACTIVE, EXCLUDED_FROM_WIDE_AREA_COPY, LocalRecord, Relationship

QUERY = "wide-area-copy"
MAX_MEMBERS = 19  # a household's other members a copy may name (with the applicant: 20 rows)
CARD_PROOF_VALIDITY = dt.timedelta(minutes=15)
"""A card authentication vouches for a copy request made within this time at the same counter."""
MAX_DOCUMENT_NUMBER = 32
MAX_CLERK_NAME = 64

DOCUMENT_TYPES: dict[str, str] = {
    "driving_licence": "運転免許証",
    "passport": "旅券",
    "individual_number_card": "個人番号カード",
    "resident_card_with_photo": "住民基本台帳カード（写真付き）",
    "residence_card": "在留カード",
    "disability_certificate": "身体障害者手帳",
}
"""Documents a clerk may check (photo ID issued by a public body; one suffices)."""

REFUSALS: dict[str, str] = {
    "unknown_resident": "the home municipality has no record of the applicant",
    "resident_removed": "the applicant's record is closed in the home municipality (moved out, died, "
                        "deleted by the municipality or the resident code changed): no copy of a current record",
    "not_in_household": "a requested member is not in the applicant's household",
    "card_suspended": "the card the applicant authenticated with is suspended, revoked or expired now",
    "invalid_query": "the query is malformed (field and rule in the detail)",
}

# The fields of one row of the copy, in the order the copy prints them. Nothing else is sent.
ROW_FIELDS = ("resident_code", "name", "kana", "birth_date", "sex", "address", "household_number",
              "householder_name", "relationship", "resident_since", "address_since", "notification_date",
              "previous_address", "last_change_reason", "last_change_date")
NEVER_SENT = (*EXCLUDED_FROM_WIDE_AREA_COPY, "individual_number")

_DOCUMENT_NUMBER = re.compile(r"^[0-9A-Za-z-]{1,32}$")


# --- the proof of identity -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CardProof:
    """A card authentication at this counter (``POST /v1/authentications``) that succeeded for
    the applicant: the challenge id names it; the server looks it up."""

    challenge_id: str
    serial: str = ""  # filled in by the server from the authentication, never by the caller
    authenticated_at: dt.datetime | None = None

    kind = "card"


@dataclass(frozen=True, slots=True)
class DocumentProof:
    """An ID document the clerk checked: its type, its number, and the clerk who checked it."""

    document_type: str
    number: str
    clerk: str

    kind = "document"


Proof = CardProof | DocumentProof


def checked_proof(proof: Proof) -> Proof:
    """The proof as the counter API validated its shape (one of the two, the document type one
    of ``DOCUMENT_TYPES``, the lengths), checked for what the model cannot say: the challenge id's
    format, and the document's number and the clerk's name after normalisation (NFKC, trimmed)."""
    if isinstance(proof, CardProof):
        if not re.fullmatch(r"[0-9a-f]{32}", proof.challenge_id):
            raise ValidationError("proof.card_authentication", "format",
                                  "the challenge id of a successful card authentication at this counter (32 hex)")
        return proof
    number = unicodedata.normalize("NFKC", proof.number).strip()
    if not _DOCUMENT_NUMBER.match(number):
        raise ValidationError("proof.document.number", "format",
                              f"the document's number: 1–{MAX_DOCUMENT_NUMBER} letters, digits or hyphens")
    clerk = unicodedata.normalize("NFKC", proof.clerk).strip()
    if not clerk or len(clerk) > MAX_CLERK_NAME or any(unicodedata.category(c)[0] == "C" for c in clerk):
        raise ValidationError("proof.document.clerk", "format",
                              f"the name of the clerk who checked the document: 1–{MAX_CLERK_NAME} printable characters")
    return DocumentProof(proof.document_type, number, clerk)


@dataclass(frozen=True, slots=True)
class CopyApplication:
    """A request for a wide-area copy at B's counter, as the counter API validated it (types,
    lengths, at most ``MAX_MEMBERS`` members, the proof's shape): ``WideAreaCopies.request``
    checks the rest (check digits, the home municipality, the members, the proof's content)."""

    resident_code: str
    home_municipality: str
    members: tuple[str, ...]
    whole_household: bool
    proof: Proof


# --- the query B sends A -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CopyQuery:
    applicant: str
    members: tuple[str, ...] = ()  # other members of the applicant's household, by resident code
    whole_household: bool = False
    proof_kind: str = "document"  # card | document
    card_serial: str = ""  # card proofs: A checks the card is still valid
    clerk: str = ""  # B's counter session (who asked), recorded by A

    def to_dict(self) -> dict:
        return {"query": QUERY, "resident_code": self.applicant, "members": list(self.members),
                "whole_household": self.whole_household,
                "proof": {"kind": self.proof_kind, **({"serial": self.card_serial} if self.card_serial else {})},
                "clerk": self.clerk}

    @classmethod
    def parse(cls, raw: Mapping) -> CopyQuery:
        """The query as A reads it (B built it; A checks it again: B may be compromised)."""
        applicant = ResidentCode.parse(raw.get("resident_code"), "resident_code").value
        members = parse_members(raw.get("members", []), applicant)
        whole = raw.get("whole_household", False)
        if not isinstance(whole, bool):
            raise ValidationError("whole_household", "format", "whole_household is true or false")
        if whole and members:
            raise ValidationError("members", "consistency", "name members or ask for the whole household, not both")
        proof = raw.get("proof")
        if not isinstance(proof, Mapping) or proof.get("kind") not in ("card", "document"):
            raise ValidationError("proof.kind", "enum", "proof kind is card or document")
        serial = str(proof.get("serial") or "")
        if proof["kind"] == "card" and not serial:
            raise ValidationError("proof.serial", "required", "a card proof names the card's serial")
        clerk = raw.get("clerk", "")
        if not isinstance(clerk, str) or len(clerk) > 256:
            raise ValidationError("clerk", "format", "the clerk is the counter's role session, at most 256 characters")
        return cls(applicant, members, whole, proof["kind"], serial, clerk)


def parse_members(raw: object, applicant: str) -> tuple[str, ...]:
    """The members of a query as A reads it (any JSON)."""
    if not isinstance(raw, list):
        raise ValidationError("members", "format", "members is a list of resident codes")
    if len(raw) > MAX_MEMBERS:
        raise ValidationError("members", "max_items", f"at most {MAX_MEMBERS} other members")
    return checked_members(raw, applicant)


def checked_members(raw: Iterable[object], applicant: str) -> tuple[str, ...]:
    """Each member's code valid, none the applicant's, none twice (their number is checked already)."""
    codes: list[str] = []
    for i, value in enumerate(raw):
        code = ResidentCode.parse(value, f"members[{i}]").value
        if code == applicant:
            raise ValidationError(f"members[{i}]", "consistency", "the applicant is always on the copy")
        if code in codes:
            raise ValidationError(f"members[{i}]", "unique", "a member is named twice")
        codes.append(code)
    return tuple(codes)


def parse_home(raw: object) -> str:
    code = LocalGovernmentCode.parse(raw, "home_municipality").value
    if code[2:5] == "000":
        raise ValidationError("home_municipality", "municipality", "the home municipality, not a prefecture")
    return code


# --- A's answer ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.code not in REFUSALS:
            raise ValueError(f"undocumented refusal code {self.code}")


def row(record: LocalRecord) -> dict[str, str]:
    """One row of the copy from a current record: the whitelisted fields only."""
    facts = record.facts or {}
    name = facts.get("name") if isinstance(facts.get("name"), Mapping) else {}
    local = record.local
    values: dict[str, object] = {
        "resident_code": record.resident_code,
        "name": name.get("kanji"),
        "kana": name.get("kana"),
        "birth_date": facts.get("birth_date"),
        "sex": facts.get("sex"),
        "address": facts.get("address"),
        "household_number": local.household_number,
        "householder_name": local.householder_name,
        "relationship": local.relationship.value if local.relationship else None,
        "resident_since": local.resident_since.isoformat() if local.resident_since else None,
        "address_since": local.address_since.isoformat() if local.address_since else None,
        "notification_date": local.notification_date.isoformat() if local.notification_date else None,
        "previous_address": local.previous_address,
        "last_change_reason": record.reason.value,
        "last_change_date": record.change_date.isoformat(),
    }
    return {k: str(values[k]) for k in ROW_FIELDS if values.get(k) not in (None, "")}


def answer(query: CopyQuery, applicant: LocalRecord | None, household: Iterable[LocalRecord],
           home: str) -> dict | Refusal:
    """A's answer: the rows (applicant first, then the requested members in the household's
    order) or a refusal. ``household``: the current members of the applicant's household
    (active, same household number), as the home's store gives them."""
    if applicant is None:
        return Refusal("unknown_resident")
    if applicant.status != ACTIVE:
        return Refusal("resident_removed", f"{applicant.status}: {applicant.reason.value} {applicant.change_date}")
    others = [m for m in household if m.resident_code != applicant.resident_code
              and applicant.household_number is not None and m.household_number == applicant.household_number
              and m.status == ACTIVE]
    by_code = {m.resident_code: m for m in others}
    if query.members:
        strangers = [c for c in query.members if c not in by_code]
        if strangers:
            return Refusal("not_in_household", f"{len(strangers)} of the requested members")
        chosen = [m for m in others if m.resident_code in set(query.members)]
    elif query.whole_household:
        chosen = others
    else:
        chosen = []
    rows = [row(applicant), *(row(m) for m in chosen)]
    return {"municipality": home, "household_number": applicant.household_number or "",
            "whole_household": query.whole_household, "rows": rows}


def check_rows(content: Mapping) -> list[dict[str, str]]:
    """B's check of A's answer before rendering: rows of whitelisted text fields only (an answer
    carrying anything else — 本籍, 筆頭者, an individual number — is refused, not filtered)."""
    rows = content.get("rows")
    if not isinstance(rows, list) or not rows or len(rows) > MAX_MEMBERS + 1:
        raise ValidationError("rows", "format", "an answer has 1–20 rows")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping) or not set(r) <= set(ROW_FIELDS) or not all(isinstance(v, str) for v in r.values()):
            raise ValidationError(f"rows[{i}]", "fields", "a row has only the fields of a wide-area copy, as text")
        if "resident_code" not in r or "name" not in r:
            raise ValidationError(f"rows[{i}]", "required", "a row names the resident")
        out.append(dict(r))
    return out


# --- how the copy prints ---------------------------------------------------------------------------
_ERAS = ((dt.date(2019, 5, 1), "令和"), (dt.date(1989, 1, 8), "平成"), (dt.date(1926, 12, 25), "昭和"),
         (dt.date(1912, 7, 30), "大正"), (dt.date(1868, 10, 23), "明治"))


def japanese_date(day: dt.date) -> str:
    """和暦: 2026-12-04 → 令和8年12月4日 (the first year of an era is 元年)."""
    for start, era in _ERAS:
        if day >= start:
            year = day.year - start.year + 1
            return f"{era}{'元' if year == 1 else year}年{day.month}月{day.day}日"
    return f"{day.year}年{day.month}月{day.day}日"


def label(field: str, value: str) -> str:
    """A stored value as the copy prints it (dates in 和暦, codes as their Japanese labels)."""
    if field in ("birth_date", "resident_since", "address_since", "notification_date", "last_change_date"):
        try:
            return japanese_date(dt.date.fromisoformat(value))
        except ValueError:
            return value
    if field == "sex":
        return Sex(value).label_ja if value in ("1", "2") else value
    if field == "relationship":
        try:
            return Relationship(value).label_ja
        except ValueError:
            return value
    if field == "last_change_reason":
        try:
            return ChangeReason(value).label_ja
        except ValueError:
            return value
    return value


FIELD_LABELS: dict[str, str] = {
    "name": "氏名", "kana": "ふりがな", "birth_date": "生年月日", "sex": "性別", "relationship": "続柄",
    "resident_since": "住民となった年月日", "address_since": "住所を定めた年月日", "notification_date": "届出年月日",
    "previous_address": "前住所", "last_change_reason": "異動事由", "last_change_date": "異動年月日",
}

"""Recipients and their agreements (提供先と協定) as the runtime sees them.

The deployment configuration (``infra/config.py``, ``data/agencies.*.toml``) is the source;
synth writes it as ``agreements.json`` beside the provision functions' code
(``infra/agreements.py``, format in ``docs/provision.md``). This module reads that document
and answers the questions a request raises: who is calling, and may they receive these
fields for this affair by this function today.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal, get_args

FactField = Literal["resident_code", "name", "birth_date", "sex", "address", "individual_number", "status",
                    "change_information"]
"""A fact a recipient may be given: the basic facts (本人確認情報) and the change information.
The one list: the API's request models, the configuration's validation (``infra/config.py``)
and the agreements read here all take it from this type."""

FACT_FIELDS: frozenset[str] = frozenset(get_args(FactField))


class ProvisionFunction(Enum):
    """How a record was provided (the disclosure's 提供の方法)."""

    LOOKUP = "lookup"      # 照会 by resident code
    SEARCH = "search"      # 検索 by the four basic facts
    BATCH = "batch"        # 一括提供
    OWN_USE = "own_use"    # 都道府県の利用

    @property
    def label_ja(self) -> str:
        return {"lookup": "照会", "search": "検索", "batch": "一括提供", "own_use": "都道府県の利用"}[self.value]


class RecipientKind(Enum):
    AGENCY = "agency"
    PREFECTURE = "prefecture"


@dataclass(frozen=True)
class AgreementTerms:
    """One statutory affair a recipient may receive facts for."""

    affair_code: str
    affair: str
    appended_table: str
    appended_table_item: str
    functions: frozenset[ProvisionFunction]
    fields: frozenset[str]
    valid_from: dt.date
    valid_until: dt.date
    monthly_record_limit: int
    max_batch_records: int = 0
    agreed_hours: tuple[dt.time, dt.time] | None = None

    def is_valid_on(self, day: dt.date) -> bool:
        return self.valid_from <= day <= self.valid_until

    def within_hours(self, at: dt.time) -> bool:
        if self.agreed_hours is None:
            return True
        start, end = self.agreed_hours
        return start <= at < end if start <= end else (at >= start or at < end)


@dataclass(frozen=True)
class Recipient:
    """A body that may receive identity facts: a national agency (or other body the law names),
    or a prefecture for its own use."""

    recipient_id: str
    name: str
    name_ja: str
    kind: RecipientKind
    prefecture: str | None
    principals: tuple[str, ...]
    vpc_endpoint_ids: tuple[str, ...]
    disclosure_principals: tuple[str, ...]
    agreements: tuple[AgreementTerms, ...]

    def agreement(self, affair_code: str) -> AgreementTerms | None:
        for a in self.agreements:
            if a.affair_code == affair_code:
                return a
        return None


_ASSUMED_ROLE = re.compile(r"^arn:(?P<partition>[\w-]+):sts::(?P<account>\d{12}):assumed-role/(?P<name>[^/]+)/[^/]+$")
_ROLE = re.compile(r"^arn:(?P<partition>[\w-]+):iam::(?P<account>\d{12}):role/(?:[^\s]*/)?(?P<name>[^/]+)$")
_USER = re.compile(r"^arn:(?P<partition>[\w-]+):iam::(?P<account>\d{12}):user/(?:[^\s]*/)?(?P<name>[^/]+)$")


def principal_key(arn: str) -> tuple[str, str, str] | None:
    """(account, kind, name) of an IAM role or user ARN, or of an assumed-role session ARN
    (which is what API Gateway reports as ``userArn`` for a role's SigV4 call, without the
    role's path: the role name is unique within an account, so account + name identify it)."""
    for kind, pattern in (("role", _ASSUMED_ROLE), ("role", _ROLE), ("user", _USER)):
        m = pattern.match(arn or "")
        if m:
            return m["account"], kind, m["name"]
    return None


class Directory:
    """Every recipient of one deployment, indexed by principal."""

    def __init__(self, recipients: Iterable[Recipient],
                 prefecture_endpoints: Mapping[str, str] | None = None) -> None:
        self.recipients = tuple(recipients)
        self._by_id = {r.recipient_id: r for r in self.recipients}
        self._by_principal: dict[tuple[str, str, str], Recipient] = {}
        self._disclosure: dict[tuple[str, str, str], Recipient] = {}
        self._prefecture_endpoints = dict(prefecture_endpoints or {})
        for r in self.recipients:
            for arn in r.principals:
                key = principal_key(arn)
                if key is not None:
                    self._by_principal[key] = r
            for arn in r.disclosure_principals:
                key = principal_key(arn)
                if key is not None:
                    self._disclosure[key] = r

    def get(self, recipient_id: str) -> Recipient | None:
        return self._by_id.get(recipient_id)

    def recipient_for(self, caller_arn: str | None) -> Recipient | None:
        key = principal_key(caller_arn or "")
        return None if key is None else self._by_principal.get(key)

    def disclosure_office_for(self, caller_arn: str | None) -> Recipient | None:
        """The prefecture whose disclosure staff the caller is, if any."""
        key = principal_key(caller_arn or "")
        return None if key is None else self._disclosure.get(key)

    def endpoints_of(self, recipient: Recipient) -> frozenset[str]:
        """The interface endpoints the recipient's calls may come through: configured ones, or
        for a prefecture without any, its own tier's execute-api endpoint."""
        found = set(recipient.vpc_endpoint_ids)
        if recipient.prefecture and not found and recipient.prefecture in self._prefecture_endpoints:
            found.add(self._prefecture_endpoints[recipient.prefecture])
        return frozenset(found)

    @classmethod
    def from_document(cls, doc: bytes | str | Mapping, prefecture_endpoints: Mapping[str, str] | None = None
                      ) -> Directory:
        data = json.loads(doc) if isinstance(doc, bytes | str) else doc
        if data.get("version") != 1:
            raise ValueError(f"agreements document version {data.get('version')!r} is not supported (expected 1)")
        return cls((_recipient(r) for r in data["recipients"]), prefecture_endpoints)


def _hours(raw: str | None) -> tuple[dt.time, dt.time] | None:
    if not raw:
        return None
    start, end = raw.split("-")
    return dt.time.fromisoformat(start), dt.time.fromisoformat(end)


def _recipient(r: Mapping) -> Recipient:
    return Recipient(
        recipient_id=r["id"], name=r["name"], name_ja=r.get("name_ja", ""),
        kind=RecipientKind(r.get("kind", "agency")), prefecture=r.get("prefecture"),
        principals=tuple(r.get("principals", ())), vpc_endpoint_ids=tuple(r.get("vpc_endpoint_ids", ())),
        disclosure_principals=tuple(r.get("disclosure_principals", ())),
        agreements=tuple(
            AgreementTerms(
                affair_code=a["affair_code"], affair=a["affair"], appended_table=a.get("appended_table", ""),
                appended_table_item=a.get("appended_table_item", ""),
                functions=frozenset(ProvisionFunction(f) for f in a["functions"]),
                fields=frozenset(a["fields"]) & FACT_FIELDS,
                valid_from=dt.date.fromisoformat(a["valid_from"]), valid_until=dt.date.fromisoformat(a["valid_until"]),
                monthly_record_limit=int(a["monthly_record_limit"]), max_batch_records=int(a.get("max_batch_records", 0)),
                agreed_hours=_hours(a.get("agreed_hours")),
            )
            for a in r.get("agreements", ())
        ),
    )

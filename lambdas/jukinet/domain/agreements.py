"""Recipients and their agreements (提供先と協定): the one model of them.

The deployment configuration reads ``data/agencies.*.toml`` into these models
(``infra/config/deployments.py`` ``load_agencies``: a TOML table is validated by the same rules);
synth writes them as ``agreements.json`` beside the provision functions' code
(``agreements_document``, format in ``docs/provision.md``); the runtime reads that document
back into them (``Directory.from_document``) and answers the questions a request raises: who
is calling, and may they receive these fields for this affair by this function today.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import cached_property
from typing import Literal, get_args

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from .codes import LocalGovernmentCode
from .errors import ValidationError

FactField = Literal["resident_code", "name", "birth_date", "sex", "address", "individual_number", "status",
                    "change_information"]
"""A fact a recipient may be given: the basic facts (本人確認情報) and the change information.
The one list: the API's request models, the configuration's validation (``infra/config/``)
and the agreements read here all take it from this type."""

FACT_FIELDS: frozenset[str] = frozenset(get_args(FactField))


class ProvisionFunction(StrEnum):
    """How a record was provided (the disclosure's 提供の方法)."""

    LOOKUP = "lookup"      # 照会 by resident code
    SEARCH = "search"      # 検索 by the four basic facts
    BATCH = "batch"        # 一括提供
    OWN_USE = "own_use"    # 都道府県の利用

    @property
    def label_ja(self) -> str:
        return {"lookup": "照会", "search": "検索", "batch": "一括提供", "own_use": "都道府県の利用"}[self.value]


class RecipientKind(StrEnum):
    AGENCY = "agency"          # 国の機関等
    PREFECTURE = "prefecture"  # the prefecture's own use (都道府県の利用)


ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(?P<account>\d{12}):role/(?:[\w+=,.@-]+/)*(?P<name>[\w+=,.@-]{1,64})$")
VPC_ENDPOINT_ID = re.compile(r"^vpce-[0-9a-z]{8,17}$")
_RECIPIENT_ID = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
_HOURS = re.compile(r"^(?P<start>(?:[01]\d|2[0-3]):[0-5]\d)-(?P<end>(?:[01]\d|2[0-3]):[0-5]\d)$")
MAX_THROTTLE_RATE = 10_000.0
MAX_THROTTLE_BURST = 5_000


class Agreement(BaseModel):
    """One statutory affair a recipient may receive facts for: the one model of it, which the
    deployment configuration (``data/agencies.*.toml`` through ``infra/config/``), the
    agreements file synth writes (``Recipient.document``) and the runtime all use.

    ``appended_table`` and ``appended_table_item`` refer to 住基法 別表第一〜第五; the demo's
    item references are illustrative (the statute's numbering is not reproduced here).
    ``agreed_hours``: ``"HH:MM-HH:MM"`` in JST, start inclusive, end exclusive; a window whose
    end precedes its start runs past midnight (``"22:00-06:00"``). None: any time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    affair_code: str
    affair: str
    appended_table: str
    appended_table_item: str
    functions: frozenset[ProvisionFunction]
    fields: frozenset[FactField]
    valid_from: dt.date
    valid_until: dt.date
    monthly_record_limit: int
    max_batch_records: int = 0
    agreed_hours: str | None = None

    @model_validator(mode="after")
    def _rules(self) -> Agreement:
        where = f"agreement {self.affair_code}"
        _require(self.valid_from < self.valid_until, f"{where}: valid_from must precede valid_until")
        _require(bool(self.functions), f"{where}: functions must name at least one of "
                                       f"{sorted(f.value for f in ProvisionFunction)}")
        _require(self.monthly_record_limit > 0, f"{where}: monthly_record_limit must be positive")
        _require(self.max_batch_records >= 0, f"{where}: max_batch_records must not be negative")
        if ProvisionFunction.BATCH in self.functions:
            _require(self.max_batch_records > 0,
                     f"{where}: max_batch_records must be positive when functions include batch")
        if self.agreed_hours is not None:
            match = _HOURS.match(self.agreed_hours)
            _require(match is not None, f"{where}: agreed_hours {self.agreed_hours!r} must be \"HH:MM-HH:MM\" "
                                        "(JST, 00:00-23:59)")
            assert match is not None
            _require(match["start"] != match["end"],
                     f"{where}: agreed_hours {self.agreed_hours!r} must not start and end at the same time "
                     "(leave it out for any time of day)")
        return self

    @cached_property
    def hours(self) -> tuple[dt.time, dt.time] | None:
        if self.agreed_hours is None:
            return None
        start, end = self.agreed_hours.split("-")
        return dt.time.fromisoformat(start), dt.time.fromisoformat(end)

    def is_valid_on(self, day: dt.date) -> bool:
        return self.valid_from <= day <= self.valid_until

    def within_hours(self, at: dt.time) -> bool:
        if self.hours is None:
            return True
        start, end = self.hours
        return start <= at < end if start <= end else (at >= start or at < end)

    def document(self) -> dict:
        """Its entry in the agreements file: lists sorted, dates ISO (deterministic bytes)."""
        out = self.model_dump(mode="json")
        out["functions"], out["fields"] = sorted(out["functions"]), sorted(out["fields"])
        return out


class Recipient(BaseModel):
    """A body that may receive identity facts: a national agency (or other body the law names),
    or a prefecture for its own use. The one model of it (see ``Agreement``); its TOML table
    and its entry in the agreements file name the id ``id``.

    ``principals`` call the provision API (SigV4); ``disclosure_principals`` (prefectures only)
    are the staff roles that may call the disclosure endpoint. ``vpc_endpoint_ids``: every VPC
    endpoint of the recipient its calls come through — execute-api for the API, and its S3
    endpoint for batch files; a prefecture may leave it empty, then its own tier's execute-api
    endpoint is used. ``throttle_rate``/``throttle_burst``: its usage plan (requests/s, burst),
    which only synthesis reads (not in the agreements file).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    recipient_id: str = Field(alias="id")
    name: str
    name_ja: str
    kind: RecipientKind = RecipientKind.AGENCY
    prefecture: str | None = None
    principals: tuple[str, ...] = ()
    vpc_endpoint_ids: tuple[str, ...] = ()
    disclosure_principals: tuple[str, ...] = ()
    agreements: tuple[Agreement, ...] = Field(default=(), validation_alias=AliasChoices("agreements", "agreement"))
    throttle_rate: float = 20.0
    throttle_burst: int = 40

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: object) -> object:
        kinds = [k.value for k in RecipientKind]
        _require(value in kinds, f"kind {value!r} must be one of {kinds}")
        return value

    @field_validator("throttle_burst", mode="before")
    @classmethod
    def _burst(cls, value: object) -> object:
        _require(isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_THROTTLE_BURST,
                 f"throttle_burst {value!r} must be a whole number from 1 to {MAX_THROTTLE_BURST}")
        return value

    @field_validator("throttle_rate", mode="before")
    @classmethod
    def _rate(cls, value: object) -> object:
        _require(isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= MAX_THROTTLE_RATE,
                 f"throttle_rate {value!r} must be above 0 and at most {MAX_THROTTLE_RATE:g} requests per second")
        return value

    @model_validator(mode="after")
    def _rules(self) -> Recipient:
        who = f"agency {self.recipient_id}"
        _require(bool(_RECIPIENT_ID.match(self.recipient_id)),
                 f"agency id {self.recipient_id!r}: 2-31 lowercase letters, digits or '-', starting with a letter")
        if self.kind is RecipientKind.PREFECTURE:
            _require(self.prefecture is not None, f"{who}: kind \"prefecture\" requires prefecture (its code)")
            assert self.prefecture is not None
            try:
                parsed = LocalGovernmentCode.parse(self.prefecture, f"{who}: prefecture")
            except ValidationError as exc:
                raise ValueError(f"{who}: prefecture {self.prefecture!r}: {exc.detail}") from None
            _require(parsed.is_prefecture,
                     f"{who}: prefecture {self.prefecture} is not a prefecture-level code (like 200000)")
        else:
            _require(self.prefecture is None, f"{who}: prefecture is only for kind \"prefecture\"")
            _require(not self.disclosure_principals, f"{who}: disclosure_principals are only for kind \"prefecture\"")
            _require(len(self.vpc_endpoint_ids) > 0,
                     f"{who}: vpc_endpoint_ids must name at least one VPC endpoint (kind \"agency\")")
        _require(len(self.principals) > 0, f"{who}: principals must name at least one IAM role")
        for field_name, arns in (("principals", self.principals), ("disclosure_principals", self.disclosure_principals)):
            for arn in arns:
                _require(bool(ROLE_ARN.match(arn)), f"{who}: {field_name}: {arn!r} is not an IAM role ARN")
        for vpce in self.vpc_endpoint_ids:
            _require(bool(VPC_ENDPOINT_ID.match(vpce)), f"{who}: vpc_endpoint_ids: {vpce!r} is not a VPC endpoint id")
        _require(len(set(self.vpc_endpoint_ids)) == len(self.vpc_endpoint_ids), f"{who}: vpc_endpoint_ids repeat")
        codes = [a.affair_code for a in self.agreements]
        _require(len(codes) == len(set(codes)), f"{who}: affair codes repeat")
        for a in self.agreements:
            if ProvisionFunction.OWN_USE in a.functions:
                _require(self.kind is RecipientKind.PREFECTURE,
                         f"{who}: agreement {a.affair_code}: function own_use is only for kind \"prefecture\"")
            if ProvisionFunction.BATCH in a.functions:
                _require(len(self.vpc_endpoint_ids) > 0,
                         f"{who}: agreement {a.affair_code} has function batch, so vpc_endpoint_ids must name the "
                         "S3 endpoint its batch files come through")
        return self

    def agreement(self, affair_code: str) -> Agreement | None:
        for a in self.agreements:
            if a.affair_code == affair_code:
                return a
        return None

    @property
    def all_principals(self) -> tuple[str, ...]:
        return (*self.principals, *self.disclosure_principals)

    @property
    def uses_batch(self) -> bool:
        return any(ProvisionFunction.BATCH in a.functions for a in self.agreements)

    def document(self) -> dict:
        """Its entry in the agreements file (``docs/provision.md``, "The generated agreements
        file"): what the runtime needs — not the usage plan —, lists sorted."""
        return {
            "id": self.recipient_id, "name": self.name, "name_ja": self.name_ja, "kind": self.kind.value,
            "prefecture": self.prefecture, "principals": sorted(self.principals),
            "vpc_endpoint_ids": sorted(self.vpc_endpoint_ids),
            "disclosure_principals": sorted(self.disclosure_principals),
            "agreements": [a.document() for a in sorted(self.agreements, key=lambda a: a.affair_code)],
        }


def _require(condition: bool, message: str) -> None:
    """A rule of the model: pydantic reports the message with the field's location."""
    if not condition:
        raise ValueError(message)


def role_key(arn: str) -> tuple[str, str]:
    """(account, role name) of a role ARN: what API Gateway reports for a role's call is the
    assumed-role session ARN, which drops the role's path, so this pair identifies the caller."""
    match = ROLE_ARN.match(arn)
    if match is None:
        raise ValueError(f"{arn!r} is not an IAM role ARN")
    return match["account"], match["name"]


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
        return cls((Recipient.model_validate(r) for r in data["recipients"]), prefecture_endpoints)


AGREEMENTS_FILE = "agreements.json"
"""Its name beside the provision functions' code (synth writes it; ``settings.AGREEMENTS_FILE``)."""


def agreements_data(recipients: Iterable[Recipient]) -> dict:
    """The agreements file as data (``docs/provision.md``, "The generated agreements file")."""
    return {"version": 1, "recipients": [r.document() for r in sorted(recipients, key=lambda r: r.recipient_id)]}


def agreements_document(recipients: Iterable[Recipient]) -> bytes:
    """The agreements file's bytes: deterministic JSON (sorted keys, sorted lists, UTF-8, a
    trailing newline), so an unchanged configuration gives the same bytes and asset hash."""
    text = json.dumps(agreements_data(recipients), ensure_ascii=False, sort_keys=True, indent=1)
    return (text + "\n").encode("utf-8")

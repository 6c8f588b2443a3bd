"""People: who holds which role in which tier, and the contractors' contracts (docs/security.md).

``load_people`` reads ``data/operators.demo.toml``: each table is validated by a pydantic model
(``extra="forbid"``: an unknown key is refused), then becomes the frozen dataclass the stacks
use, whose checks (and ``People``'s, across tables) still apply; every error names the file,
the table, the field and the rule.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from .base import ConfigError, _model_errors, _require

# --- people: the responsibility structure as IAM (docs/security.md) ----------------------

# The roles every tier stack creates for people (besides break-glass and one per contract),
# in order of authority. Japanese titles after the technical standard's responsibility structure.
RESPONSIBILITY_ROLES: dict[str, str] = {
    "chief-security-officer": "統括責任者",
    "deputy-chief-security-officer": "副統括責任者",
    "security-officer": "セキュリティ責任者",
    "network-administrator": "システム管理者 (ネットワーク)",
    "operator": "運用担当",
    "auditor": "監査",
}
# The role of each tier that alone opens identity facts (held by the tier's security officers).
BREAK_GLASS_ROLE = "break-glass"
# A contractor's (委託) access is granted for at most this long ahead, then renewed.
MAX_CONTRACT_DAYS = 366
SAML_AUDIENCE = "https://signin.aws.amazon.com/saml"

_PERSON_ID = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
_CONTRACT_ID = re.compile(r"^[a-z][a-z0-9-]{1,19}$")
_TIER_NAME = re.compile(r"^(national|pref-\d{6}|muni-\d{6})$")
_PERSON_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
_SAML_PROVIDER = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:saml-provider/[\w.-]{1,128}$")


@dataclass(frozen=True)
class Person:
    """Someone who holds a role: exactly one principal, so a trust policy names exactly that person.

    ``principal``: an IAM user or role ARN (the person's own identity, signed in with MFA), or
    a SAML provider ARN with ``saml_subject`` (the IdP's NameID of this person; the IdP must
    enforce MFA: AWS has no MFA condition key for SAML sessions). An account root is refused:
    it names no person. ``person_id`` is also the ``sts:SourceIdentity`` of a break-glass session.
    """

    person_id: str
    name: str
    principal: str
    organisation: str = ""
    saml_subject: str | None = None

    def __post_init__(self) -> None:
        who = f"person {self.person_id!r}"
        _require(bool(_PERSON_ID.match(self.person_id)),
                 f"{who}: id must be 2-31 lowercase letters, digits or '-', starting with a letter")
        _require(bool(self.name.strip()), f"{who}: name must not be empty")
        if _SAML_PROVIDER.match(self.principal):
            _require(bool(self.saml_subject), f"{who}: a SAML provider principal needs saml_subject (the person's "
                                              "NameID), or every user of the IdP could assume the role")
        else:
            _require(bool(_PERSON_ARN.match(self.principal)),
                     f"{who}: principal {self.principal!r} must be an IAM user or role ARN, or a SAML provider ARN "
                     "(an account root names no person)")
            _require(self.saml_subject is None, f"{who}: saml_subject is only for a SAML provider principal")

    @property
    def is_saml(self) -> bool:
        return self.saml_subject is not None


@dataclass(frozen=True)
class Assignment:
    """``person`` holds ``role`` (a key of ``RESPONSIBILITY_ROLES``) in ``tier`` since ``since``."""

    tier: str
    role: str
    person: str
    since: dt.date

    def __post_init__(self) -> None:
        _require(self.role in RESPONSIBILITY_ROLES,
                 f"assignment of {self.person!r} in {self.tier}: role {self.role!r} must be one of "
                 f"{list(RESPONSIBILITY_ROLES)}")
        _require(bool(_TIER_NAME.match(self.tier)),
                 f"assignment of {self.person!r}: tier {self.tier!r} must be national, pref-<code> or muni-<code>")


@dataclass(frozen=True)
class Contract:
    """委託: a contractor's people get read-only operator rights on one tier until ``expires``.

    ``expires`` is the first day (JST) on which access is refused: the role's trust policy and
    every Allow of its policy carry ``DateLessThan aws:CurrentTime <expires>T00:00:00+09:00``.
    """

    contract_id: str
    company: str
    tier: str
    people: tuple[str, ...]
    since: dt.date
    expires: dt.date
    purpose: str = ""

    def __post_init__(self) -> None:
        who = f"contract {self.contract_id!r}"
        _require(bool(_CONTRACT_ID.match(self.contract_id)),
                 f"{who}: id must be 2-20 lowercase letters, digits or '-', starting with a letter")
        _require(bool(_TIER_NAME.match(self.tier)),
                 f"{who}: tier {self.tier!r} must be national, pref-<code> or muni-<code>")
        _require(len(self.people) > 0, f"{who}: people must name at least one person")
        _require(len(set(self.people)) == len(self.people), f"{who}: people repeat")
        _require(self.since < self.expires, f"{who}: since {self.since} must precede expires {self.expires}")

    @property
    def expires_at(self) -> str:
        """The ``aws:CurrentTime`` bound: midnight at the start of the expiry day, Japan time."""
        return f"{self.expires.isoformat()}T00:00:00+09:00"

    @property
    def role_kind(self) -> str:
        return f"contractor-{self.contract_id}"

    def is_expired(self, today: dt.date) -> bool:
        return today >= self.expires


@dataclass(frozen=True)
class People:
    """Who holds which role in which tier (``data/operators.demo.toml`` for the demos)."""

    persons: tuple[Person, ...] = ()
    assignments: tuple[Assignment, ...] = ()
    contracts: tuple[Contract, ...] = ()
    demo_data: bool = False

    def __post_init__(self) -> None:
        ids = [p.person_id for p in self.persons]
        _require(len(ids) == len(set(ids)), f"person ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
        principals = [(p.principal, p.saml_subject) for p in self.persons]
        _require(len(principals) == len(set(principals)),
                 "two persons share one principal: a role's trust policy would not tell them apart")
        known = set(ids)
        seen: set[tuple[str, str, str]] = set()
        for a in self.assignments:
            _require(a.person in known, f"assignment {a.role} in {a.tier}: unknown person {a.person!r}")
            key = (a.tier, a.role, a.person)
            _require(key not in seen, f"person {a.person!r} is assigned {a.role} in {a.tier} twice")
            seen.add(key)
        for a in self.assignments:
            if a.role == "security-officer":
                _require(not self.person(a.person).is_saml,
                         f"person {a.person!r} is a security officer of {a.tier}, who may break glass, so must sign in "
                         "as an IAM user or role: the break-glass trust policy itself requires MFA, which AWS cannot "
                         "check for a SAML session")
            if a.role == "auditor":
                others = sorted(r for t, r, p in seen if t == a.tier and p == a.person and r != "auditor")
                _require(not others, f"person {a.person!r} cannot audit {a.tier} and hold {others} there: auditors "
                                     "are independent of what they audit")
        contract_ids = [c.contract_id for c in self.contracts]
        _require(len(contract_ids) == len(set(contract_ids)), f"contract ids repeat: {contract_ids}")
        for c in self.contracts:
            unknown = sorted(set(c.people) - known)
            _require(not unknown, f"contract {c.contract_id!r}: unknown people {unknown}")
            staff = sorted({a.role for a in self.assignments if a.person in c.people and a.tier == c.tier})
            _require(not staff, f"contract {c.contract_id!r}: its people already hold {staff} in {c.tier}; a "
                                "contractor's access must be the contract's alone")

    def validate(self, tiers: Iterable[str]) -> None:
        """Against the deployment's tiers."""
        tiers = set(tiers)
        for a in self.assignments:
            _require(a.tier in tiers, f"assignment of {a.person!r} as {a.role}: tier {a.tier} is not a tier of this "
                                      f"deployment (known: {sorted(tiers)})")
        for c in self.contracts:
            _require(c.tier in tiers, f"contract {c.contract_id!r}: tier {c.tier} is not a tier of this deployment "
                                      f"(known: {sorted(tiers)})")

    def validate_on(self, today: dt.date) -> None:
        """Contract expiries against the day of synthesis (JST): at most a year ahead."""
        limit = today + dt.timedelta(days=MAX_CONTRACT_DAYS)
        for c in self.contracts:
            _require(c.expires <= limit,
                     f"contract {c.contract_id!r}: expires {c.expires} is more than {MAX_CONTRACT_DAYS} days after "
                     f"today ({today}); contractor access is granted for at most a year at a time, then renewed")

    def person(self, person_id: str) -> Person:
        for p in self.persons:
            if p.person_id == person_id:
                return p
        raise KeyError(person_id)

    def holders(self, tier: str, role: str) -> tuple[Person, ...]:
        """Persons holding ``role`` in ``tier``, in configuration order."""
        return tuple(self.person(a.person) for a in self.assignments if a.tier == tier and a.role == role)

    def contracts_of(self, tier: str) -> tuple[Contract, ...]:
        return tuple(c for c in self.contracts if c.tier == tier)

    def expired_contracts(self, today: dt.date) -> tuple[Contract, ...]:
        return tuple(c for c in self.contracts if c.is_expired(today))


# --- operations -------------------------------------------------------------------------


# --- the TOML file ---------------------------------------------------------------------


def _toml_date(value: object) -> object:
    if not isinstance(value, dt.date):
        raise ValueError("must be a date (YYYY-MM-DD, unquoted)")  # noqa: TRY004 (pydantic reports ValueError)
    return value


_TomlDate = Annotated[dt.date, BeforeValidator(_toml_date)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _PeopleFile(_Table):
    """The file's top level: its tables are validated one by one (an error names the table)."""

    demo_data: bool = False
    person: list[dict] = []
    assignment: list[dict] = []
    contract: list[dict] = []


class _PersonTable(_Table):
    id: str
    name: str
    principal: str
    organisation: str = ""
    saml_subject: str | None = None

    def build(self) -> Person:
        return Person(person_id=self.id, name=self.name, principal=self.principal, organisation=self.organisation,
                      saml_subject=self.saml_subject)


class _AssignmentTable(_Table):
    tier: str
    role: str
    person: str
    since: _TomlDate

    def build(self) -> Assignment:
        return Assignment(tier=self.tier, role=self.role, person=self.person, since=self.since)


class _ContractTable(_Table):
    id: str
    company: str
    tier: str
    people: list[str]
    since: _TomlDate
    expires: _TomlDate
    purpose: str = ""

    def build(self) -> Contract:
        return Contract(contract_id=self.id, company=self.company, tier=self.tier, people=tuple(self.people),
                        since=self.since, expires=self.expires, purpose=self.purpose)


def _tables(path: Path, what: str, key: str, model: type[_Table], tables: list[dict]) -> tuple:
    built = []
    for table in tables:
        where = f"{path.name}: {what} {table.get(key)!r}"
        try:
            built.append(model.model_validate(table).build())
        except PydanticValidationError as exc:
            raise ConfigError(f"{where}: {_model_errors(exc, table)}") from None
        except ConfigError as exc:
            raise ConfigError(f"{path.name}: {exc}") from None
    return tuple(built)


def load_people(path: Path) -> People:
    """Persons, their roles per tier and the contractors' contracts from a TOML file
    (``data/operators.demo.toml`` describes the format): who holds what is a data change."""
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    try:
        top = _PeopleFile.model_validate(doc)
    except PydanticValidationError as exc:
        raise ConfigError(f"{path.name}: {_model_errors(exc, doc)}") from None
    persons = _tables(path, "person", "id", _PersonTable, top.person)
    assignments = _tables(path, "assignment of", "person", _AssignmentTable, top.assignment)
    contracts = _tables(path, "contract", "id", _ContractTable, top.contract)
    try:
        return People(persons=persons, assignments=assignments, contracts=contracts, demo_data=top.demo_data)
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None

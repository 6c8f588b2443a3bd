"""The deployment configuration: one typed, validated object chosen by ``-c deployment=<name>``.

Everything that differs between deployments lives here (accounts, regions, AZs, CIDRs,
prefectures and their municipalities, agencies and their agreements, alarm recipients);
stacks read nothing else. Loading is pure: no AWS call, no network, no credentials, so
``cdk synth`` works offline.

Registered deployments (``DEPLOYMENTS``):

``nagano-demo``
    Nagano prefecture (200000) with its 77 municipalities (``data/nagano_municipalities.csv``),
    every tier in the placeholder account 123456789012, ap-northeast-1. What the demo and
    the embedded AWS deploy.
``nagano-compact``
    ``nagano-demo`` with 8 of Nagano's municipalities (長野市, 松本市, 上田市, 岡谷市, 飯田市,
    諏訪市, 須坂市, 小諸市): the same stacks, settings, agencies and people, a quarter of the
    resources. What the embedded-AWS tests deploy (a deployment in seconds, not half a minute);
    what does not depend on the number of municipalities is tested there.
``two-prefectures-compact``
    ``nagano-compact`` with a second prefecture, 東京都 (130001), of two municipalities (千代田区,
    中央区): what the embedded-AWS tests of the channel across prefectures deploy (a card of 長野県
    authenticated at 千代田区's counter, decision 0050).
``large-prefecture-test``
    A synthetic 179-municipality prefecture (Hokkaido's count) beside Nagano: proves that
    the stack split keeps every stack under CloudFormation's 500-resource limit.
``multi-account-example``
    Each tier in its own account: shows the values that then must come from configuration
    (the sending tiers' SQS endpoint ids, the prefecture's execute-api endpoint id), and the
    one audit trail per account.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import ipaddress
import re
import sysconfig
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError as PydanticValidationError

from jukinet.domain.agreements import (
    VPC_ENDPOINT_ID,
    Recipient,
    RecipientKind,
    role_key,
)
from jukinet.domain.codes import LocalGovernmentCode
from jukinet.domain.errors import ValidationError

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def _data_dir() -> Path:
    """``data/`` of this checkout; installed from a wheel, the copy pyproject.toml's data-files
    put under ``<prefix>/share/jukinet/data``."""
    checkout = REPO_ROOT / "data"
    installed = Path(sysconfig.get_path("data")) / "share" / "jukinet" / "data"
    return installed if not checkout.is_dir() and installed.is_dir() else checkout


DATA_DIR = _data_dir()
DEFAULT_DEPLOYMENT = "nagano-demo"

# CloudFormation's hard limit is 500 resources per stack. A municipality costs a fixed
# number of resources (see infra/stacks/municipality.py, measured by tests/infra); this cap
# keeps every chunk well below the limit with room for later per-municipality resources.
DEFAULT_MAX_MUNICIPALITIES_PER_STACK = 40

_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,9}$")
_VPCE = VPC_ENDPOINT_ID
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:\d+)?(/[^\s]*)?$")
_IAM_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(root|role/.+|user/.+)$")

# API Gateway's default account-level limits (requests/s, burst): no usage plan may exceed them.


class ConfigError(ValueError):
    """The deployment configuration is inconsistent; the message says what to change."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _code(value: str, what: str) -> LocalGovernmentCode:
    try:
        return LocalGovernmentCode.parse(value, what)
    except ValidationError as exc:
        raise ConfigError(f"{what} {value!r}: {exc.detail}") from None


# --- environments and networks ----------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    """Where a tier lives. Tiers may be in different accounts; see ``naming``."""

    account: str
    region: str

    def __post_init__(self) -> None:
        _require(bool(_ACCOUNT.match(self.account)), f"account {self.account!r} must be 12 digits")
        _require(bool(_REGION.match(self.region)), f"region {self.region!r} is not an AWS region name")


@dataclass(frozen=True)
class Network:
    """A tier's VPC: isolated subnets only, one per named AZ (named, so synth needs no lookup)."""

    cidr: str
    availability_zones: tuple[str, ...]

    def __post_init__(self) -> None:
        try:
            net = ipaddress.ip_network(self.cidr)
        except ValueError as exc:
            raise ConfigError(f"VPC CIDR {self.cidr!r}: {exc}") from None
        _require(16 <= net.prefixlen <= 24, f"VPC CIDR {self.cidr} must be between /16 and /24")
        _require(len(self.availability_zones) >= 2, "a tier needs subnets in at least two availability zones")
        _require(len(set(self.availability_zones)) == len(self.availability_zones),
                 f"availability zones repeat: {self.availability_zones}")

    @property
    def ip_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)


# --- the tiers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Municipality:
    """市区町村: one CS (function, role, signing key, drop zone) each."""

    code: str
    name: str
    name_kana: str = ""

    def __post_init__(self) -> None:
        parsed = _code(self.code, "municipality code")
        _require(not parsed.is_prefecture, f"{self.code} is a prefecture-level code, not a municipality")


@dataclass(frozen=True)
class MunicipalityTier:
    """The municipality tier of one prefecture: every CS of its municipalities, one VPC.

    ``stack_groups`` pins which municipalities share a stack. Resource names are fixed
    (functions, roles, drop-zone buckets), so a municipality must never move between
    stacks once deployed; pin the groups before a merger changes the list. Without it,
    municipalities are chunked in code order, at most ``max_per_stack`` per stack.

    ``sqs_endpoint_id`` is this tier's SQS interface endpoint, which the prefecture's
    inbound queue policy requires (``aws:SourceVpce``). In the prefecture's own account and
    region it is imported from this tier's stack; anywhere else it must be given here.
    """

    env: Environment
    network: Network
    municipalities: tuple[Municipality, ...]
    stack_groups: tuple[tuple[str, ...], ...] | None = None
    max_per_stack: int = DEFAULT_MAX_MUNICIPALITIES_PER_STACK
    sqs_endpoint_id: str | None = None
    cs_reserved_concurrency: int = 2
    # The existing registry systems' networks, routed into this tier's VPC by a site-to-site
    # VPN or Direct Connect: given, the tier gets an S3 interface endpoint that admits HTTPS
    # from them only, and the drop zones accept exports through it (docs/decisions/0013).
    upload_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for cidr in self.upload_cidrs:
            try:
                ipaddress.ip_network(cidr)
            except ValueError as exc:
                raise ConfigError(f"municipality tier: upload_cidrs {cidr!r}: {exc}") from None
        codes = [m.code for m in self.municipalities]
        _require(len(codes) > 0, "a municipality tier needs at least one municipality")
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        _require(not duplicates, f"municipality codes repeat: {duplicates}")
        _require(1 <= self.max_per_stack <= 40, "max_per_stack must be between 1 and 40 (500-resource limit)")
        # Two: the fewest invocations the CS's inbox mapping may run at once (decision 0051); fewer
        # would throttle it, and throttled events count towards the inbox's maxReceiveCount.
        _require(self.cs_reserved_concurrency >= 2, "cs_reserved_concurrency must be at least 2 (the inbox mapping's "
                 "fewest concurrent invocations)")
        if self.sqs_endpoint_id is not None:
            _require(bool(_VPCE.match(self.sqs_endpoint_id)), f"{self.sqs_endpoint_id!r} is not a VPC endpoint id")
        if self.stack_groups is not None:
            grouped = [c for group in self.stack_groups for c in group]
            _require(sorted(grouped) == sorted(codes),
                     "stack_groups must list every municipality exactly once "
                     f"(missing {sorted(set(codes) - set(grouped))}, unknown {sorted(set(grouped) - set(codes))})")
            _require(all(0 < len(g) <= self.max_per_stack for g in self.stack_groups),
                     f"every stack group must hold 1..{self.max_per_stack} municipalities")

    def groups(self) -> tuple[tuple[Municipality, ...], ...]:
        """The municipalities of each municipality-tier stack, in a stable order."""
        by_code = {m.code: m for m in self.municipalities}
        if self.stack_groups is not None:
            return tuple(tuple(by_code[c] for c in group) for group in self.stack_groups)
        ordered = sorted(self.municipalities, key=lambda m: m.code)
        n = self.max_per_stack
        return tuple(tuple(ordered[i:i + n]) for i in range(0, len(ordered), n))


@dataclass(frozen=True)
class Prefecture:
    """都道府県: the prefecture server tier and the municipality tier below it.

    ``sqs_endpoint_id``: this tier's SQS endpoint, needed by the national inbound queue
    policy when this prefecture is not in the national tier's account and region.

    ``api_endpoint_id``: this tier's execute-api endpoint, through which the prefecture's own
    staff call the national provision API (created when a ``kind = "prefecture"`` recipient
    names this prefecture). The API's resource policy admits it: imported within the national
    tier's account and region, else given here. ``api_client_cidrs``: who may reach that
    endpoint (HTTPS); default the tier's VPC CIDR (add the staff networks routed into the VPC).
    """

    code: str
    name: str
    name_en: str
    env: Environment
    network: Network
    municipality_tier: MunicipalityTier
    sqs_endpoint_id: str | None = None
    processor_concurrency: int = 5
    api_endpoint_id: str | None = None
    api_client_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parsed = _code(self.code, "prefecture code")
        _require(parsed.is_prefecture, f"{self.code} is not a prefecture-level code (like 200000)")
        strangers = [m.code for m in self.municipality_tier.municipalities if m.code[:2] != self.code[:2]]
        _require(not strangers, f"municipalities {strangers} do not belong to prefecture {self.code}")
        # An SQS event source mapping's maximum concurrency is 2 to 1000.
        _require(2 <= self.processor_concurrency <= 1000, "processor_concurrency must be between 2 and 1000")
        if self.sqs_endpoint_id is not None:
            _require(bool(_VPCE.match(self.sqs_endpoint_id)), f"{self.sqs_endpoint_id!r} is not a VPC endpoint id")
        if self.api_endpoint_id is not None:
            _require(bool(_VPCE.match(self.api_endpoint_id)),
                     f"prefecture {self.code}: api_endpoint_id {self.api_endpoint_id!r} is not a VPC endpoint id")
        for cidr in self.api_client_cidrs:
            try:
                ipaddress.ip_network(cidr)
            except ValueError as exc:
                raise ConfigError(f"prefecture {self.code}: api_client_cidrs {cidr!r}: {exc}") from None
        muni = self.municipality_tier
        if muni.env != self.env and muni.sqs_endpoint_id is None:
            raise ConfigError(
                f"prefecture {self.code}: its municipality tier is in account {muni.env.account} "
                f"{muni.env.region}, not in the prefecture's ({self.env.account} {self.env.region}), so the "
                "prefecture's inbound queue policy cannot import the municipality tier's SQS endpoint id: "
                "deploy the municipality tier first and set municipality_tier.sqs_endpoint_id to its "
                "'SqsEndpointId' output")

    @property
    def api_clients(self) -> tuple[str, ...]:
        """Networks admitted to this tier's execute-api endpoint."""
        return self.api_client_cidrs or (self.network.cidr,)


@dataclass(frozen=True)
class National:
    """指定情報処理機関 (J-LIS): the national server tier."""

    env: Environment
    network: Network
    processor_concurrency: int = 5

    def __post_init__(self) -> None:
        _require(2 <= self.processor_concurrency <= 1000, "processor_concurrency must be between 2 and 1000")


# --- agencies and agreements (used by the provision API) ---------------------------------


# The recipients and their agreements are the runtime's own model (jukinet/domain/agreements.py:
# the same rules validate a TOML table, the agreements file and the runtime's reading of it).


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


@dataclass(frozen=True)
class Operations:
    """Who is told, how long logs stay, when a queue counts as stuck, who administers keys.

    ``key_administrators``: IAM principal ARNs allowed to administer (never use) each tier's
    KMS keys. Empty means the account root, i.e. IAM policies of that account decide who
    the administrators are — still without any cryptographic use of the keys.
    """

    alarm_email: str | None = None
    # A chat tool's incoming webhook (HTTPS): SNS posts each alarm's JSON there; the endpoint
    # must confirm the subscription (SNS sends a SubscriptionConfirmation first). The URL is in
    # the templates: use one that is not a bearer secret, or a relay inside the organisation.
    alarm_chat_url: str | None = None
    log_retention_days: int = 365
    flow_log_retention_days: int = 90
    # Amazon GuardDuty in each account and region that hosts a trail (off: an account may run it
    # organisation-wide already, and it is billed per event analysed). Not emulated locally.
    guardduty: bool = False
    oldest_message_alarm_seconds: int = 900
    key_administrators: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.alarm_email is not None:
            _require(bool(_EMAIL.match(self.alarm_email)), f"alarm_email {self.alarm_email!r} is not an address")
        if self.alarm_chat_url is not None:
            _require(bool(_HTTPS_URL.match(self.alarm_chat_url)),
                     f"alarm_chat_url {self.alarm_chat_url!r} must be an https:// URL (SNS protocol https)")
        for arn in self.key_administrators:
            _require(bool(_IAM_ARN.match(arn)), f"key administrator {arn!r} is not an IAM principal ARN")
        _require(self.oldest_message_alarm_seconds >= 60, "oldest_message_alarm_seconds must be at least 60")


# --- the deployment ---------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """Everything one ``cdk synth`` needs. Validated as a whole on construction."""

    name: str
    national: National
    prefectures: tuple[Prefecture, ...]
    agencies: tuple[Recipient, ...] = ()
    operations: Operations = field(default_factory=Operations)
    prefix: str = "jukinet"
    people: People = field(default_factory=People)
    # The request/response channel between municipalities (docs/decisions/0041, 0042): each
    # municipality tier's channel queue, key and function, and the routes through the prefecture
    # and national tiers. Needs every prefecture and municipality tier in one account (below).
    channel: bool = True

    def __post_init__(self) -> None:
        _require(bool(_PREFIX.match(self.prefix)), f"prefix {self.prefix!r}: 2-10 lowercase letters/digits")
        _require(len(self.prefectures) > 0, "a deployment needs at least one prefecture")
        codes = [p.code for p in self.prefectures]
        _require(len(codes) == len(set(codes)), f"prefecture codes repeat: {codes}")
        # Tiers talk through VPC interface endpoints, which reach their service only in
        # their own region; a cross-region link would need a different design.
        regions = {self.national.env.region} | {p.env.region for p in self.prefectures} | {
            p.municipality_tier.env.region for p in self.prefectures}
        _require(len(regions) == 1, f"every tier must be in one region (found {sorted(regions)})")
        for p in self.prefectures:
            if p.env != self.national.env and p.sqs_endpoint_id is None:
                raise ConfigError(
                    f"prefecture {p.code} is in account {p.env.account}, not the national tier's "
                    f"({self.national.env.account}), so the national inbound queue policy cannot import its SQS "
                    "endpoint id: deploy the prefecture first and set its sqs_endpoint_id to the "
                    "'SqsEndpointId' output of its stack")
        # The national processor resolves every prefecture's public key through one alias
        # prefix (SENDER_KEY_ALIAS_PREFIX), i.e. one account.
        pref_accounts = {p.env.account for p in self.prefectures}
        _require(len(pref_accounts) == 1,
                 f"all prefecture tiers must share one account (found {sorted(pref_accounts)}): the national "
                 "processor resolves prefecture signing keys through a single alias prefix")
        if self.channel:
            # Every hop verifies the originating municipality's signature through one alias prefix
            # (SENDER_KEY_ALIAS_PREFIX: the national tier's is the prefectures' account), and a
            # channel function seals a body by the reader tier's key alias (no account in it).
            accounts = {p.env.account for p in self.prefectures} | {
                p.municipality_tier.env.account for p in self.prefectures}
            _require(len(accounts) == 1,
                     f"the channel between municipalities needs every prefecture and municipality tier in one "
                     f"account (found {sorted(accounts)}): its routers and channel functions find any "
                     "municipality's signing key and any tier's channel key by alias in one account; put them in "
                     "one account or set channel=False")
        networks = [("national", self.national.network)]
        for p in self.prefectures:
            networks += [(f"prefecture {p.code}", p.network),
                         (f"municipality tier {p.code}", p.municipality_tier.network)]
        for i, (a_name, a) in enumerate(networks):
            for b_name, b in networks[i + 1:]:
                _require(not a.ip_network.overlaps(b.ip_network),
                         f"VPC CIDRs overlap: {a_name} {a.cidr} and {b_name} {b.cidr}")
        for _, net in networks:
            for az in net.availability_zones:
                _require(az.startswith(next(iter(regions))), f"availability zone {az} is not in {next(iter(regions))}")
        agency_ids = [a.recipient_id for a in self.agencies]
        _require(len(agency_ids) == len(set(agency_ids)), "agency ids repeat")
        self._validate_recipients()
        self.people.validate(self.tiers())

    def tiers(self) -> tuple[str, ...]:
        """Every tier's name (``naming``): national, then pref-<code> and muni-<code> per prefecture."""
        from ..naming import NATIONAL, municipality_tier, prefecture_tier

        found = [NATIONAL]
        for p in self.prefectures:
            found += [prefecture_tier(p.code), municipality_tier(p.code)]
        return tuple(found)

    def tier_env(self, tier: str) -> Environment:
        """Where a tier (by name) lives."""
        from ..naming import NATIONAL, municipality_tier, prefecture_tier

        if tier == NATIONAL:
            return self.national.env
        for p in self.prefectures:
            if tier == prefecture_tier(p.code):
                return p.env
            if tier == municipality_tier(p.code):
                return p.municipality_tier.env
        raise KeyError(tier)

    def _validate_recipients(self) -> None:
        codes = {p.code for p in self.prefectures}
        owners: dict[tuple[str, str], str] = {}
        for a in self.agencies:
            if a.kind is RecipientKind.PREFECTURE:
                _require(a.prefecture in codes,
                         f"agency {a.recipient_id}: prefecture {a.prefecture} is not a prefecture of this deployment "
                         f"(configured: {sorted(codes)})")
            for arn in a.all_principals:
                key = role_key(arn)  # every principal was checked to be a role ARN
                _require(key not in owners,
                         f"agency {a.recipient_id}: role {key[1]!r} of account {key[0]} is already a principal of "
                         f"{owners.get(key)}: API Gateway reports a caller by account and role name only, so each "
                         "role may act for one recipient in one capacity")
                owners[key] = a.recipient_id
        national = self.national.env
        for p in self.prefectures:
            own_use = [a.recipient_id for a in self.own_use_recipients(p.code)]
            if own_use and p.env != national and p.api_endpoint_id is None:
                raise ConfigError(
                    f"prefecture {p.code} has own-use recipients ({', '.join(own_use)}) but is in account "
                    f"{p.env.account}, not the national tier's ({national.account}), so the provision API's "
                    "resource policy cannot import its execute-api endpoint id: deploy the prefecture first and set "
                    "its api_endpoint_id to the 'ExecuteApiEndpointId' output of its stack")

    def own_use_recipients(self, prefecture_code: str) -> tuple[Recipient, ...]:
        """Recipients of kind prefecture for this prefecture (their staff use its execute-api endpoint)."""
        return tuple(a for a in self.agencies if a.kind is RecipientKind.PREFECTURE and a.prefecture == prefecture_code)

    @property
    def region(self) -> str:
        return self.national.env.region

    def prefecture(self, code: str) -> Prefecture:
        for p in self.prefectures:
            if p.code == code:
                return p
        raise KeyError(code)

    def accounts(self) -> tuple[str, ...]:
        found = [self.national.env.account]
        for p in self.prefectures:
            found += [p.env.account, p.municipality_tier.env.account]
        return tuple(dict.fromkeys(found))


# --- loading ----------------------------------------------------------------------------


def load_municipalities(path: Path) -> tuple[Municipality, ...]:
    """Read ``local_government_code,name,name_kana`` rows; every code's check digit is verified."""
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    _require(len(rows) > 0, f"{path}: no municipalities")
    return tuple(Municipality(r["local_government_code"].strip(), r["name"].strip(), r.get("name_kana", "").strip())
                 for r in rows)


def _known_keys(table: dict, known: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    _require(not unknown, f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")


def load_agencies(path: Path) -> tuple[Recipient, ...]:
    """Recipients and agreements from a TOML file: changing an agreement is a data change. Each
    ``[[agency]]`` table (with its ``[[agency.agreement]]`` tables) is validated by the runtime's
    model (``jukinet.domain.agreements.Recipient``); an unknown key or a broken rule is refused
    with the file, the agency, the field and the rule."""
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    _known_keys(doc, frozenset({"demo_data", "agency"}), path.name)
    agencies = []
    for table in doc.get("agency", []):
        try:
            agencies.append(Recipient.model_validate(table))
        except PydanticValidationError as exc:
            raise ConfigError(f"{path.name}: agency {table.get('id')!r}: {_model_errors(exc, table)}") from None
    return tuple(agencies)


def _model_errors(exc: PydanticValidationError, table: dict) -> str:
    """pydantic's errors as one line each: where (the TOML keys) and the rule."""
    lines = []
    for error in exc.errors():
        where = ".".join(_toml_key(part, table) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def _toml_key(part: object, table: dict) -> str:
    if part == "agreements" and "agreement" in table:
        return "agreement"
    return f"[{part}]" if isinstance(part, int) else str(part)


_PERSON_KEYS = frozenset({"id", "name", "organisation", "principal", "saml_subject"})
_ASSIGNMENT_KEYS = frozenset({"tier", "role", "person", "since"})
_CONTRACT_KEYS = frozenset({"id", "company", "tier", "people", "since", "expires", "purpose"})


def load_people(path: Path) -> People:
    """Persons, their roles per tier and the contractors' contracts from a TOML file
    (``data/operators.demo.toml`` describes the format): who holds what is a data change."""
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    _known_keys(doc, frozenset({"demo_data", "person", "assignment", "contract"}), path.name)
    persons, assignments, contracts = [], [], []
    for p in doc.get("person", []):
        _known_keys(p, _PERSON_KEYS, f"{path.name}: person {p.get('id')!r}")
        persons.append(Person(person_id=p["id"], name=p["name"], principal=p["principal"],
                              organisation=p.get("organisation", ""), saml_subject=p.get("saml_subject")))
    for a in doc.get("assignment", []):
        _known_keys(a, _ASSIGNMENT_KEYS, f"{path.name}: assignment of {a.get('person')!r}")
        _require(isinstance(a.get("since"), dt.date), f"{path.name}: assignment of {a.get('person')!r}: since must "
                                                      "be a date (YYYY-MM-DD, unquoted)")
        assignments.append(Assignment(tier=a["tier"], role=a["role"], person=a["person"], since=a["since"]))
    for c in doc.get("contract", []):
        where = f"{path.name}: contract {c.get('id')!r}"
        _known_keys(c, _CONTRACT_KEYS, where)
        for key in ("since", "expires"):
            _require(isinstance(c.get(key), dt.date), f"{where}: {key} must be a date (YYYY-MM-DD, unquoted)")
        contracts.append(Contract(contract_id=c["id"], company=c["company"], tier=c["tier"],
                                  people=tuple(c["people"]), since=c["since"], expires=c["expires"],
                                  purpose=c.get("purpose", "")))
    return People(persons=tuple(persons), assignments=tuple(assignments), contracts=tuple(contracts),
                  demo_data=bool(doc.get("demo_data", False)))


DEMO_ACCOUNT = "123456789012"  # placeholder: replace with real accounts before `cdk deploy`
DEMO_REGION = "ap-northeast-1"
DEMO_AZS = ("ap-northeast-1a", "ap-northeast-1c")


def _networks(prefecture_number: int) -> tuple[Network, Network]:
    """Default CIDRs: prefecture tier 10.<pp>.0.0/22, its municipality tier 10.<pp>.4.0/22."""
    return (Network(f"10.{prefecture_number}.0.0/22", DEMO_AZS), Network(f"10.{prefecture_number}.4.0/22", DEMO_AZS))


def _prefecture(code: str, name: str, name_en: str, municipalities: Iterable[Municipality], env: Environment, *,
                muni_env: Environment | None = None, muni_sqs_endpoint_id: str | None = None,
                sqs_endpoint_id: str | None = None, api_endpoint_id: str | None = None,
                upload_cidrs: tuple[str, ...] = ()) -> Prefecture:
    pref_net, muni_net = _networks(int(code[:2]))
    tier = MunicipalityTier(env=muni_env or env, network=muni_net, municipalities=tuple(municipalities),
                            sqs_endpoint_id=muni_sqs_endpoint_id, upload_cidrs=upload_cidrs)
    return Prefecture(code=code, name=name, name_en=name_en, env=env, network=pref_net, municipality_tier=tier,
                      sqs_endpoint_id=sqs_endpoint_id, api_endpoint_id=api_endpoint_id)


def _nagano_municipalities() -> tuple[Municipality, ...]:
    return load_municipalities(DATA_DIR / "nagano_municipalities.csv")


def nagano_demo() -> Deployment:
    env = Environment(DEMO_ACCOUNT, DEMO_REGION)
    return Deployment(
        name="nagano-demo",
        national=National(env=env, network=Network("10.0.0.0/22", DEMO_AZS)),
        prefectures=(_prefecture("200000", "長野県", "Nagano", _nagano_municipalities(), env),),
        agencies=load_agencies(DATA_DIR / "agencies.demo.toml"),
        people=load_people(DATA_DIR / "operators.demo.toml"),
    )


COMPACT_MUNICIPALITIES = ("202011", "202029", "202037", "202045", "202053", "202061", "202070", "202088")


def nagano_compact() -> Deployment:
    """``nagano-demo`` with the municipalities ``COMPACT_MUNICIPALITIES`` only."""
    demo = nagano_demo()
    [nagano] = demo.prefectures
    tier = nagano.municipality_tier
    kept = tuple(m for m in tier.municipalities if m.code in COMPACT_MUNICIPALITIES)
    _require(len(kept) == len(COMPACT_MUNICIPALITIES), "nagano-compact: a municipality is not in Nagano's list")
    compact = dataclasses.replace(nagano, municipality_tier=dataclasses.replace(tier, municipalities=kept))
    return dataclasses.replace(demo, name="nagano-compact", prefectures=(compact,))


def two_prefectures_compact() -> Deployment:
    """``nagano-compact`` and 東京都 with 千代田区 and 中央区 (the channel across prefectures)."""
    compact = nagano_compact()
    tokyo = _prefecture("130001", "東京都", "Tokyo", (Municipality("131016", "千代田区"), Municipality("131024", "中央区")),
                        compact.national.env)
    return dataclasses.replace(compact, name="two-prefectures-compact", prefectures=(*compact.prefectures, tokyo))


def synthetic_municipalities(prefecture_number: str, count: int) -> tuple[Municipality, ...]:
    """``count`` municipalities with valid codes (<pp>201, <pp>202, … + check digit)."""
    return tuple(
        Municipality(str(LocalGovernmentCode.from_body(f"{prefecture_number}{n:03d}")),
                     f"Synthetic {prefecture_number}{n:03d}")
        for n in range(201, 201 + count)
    )


def large_prefecture_test() -> Deployment:
    """Hokkaido's 179 municipalities (synthetic codes) beside Nagano's 77."""
    demo = nagano_demo()
    env = demo.national.env
    hokkaido = _prefecture("010006", "北海道 (synthetic)", "Hokkaido (synthetic)",
                           synthetic_municipalities("01", 179), env)
    return Deployment(name="large-prefecture-test", national=demo.national, prefectures=(hokkaido, *demo.prefectures),
                      agencies=demo.agencies, people=demo.people)


def multi_account_example() -> Deployment:
    """Each tier in its own account; endpoint ids of the other tiers come from configuration."""
    national = Environment("111111111111", DEMO_REGION)
    prefecture = Environment("222222222222", DEMO_REGION)
    municipalities = Environment("333333333333", DEMO_REGION)
    nagano = _prefecture(
        "200000", "長野県", "Nagano", _nagano_municipalities(), prefecture,
        muni_env=municipalities, sqs_endpoint_id="vpce-0a1b2c3d4e5f60002",
        muni_sqs_endpoint_id="vpce-0a1b2c3d4e5f60003", api_endpoint_id="vpce-0a1b2c3d4e5f60004",
        upload_cidrs=("192.168.20.0/24",),  # the municipalities' LAN, over a site-to-site VPN
    )
    return Deployment(
        name="multi-account-example",
        national=National(env=national, network=Network("10.0.0.0/22", DEMO_AZS)),
        prefectures=(nagano,),
        agencies=load_agencies(DATA_DIR / "agencies.demo.toml"),
        # Prefecture and municipality tiers in different accounts: no channel (Deployment.channel).
        channel=False,
        operations=Operations(alarm_email="jukinet-ops@example.jp",
                              alarm_chat_url="https://chat.example.jp/hooks/jukinet-alarms", guardduty=True),
        people=load_people(DATA_DIR / "operators.demo.toml"),
    )


DEPLOYMENTS: dict[str, Callable[[], Deployment]] = {
    "nagano-demo": nagano_demo,
    "nagano-compact": nagano_compact,
    "two-prefectures-compact": two_prefectures_compact,
    "large-prefecture-test": large_prefecture_test,
    "multi-account-example": multi_account_example,
}


def load_deployment(name: str | None = None) -> Deployment:
    name = name or DEFAULT_DEPLOYMENT
    try:
        factory = DEPLOYMENTS[name]
    except KeyError:
        raise ConfigError(f"unknown deployment {name!r}; known: {', '.join(sorted(DEPLOYMENTS))}") from None
    return factory()

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
``large-prefecture-test``
    A synthetic 179-municipality prefecture (Hokkaido's count) beside Nagano: proves that
    the stack split keeps every stack under CloudFormation's 500-resource limit.
``multi-account-example``
    Each tier in its own account: shows the values that then must come from configuration
    (the sending tiers' SQS endpoint ids), and the one audit trail per account.
"""

from __future__ import annotations

import csv
import datetime as dt
import ipaddress
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from jukinet.domain.codes import LocalGovernmentCode
from jukinet.domain.errors import ValidationError

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
DEFAULT_DEPLOYMENT = "nagano-demo"

# CloudFormation's hard limit is 500 resources per stack. A municipality costs a fixed
# number of resources (see infra/stacks/municipality.py, measured by tests/infra); this cap
# keeps every chunk well below the limit with room for later per-municipality resources.
DEFAULT_MAX_MUNICIPALITIES_PER_STACK = 40

_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,9}$")
_VPCE = re.compile(r"^vpce-[0-9a-z]{8,17}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IAM_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(root|role/.+|user/.+)$")

FACT_FIELDS = frozenset({
    "resident_code", "name", "birth_date", "sex", "address", "individual_number",
    "status", "change_information",
})
PROVISION_FUNCTIONS = frozenset({"lookup", "search", "batch", "own_use"})


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

    def __post_init__(self) -> None:
        codes = [m.code for m in self.municipalities]
        _require(len(codes) > 0, "a municipality tier needs at least one municipality")
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        _require(not duplicates, f"municipality codes repeat: {duplicates}")
        _require(1 <= self.max_per_stack <= 45, "max_per_stack must be between 1 and 45 (500-resource limit)")
        _require(self.cs_reserved_concurrency >= 1, "cs_reserved_concurrency must be at least 1")
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
    """

    code: str
    name: str
    name_en: str
    env: Environment
    network: Network
    municipality_tier: MunicipalityTier
    sqs_endpoint_id: str | None = None
    processor_concurrency: int = 5

    def __post_init__(self) -> None:
        parsed = _code(self.code, "prefecture code")
        _require(parsed.is_prefecture, f"{self.code} is not a prefecture-level code (like 200000)")
        strangers = [m.code for m in self.municipality_tier.municipalities if m.code[:2] != self.code[:2]]
        _require(not strangers, f"municipalities {strangers} do not belong to prefecture {self.code}")
        # An SQS event source mapping's maximum concurrency is 2 to 1000.
        _require(2 <= self.processor_concurrency <= 1000, "processor_concurrency must be between 2 and 1000")
        if self.sqs_endpoint_id is not None:
            _require(bool(_VPCE.match(self.sqs_endpoint_id)), f"{self.sqs_endpoint_id!r} is not a VPC endpoint id")
        muni = self.municipality_tier
        if muni.env != self.env and muni.sqs_endpoint_id is None:
            raise ConfigError(
                f"prefecture {self.code}: its municipality tier is in account {muni.env.account} "
                f"{muni.env.region}, not in the prefecture's ({self.env.account} {self.env.region}), so the "
                "prefecture's inbound queue policy cannot import the municipality tier's SQS endpoint id: "
                "deploy the municipality tier first and set municipality_tier.sqs_endpoint_id to its "
                "'SqsEndpointId' output")


@dataclass(frozen=True)
class National:
    """指定情報処理機関 (J-LIS): the national server tier."""

    env: Environment
    network: Network
    processor_concurrency: int = 5

    def __post_init__(self) -> None:
        _require(2 <= self.processor_concurrency <= 1000, "processor_concurrency must be between 2 and 1000")


# --- agencies and agreements (used by the provision API) ---------------------------------


@dataclass(frozen=True)
class Agreement:
    """One statutory affair a recipient body may receive identity facts for.

    ``appended_table`` and ``appended_table_item`` refer to 住基法 別表第一〜第五; the demo's
    item references are illustrative (the statute's numbering is not reproduced here).
    """

    affair_code: str
    affair: str
    appended_table: str
    appended_table_item: str
    functions: frozenset[str]
    fields: frozenset[str]
    valid_from: dt.date
    valid_until: dt.date
    monthly_record_limit: int
    max_batch_records: int = 0

    def __post_init__(self) -> None:
        _require(self.valid_from < self.valid_until,
                 f"agreement {self.affair_code}: valid_from must precede valid_until")
        unknown = self.fields - FACT_FIELDS
        _require(not unknown, f"agreement {self.affair_code}: unknown fields {sorted(unknown)}")
        bad = self.functions - PROVISION_FUNCTIONS
        _require(not bad, f"agreement {self.affair_code}: unknown functions {sorted(bad)}")
        _require(self.monthly_record_limit > 0, f"agreement {self.affair_code}: monthly_record_limit must be positive")

    def is_valid_on(self, day: dt.date) -> bool:
        return self.valid_from <= day <= self.valid_until


@dataclass(frozen=True)
class Agency:
    """A recipient body (国の機関等) with its principals, VPC endpoints and agreements."""

    agency_id: str
    name: str
    name_ja: str
    principals: tuple[str, ...]
    vpc_endpoint_ids: tuple[str, ...]
    agreements: tuple[Agreement, ...]
    demo_data: bool = False

    def __post_init__(self) -> None:
        _require(bool(re.match(r"^[a-z][a-z0-9-]{1,30}$", self.agency_id)), f"agency id {self.agency_id!r}")
        for arn in self.principals:
            _require(bool(_IAM_ARN.match(arn)), f"agency {self.agency_id}: {arn!r} is not an IAM principal ARN")
        for vpce in self.vpc_endpoint_ids:
            _require(bool(_VPCE.match(vpce)), f"agency {self.agency_id}: {vpce!r} is not a VPC endpoint id")
        codes = [a.affair_code for a in self.agreements]
        _require(len(codes) == len(set(codes)), f"agency {self.agency_id}: affair codes repeat")


# --- operations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Operations:
    """Who is told, how long logs stay, when a queue counts as stuck, who administers keys.

    ``key_administrators``: IAM principal ARNs allowed to administer (never use) each tier's
    KMS keys. Empty means the account root, i.e. IAM policies of that account decide who
    the administrators are — still without any cryptographic use of the keys.
    """

    alarm_email: str | None = None
    log_retention_days: int = 365
    flow_log_retention_days: int = 90
    oldest_message_alarm_seconds: int = 900
    key_administrators: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.alarm_email is not None:
            _require(bool(_EMAIL.match(self.alarm_email)), f"alarm_email {self.alarm_email!r} is not an address")
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
    agencies: tuple[Agency, ...] = ()
    operations: Operations = field(default_factory=Operations)
    prefix: str = "jukinet"

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
        agency_ids = [a.agency_id for a in self.agencies]
        _require(len(agency_ids) == len(set(agency_ids)), "agency ids repeat")

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


def load_agencies(path: Path) -> tuple[Agency, ...]:
    """Agencies and agreements from a TOML file: changing an agreement is a data change."""
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    demo = bool(doc.get("demo_data", False))
    agencies = []
    for a in doc.get("agency", []):
        agreements = tuple(
            Agreement(
                affair_code=g["affair_code"], affair=g["affair"], appended_table=g["appended_table"],
                appended_table_item=g["appended_table_item"], functions=frozenset(g["functions"]),
                fields=frozenset(g["fields"]), valid_from=g["valid_from"], valid_until=g["valid_until"],
                monthly_record_limit=int(g["monthly_record_limit"]),
                max_batch_records=int(g.get("max_batch_records", 0)),
            )
            for g in a.get("agreement", [])
        )
        agencies.append(Agency(
            agency_id=a["id"], name=a["name"], name_ja=a["name_ja"], principals=tuple(a.get("principals", [])),
            vpc_endpoint_ids=tuple(a.get("vpc_endpoint_ids", [])), agreements=agreements, demo_data=demo,
        ))
    return tuple(agencies)


DEMO_ACCOUNT = "123456789012"  # placeholder: replace with real accounts before `cdk deploy`
DEMO_REGION = "ap-northeast-1"
DEMO_AZS = ("ap-northeast-1a", "ap-northeast-1c")


def _networks(prefecture_number: int) -> tuple[Network, Network]:
    """Default CIDRs: prefecture tier 10.<pp>.0.0/22, its municipality tier 10.<pp>.4.0/22."""
    return (Network(f"10.{prefecture_number}.0.0/22", DEMO_AZS), Network(f"10.{prefecture_number}.4.0/22", DEMO_AZS))


def _prefecture(code: str, name: str, name_en: str, municipalities: Iterable[Municipality], env: Environment, *,
                muni_env: Environment | None = None, muni_sqs_endpoint_id: str | None = None,
                sqs_endpoint_id: str | None = None) -> Prefecture:
    pref_net, muni_net = _networks(int(code[:2]))
    tier = MunicipalityTier(env=muni_env or env, network=muni_net, municipalities=tuple(municipalities),
                            sqs_endpoint_id=muni_sqs_endpoint_id)
    return Prefecture(code=code, name=name, name_en=name_en, env=env, network=pref_net, municipality_tier=tier,
                      sqs_endpoint_id=sqs_endpoint_id)


def _nagano_municipalities() -> tuple[Municipality, ...]:
    return load_municipalities(DATA_DIR / "nagano_municipalities.csv")


def nagano_demo() -> Deployment:
    env = Environment(DEMO_ACCOUNT, DEMO_REGION)
    return Deployment(
        name="nagano-demo",
        national=National(env=env, network=Network("10.0.0.0/22", DEMO_AZS)),
        prefectures=(_prefecture("200000", "長野県", "Nagano", _nagano_municipalities(), env),),
        agencies=load_agencies(DATA_DIR / "agencies.demo.toml"),
    )


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
                      agencies=demo.agencies)


def multi_account_example() -> Deployment:
    """Each tier in its own account; endpoint ids of the sending tiers come from configuration."""
    national = Environment("111111111111", DEMO_REGION)
    prefecture = Environment("222222222222", DEMO_REGION)
    municipalities = Environment("333333333333", DEMO_REGION)
    nagano = _prefecture(
        "200000", "長野県", "Nagano", _nagano_municipalities(), prefecture,
        muni_env=municipalities, sqs_endpoint_id="vpce-0a1b2c3d4e5f60002",
        muni_sqs_endpoint_id="vpce-0a1b2c3d4e5f60003",
    )
    return Deployment(
        name="multi-account-example",
        national=National(env=national, network=Network("10.0.0.0/22", DEMO_AZS)),
        prefectures=(nagano,),
        agencies=load_agencies(DATA_DIR / "agencies.demo.toml"),
        operations=Operations(alarm_email="jukinet-ops@example.jp"),
    )


DEPLOYMENTS: dict[str, Callable[[], Deployment]] = {
    "nagano-demo": nagano_demo,
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

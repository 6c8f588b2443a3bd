"""The tiers: municipalities, the municipality tier of a prefecture, prefectures, the national tier."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from jukinet.domain.agreements import VPC_ENDPOINT_ID

from .base import ConfigError, _code, _require
from .environment import Environment, Network

# CloudFormation's hard limit is 500 resources per stack. A municipality costs a fixed
# number of resources (see infra/stacks/municipality.py, measured by tests/infra); this cap
# keeps every chunk well below the limit with room for later per-municipality resources.
DEFAULT_MAX_MUNICIPALITIES_PER_STACK = 40
_VPCE = VPC_ENDPOINT_ID


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

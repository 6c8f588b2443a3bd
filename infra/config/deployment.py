"""The deployment: every tier, agency, person and setting one ``cdk synth`` needs, validated as a whole."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from jukinet.domain.agreements import Recipient, RecipientKind, role_key

from ..tier_names import NATIONAL, municipality_tier, prefecture_tier
from .base import ConfigError, _require
from .environment import Environment
from .operations import Operations
from .people import People
from .tiers import National, Prefecture

_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,9}$")


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
        found = [NATIONAL]
        for p in self.prefectures:
            found += [prefecture_tier(p.code), municipality_tier(p.code)]
        return tuple(found)

    def tier_env(self, tier: str) -> Environment:
        """Where a tier (by name) lives."""
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

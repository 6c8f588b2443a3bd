"""Where a tier lives (account, region) and its VPC."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .base import ConfigError, _require

_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


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

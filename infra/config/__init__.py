"""The deployment configuration: one typed, validated object chosen by ``-c deployment=<name>``.

Split by concern; this package re-exports the public interface, so ``from infra.config import X``
is the way to use it:

- ``base``: ``ConfigError``, the rule check and pydantic errors as TOML lines;
- ``environment``: ``Environment`` (account, region) and ``Network`` (a tier's VPC);
- ``tiers``: ``Municipality``, ``MunicipalityTier``, ``Prefecture``, ``National``;
- ``people``: ``Person``, ``Assignment``, ``Contract``, ``People`` and ``load_people`` (TOML, pydantic);
- ``operations``: ``Operations`` (alarms, retention, key administrators);
- ``deployment``: ``Deployment``, validated as a whole;
- ``deployments``: the registered deployments (``DEPLOYMENTS``, ``load_deployment``) and the data
  loaders (``data/``: municipalities, agencies).

The tier names (``national``, ``pref-<code>``, ``muni-<code>``) live in ``infra/tier_names.py``,
which ``infra.naming`` re-exports: neither this package nor ``infra.naming`` imports the other's
internals to learn them (``tests/infra/test_import_cycles.py``).
"""

from __future__ import annotations

from .base import ConfigError
from .deployment import Deployment
from .deployments import (
    COMPACT_MUNICIPALITIES,
    DATA_DIR,
    DEFAULT_DEPLOYMENT,
    DEMO_ACCOUNT,
    DEMO_AZS,
    DEMO_REGION,
    DEPLOYMENTS,
    REPO_ROOT,
    large_prefecture_test,
    load_agencies,
    load_deployment,
    load_municipalities,
    multi_account_example,
    nagano_compact,
    nagano_demo,
    synthetic_municipalities,
    two_prefectures_compact,
)
from .environment import Environment, Network
from .operations import Operations
from .people import (
    BREAK_GLASS_ROLE,
    MAX_CONTRACT_DAYS,
    RESPONSIBILITY_ROLES,
    SAML_AUDIENCE,
    Assignment,
    Contract,
    People,
    Person,
    load_people,
)
from .tiers import DEFAULT_MAX_MUNICIPALITIES_PER_STACK, Municipality, MunicipalityTier, National, Prefecture

__all__ = [
    "BREAK_GLASS_ROLE", "COMPACT_MUNICIPALITIES", "DATA_DIR", "DEFAULT_DEPLOYMENT", "DEFAULT_MAX_MUNICIPALITIES_PER_STACK",
    "DEMO_ACCOUNT", "DEMO_AZS", "DEMO_REGION", "DEPLOYMENTS", "MAX_CONTRACT_DAYS", "REPO_ROOT",
    "RESPONSIBILITY_ROLES", "SAML_AUDIENCE", "Assignment", "ConfigError", "Contract", "Deployment", "Environment",
    "Municipality", "MunicipalityTier", "National", "Network", "Operations", "People", "Person", "Prefecture",
    "large_prefecture_test", "load_agencies", "load_deployment", "load_municipalities", "load_people",
    "multi_account_example", "nagano_compact", "nagano_demo", "synthetic_municipalities", "two_prefectures_compact",
]

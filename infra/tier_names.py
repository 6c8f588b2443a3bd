"""The tiers' names (``national``, ``pref-<code>``, ``muni-<code>``): one home that both the
configuration (``infra.config``: ``Deployment.tiers``) and ``infra.naming`` import, so neither
imports the other to learn them (``infra.naming`` re-exports them)."""

from __future__ import annotations

NATIONAL = "national"


def prefecture_tier(code: str) -> str:
    return f"pref-{code}"


def municipality_tier(prefecture_code: str) -> str:
    return f"muni-{prefecture_code}"

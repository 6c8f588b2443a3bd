"""Gather the reconciliation counts from a deployment's tables (see domain.reconciliation)."""

from __future__ import annotations

from dataclasses import dataclass

from jukinet.adapters.cs_state import CsState
from jukinet.adapters.identity_store import IdentityStore
from jukinet.adapters.kms import DataKeys
from jukinet.domain.reconciliation import ReconciliationRow


@dataclass(frozen=True)
class TierTables:
    """Where one prefecture's counts live: its municipalities' CS state table, its identity
    table, and the national identity table."""

    cs_state_table: str
    prefecture_table: str
    national_table: str


def reconcile(tables: TierTables, municipalities: dict[str, str], month: str) -> list[ReconciliationRow]:
    """One row per municipality (code → name) for ``month`` (``YYYY-MM``, Japan time)."""
    # Counting needs no decryption; the data-key objects are never asked for a key here.
    prefecture = IdentityStore(tables.prefecture_table, DataKeys("unused", {}))
    national = IdentityStore(tables.national_table, DataKeys("unused", {}))
    rows = []
    for code, name in sorted(municipalities.items()):
        stats = CsState(tables.cs_state_table, code).month_stats(month)
        at_prefecture, at_national = prefecture.ledger(code), national.ledger(code)
        rows.append(ReconciliationRow(
            municipality=code, name=name, month=month,
            sent=stats["sent"], rejected=stats["rejected"],
            stored_prefecture=at_prefecture.stored_in(month), stored_national=at_national.stored_in(month),
            dead_lettered_prefecture=at_prefecture.dead_in(month), dead_lettered_national=at_national.dead_in(month),
            gaps_prefecture=at_prefecture.gaps, gaps_national=at_national.gaps,
            redriven_prefecture=at_prefecture.redriven_in(month), redriven_national=at_national.redriven_in(month),
        ))
    return rows


def tables_for(deployment, prefecture_code: str) -> TierTables:  # deployment: infra.config.Deployment
    """Table names of one prefecture's tiers, computed as the stacks name them (infra.naming)."""
    from infra.naming import NATIONAL, Names, prefecture_tier

    names = Names.of(deployment)
    return TierTables(
        cs_state_table=names.cs_state_table(prefecture_code),
        prefecture_table=names.identity_table(prefecture_tier(prefecture_code)),
        national_table=names.identity_table(NATIONAL),
    )


def reconcile_deployment(deployment, month: str, prefecture_code: str | None = None) -> list[ReconciliationRow]:
    rows: list[ReconciliationRow] = []
    for prefecture in deployment.prefectures:
        if prefecture_code and prefecture.code != prefecture_code:
            continue
        municipalities = {m.code: m.name for m in prefecture.municipality_tier.municipalities}
        rows.extend(reconcile(tables_for(deployment, prefecture.code), municipalities, month))
    return rows

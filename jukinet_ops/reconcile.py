"""Gather the reconciliation counts from a deployment's tables: ``jukinet reconcile`` reads every
tier's tables with the code each tier's scheduled reconciliation runs
(``jukinet.services.reconciliation.reconcile_rows``; rules in ``domain.reconciliation``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from jukinet.domain.channel import ChannelRow
from jukinet.domain.reconciliation import ReconciliationRow
from jukinet.services.reconciliation import channel_rows, ledgers_of, reconcile_rows


@dataclass(frozen=True)
class TierTables:
    """Where one prefecture's counts live: its municipalities' CS state table, its identity
    table, and the national identity table."""

    cs_state_table: str
    prefecture_table: str
    national_table: str


def reconcile(tables: TierTables, municipalities: dict[str, str], month: str) -> list[ReconciliationRow]:
    """One row per municipality (code → name) for ``month`` (``YYYY-MM``, Japan time)."""
    return reconcile_rows(cs_state_table=tables.cs_state_table, municipalities=municipalities, month=month,
                          prefecture=ledgers_of(tables.prefecture_table), national=ledgers_of(tables.national_table))


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


def reconcile_channel(deployment, month: str, now: dt.datetime,
                      prefecture_code: str | None = None) -> list[ChannelRow]:
    """The channel's rows (decision 0047): per municipality and month, its requests by outcome at
    ``now`` and what it answered and refused as the home municipality, read from each
    municipality tier's table (``names.card_table``) with the code the prefecture's nightly run
    uses (``services.reconciliation.channel_rows``). None when the deployment has no channel."""
    from infra.naming import Names

    if not getattr(deployment, "channel", False):
        return []
    names = Names.of(deployment)
    rows: list[ChannelRow] = []
    for prefecture in deployment.prefectures:
        if prefecture_code and prefecture.code != prefecture_code:
            continue
        municipalities = {m.code: m.name for m in prefecture.municipality_tier.municipalities}
        rows.extend(channel_rows(channel_table=names.card_table(prefecture.code), municipalities=municipalities,
                                 month=month, now=now))
    return rows

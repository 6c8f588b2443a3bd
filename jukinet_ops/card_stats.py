"""``jukinet card-stats``: resident cards per municipality and month (住基カードの交付・利用状況).

One row per municipality of the deployment: cards issued, suspended, resumed, revoked (by
the counter, by re-issuance or by an update notice), expired, PIN resets and locks,
authentications answered at its counters, and refusals by reason. Read from each municipality
tier's card table (``STAT#<municipality>``/``<YYYY-MM>``, one item per municipality), counted
by the counter API as it serves (lambdas/jukinet/services/card.py).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.table import Table

COLUMNS = ("issued", "suspended", "resumed", "revoked", "expired", "pin_reset", "pin_locked", "auth_ok")


@dataclass(frozen=True)
class CardStatsRow:
    municipality: str
    name: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def refused(self) -> dict[str, int]:
        """Refused authentications by reason (``CARD_SUSPENDED`` …)."""
        return {k.removeprefix("auth_refused_"): v for k, v in sorted(self.counts.items())
                if k.startswith("auth_refused_")}

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


def card_statistics(deployment, month: str) -> list[CardStatsRow]:
    """Every municipality's counters for ``month`` (JST), from its tier's card table."""
    from infra.naming import Names
    from jukinet.adapters.card_store import CardStore

    names = Names.of(deployment)
    rows = []
    for prefecture in deployment.prefectures:
        store = CardStore(names.card_table(prefecture.code))
        for m in sorted(prefecture.municipality_tier.municipalities, key=lambda m: m.code):
            rows.append(CardStatsRow(m.code, m.name, store.statistics(m.code, month)))
    return rows


def stats_table(rows: Sequence[CardStatsRow], month: str, *, all_rows: bool = False) -> Table:
    table = Table(title=f"Resident cards {month} (住基カード)")
    table.add_column("municipality")
    for c in (*COLUMNS, "auth refused", "refused by reason"):
        table.add_column(c, justify="left" if c == "refused by reason" else "right")
    for r in rows:
        if not all_rows and not r.counts:
            continue
        table.add_row(f"{r.municipality} {r.name}", *(f"{r.counts.get(c, 0):,}" for c in COLUMNS),
                      f"{r.refused_total:,}", ", ".join(f"{k} {v}" for k, v in r.refused.items()))
    return table


def stats_csv(rows: Sequence[CardStatsRow], month: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["month", "municipality", "name", *COLUMNS, "auth_refused", "refused_by_reason"])
    for r in rows:
        writer.writerow([month, r.municipality, r.name, *(r.counts.get(c, 0) for c in COLUMNS), r.refused_total,
                         json.dumps(r.refused, sort_keys=True)])
    return out.getvalue()


def stats_json(rows: Sequence[CardStatsRow], month: str) -> str:
    return json.dumps({"month": month, "municipalities": [
        {"municipality": r.municipality, "name": r.name, **{c: r.counts.get(c, 0) for c in COLUMNS},
         "auth_refused": r.refused} for r in rows]}, ensure_ascii=False, indent=2)

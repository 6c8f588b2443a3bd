"""``jukinet card-stats``: resident cards per municipality and month (住基カードの交付・利用状況).

One row per municipality of the deployment: cards issued, suspended, resumed, revoked (by
the counter, by re-issuance or by an update notice), expired, PIN resets and locks,
authentications answered at its counters, and refusals by reason. Read from each municipality
tier's card table (``STAT#<municipality>``/``<YYYY-MM>``, one item per municipality), counted
by the counter API as it serves (lambdas/jukinet/services/card.py).

A second table gives the wide-area copies (住民票の写しの広域交付, issue 16 item 5): on the
issuing side (B) the copies requested at the municipality's counters, issued, refused by the
home municipality's code (or B's own ``invalid_answer``) and timed out — counted in the same
``STAT#`` item by ``services/wide_area_copy.py``, each request once, in the month of its event
(a request made on the 31st and answered on the 1st counts as requested in one month and
issued in the next); and on the home side (A) the copies of its residents' records it
answered for issue at another municipality's counter (``COPY-ELSEWHERE#<A>#<YYYY-MM>``).

A third table gives the special move-outs and move-ins (特例転出・特例転入, issue 16 item 5): the
moving-out side (A) from its records ``SPECIAL-OUT#<A>`` — filed (of which by post), cancelled,
completed by a move-in, and lapsed at the end of the legal period (expired: nobody came; not
moved in: a certificate was given, the move-in never completed), each in the month of its event;
the moving-in side (B) from ``STAT#<B>`` — certificate requests, certificates received, move-ins
completed, refused by the home municipality's code, timed out (``services/special_move.py``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.table import Table

COLUMNS = ("issued", "suspended", "resumed", "revoked", "expired", "pin_reset", "pin_locked", "auth_ok")
COPY_PREFIX = "wide_area_copy_"
COPY_COLUMNS = ("requested", "issued", "refused", "timed_out", "issued_elsewhere")
MOVE_PREFIX = "special_move_in_"
MOVE_COLUMNS = ("out_filed", "out_by_post", "out_cancelled", "out_completed", "out_expired", "out_not_moved_in",
                "in_requested", "in_certified", "in_completed", "in_refused", "in_timed_out")
"""The special moves' columns: A's ``out_*`` (``domain.special_move.MOVE_OUT_FIGURES``), B's ``in_*``."""
"""The wide-area copies' columns: B's ``requested``, ``issued``, ``refused`` (the sum of the
codes), ``timed_out``; A's ``issued_elsewhere`` (its residents' copies answered for another
municipality's counter)."""


@dataclass(frozen=True)
class CardStatsRow:
    municipality: str
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    copies_elsewhere: int = 0
    """A's side: copies of this municipality's residents answered for issue at another counter."""
    moves_out: dict[str, int] = field(default_factory=dict)
    """A's side of the special moves (``domain.special_move.move_out_figures``)."""

    @property
    def has_cards(self) -> bool:
        return any(not k.startswith((COPY_PREFIX, MOVE_PREFIX, "special_move_out_")) for k in self.counts)

    @property
    def moves_refused(self) -> dict[str, int]:
        """Special move-ins refused, by the home municipality's code (or B's ``invalid_answer``)."""
        prefix = f"{MOVE_PREFIX}refused_"
        return {k.removeprefix(prefix): v for k, v in sorted(self.counts.items()) if k.startswith(prefix)}

    @property
    def moves(self) -> dict[str, int]:
        """The special moves' figures (``MOVE_COLUMNS``)."""
        c = self.counts
        return {**{f"out_{k}": self.moves_out.get(k, 0) for k in ("filed", "by_post", "cancelled", "completed",
                                                                  "expired", "not_moved_in")},
                "in_requested": c.get(f"{MOVE_PREFIX}requested", 0), "in_certified": c.get(f"{MOVE_PREFIX}certified", 0),
                "in_completed": c.get(f"{MOVE_PREFIX}completed", 0), "in_refused": sum(self.moves_refused.values()),
                "in_timed_out": c.get(f"{MOVE_PREFIX}timed_out", 0)}

    @property
    def has_moves(self) -> bool:
        return any(self.moves.values())

    @property
    def copies_refused(self) -> dict[str, int]:
        """Wide-area copies refused, by code (``not_in_household`` …)."""
        prefix = f"{COPY_PREFIX}refused_"
        return {k.removeprefix(prefix): v for k, v in sorted(self.counts.items()) if k.startswith(prefix)}

    @property
    def copies(self) -> dict[str, int]:
        """The wide-area copies' figures (``COPY_COLUMNS``)."""
        c = self.counts
        return {"requested": c.get(f"{COPY_PREFIX}requested", 0), "issued": c.get(f"{COPY_PREFIX}issued", 0),
                "refused": sum(self.copies_refused.values()), "timed_out": c.get(f"{COPY_PREFIX}timed_out", 0),
                "issued_elsewhere": self.copies_elsewhere}

    @property
    def has_copies(self) -> bool:
        return any(self.copies.values())

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

    names = Names.of(deployment)
    rows = []
    for prefecture in deployment.prefectures:
        municipalities = sorted(prefecture.municipality_tier.municipalities, key=lambda m: m.code)
        rows += tier_statistics(names.card_table(prefecture.code), [(m.code, m.name) for m in municipalities], month)
    return rows


def tier_statistics(table: str, municipalities: Sequence[tuple[str, str]], month: str,
                    now: dt.datetime | None = None) -> list[CardStatsRow]:
    """One municipality tier's rows: its card table's counters, its ``COPY-ELSEWHERE`` records and
    its special move-outs (lapsed as of ``now``: the caller's clock, the system's by default)."""
    from jukinet.adapters.card_store import CardStore
    from jukinet.adapters.copy_store import CopyStore
    from jukinet.adapters.special_move_store import SpecialMoveStore
    from jukinet.clock import system_clock
    from jukinet.domain.special_move import move_out_figures

    store, copies, moves = CardStore(table), CopyStore(table), SpecialMoveStore(table)
    now = now or system_clock()
    return [CardStatsRow(code, name, store.statistics(code, month), copies.count_answered_elsewhere(code, month),
                         move_out_figures(moves.move_outs(code), month, now))
            for code, name in municipalities]


def stats_table(rows: Sequence[CardStatsRow], month: str, *, all_rows: bool = False) -> Table:
    table = Table(title=f"Resident cards {month} (住基カード)")
    table.add_column("municipality")
    for c in (*COLUMNS, "auth refused", "refused by reason"):
        table.add_column(c, justify="left" if c == "refused by reason" else "right")
    for r in rows:
        if not all_rows and not r.has_cards:
            continue
        table.add_row(f"{r.municipality} {r.name}", *(f"{r.counts.get(c, 0):,}" for c in COLUMNS),
                      f"{r.refused_total:,}", ", ".join(f"{k} {v}" for k, v in r.refused.items()))
    return table


def copies_table(rows: Sequence[CardStatsRow], month: str, *, all_rows: bool = False) -> Table:
    """The wide-area copies: issued here (B) by outcome and refusal code; residents' copies
    answered for issue elsewhere (A)."""
    table = Table(title=f"Wide-area copies {month} (住民票の写しの広域交付)")
    table.add_column("municipality")
    for c in ("requested", "issued", "refused", "refused by reason", "timed out", "issued elsewhere (residents)"):
        table.add_column(c, justify="left" if c == "refused by reason" else "right")
    for r in rows:
        if not all_rows and not r.has_copies:
            continue
        f = r.copies
        table.add_row(f"{r.municipality} {r.name}", f"{f['requested']:,}", f"{f['issued']:,}", f"{f['refused']:,}",
                      ", ".join(f"{k} {v}" for k, v in r.copies_refused.items()), f"{f['timed_out']:,}",
                      f"{f['issued_elsewhere']:,}")
    return table


def moves_table(rows: Sequence[CardStatsRow], month: str, *, all_rows: bool = False) -> Table:
    """The special move-outs (A) and move-ins (B) by outcome and refusal code."""
    table = Table(title=f"Special move-outs/move-ins {month} (特例転出・特例転入)")
    table.add_column("municipality")
    heads = ("out filed", "by post", "cancelled", "completed", "expired", "not moved in", "in requested",
             "certified", "moved in", "refused", "refused by reason", "timed out")
    for c in heads:
        table.add_column(c, justify="left" if c == "refused by reason" else "right")
    for r in rows:
        if not all_rows and not r.has_moves:
            continue
        f = r.moves
        table.add_row(f"{r.municipality} {r.name}", *(f"{f[c]:,}" for c in MOVE_COLUMNS[:-2]),
                      ", ".join(f"{k} {v}" for k, v in r.moves_refused.items()), f"{f['in_timed_out']:,}")
    return table


def stats_csv(rows: Sequence[CardStatsRow], month: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["month", "municipality", "name", *COLUMNS, "auth_refused", "refused_by_reason",
                     *(f"copies_{c}" for c in COPY_COLUMNS), "copies_refused_by_reason",
                     *(f"moves_{c}" for c in MOVE_COLUMNS), "moves_refused_by_reason"])
    for r in rows:
        writer.writerow([month, r.municipality, r.name, *(r.counts.get(c, 0) for c in COLUMNS), r.refused_total,
                         json.dumps(r.refused, sort_keys=True), *(r.copies[c] for c in COPY_COLUMNS),
                         json.dumps(r.copies_refused, sort_keys=True), *(r.moves[c] for c in MOVE_COLUMNS),
                         json.dumps(r.moves_refused, sort_keys=True)])
    return out.getvalue()


def stats_json(rows: Sequence[CardStatsRow], month: str) -> str:
    return json.dumps({"month": month, "municipalities": [
        {"municipality": r.municipality, "name": r.name, **{c: r.counts.get(c, 0) for c in COLUMNS},
         "auth_refused": r.refused,
         "wide_area_copies": {**r.copies, "refused_by_reason": r.copies_refused},
         "special_moves": {**r.moves, "refused_by_reason": r.moves_refused}} for r in rows]},
        ensure_ascii=False, indent=2)

"""Reconciliation of update-notice counts (更新通知件数の照合): gathering the counts, and the
scheduled reconciliation each processing tier runs by itself.

``reconcile_rows`` reads, per municipality and month, the CS's counts (its state table), and the
ledger items of the prefecture and the national identity tables — one item per municipality per
table (the rules: ``domain.reconciliation``). ``jukinet reconcile`` calls it with every table;
a tier's ``ScheduledReconciliation`` with the tables it may read.

**Who reconciles what** (decision 0033). Every night at 01:30 JST each processing tier
reconciles the previous day's month (month to date) and the previous month:

* the **prefecture** tier, for its municipalities: sent at the CS = stored + dead-lettered at
  the prefecture, and no gap at the prefecture;
* the **national** tier, for every municipality: stored at the prefecture = stored +
  dead-lettered nationally, and no gap nationally;
* the **municipality** tier runs none: its only counts are the CS's own, the left-hand side of
  the prefecture's equation.

A row whose CS sent its last file of that month less than ``GAP_ALARM_AFTER`` (15 minutes)
before the run is *in flight*: reported, not judged. Gaps are judged only once aged (the same
bound): a younger one is out-of-order delivery.

Each run emits ``ReconciliationMismatches`` (municipality-months that do not balance at this
tier; 0 when all is well; alarm ``reconciliation-mismatches``), stamped with the evaluated
instant, and writes the report as Markdown and CSV to the tier's security-reports bucket:
``reconciliation/<previous day>.md`` and ``.csv`` (the bucket is versioned: a re-run keeps the
earlier copy).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..adapters.cs_state import CsState
from ..adapters.identity_store import IdentityStore, Ledger
from ..adapters.kms import DataKeys
from ..adapters.reports import ReportStore
from ..clock import Clock, today_jst
from ..domain.reconciliation import NATIONAL, PREFECTURE, ReconciliationRow, as_csv, as_markdown
from ..observability import MetricUnit, logger, metrics
from .tier_processor import GAP_ALARM_AFTER

REPORT_PREFIX = "reconciliation/"
_EMPTY = Ledger.from_item(None)


def reconcile_rows(*, cs_state_table: str, municipalities: Mapping[str, str], month: str,
                   prefecture: Callable[[str], Ledger] | None,
                   national: Callable[[str], Ledger] | None) -> list[ReconciliationRow]:
    """One row per municipality (code → name) for ``month`` (``YYYY-MM``, Japan time). A tier not
    given (None) or a CS table not given ("") leaves its columns at zero."""
    rows = []
    for code, name in sorted(municipalities.items()):
        stats = CsState(cs_state_table, code).month_stats(month) if cs_state_table else {}
        at_prefecture = prefecture(code) if prefecture else _EMPTY
        at_national = national(code) if national else _EMPTY
        rows.append(ReconciliationRow(
            municipality=code, name=name, month=month,
            sent=stats.get("sent", 0), rejected=stats.get("rejected", 0),
            stored_prefecture=at_prefecture.stored_in(month), stored_national=at_national.stored_in(month),
            dead_lettered_prefecture=at_prefecture.dead_in(month), dead_lettered_national=at_national.dead_in(month),
            gaps_prefecture=at_prefecture.gaps, gaps_national=at_national.gaps,
            redriven_prefecture=at_prefecture.redriven_in(month), redriven_national=at_national.redriven_in(month),
        ))
    return rows


def ledgers_of(table: str) -> Callable[[str], Ledger]:
    """The ledger reader of one identity table. Counting reads no facts: the identity store is
    never asked for a data key."""
    store = IdentityStore(table, DataKeys("unused", {}))
    return store.ledger


def months_to_reconcile(now: dt.datetime) -> list[str]:
    """The previous day's month (to date) and the previous month, Japan time (one month on the 1st)."""
    yesterday = today_jst(now) - dt.timedelta(days=1)
    first = today_jst(now).replace(day=1)
    return sorted({yesterday.strftime("%Y-%m"), (first - dt.timedelta(days=1)).strftime("%Y-%m")})


@dataclass(frozen=True)
class CountSource:
    """The municipalities (code → name) one CS state table counts, and the identity table of the
    prefecture tier they send to (read by the national tier). No CS table (""): the counts are in
    another account, not read (decision 0030)."""

    cs_state_table: str
    municipalities: Mapping[str, str]
    prefecture_table: str = ""


@dataclass
class ReconciliationRun:
    at: dt.datetime
    tier: str
    months: list[str]
    rows: list[ReconciliationRow] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> list[ReconciliationRow]:
        return [r for r in self.rows if not r.in_flight and r.problems_at(self.tier)]


class ScheduledReconciliation:
    """One processing tier's nightly reconciliation: rows, metric, report."""

    def __init__(self, *, tier: str, table: str, sources: Sequence[CountSource], reports: ReportStore,
                 clock: Clock, tier_name: str = "", bound: dt.timedelta = GAP_ALARM_AFTER,
                 ledger_of: Callable[[str], Callable[[str], Ledger]] = ledgers_of) -> None:
        if tier not in (PREFECTURE, NATIONAL):
            raise ValueError(f"tier {tier!r} must be {PREFECTURE!r} or {NATIONAL!r}")
        self.tier, self.table, self.sources, self.reports = tier, table, tuple(sources), reports
        self.clock, self.bound, self.tier_name = clock, bound, tier_name or tier
        self._ledger_of = ledger_of

    def run(self, now: dt.datetime | None = None) -> ReconciliationRun:
        now = now or self.clock()
        run = ReconciliationRun(now, self.tier, months_to_reconcile(now))
        read_own = self._ledger_of(self.table)
        cache: dict[str, Ledger] = {}

        def own(code: str) -> Ledger:  # one read per municipality per run
            if code not in cache:
                cache[code] = read_own(code)
            return cache[code]
        for source in self.sources:
            below = self._ledger_of(source.prefecture_table) if source.prefecture_table else None
            prefecture, national = (own, None) if self.tier == PREFECTURE else (below, own)
            for month in run.months:
                rows = reconcile_rows(cs_state_table=source.cs_state_table, municipalities=source.municipalities,
                                      month=month, prefecture=prefecture, national=national)
                for row in rows:
                    self._judge(row, source, own(row.municipality), now)
                run.rows += rows
        run.rows.sort(key=lambda r: (r.month, r.municipality))
        self._write(run)
        self._report(run)
        return run

    def _judge(self, row: ReconciliationRow, source: CountSource, own: Ledger, now: dt.datetime) -> None:
        """In flight if the CS's last file is younger than the bound; young gaps are not judged."""
        if source.cs_state_table:
            _, last_sent = CsState(source.cs_state_table, row.municipality).last_sent(row.month)
            row.in_flight = last_sent is not None and now - last_sent < self.bound
        aged = [(a, b) for a, b, _ in own.aged_gaps(now, self.bound)]
        if self.tier == PREFECTURE:
            row.gaps_prefecture = aged
        else:
            row.gaps_national = aged

    def _write(self, run: ReconciliationRun) -> None:
        day = (today_jst(run.at) - dt.timedelta(days=1)).isoformat()
        title = f"Reconciliation of update notices — {self.tier_name} — {day}"
        stamp = run.at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        base = f"{REPORT_PREFIX}{day}"
        markdown = as_markdown(run.rows, self.tier, title=title, judged=run.months, generated_at=stamp)
        run.keys = [self.reports.put(f"{base}.md", markdown, "text/markdown; charset=utf-8"),
                    self.reports.put(f"{base}.csv", as_csv(run.rows, self.tier), "text/csv; charset=utf-8")]

    def _report(self, run: ReconciliationRun) -> None:
        for r in run.mismatches:
            logger.warning("reconciliation mismatch", extra={"municipality": r.municipality, "month": r.month,
                                                             "problems": r.problems_at(run.tier)})
        logger.info("reconciliation", extra={"months": run.months, "rows": len(run.rows),
                                             "mismatches": len(run.mismatches), "reports": run.keys,
                                             "at": run.at.isoformat()})
        metrics.set_timestamp(run.at)
        metrics.add_metric(name="ReconciliationMismatches", unit=MetricUnit.Count, value=len(run.mismatches))

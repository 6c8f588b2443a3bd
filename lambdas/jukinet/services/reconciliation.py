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

The **channel between municipalities** (decision 0047): the prefecture tier also reconciles
its municipalities' requests on the channel, read from its municipality tier's table — every
request answered, refused, timed out or still within its deadline (``domain.channel.reconcile``)
— and reports what each answered and refused as the home municipality. The national tier
routes channel messages but keeps no request, so it has no channel rows.

Each run emits ``ReconciliationMismatches`` (municipality-months that do not balance at this
tier, notice rows and channel rows; 0 when all is well; alarm ``reconciliation-mismatches``),
stamped with the evaluated instant, and writes the report as Markdown and CSV to the tier's
security-reports bucket: ``reconciliation/<previous day>.md`` and ``.csv``, and with channel
rows ``reconciliation/<previous day>-channel.csv`` (the bucket is versioned: a re-run keeps the
earlier copy).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..adapters.channel_store import ChannelStore
from ..adapters.cs_state import CsState
from ..adapters.identity_store import IdentityStore
from ..adapters.kms import DataKeys
from ..adapters.reports import ReportStore
from ..clock import Clock, today_jst
from ..domain import channel
from ..domain.channel import ChannelRow
from ..domain.ledger import GAP_ALARM_AFTER, Ledger
from ..domain.reconciliation import NATIONAL, PREFECTURE, ReconciliationRow, as_csv, as_markdown
from ..observability import MetricUnit, logger, metrics

REPORT_PREFIX = "reconciliation/"
CHANNEL_CSV_SUFFIX = "-channel.csv"  # reconciliation/<day>-channel.csv: the channel rows (prefecture tier)
_EMPTY = Ledger()


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


def channel_rows(*, channel_table: str, municipalities: Mapping[str, str], month: str,
                 now: dt.datetime) -> list[ChannelRow]:
    """The channel's row of each municipality (code → name) for ``month``, read from its
    municipality tier's table (``adapters.channel_store``): the requests it sent, each under its
    outcome at ``now`` (``domain.channel.reconcile``), and what it answered and refused as the
    home municipality. Two queries per municipality, both of counts and states only (the bodies
    in the items are ciphertext and are not read)."""
    store = ChannelStore(channel_table)
    rows = []
    for code, name in sorted(municipalities.items()):
        row = channel.reconcile(code, month, store.records(code, month), now)
        given = store.answers_given(code, month)
        rows.append(dataclasses.replace(row, name=name, answers_given=given.get("answer", 0),
                                        refusals_given=given.get("refusal", 0)))
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
    # The municipality tier's table holding these municipalities' channel records (read by the
    # prefecture tier only: decision 0047); "" when the deployment has no channel or it is elsewhere.
    channel_table: str = ""


@dataclass
class ReconciliationRun:
    at: dt.datetime
    tier: str
    months: list[str]
    rows: list[ReconciliationRow] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    channel: list[ChannelRow] = field(default_factory=list)

    @property
    def mismatches(self) -> list[ReconciliationRow]:
        return [r for r in self.rows if not r.in_flight and r.problems_at(self.tier)]

    @property
    def channel_mismatches(self) -> list[ChannelRow]:
        return [r for r in self.channel if r.problems]


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
                if source.channel_table and self.tier == PREFECTURE:
                    run.channel += channel_rows(channel_table=source.channel_table,
                                                municipalities=source.municipalities, month=month, now=now)
        run.rows.sort(key=lambda r: (r.month, r.municipality))
        run.channel.sort(key=lambda r: (r.month, r.municipality))
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
        if run.channel:
            markdown += "\n" + "\n".join(channel.rows_as_markdown(run.channel))
        run.keys = [self.reports.put(f"{base}.md", markdown, "text/markdown; charset=utf-8"),
                    self.reports.put(f"{base}.csv", as_csv(run.rows, self.tier), "text/csv; charset=utf-8")]
        if run.channel:
            run.keys.append(self.reports.put(f"{base}{CHANNEL_CSV_SUFFIX}", channel.rows_as_csv(run.channel),
                                             "text/csv; charset=utf-8"))

    def _report(self, run: ReconciliationRun) -> None:
        for r in run.mismatches:
            logger.warning("reconciliation mismatch", extra={"municipality": r.municipality, "month": r.month,
                                                             "problems": r.problems_at(run.tier)})
        for c in run.channel_mismatches:
            logger.warning("reconciliation mismatch", extra={"municipality": c.municipality, "month": c.month,
                                                             "problems": c.problems})
        mismatches = len(run.mismatches) + len(run.channel_mismatches)
        logger.info("reconciliation", extra={"months": run.months, "rows": len(run.rows),
                                             "channel_rows": len(run.channel), "mismatches": mismatches,
                                             "reports": run.keys, "at": run.at.isoformat()})
        metrics.set_timestamp(run.at)
        metrics.add_metric(name="ReconciliationMismatches", unit=MetricUnit.Count, value=mismatches)

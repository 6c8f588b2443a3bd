"""The ledger watch (台帳の見張り): every five minutes, per processing tier, what the tier's
ledgers say about notices that should have arrived and have not.

* **Aged sequence gaps.** A gap in a municipality's sequence numbers that has been open for
  ``GAP_ALARM_AFTER`` (15 minutes) or longer, by the instant the ledger recorded it first
  (``Ledger.gap_since``). The processor reports the same when a later message touches the
  ledger; the watch reports it when nothing does. A younger gap is a later message overtaking
  an earlier one on a standard queue: never alarmed.
* **Notices overdue.** For the current and the previous month (Japan time), a municipality
  whose CS counted more notices sent than this tier accounts for — stored or dead-lettered
  here, or dead-lettered by a tier below (the prefecture, seen from the national tier) — when
  its last file of that month was sent at least ``GAP_ALARM_AFTER`` ago. A lost *last*
  message leaves no gap (nothing later shows the hole); this is how it is seen.

Metrics (dimensions ``{service, tier}`` like every handler metric): ``AgedSequenceGaps`` and
``NoticesOverdue`` (numbers missing, summed over municipalities; 0 when all is well), stamped
with the instant evaluated. Alarms ``sequence-gaps`` and ``notices-overdue``
(``docs/operations.md``); why here and not elsewhere: ``docs/decisions/0030-*``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..adapters.cs_state import CsState
from ..adapters.identity_store import IdentityStore
from ..clock import Clock, month_jst
from ..domain.ledger import GAP_ALARM_AFTER, Ledger
from ..domain.notice import JST
from ..observability import MetricUnit, logger, metrics


@dataclass(frozen=True)
class WatchedSource:
    """The municipalities one CS state table counts, and the identity tables of the tiers
    between their CS and this tier (their dead letters never reach this tier). No table (""):
    the counts are in another account; only the gaps are watched."""

    cs_state_table: str
    municipalities: tuple[str, ...]
    tiers_below: tuple[str, ...] = ()


@dataclass
class Finding:
    municipality: str
    aged_gaps: list[tuple[int, int, str]] = field(default_factory=list)
    overdue: dict[str, int] = field(default_factory=dict)  # month → notices sent, not accounted for

    @property
    def aged_missing(self) -> int:
        return sum(b - a + 1 for a, b, _ in self.aged_gaps)


@dataclass
class WatchResult:
    at: dt.datetime
    municipalities: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def aged_missing(self) -> int:
        return sum(f.aged_missing for f in self.findings)

    @property
    def overdue(self) -> int:
        return sum(sum(f.overdue.values()) for f in self.findings)


def months_to_watch(now: dt.datetime) -> tuple[str, str]:
    """This month and the previous one, Japan time (a month's last file may be lost at its end)."""
    first = now.astimezone(JST).replace(day=1)
    return month_jst(first - dt.timedelta(days=1)), month_jst(now)


class LedgerWatch:
    def __init__(self, store: IdentityStore, sources: Sequence[WatchedSource], *, clock: Clock,
                 bound: dt.timedelta = GAP_ALARM_AFTER,
                 ledger_of: Callable[[str, str], Ledger] | None = None) -> None:
        self.store = store
        self.sources = tuple(sources)
        self.clock = clock
        self.bound = bound
        self._ledger_of = ledger_of or (lambda table, code: IdentityStore(table, store.data_keys).ledger(code))

    def sweep(self, now: dt.datetime | None = None) -> WatchResult:
        now = now or self.clock()
        result = WatchResult(now)
        months = months_to_watch(now)
        for source in self.sources:
            for code in source.municipalities:
                result.municipalities += 1
                ledger = self.store.ledger(code)
                finding = Finding(code, aged_gaps=ledger.aged_gaps(now, self.bound))
                if not source.cs_state_table:
                    if finding.aged_gaps:  # counts kept in another account: gaps only (decision 0030)
                        result.findings.append(finding)
                    continue
                below = [self._ledger_of(table, code) for table in source.tiers_below]
                state = CsState(source.cs_state_table, code)
                for month in months:
                    sent, last_sent = state.last_sent(month)
                    if not sent or last_sent is None or now - last_sent < self.bound:
                        continue  # nothing sent, or still in flight
                    accounted = ledger.stored_in(month) + ledger.dead_in(month) + sum(b.dead_in(month) for b in below)
                    if sent > accounted:
                        finding.overdue[month] = sent - accounted
                if finding.aged_gaps or finding.overdue:
                    result.findings.append(finding)
        self._report(result)
        return result

    def _report(self, result: WatchResult) -> None:
        for f in result.findings:
            logger.warning("notices missing", extra={"municipality": f.municipality, "aged_gaps": f.aged_gaps[:20],
                                                     "aged_missing": f.aged_missing, "overdue": f.overdue})
        logger.info("ledger watch", extra={"municipalities": result.municipalities, "aged_missing": result.aged_missing,
                                           "overdue": result.overdue, "at": result.at.isoformat()})
        metrics.set_timestamp(result.at)
        metrics.add_metric(name="AgedSequenceGaps", unit=MetricUnit.Count, value=result.aged_missing)
        metrics.add_metric(name="NoticesOverdue", unit=MetricUnit.Count, value=result.overdue)

"""A tier's ledger of one municipality (台帳): which sequence numbers arrived, which are
missing and since when, and how many notices were stored, dead-lettered and redriven per
month. Pure logic: the identity table stores it (``adapters/identity_store.py``
``ledger_attributes``/``ledger_from_item``); the tier processor, the ledger watch and
reconciliation read it.

Sequence numbers start at 1 per municipality; a number below the highest received that has
not arrived is a gap. A gap keeps the instant it was first seen missing (``gap_since``) while
its neighbours arrive; only one open ``GAP_ALARM_AFTER`` or longer is alarmed (a younger one
is out-of-order delivery; docs/decisions/0030-*).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

GAP_ALARM_AFTER = dt.timedelta(minutes=15)
"""A gap open this long or longer is alarmed (``AgedSequenceGaps``); the alarm's text in
``infra/stacks/processing.py`` takes its minutes from here."""


@dataclass(frozen=True)
class Ledger:
    """What a tier has from one municipality: sequence runs received, notices stored per
    month, notices dead-lettered per month, since when each open gap has been seen
    (``gap_since``: (first, last, ISO UTC instant) per missing range; a range keeps the
    instant it was first seen missing while its neighbours arrive — docs/decisions/0030-*),
    and — per month — the dead-lettered notices that an operator redrove (``jukinet redrive``)
    and this tier then processed: they left ``dead`` when they came back, so each notice
    counts once (stored, or dead-lettered again)."""

    version: int = 0
    runs: tuple[tuple[int, int], ...] = ()
    stored: tuple[tuple[str, int], ...] = ()
    dead: tuple[tuple[str, int], ...] = ()
    redriven: tuple[tuple[str, int], ...] = ()
    gap_since: tuple[tuple[int, int, str], ...] = ()

    @property
    def gaps(self) -> list[tuple[int, int]]:
        return gaps_in(self.runs)

    def aged_gaps(self, now: dt.datetime, bound: dt.timedelta) -> list[tuple[int, int, str]]:
        """The missing ranges first seen at least ``bound`` before ``now``. A gap recorded by a
        ledger written before gaps had times counts as seen at the epoch (old)."""
        limit = now - bound
        return [(a, b, t) for a, b, t in self._timed_gaps() if _instant(t) <= limit]

    def aged_missing(self, now: dt.datetime, bound: dt.timedelta) -> int:
        return sum(b - a + 1 for a, b, _ in self.aged_gaps(now, bound))

    def _timed_gaps(self) -> list[tuple[int, int, str]]:
        return _gap_times(self.gap_since, self.gaps, _EPOCH)

    def stored_in(self, month: str) -> int:
        return dict(self.stored).get(month, 0)

    def dead_in(self, month: str) -> int:
        return dict(self.dead).get(month, 0)

    def redriven_in(self, month: str) -> int:
        return dict(self.redriven).get(month, 0)

    def covers(self, seq: int) -> bool:
        return any(first <= seq <= last for first, last in self.runs)

    def add(self, stored: list[tuple[int, str]], received: list[int], now: dt.datetime | None = None) -> Ledger:
        """``now``: when the batch arrived; a gap it opens is recorded as first seen then."""
        counts = dict(self.stored)
        seen: set[int] = set()
        for seq, month in stored:
            if seq not in seen and not self.covers(seq):
                counts[month] = counts.get(month, 0) + 1
            seen.add(seq)
        runs = tuple(_merge_runs([*self.runs, *_runs(sorted(seen | set(received)))]))
        stamp = _stamp(now) if now is not None else _EPOCH
        since = tuple(_gap_times(self.gap_since, gaps_in(runs), stamp))
        candidate = dataclasses.replace(self, runs=runs, stored=tuple(sorted(counts.items())), gap_since=since)
        return self if candidate == self else dataclasses.replace(candidate, version=self.version + 1)

    def add_dead(self, month: str, count: int) -> Ledger:
        dead = dict(self.dead)
        dead[month] = dead.get(month, 0) + count
        return dataclasses.replace(self, version=self.version + 1, dead=tuple(sorted(dead.items())))

    def release_dead(self, month: str, count: int) -> Ledger:
        """``count`` dead-lettered notices of ``month`` came back by a redrive and were processed:
        they no longer count as dead-lettered (what became of them counts where it belongs)."""
        dead, redriven = dict(self.dead), dict(self.redriven)
        dead[month] = max(0, dead.get(month, 0) - count)
        redriven[month] = redriven.get(month, 0) + count
        return dataclasses.replace(self, version=self.version + 1, dead=tuple(sorted(dead.items())),
                                   redriven=tuple(sorted(redriven.items())))


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    return runs


def _merge_runs(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(runs):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


_EPOCH = "1970-01-01T00:00:00Z"


def _stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _gap_times(known: Iterable[tuple[int, int, str]], gaps: Iterable[tuple[int, int]],
               new: str) -> list[tuple[int, int, str]]:
    """Each number of ``gaps`` with the instant it was first seen missing: from ``known`` where
    a recorded range covers it, else ``new``. Adjacent numbers with the same instant are one
    range. Numbers that arrived since drop out (they are in no gap)."""
    known = sorted(known)
    out: list[tuple[int, int, str]] = []

    def put(a: int, b: int, t: str) -> None:
        if out and out[-1][2] == t and out[-1][1] + 1 == a:
            out[-1] = (out[-1][0], b, t)
        else:
            out.append((a, b, t))

    for first, last in gaps:
        at = first
        for a, b, t in known:
            if b < at or a > last:
                continue
            if a > at:
                put(at, a - 1, new)
            put(max(a, at), min(b, last), t)
            at = min(b, last) + 1
            if at > last:
                break
        if at <= last:
            put(at, last, new)
    return out


def gaps_in(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Missing numbers between 1 and the highest received, given received (first, last) runs."""
    gaps: list[tuple[int, int]] = []
    expected = 1
    for first, last in sorted(runs):
        if first > expected:
            gaps.append((expected, first - 1))
        expected = max(expected, last + 1)
    return gaps

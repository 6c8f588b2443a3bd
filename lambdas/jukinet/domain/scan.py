"""Scan detection (the rule, no AWS): is a recipient walking through the resident-code space?

Resident codes are 10 random digits and a check digit; about 125 million of the 10^10 bodies
are in use, so a recipient working from its own files meets codes that are far apart and
almost always known. Someone enumerating meets the opposite: codes whose bodies are close
together, and mostly "not found". Both are judged **per recipient over a sliding window**
(the current ``SLOT`` and the one before it: 10 to 20 minutes), across requests and batch
chunks, not per request:

- a code is *near* when another code of the window has a body at most ``NEAR`` away
  (consecutive codes, every second code, every tenth …). Bodies are kept only as blocks
  (``body // NEAR``): two bodies at most ``NEAR`` apart are in the same or adjacent blocks.
- the window is *suspect* when it holds at least ``NEAR_THRESHOLD`` near codes, or when at
  least ``MIN_ANSWERS`` answers were given and at least ``NOT_FOUND_PERCENT`` % of them were
  "not found".

False alarms: with ``n`` codes drawn at random in a window, about ``n² · 3·NEAR / 2·10^10`` of
them are near by chance — 0.24 for 10,000 codes, far below the threshold.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

SLOT = dt.timedelta(minutes=10)
NEAR = 16
NEAR_THRESHOLD = 10
MIN_ANSWERS = 20
NOT_FOUND_PERCENT = 50
MAX_BLOCKS = 20_000  # blocks kept per slot (~200 KB of the item's 400 KB); past it a slot only counts


def slot_of(now: dt.datetime) -> int:
    return int(now.timestamp()) // int(SLOT.total_seconds())


def block(code: str) -> int:
    return int(code[:10]) // NEAR


def blocks(codes: Iterable[str]) -> frozenset[int]:
    return frozenset(block(c) for c in codes if len(c) >= 10 and c[:10].isdigit())


def near_codes(codes: Iterable[str], seen: Iterable[int] = ()) -> int:
    """How many of ``codes`` have a near neighbour: another of ``codes``, or a block in ``seen``
    (the window's earlier codes)."""
    mine = [block(c) for c in dict.fromkeys(codes) if len(c) >= 10 and c[:10].isdigit()]
    counts = Counter(mine)
    earlier = set(seen)
    near = 0
    for b in mine:
        others = counts[b] - 1 + counts[b - 1] + counts[b + 1]
        if others or {b - 1, b, b + 1} & earlier:
            near += 1
    return near


@dataclass(frozen=True)
class Signal:
    """One request's contribution and the window's state after it."""

    near: int            # codes of this request with a near neighbour in the window
    window_near: int     # near codes in the whole window, this request included
    window_answers: int
    window_not_found: int

    @property
    def reasons(self) -> list[str]:
        found = []
        if self.window_near >= NEAR_THRESHOLD:
            found.append("near_codes")
        if self.window_answers >= MIN_ANSWERS and self.window_not_found * 100 >= NOT_FOUND_PERCENT * self.window_answers:
            found.append("not_found_ratio")
        return found

    @property
    def suspect(self) -> bool:
        return bool(self.reasons)


def judge(codes: list[str], *, seen: Iterable[int], earlier_near: int, answers: int, not_found: int) -> Signal:
    near = near_codes(codes, seen)
    return Signal(near=near, window_near=earlier_near + near, window_answers=answers, window_not_found=not_found)

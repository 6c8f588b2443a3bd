"""Scan detection (the rule, no AWS): is a recipient walking through the resident-code space?

Resident codes are 10 random digits and a check digit; about 125 million of the 10^10 bodies
are in use, so a recipient working from its own files meets codes that are far apart and
almost always known. Someone enumerating meets the opposite: codes whose bodies are close
together, and mostly "not found". Both are judged **per recipient over a sliding window**
(the current ``SLOT`` and the one before it: 10 to 20 minutes), across requests and batch
chunks, not per request:

- a code is *near* when another code of the window has a body at most ``NEAR`` away
  (consecutive codes, every second code, every tenth …). The same code asked for again (a
  client's retry) is not a neighbour of itself.
- the window is *suspect* when it holds at least ``NEAR_THRESHOLD`` near codes, or when at
  least ``MIN_ANSWERS`` answers were given and at least ``NOT_FOUND_PERCENT`` % of them were
  "not found".

False alarms: with ``n`` codes drawn at random in a window, about ``n² · NEAR / 10^10`` of them
are near by chance — 0.16 for 10,000 codes, far below the threshold.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

SLOT = dt.timedelta(minutes=10)
NEAR = 16
NEAR_THRESHOLD = 10
MIN_ANSWERS = 20
NOT_FOUND_PERCENT = 50
MAX_BODIES = 20_000  # bodies kept per slot (~250 KB of the item's 400 KB); past it a slot only counts


def slot_of(now: dt.datetime) -> int:
    return int(now.timestamp()) // int(SLOT.total_seconds())


def bodies(codes: Iterable[str]) -> frozenset[int]:
    """The 10-digit bodies of the well-formed codes (the check digit adds nothing)."""
    return frozenset(int(c[:10]) for c in codes if len(c) >= 10 and c[:10].isdigit())


def near_codes(codes: Iterable[str], seen: Iterable[int] = ()) -> int:
    """How many distinct ``codes`` have a near neighbour: another of ``codes``, or a body in
    ``seen`` (the window's earlier codes), at most ``NEAR`` away and not the code itself."""
    mine = bodies(codes)
    around = mine | frozenset(seen)
    return sum(1 for b in mine if any(b + d in around for d in range(-NEAR, NEAR + 1) if d))


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
        answers, missing = self.window_answers, self.window_not_found
        if answers >= MIN_ANSWERS and missing * 100 >= NOT_FOUND_PERCENT * answers:
            found.append("not_found_ratio")
        return found

    @property
    def suspect(self) -> bool:
        return bool(self.reasons)


def judge(codes: list[str], *, seen: Iterable[int], earlier_near: int, answers: int, not_found: int) -> Signal:
    near = near_codes(codes, seen)
    return Signal(near=near, window_near=earlier_near + near, window_answers=answers, window_not_found=not_found)

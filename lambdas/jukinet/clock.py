"""The one clock: every "now" in jukinet comes from the caller, or from here.

Library code (domain, adapters, services) never reads the wall clock itself: it takes a
``now`` argument, or a :data:`Clock` — a zero-argument callable returning an aware UTC
datetime — from whoever built it. Only the composition roots (the Lambda handlers' runtime
builders, the ``jukinet`` command, the embedded AWS) pass :func:`system_clock`; tests pass a
fixed clock (:func:`fixed`) or move the whole process's clock (``scripts/test-any-date``).

Japan time (JST, UTC+9, no daylight saving) decides days and months everywhere: a seal day,
a statistics month, an agreement's validity, a contract's expiry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from .domain.notice import JST

Clock = Callable[[], dt.datetime]
"""Returns the current instant as an aware datetime (UTC by convention)."""

__all__ = ["JST", "Clock", "fixed", "month_jst", "system_clock", "today_jst"]


def system_clock() -> dt.datetime:
    """The machine's clock, in UTC. Only composition roots pass this."""
    return dt.datetime.now(dt.UTC)


def fixed(instant: dt.datetime) -> Clock:
    """A clock that always says ``instant`` (which must be timezone-aware)."""
    if instant.tzinfo is None:
        raise ValueError("a clock's instant must be timezone-aware")
    value = instant.astimezone(dt.UTC)
    return lambda: value


def today_jst(now: dt.datetime) -> dt.date:
    """The date in Japan at ``now``."""
    return now.astimezone(JST).date()


def month_jst(now: dt.datetime) -> str:
    """The month in Japan at ``now``, as ``YYYY-MM``."""
    return now.astimezone(JST).strftime("%Y-%m")

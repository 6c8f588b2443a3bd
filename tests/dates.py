"""The fixed days and instants tests take their time from — never the machine's date.

``SYNTH_DAY`` is the day (JST) every test synthesizes the CDK app as of: it decides which
contractors' roles exist (the demo data's contract runs until 2027-04-01, decision: a test
assembly must not change when that day passes). Tests that need the clock to *run* (the
embedded AWS, alarms over time) use the process clock, which ``scripts/test-any-date``
moves to chosen instants for the whole process tree.
"""

from __future__ import annotations

import datetime as dt

from jukinet.clock import month_jst

SYNTH_DAY = dt.date(2026, 11, 26)


def months_jst(start: dt.datetime, end: dt.datetime) -> list[str]:
    """Every month in Japan (``YYYY-MM``) from ``start``'s to ``end``'s: what a test that ran on
    the process clock reads counts for, since its run may cross a month's end."""
    first, last = month_jst(start), month_jst(end)
    months = [first]
    while months[-1] < last:
        year, month = map(int, months[-1].split("-"))
        months.append(f"{year + month // 12}-{month % 12 + 1:02d}")
    return months

"""The fixed days and instants tests take their time from — never the machine's date.

``SYNTH_DAY`` is the day (JST) every test synthesizes the CDK app as of: it decides which
contractors' roles exist (the demo data's contract runs until 2027-04-01, decision: a test
assembly must not change when that day passes). Tests that need the clock to *run* (the
embedded AWS, alarms over time) use the process clock, which ``scripts/test-any-date``
moves to chosen instants for the whole process tree.
"""

from __future__ import annotations

import datetime as dt

SYNTH_DAY = dt.date(2026, 11, 26)

"""Reconciliation rules (``domain.reconciliation``) and which months the nightly run reconciles
(``services.reconciliation.months_to_reconcile``; decision 0033)."""

from __future__ import annotations

import csv
import datetime as dt
import io

from hypothesis import given
from hypothesis import strategies as st

from jukinet.domain.notice import JST
from jukinet.domain.reconciliation import NATIONAL, PREFECTURE, ReconciliationRow, as_csv, as_markdown
from jukinet.services.reconciliation import months_to_reconcile

counts = st.integers(min_value=0, max_value=50)
gaps = st.lists(st.tuples(st.integers(1, 9), st.integers(10, 20)), max_size=2)


@st.composite
def rows(draw) -> ReconciliationRow:
    return ReconciliationRow(
        municipality="202011", name="長野市", month="2027-03", sent=draw(counts), rejected=draw(counts),
        stored_prefecture=draw(counts), stored_national=draw(counts), dead_lettered_prefecture=draw(counts),
        dead_lettered_national=draw(counts), gaps_prefecture=draw(gaps), gaps_national=draw(gaps))


@given(rows())
def test_each_equation_has_exactly_one_owning_tier(row):
    """The prefecture answers for sent = stored + dead there and its gaps, the national tier for
    the second equation and its gaps; together they are every problem, each once."""
    pref, nat = row.problems_at(PREFECTURE), row.problems_at(NATIONAL)
    assert row.problems == pref + nat
    assert bool(pref) == (row.sent != row.stored_prefecture + row.dead_lettered_prefecture
                          or bool(row.gaps_prefecture))
    assert bool(nat) == (row.stored_prefecture != row.stored_national + row.dead_lettered_national
                         or bool(row.gaps_national))


@given(st.lists(rows(), max_size=4), st.sampled_from([PREFECTURE, NATIONAL]))
def test_the_csv_report_says_what_the_rules_say(rs, tier):
    parsed = list(csv.DictReader(io.StringIO(as_csv(rs, tier))))
    assert [r["balanced"] == "true" for r in parsed] == [not r.problems_at(tier) for r in rs]
    assert [int(r["sent"]) for r in parsed] == [r.sent for r in rs]
    # The prefecture does not read the national tier: its report leaves those cells empty.
    assert all((r["stored_national"] == "") == (tier == PREFECTURE) for r in parsed)
    md = as_markdown(rs, tier, title="t", judged=["2027-03"], generated_at="now")
    assert f"**Mismatches: {sum(1 for r in rs if r.problems_at(tier))}**" in md


def test_in_flight_rows_are_shown_not_counted():
    row = ReconciliationRow("202011", "長野市", "2027-03", sent=3, in_flight=True)
    md = as_markdown([row], PREFECTURE, title="t", judged=["2027-03"], generated_at="now")
    assert "**Mismatches: 0**" in md and "in flight" in md


def test_the_previous_days_month_and_the_previous_month_in_japan_time():
    at = lambda y, m, d, h: dt.datetime(y, m, d, h, 30, tzinfo=JST)  # noqa: E731
    assert months_to_reconcile(at(2027, 3, 15, 1)) == ["2027-02", "2027-03"]
    assert months_to_reconcile(at(2027, 3, 1, 1)) == ["2027-02"]  # on the 1st: yesterday's month is last month
    assert months_to_reconcile(at(2027, 1, 2, 1)) == ["2026-12", "2027-01"]
    # 16:30 UTC on 31 March is 01:30 JST on 1 April: Japan's calendar decides.
    assert months_to_reconcile(dt.datetime(2027, 3, 31, 16, 30, tzinfo=dt.UTC)) == ["2027-03"]

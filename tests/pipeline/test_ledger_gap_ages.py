"""The ledger remembers since when each missing range has been missing (``Ledger.gap_since``):
the ``sequence-gaps`` alarm judges a gap by that age, so out-of-order delivery stays quiet."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from jukinet.adapters.identity_store import Ledger, gaps_in

T0 = dt.datetime(2027, 3, 31, 14, 50, tzinfo=dt.UTC)  # 23:50 JST on the last day of a March
BOUND = dt.timedelta(minutes=15)


def arrive(ledger: Ledger, seqs: list[int], at: dt.datetime) -> Ledger:
    return ledger.add([(s, "2027-03") for s in seqs], [], at)


def test_a_gap_keeps_the_instant_it_was_first_seen_while_its_neighbours_arrive():
    ledger = arrive(Ledger(), [1, 2, 10], T0)  # 3–9 missing since T0
    ledger = arrive(ledger, [5], T0 + dt.timedelta(minutes=10))  # splits the gap: both halves keep T0
    assert ledger.gap_since == ((3, 4, "2027-03-31T14:50:00Z"), (6, 9, "2027-03-31T14:50:00Z"))
    ledger = arrive(ledger, [20], T0 + dt.timedelta(minutes=12))  # 11–19 new, younger
    assert ledger.aged_missing(T0 + dt.timedelta(minutes=14), BOUND) == 0
    assert ledger.aged_gaps(T0 + dt.timedelta(minutes=15), BOUND) == [(3, 4, "2027-03-31T14:50:00Z"),
                                                                      (6, 9, "2027-03-31T14:50:00Z")]
    assert ledger.aged_missing(T0 + dt.timedelta(minutes=27), BOUND) == 2 + 4 + 9


def test_a_gap_that_closes_within_the_bound_never_ages():
    ledger = arrive(Ledger(), [1, 3], T0)
    ledger = arrive(ledger, [2], T0 + dt.timedelta(minutes=1))
    assert ledger.gaps == [] and ledger.gap_since == ()
    assert ledger.aged_missing(T0 + dt.timedelta(days=30), BOUND) == 0


def test_gap_times_survive_the_item_form_and_a_redelivery_changes_nothing():
    ledger = arrive(Ledger(), [1, 4], T0)
    again = Ledger.from_item({"pk": {"S": "x"}, **ledger.to_attributes()})
    assert again == ledger
    assert arrive(again, [4], T0 + dt.timedelta(hours=1)) == ledger  # a duplicate: no new version


@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 30)), min_size=1, max_size=40))
def test_gap_since_covers_exactly_the_gaps_with_the_instant_each_number_was_first_missing(arrivals):
    """Any arrival order (with duplicates): ``gap_since`` lists exactly the missing numbers, each
    with the first instant at which it was below the highest received and absent."""
    ledger, received, first_missing = Ledger(), set(), {}
    for i, (seq, _) in enumerate(arrivals):
        at = T0 + dt.timedelta(minutes=i)
        ledger = arrive(ledger, [seq], at)
        received.add(seq)
        for n in range(1, max(received)):
            if n not in received:
                first_missing.setdefault(n, at)
            else:
                first_missing.pop(n, None)
    timed = {n: t for a, b, t in ledger.gap_since for n in range(a, b + 1)}
    assert set(timed) == {n for a, b in gaps_in(ledger.runs) for n in range(a, b + 1)}
    assert {n: dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for n, t in timed.items()} == first_missing

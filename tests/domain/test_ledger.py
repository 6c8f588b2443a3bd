"""The ledger (``jukinet.domain.ledger``), pure: each sequence number counted once, gaps are
the numbers missing below the highest received, and the ledger remembers since when each
missing range has been missing (``Ledger.gap_since``): the ``sequence-gaps`` alarm judges a
gap by that age, so out-of-order delivery stays quiet. Its item form is tested with the
identity store (tests/pipeline/test_identity_store.py)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from jukinet.domain.ledger import GAP_ALARM_AFTER, Ledger, gaps_in

T0 = dt.datetime(2027, 3, 31, 14, 50, tzinfo=dt.UTC)  # 23:50 JST on the last day of a March
BOUND = GAP_ALARM_AFTER


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


def test_a_redelivery_changes_nothing():
    ledger = arrive(Ledger(), [1, 4], T0)
    assert arrive(ledger, [4], T0 + dt.timedelta(hours=1)) == ledger  # a duplicate: no new version


def test_gaps_are_the_numbers_missing_below_the_highest_received():
    assert gaps_in([(1, 3), (6, 7), (9, 9)]) == [(4, 5), (8, 8)]
    assert gaps_in([(2, 2)]) == [(1, 1)]
    assert gaps_in([(5, 9), (1, 4)]) == []


def test_ledger_counts_each_sequence_number_once_whatever_the_redeliveries():
    ledger = Ledger().add([(1, "2003-01"), (2, "2003-01")], [])
    again = ledger.add([(2, "2003-01"), (1, "2003-01")], [])
    assert again == ledger and again.stored_in("2003-01") == 2
    later = ledger.add([(5, "2003-02")], [4])
    assert (later.stored_in("2003-02"), later.gaps) == (1, [(3, 3)])


def _numbers(ranges) -> set[int]:
    return {n for a, b, *_ in ranges for n in range(a, b + 1)}


@given(st.lists(st.lists(st.integers(1, 60), max_size=8), max_size=10))
def test_gaps_are_exactly_the_missing_numbers_and_each_stored_number_counts_once(batches):
    """Any batches, in any order, with redeliveries: the gaps are the numbers in 1..highest that
    never arrived (disjoint, ascending ranges), the stored count is the distinct numbers, and
    every number received is covered."""
    ledger = Ledger()
    for batch in batches:
        ledger = ledger.add([(s, "2027-03") for s in batch], [], T0)
    received = {s for batch in batches for s in batch}
    assert _numbers(ledger.gaps) == set(range(1, max(received, default=0) + 1)) - received
    assert all(a <= b for a, b in ledger.gaps) and ledger.gaps == sorted(ledger.gaps)
    assert all(prev[1] + 1 < nxt[0] for prev, nxt in zip(ledger.gaps, ledger.gaps[1:], strict=False))
    assert ledger.stored_in("2027-03") == len(received)
    assert all(ledger.covers(s) for s in received)


def _arrive_one_a_minute(arrivals: list[tuple[int, int]]) -> tuple[Ledger, dict[int, dt.datetime]]:
    """The ledger after ``arrivals`` (sequence numbers, one a minute from T0), and the model:
    each missing number with the first instant it was below the highest received and absent."""
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
    return ledger, first_missing


@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 40)), min_size=1, max_size=30),
       st.integers(0, 60))
def test_a_gap_is_aged_exactly_when_it_was_first_seen_at_least_the_bound_before_now(arrivals, later):
    """Arrivals one minute apart; at any instant after the last, ``aged_gaps`` lists exactly the
    missing numbers first seen missing at least ``GAP_ALARM_AFTER`` before it — a younger gap
    (out-of-order delivery) is never aged, and ``aged_missing`` counts those numbers."""
    ledger, first_missing = _arrive_one_a_minute(arrivals)
    now = T0 + dt.timedelta(minutes=len(arrivals) - 1 + later)
    expected = {n for n, at in first_missing.items() if at <= now - GAP_ALARM_AFTER}
    assert _numbers(ledger.aged_gaps(now, GAP_ALARM_AFTER)) == expected
    assert ledger.aged_missing(now, GAP_ALARM_AFTER) == len(expected)


@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 30)), min_size=1, max_size=40))
def test_gap_since_covers_exactly_the_gaps_with_the_instant_each_number_was_first_missing(arrivals):
    """Any arrival order (with duplicates): ``gap_since`` lists exactly the missing numbers, each
    with the first instant at which it was below the highest received and absent."""
    ledger, first_missing = _arrive_one_a_minute(arrivals)
    timed = {n: t for a, b, t in ledger.gap_since for n in range(a, b + 1)}
    assert set(timed) == {n for a, b in gaps_in(ledger.runs) for n in range(a, b + 1)}
    assert {n: dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for n, t in timed.items()} == first_missing

"""The channel end to end against moto: a request from one municipality to another, within one
prefecture and across prefectures, through the handlers the event source mappings invoke."""

from __future__ import annotations

import datetime as dt

import pytest

from jukinet.domain.channel import Outcome
from jukinet.domain.errors import ValidationError

from .world import CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, TOKYO_PREF, UEDA, World, resident


def test_a_request_within_one_prefecture_is_answered_by_the_home_municipality(world: World) -> None:
    code = resident(1)
    world.register(code, MATSUMOTO)
    nagano = world.endpoint(NAGANO_PREF)
    correlation = nagano.request(NAGANO, MATSUMOTO, {"query": "resident-status", "resident_code": code})
    assert nagano.result(correlation).outcome is Outcome.PENDING
    world.now += dt.timedelta(seconds=1)
    world.pump()
    result = nagano.result(correlation)
    assert result.outcome is Outcome.ANSWERED
    assert result.answer == {"resident_code": code, "municipality": MATSUMOTO, "reason": "11", "active": True}
    # It went A's tier → prefecture → B's tier → prefecture → A's tier, never nationally.
    assert [q for q, _ in world.delivered] == ["pref-200000", "muni-200000", "pref-200000", "muni-200000"]


def test_a_request_across_prefectures_goes_through_the_national_tier(world: World) -> None:
    code = resident(2)
    world.register(code, CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    correlation = nagano.request(NAGANO, CHIYODA, {"query": "resident-status", "resident_code": code})
    world.pump()
    assert nagano.result(correlation).answer["municipality"] == CHIYODA
    assert [q for q, _ in world.delivered] == ["pref-200000", "national", "pref-130001", "muni-130001",
                                               "pref-130001", "national", "pref-200000", "muni-200000"]
    assert world.dead_letters("national") == world.dead_letters("pref-200000") == []


def test_the_home_municipality_refuses_with_a_code(world: World) -> None:
    world.register(resident(3), UEDA)
    nagano = world.endpoint(NAGANO_PREF)
    unknown = nagano.request(NAGANO, MATSUMOTO, {"query": "resident-status", "resident_code": resident(4)})
    elsewhere = nagano.request(NAGANO, MATSUMOTO, {"query": "resident-status", "resident_code": resident(3)})
    world.pump()
    assert (nagano.result(unknown).outcome, nagano.result(unknown).refusal) == (Outcome.REFUSED, "unknown_resident")
    assert nagano.result(elsewhere).refusal == "not_resident_here"


def test_what_the_routers_carry_is_ciphertext(world: World) -> None:
    code = resident(5)
    world.register(code, CHIYODA)
    world.endpoint(NAGANO_PREF).request(NAGANO, CHIYODA, {"query": "resident-status", "resident_code": code})
    world.pump()
    for queue, body in world.delivered:
        assert code not in body
        envelope = world.envelope_of(body)
        assert set(envelope) == {"channel", "kind", "from", "to", "correlation", "sent", "deadline", "key", "body"}


def test_a_request_lost_on_the_way_times_out_at_its_deadline(world: World) -> None:
    world.register(resident(6), MATSUMOTO)
    nagano = world.endpoint(NAGANO_PREF)
    correlation = nagano.request(NAGANO, MATSUMOTO, {"query": "resident-status", "resident_code": resident(6)},
                                 wait=dt.timedelta(seconds=10))
    world.pump(drop={"pref-200000"})
    assert nagano.result(correlation).outcome is Outcome.PENDING
    world.now += dt.timedelta(seconds=11)
    assert nagano.result(correlation).outcome is Outcome.TIMED_OUT


def test_an_answer_after_the_deadline_leaves_the_request_timed_out(world: World) -> None:
    world.register(resident(7), CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    correlation = nagano.request(NAGANO, CHIYODA, {"query": "resident-status", "resident_code": resident(7)},
                                 wait=dt.timedelta(seconds=10))
    world.pump(hold={"muni-200000"})  # answered by 千代田区, the answer waits before 長野市's tier
    world.now += dt.timedelta(seconds=11)
    world.pump()
    assert nagano.result(correlation).outcome is Outcome.TIMED_OUT
    assert nagano.reconcile(NAGANO, "2003-01").timed_out == 1


def test_every_message_delivered_twice_has_one_effect(world: World) -> None:
    world.register(resident(8), CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    correlation = nagano.request(NAGANO, CHIYODA, {"query": "resident-status", "resident_code": resident(8)})
    world.pump(duplicate=True)
    assert nagano.result(correlation).outcome is Outcome.ANSWERED
    assert world.endpoint(TOKYO_PREF).store.answers_given(CHIYODA, "2003-01") == {"answer": 1}
    assert nagano.reconcile(NAGANO, "2003-01").requested == 1


def test_reconciliation_every_request_answered_refused_or_timed_out_per_municipality_and_month(world: World) -> None:
    world.register(resident(21), MATSUMOTO)
    world.register(resident(22), CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    query = {"query": "resident-status"}
    nagano.request(NAGANO, MATSUMOTO, {**query, "resident_code": resident(21)})  # answered
    nagano.request(NAGANO, CHIYODA, {**query, "resident_code": resident(22)})  # answered, across prefectures
    nagano.request(NAGANO, MATSUMOTO, {**query, "resident_code": resident(29)})  # refused: unknown
    nagano.request(MATSUMOTO, CHIYODA, {**query, "resident_code": resident(22)})  # 松本市's own row
    world.pump()
    lost = nagano.request(NAGANO, CHIYODA, {**query, "resident_code": resident(22)}, wait=dt.timedelta(seconds=5))
    world.pump(drop={"national"})  # lost between the tiers
    assert nagano.reconcile(NAGANO, "2003-01").to_dict() == {
        "municipality": NAGANO, "month": "2003-01", "requested": 4, "answered": 2, "refused": 1, "timed_out": 0,
        "pending": 1, "unaccounted": 0, "answers_given": 0, "refusals_given": 0, "balanced": True}
    world.now += dt.timedelta(seconds=6)
    assert nagano.result(lost).outcome is Outcome.TIMED_OUT
    row = nagano.reconcile(NAGANO, "2003-01")
    assert (row.requested, row.answered, row.refused, row.timed_out, row.pending) == (4, 2, 1, 1, 0)
    assert nagano.reconcile(MATSUMOTO, "2003-01").answered == 1
    assert nagano.reconcile(NAGANO, "2003-02").requested == 0
    # The answering side's own count, per municipality and month.
    assert world.endpoint(TOKYO_PREF).store.answers_given(CHIYODA, "2003-01") == {"answer": 2}
    assert nagano.store.answers_given(MATSUMOTO, "2003-01") == {"answer": 1, "refusal": 1}


def test_a_retried_request_sends_the_same_bytes_and_records_once(world: World) -> None:
    world.register(resident(31), MATSUMOTO)
    nagano = world.endpoint(NAGANO_PREF)
    query = {"query": "resident-status", "resident_code": resident(31)}
    correlation = nagano.request(NAGANO, MATSUMOTO, query)
    world.now += dt.timedelta(seconds=1)
    assert nagano.request(NAGANO, MATSUMOTO, query, correlation=correlation) == correlation  # the caller retries
    world.pump()
    sent = [body for q, body in world.delivered if q == "pref-200000"]
    assert len(sent) == 4 and sent[0] == sent[1]  # two identical requests up, two identical answers back
    assert world.dead_letters("muni-200000") == []
    assert nagano.store.answers_given(MATSUMOTO, "2003-01") == {"answer": 1}
    assert nagano.reconcile(NAGANO, "2003-01").to_dict()["answered"] == 1
    with pytest.raises(ValidationError, match="unique"):
        nagano.request(NAGANO, CHIYODA, query, correlation=correlation)

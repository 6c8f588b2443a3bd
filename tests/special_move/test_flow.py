"""The special move-out (特例転出) at 上田市 and the special move-in (特例転入) at 松本市 through the
counter API, the channel and the home's records (moto): the flow, each refusal, timeouts,
exactly once under redelivery, the card carried over; the attacks."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from jukinet.domain import special_move as sm

from ..channel.world import CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, UEDA, resident
from ..copy.world import Person, counter
from .world import MoveWorld

TARO = Person(resident(21), "上田太郎", kana="ウエダタロウ", household="3001", relationship="01",
              householder="上田太郎")
HANAKO = Person(resident(22), "上田花子", kana="ウエダハナコ", sex="2", household="3001", relationship="02",
                householder="上田太郎")


def test_a_card_holder_moves_from_ueda_to_matsumoto_by_the_special_procedure(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    filed = world.filed_at_counter(TARO, chip)
    assert (filed["state"], filed["by_post"], filed["card_serial"]) == ("filed", False, chip.serial)
    assert filed["last_day"] == "2003-02-24"  # 30 days after the planned date
    certified = world.certified(TARO, chip)
    assert certified["status"] == "certified"
    cert = certified["certificate"]
    assert (cert["name"], cert["kana"], cert["birth_date"], cert["home_municipality"]) == (
        "上田太郎", "ウエダタロウ", "1970-01-01", UEDA)
    assert cert["registered_domicile"] == "長野県長野市大字鶴賀緑町1613番地"  # B's new record carries 本籍
    assert cert["planned_move_date"] == "2003-01-25" and cert["destination_address"] == "長野県松本市丸の内3番7号"
    assert "123456789018" not in json.dumps(cert)  # never the individual number
    assert world.move_out(TARO.code)[1]["state"] == "certificate_requested"
    status, registered = world.register_move_in(certified["correlation"])
    assert (status, registered["status"]) == (202, "moved_in")
    world.pump()
    status, done = world.move_in_result(certified["correlation"])
    assert (done["status"], done["card_carry_over"]) == ("completed", "moved")
    # A completed the move-out; the card is now 松本市's: one `moved` event, same serial.
    assert world.move_out(TARO.code)[1]["state"] == "completed"
    card = world.cards.card(chip.serial)
    assert (card.home, card.issuer, card.status.value) == (MATSUMOTO, UEDA, "active")
    events = world.cards.events(chip.serial)
    assert [e.kind.value for e in events][-1] == "moved" and events[-1].details == {"from": UEDA, "to": MATSUMOTO}
    assert sum(e.kind.value == "moved" for e in events) == 1
    # 松本市's counter now holds the card (it may suspend it); 上田市's no longer.
    assert world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"}, at=UEDA)[0] == 403
    assert world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"}, at=MATSUMOTO)[0] == 200
    # Reading again changes nothing; the calls and counts are recorded once.
    assert world.move_in_result(certified["correlation"])[1]["status"] == "completed"
    b = world.cards.statistics(MATSUMOTO, "2003-01")
    assert (b["special_move_in_requested"], b["special_move_in_certified"], b["special_move_in_completed"]) == (1, 1, 1)
    assert world.cards.statistics(UEDA, "2003-01")["special_move_out_filed"] == 1
    actions = {c["action"] for c in world.cards.calls(MATSUMOTO, "2003-01")}
    assert {"special_move_in_request", "special_move_in_result", "special_move_in_register"} <= actions
    assert "special_move_out_file" in {c["action"] for c in world.cards.calls(UEDA, "2003-01")}


def test_filed_by_post_is_marked_and_needs_no_card_present(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    status, filed = world.file(TARO.code, by_post=True)
    assert (status, filed["by_post"]) == (201, True)
    assert world.special_move(TARO, chip)["status"] == "completed"
    assert world.certified  # noqa: B018
    assert '"post"' in world.moves.latest(UEDA, TARO.code)[2]["proof"]


def test_the_filing_is_checked_against_the_tiers_own_register_and_card_table(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    status, body = world.file(TARO.code)  # at the counter without the card's authentication
    assert (status, body["error"]["field"]) == (400, "card_authentication")
    other_clerk = world.authenticate(chip, at=UEDA)
    status, body = world.file(TARO.code, auth=other_clerk, who=counter(UEDA, "clerk-2"))
    assert (status, body["error"]["code"]) == (403, "PROOF_NOT_VALID")
    world.live(UEDA, HANAKO)  # no card
    assert world.file(HANAKO.code, by_post=True)[1]["error"]["code"] == "CARD_NOT_FOUND"
    assert world.file(TARO.code, by_post=True, at=MATSUMOTO)[1]["error"]["code"] == "RESIDENT_NOT_ACTIVE"
    assert world.file(resident(99), by_post=True)[1]["error"]["code"] == "RESIDENT_NOT_ACTIVE"
    status, body = world.file(TARO.code, by_post=True, planned="2003-03-01")
    assert (status, body["error"]["field"], body["error"]["rule"]) == (400, "planned_move_date", "range")
    world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"}, at=UEDA)
    assert world.file(TARO.code, by_post=True)[1]["error"]["code"] == "CARD_SUSPENDED"
    world.call("POST", f"/v1/cards/{chip.serial}/resumption", {}, at=UEDA)
    assert world.file(TARO.code, by_post=True)[0] == 201
    assert world.file(TARO.code, by_post=True)[0] == 201  # the same filing again: the same record
    status, body = world.file(TARO.code, by_post=True, planned="2003-01-28")
    assert (status, body["error"]["rule"]) == (409, "one_open")
    assert world.cards.statistics(UEDA, "2003-01")["special_move_out_filed"] == 1


def test_a_request_for_a_resident_who_filed_no_special_move_out_is_refused(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    result = world.certified(TARO, chip)
    assert (result["status"], result["refusal"]) == ("refused", "no_special_move_out")
    assert world.cards.statistics(MATSUMOTO, "2003-01")["special_move_in_refused_no_special_move_out"] == 1
    assert world.register_move_in(result["correlation"])[1]["error"]["code"] == "INVALID_TRANSITION"


def test_cancellation_before_and_after_the_certificate(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    status, cancelled = world.cancel(TARO.code)
    assert (status, cancelled["state"]) == (200, "cancelled")
    assert world.certified(TARO, chip)["refusal"] == "cancelled"
    # filed again, certificate given, then cancelled at A: B's 転入通知 is refused
    world.later(minutes=5)
    world.file(TARO.code, by_post=True)
    certified = world.certified(TARO, chip)
    assert certified["status"] == "certified"
    assert world.cancel(TARO.code)[1]["state"] == "cancelled"
    world.register_move_in(certified["correlation"])
    world.pump()
    done = world.move_in_result(certified["correlation"])[1]
    assert (done["status"], done["refusal"]) == ("refused", "cancelled")
    assert world.cards.card(chip.serial).home == UEDA  # the card stays
    assert world.cancel(resident(99))[1]["error"]["code"] == "SPECIAL_MOVE_NOT_FOUND"


def test_after_completion_cancel_is_refused_and_another_municipality_is_told_already_moved_in(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    world.special_move(TARO, chip)
    status, body = world.cancel(TARO.code)
    assert (status, body["error"]["rule"]) == (409, "already_moved_in")
    # the card is 松本市's now: 長野市's counter naming 上田市 as home is refused at the counter …
    status, body = world.move_in_request(TARO.code, chip, at=NAGANO)
    assert (status, body["error"]["rule"]) == (400, "card_home")
    # … and a query that reaches 上田市 anyway (長野市's channel function, with an authentication its
    # counter made but never bound to a request) learns nothing of the move: the proof comes first
    nagano = world.endpoint(NAGANO_PREF)
    auth = world.authenticate(chip, at=NAGANO)
    query = sm.CertificateQuery(TARO.code, chip.serial, auth, dt.date(2003, 1, 20), "x").to_dict()
    correlation = nagano.request(NAGANO, UEDA, query)
    world.pump()
    assert nagano.result(correlation).refusal == "not_authenticated_here"


def test_a_card_other_than_the_filings_is_not_this_card(world: MoveWorld) -> None:
    old = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    new = world.card(TARO, UEDA)  # re-issued at 上田市 after the filing: the old card is revoked
    assert new.serial != old.serial
    result = world.certified(TARO, new)
    assert (result["status"], result["refusal"]) == ("refused", "not_this_card")
    assert world.move_out(TARO.code)[1]["state"] == "filed"


def test_the_legal_period(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    # moved 15 days ago: over 14 days after the move
    world.later(days=16)
    late = world.certified(TARO, chip, moved_on="2003-01-21")
    assert (late["status"], late["refusal"]) == ("refused", "period_expired")
    on_time = world.certified(TARO, chip, moved_on="2003-02-01")
    assert on_time["status"] == "certified"
    # the period ends 14 days after that move (2003-02-15, 00:00 JST the 16th): the record lapses
    world.now = dt.datetime(2003, 2, 15, 15, 0, tzinfo=dt.UTC)
    status, body = world.register_move_in(on_time["correlation"])
    assert (status, body["error"]["rule"]) == (409, "period_expired")
    assert world.move_out(TARO.code)[1]["state"] == "not_moved_in"  # certificate given, never completed


def test_a_filing_nobody_moves_in_on_expires(world: MoveWorld) -> None:
    world.holder(TARO)
    world.file(TARO.code, by_post=True)
    world.now = dt.datetime(2003, 2, 24, 14, 59, tzinfo=dt.UTC)  # the last day, 23:59 JST
    assert world.move_out(TARO.code)[1]["state"] == "filed"
    world.later(minutes=1)
    assert world.move_out(TARO.code)[1]["state"] == "expired"
    assert world.moves.latest(UEDA, TARO.code)[0].state is sm.State.EXPIRED  # written at that touch


def test_timeouts_the_request_and_the_notice(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    status, accepted = world.move_in_request(TARO.code, chip)
    world.pump(drop={"pref-200000"})  # lost between the tiers
    world.later(seconds=31)
    assert world.move_in_result(accepted["correlation"])[1]["status"] == "timed_out"
    assert world.cards.statistics(MATSUMOTO, "2003-01")["special_move_in_timed_out"] == 1
    # asked again: certified; the 転入通知 is lost: certified again, register again → completed
    certified = world.certified(TARO, chip)
    world.register_move_in(certified["correlation"])
    world.pump(drop={"pref-200000"})
    world.later(seconds=31)
    again = world.move_in_result(certified["correlation"])[1]
    assert (again["status"], again["notice"]) == ("certified", "timed_out")
    world.register_move_in(certified["correlation"])
    world.pump()
    assert world.move_in_result(certified["correlation"])[1]["status"] == "completed"


def test_exactly_once_when_every_message_is_delivered_twice(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    status, accepted = world.move_in_request(TARO.code, chip)
    world.pump(duplicate=True)
    assert world.move_in_result(accepted["correlation"])[1]["status"] == "certified"
    for _ in range(2):  # the clerk presses twice
        assert world.register_move_in(accepted["correlation"])[0] == 202
    world.pump(duplicate=True)
    assert world.move_in_result(accepted["correlation"])[1]["status"] == "completed"
    assert world.move_in_result(accepted["correlation"])[1]["status"] == "completed"
    assert sum(e.kind.value == "moved" for e in world.cards.events(chip.serial)) == 1
    b = world.cards.statistics(MATSUMOTO, "2003-01")
    assert (b["special_move_in_certified"], b["special_move_in_completed"]) == (1, 1)
    answers = world.endpoint(NAGANO_PREF).store.answers_given(UEDA, "2003-01")
    assert answers == {"answer": 2}  # one certificate, one 転入通知


def test_a_second_municipality_is_told_the_certificate_is_given_elsewhere(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    assert world.certified(TARO, chip)["status"] == "certified"
    elsewhere = world.certified(TARO, chip, at=NAGANO)
    assert elsewhere["refusal"] == "certificate_given_elsewhere"


# --- attacks -------------------------------------------------------------------------------------
def test_attack_municipality_c_asks_for_a_resident_who_never_came_to_its_counter(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    # at C's counter, without the card: no authentication of this resident by C's clerk
    auth_at_b = world.authenticate(chip, at=MATSUMOTO)
    status, body = world.move_in_request(TARO.code, None, at=NAGANO, auth=auth_at_b)
    assert (status, body["error"]["code"]) == (403, "PROOF_NOT_VALID")
    # C's channel function (an insider with its rights) sends the query itself, naming B's authentication
    nagano = world.endpoint(NAGANO_PREF)
    query = sm.CertificateQuery(TARO.code, chip.serial, auth_at_b, dt.date(2003, 1, 20), "forged").to_dict()
    correlation = nagano.request(NAGANO, UEDA, query)
    world.pump()
    result = nagano.result(correlation)
    assert (result.outcome.value, result.refusal) == ("refused", "not_authenticated_here")
    assert world.move_out(TARO.code)[1]["state"] == "filed"  # nothing given, nothing changed


def test_attack_a_replayed_request_or_notice_has_one_effect(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    world.delivered.clear()
    done = world.special_move(TARO, chip)
    assert done["status"] == "completed"
    requests = [b for q, b in world.delivered if q == "pref-200000" and world.envelope_of(b)["kind"] == "request"]
    assert len(requests) == 2  # the certificate request and the 転入通知
    world.delivered.clear()
    for body in requests * 2:  # an insider on the prefecture's queue replays them
        world.send("pref-200000", body)
    world.later(seconds=3)
    world.pump()
    assert world.endpoint(NAGANO_PREF).store.answers_given(UEDA, "2003-01") == {"answer": 2}
    assert sum(e.kind.value == "moved" for e in world.cards.events(chip.serial)) == 1
    assert world.move_out(TARO.code)[1]["state"] == "completed"


def test_attack_an_answer_altered_by_the_prefecture_is_refused_and_nothing_is_certified(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    status, accepted = world.move_in_request(TARO.code, chip)
    world.pump(hold={"pref-200000"})  # B's channel function sent the request to the prefecture
    [request] = world.sqs.receive_message(QueueUrl=world.queues["pref-200000"])["Messages"]
    world.sqs.delete_message(QueueUrl=world.queues["pref-200000"], ReceiptHandle=request["ReceiptHandle"])
    world.send("muni-200000", request["Body"])  # the prefecture carries the request down faithfully
    world.pump(hold={"pref-200000"})  # A answers: the answer waits at the prefecture
    [held] = world.sqs.receive_message(QueueUrl=world.queues["pref-200000"])["Messages"]
    world.sqs.delete_message(QueueUrl=world.queues["pref-200000"], ReceiptHandle=held["ReceiptHandle"])
    wire = json.loads(held["Body"])
    envelope = json.loads(base64.b64decode(wire["payload"]))
    assert envelope["kind"] == "answer"
    sealed = bytearray(base64.b64decode(envelope["body"]))
    sealed[-1] ^= 1
    envelope["body"] = base64.b64encode(bytes(sealed)).decode()
    wire["payload"] = base64.b64encode(json.dumps(envelope, separators=(",", ":")).encode()).decode()
    world.send("muni-200000", json.dumps(wire))
    world.pump()
    [dead] = world.dead_letters("muni-200000")
    assert dead["jukinet.reason"] == "signature_invalid"
    assert world.move_in_result(accepted["correlation"])[1]["status"] == "requested"
    world.later(seconds=31)
    assert world.move_in_result(accepted["correlation"])[1]["status"] == "timed_out"


def test_attack_a_clerk_of_another_municipality_reads_or_registers_by_correlation(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    certified = world.certified(TARO, chip)
    assert world.move_in_result(certified["correlation"], at=NAGANO)[1]["error"]["code"] == "NOT_THIS_MUNICIPALITY"
    assert world.register_move_in(certified["correlation"], at=NAGANO)[1]["error"]["code"] == "NOT_THIS_MUNICIPALITY"


def test_attack_a_tier_of_another_prefecture_gets_no_certificate_without_its_challenge(world: MoveWorld) -> None:
    chip = world.holder(TARO)
    world.file(TARO.code, by_post=True)
    # 千代田区's channel function (東京都's tier) asks with the card's serial and no challenge
    # 長野県's tier issued to it (or a made-up one): nothing is given (not the certificate, not the
    # state). The whole cross-prefecture move: tests/card_across/test_special_move.py
    tokyo = world.endpoint("130001")
    for home_challenge in ("", "c" * 32):
        query = sm.CertificateQuery(TARO.code, chip.serial, "b" * 32, dt.date(2003, 1, 20), "x",
                                    home_challenge).to_dict()
        correlation = tokyo.request(CHIYODA, UEDA, query)
        world.pump()
        assert tokyo.result(correlation).refusal == "not_authenticated_here"
    assert world.move_out(TARO.code)[1]["state"] == "filed"


def test_the_within_tier_carry_over_leaves_a_card_of_two_tiers_alone(world: MoveWorld) -> None:
    from jukinet.services.special_move import carry_over_card
    from jukinet.handlers import card_runtime
    from ..pipeline.harness import environment
    chip = world.holder(TARO)
    with environment(world.counter_env(NAGANO_PREF)):
        cards = card_runtime.runtime()
    # across tiers the record is copied through the channel (SpecialMoves._carry_across), not moved here
    assert carry_over_card(cards, chip.serial, UEDA, CHIYODA, actor="x", now=world.now) == "other_tier"
    assert world.cards.card(chip.serial).home == UEDA


@pytest.mark.parametrize("home", [MATSUMOTO, "200000"])
def test_the_move_in_request_is_checked(world: MoveWorld, home: str) -> None:
    chip = world.holder(TARO)
    status, body = world.move_in_request(TARO.code, chip, home=home)
    assert status == 400
    status, body = world.move_in_request(TARO.code, chip, moved_on="2003-01-21")
    assert (status, body["error"]["field"]) == (400, "moved_on")

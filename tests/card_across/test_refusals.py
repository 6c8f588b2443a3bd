"""Every refusal of an authentication across tiers, with the codes of the within-tier path, and
the attacks (decision 0050): a counter relaying another counter's challenge, a replayed answer
through the channel, a router altering the answer, a card with another key."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from jukinet.adapters.card_store import CardStore
from jukinet.domain.card import CardLocked, VirtualCard, WrongPin

from ..channel.world import CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, TOKYO_PREF, UEDA, resident
from ..copy.world import Person, counter
from .world import CrossWorld

TARO = Person(resident(31), "信濃太郎")
HOME = f"jukinet-cards-{NAGANO_PREF}"
HERE = f"jukinet-cards-{TOKYO_PREF}"


def refused_at_x(world: CrossWorld, code: str) -> int:
    return CardStore(HERE).statistics(CHIYODA, "2003-01").get(f"auth_refused_{code}", 0)


def refused_at_home(world: CrossWorld, action: str, code: str) -> int:
    return CardStore(HOME).statistics(NAGANO, "2003-01").get(f"remote_{action}_{code}", 0)


def suspend(world: CrossWorld, serial: str) -> None:
    status, body = world.call("POST", f"/v1/cards/{serial}/suspension", {"reason": "lost"}, at=NAGANO)
    assert status == 200, body


def test_a_suspended_card_is_refused_at_the_challenge_and_an_earlier_challenge_too(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    before = world.challenge(chip.serial)  # issued while active
    suspend(world, chip.serial)
    refused = world.challenge(chip.serial)
    assert (refused["status"], refused["code"], refused["step"]) == ("refused", "CARD_SUSPENDED", "challenge")
    world.answer(before["id"], chip.sign(before["message"].encode(), "1234"))
    world.pump()
    outcome = world.poll(before["id"])[1]
    assert (outcome["status"], outcome["code"]) == ("refused", "CARD_SUSPENDED")
    assert outcome.get("resident_code") is None
    assert refused_at_x(world, "CARD_SUSPENDED") == 2
    assert refused_at_home(world, "challenge", "CARD_SUSPENDED") == 1
    assert refused_at_home(world, "authenticate", "CARD_SUSPENDED") == 1
    world.poll(before["id"])  # polled again: counted once
    assert refused_at_x(world, "CARD_SUSPENDED") == 2


def test_revoked_and_expired_cards_are_refused(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    other = Person(resident(32), "信濃次郎")
    old = world.resident_with_card(other)
    assert world.call("POST", f"/v1/cards/{chip.serial}/revocation", {}, at=NAGANO)[0] == 200
    assert world.challenge(chip.serial)["code"] == "CARD_REVOKED"
    world.now += dt.timedelta(days=3660)  # past the 10th anniversary
    assert world.challenge(old.serial)["code"] == "CARD_EXPIRED"


def test_an_unknown_card_and_a_wrong_key_are_refused(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    assert world.challenge(f"{NAGANO}-0000000000000000")["code"] == "CARD_NOT_FOUND"
    cloned = VirtualCard("1234")  # a card with the same face, another key inside
    cloned.serial = chip.serial
    outcome = world.remote_authenticate(cloned)
    assert (outcome["status"], outcome["code"]) == ("refused", "SIGNATURE_INVALID")
    assert refused_at_home(world, "authenticate", "SIGNATURE_INVALID") == 1


def test_an_expired_challenge_is_refused_by_the_home_on_arrival(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    body = world.challenge(chip.serial)
    world.now += dt.timedelta(seconds=121)
    world.answer(body["id"], chip.sign(body["message"].encode(), "1234"))
    world.pump()
    assert world.poll(body["id"])[1]["code"] == "CHALLENGE_EXPIRED"


def test_three_wrong_pins_reported_from_another_tier_lock_the_card(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    for n in (1, 2, 3):
        body = world.challenge(chip.serial)
        with pytest.raises((WrongPin, CardLocked)):
            chip.sign(body["message"].encode(), "9999")
        status, sent = world.pin_failure(body["id"])
        assert status == 202, sent
        world.pump()
        counted = world.poll(body["id"])[1]
        assert (counted["status"], counted["failures"], counted["locked"]) == ("pin_failure_counted", n, n == 3)
    card = CardStore(HOME).card(chip.serial)
    assert card.pin_locked
    assert [e.kind.value for e in CardStore(HOME).events(chip.serial)][-1] == "pin_locked"
    assert world.challenge(chip.serial)["code"] == "PIN_LOCKED"
    assert CardStore(HERE).statistics(CHIYODA, "2003-01")["pin_failures"] == 3


def test_a_second_answer_to_the_same_challenge_is_refused_at_the_counter(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    outcome = world.remote_authenticate(chip)
    assert outcome["status"] == "authenticated"
    status, body = world.answer(outcome["id"], b"again")
    assert (status, body["error"]["code"]) == (403, "CHALLENGE_REPLAYED")


def test_another_clerk_or_another_counter_cannot_use_the_authentication(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    body = world.challenge(chip.serial)
    other_clerk = counter(CHIYODA, "clerk-2")
    assert world.poll(body["id"], who=other_clerk)[1]["error"]["code"] == "WRONG_COUNTER"
    signature = chip.sign(body["message"].encode(), "1234")
    assert world.answer(body["id"], signature, who=other_clerk)[1]["error"]["code"] == "WRONG_COUNTER"
    # 松本市 (another tier) does not know this counter's id at all
    assert world.answer(body["id"], signature, at=MATSUMOTO)[1]["error"]["code"] == "CHALLENGE_NOT_FOUND"
    assert refused_at_x(world, "WRONG_COUNTER") == 2


def _send_as(world: CrossWorld, pref: str, sender: str, query: dict) -> str:
    """What a counter's channel function sends when its counter asks (or when an insider makes it)."""
    return world.endpoint(pref).request(sender, NAGANO, query)


def test_a_counter_relaying_another_counters_challenge_is_refused_by_the_home(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    body = world.challenge(chip.serial)
    signature = base64.b64encode(chip.sign(body["message"].encode(), "1234")).decode()
    relay = {"query": "card-authentication", "challenge_id": body["challenge_id"], "signature": signature}
    # 上田市 (the home's own tier) and 千代田区 with another clerk session present 千代田区 clerk-1's answer.
    for pref, sender, clerk in ((NAGANO_PREF, UEDA, counter(UEDA)), (TOKYO_PREF, CHIYODA, counter(CHIYODA, "c2"))):
        correlation = _send_as(world, pref, sender, {**relay, "clerk": clerk})
        world.pump()
        result = world.endpoint(pref).result(correlation)
        assert (result.outcome.value, result.refusal) == ("refused", "WRONG_COUNTER")
    assert refused_at_home(world, "authenticate", "WRONG_COUNTER") == 2


def test_a_replayed_answer_through_the_channel_has_no_second_effect(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    outcome = world.remote_authenticate(chip)
    assert outcome["status"] == "authenticated"
    sent = [b for q, b in world.delivered if q == "muni-200000" and json.loads(b).get("sender") == CHIYODA]
    answer_request = sent[-1]
    world.send("pref-130001", answer_request)  # the captured signed request, sent again
    world.pump()
    assert refused_at_home(world, "authenticate", "ok") == 1  # answered again from the record, not judged again
    # The same answer under a new request (a terminal replaying the signature): spent.
    home_challenge = CardStore(HERE).challenge_item(outcome["id"])["home_challenge"]
    signature = base64.b64encode(b"\x30\x00").decode()
    correlation = _send_as(world, TOKYO_PREF, CHIYODA, {"query": "card-authentication", "challenge_id": home_challenge,
                                                        "signature": signature, "clerk": counter(CHIYODA)})
    world.pump()
    assert world.endpoint(TOKYO_PREF).result(correlation).refusal == "CHALLENGE_REPLAYED"


def test_a_router_altering_the_answer_is_dead_lettered_and_the_counter_times_out(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    body = world.challenge(chip.serial)
    world.answer(body["id"], chip.sign(body["message"].encode(), "1234"))
    world.pump(hold={"pref-130001"})  # the answer waits at 東京都's processor
    messages = world.sqs.receive_message(QueueUrl=world.queues["pref-130001"], MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    world.sqs.delete_message(QueueUrl=world.queues["pref-130001"], ReceiptHandle=messages[0]["ReceiptHandle"])
    signed = json.loads(messages[0]["Body"])
    envelope = world.envelope_of(messages[0]["Body"])
    envelope["kind"] = "answer" if envelope["kind"] == "refusal" else "refusal"  # the router changes the outcome
    signed["payload"] = base64.b64encode(json.dumps(envelope).encode()).decode()
    world.send("pref-130001", json.dumps(signed))
    world.pump()
    dead = world.dead_letters("pref-130001")
    assert [d["jukinet.reason"] for d in dead] == ["signature_invalid"]
    assert world.poll(body["id"])[1]["status"] == "pending"
    world.now += dt.timedelta(seconds=31)
    outcome = world.poll(body["id"])[1]
    assert outcome["status"] == "timed_out" and outcome.get("resident_code") is None


def test_a_card_ended_by_a_death_notice_is_refused_at_once_and_its_event_written_at_home(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    world.now += dt.timedelta(days=1)
    world.live(NAGANO, TARO, reason="22", day="2003-01-21")  # 死亡, processed by 長野市's CS
    assert world.challenge(chip.serial)["code"] == "CARD_REVOKED"
    # the channel function judged it ended without writing (it may not free the resident's card);
    # the home tier's counter writes the revoked event at the card's next touch there
    assert [e.kind.value for e in CardStore(HOME).events(chip.serial)] == ["issued"]
    status, body = world.call("POST", "/v1/challenges", {"serial": chip.serial}, at=MATSUMOTO)
    assert (status, body["error"]["code"]) == (403, "CARD_REVOKED")
    assert [e.kind.value for e in CardStore(HOME).events(chip.serial)] == ["issued", "revoked"]

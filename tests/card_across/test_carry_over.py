"""The card record's transfer between tiers (decision 0027 part 2, decision 0050): a 長野市 card
carried over to 千代田区 (東京都's tier) — the old home writes ``moved`` and answers the signed
chain, the new home checks every event with the old tier's card-event key and stores it; the old
tier refuses changes and points to the new home; the card is authenticated at its new home, and
from 長野県's counters through the channel. Attacks: an insider of 千代田区 pulling a card of a
resident who did not move there, an altered event in the chain, a key already registered in the
new tier."""

from __future__ import annotations

import datetime as dt

import pytest

from jukinet.adapters.card_store import CardStore
from jukinet.domain.card import CardEvent, CardRefusal, VirtualCard
from jukinet.handlers import card_runtime
from jukinet.adapters.special_move_store import SpecialMoveStore
from jukinet.domain import special_move as sm
from jukinet.services.card_across_tiers import carry_over_card, check_chain

from ..channel.world import CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, TOKYO_PREF, UEDA, resident
from ..copy.world import Person, counter
from ..pipeline.harness import environment
from .world import CrossWorld

TARO = Person(resident(51), "信濃太郎")
OLD, NEW = f"jukinet-cards-{NAGANO_PREF}", f"jukinet-cards-{TOKYO_PREF}"


def carry_overs(world: CrossWorld):
    with environment(world.counter_env(TOKYO_PREF)):
        carry = card_runtime.carry_overs()
    carry.clock = carry.cards.clock = carry.reader.clock = lambda: world.now
    return carry


def agreed(world: CrossWorld, resident_code: str = TARO.code, to: str = CHIYODA, *, home: str = NAGANO,
           table: str = OLD, state: sm.State = sm.State.COMPLETED, completed: dt.datetime | None = None,
           serial: str | None = None) -> None:
    """The old home's record of the resident's special move-out (``SPECIAL-OUT#``, decision 0049),
    completed by ``to``'s 転入通知 (``completed``, default now): its agreement to the carry-over.
    The whole move through the counters: tests/card_across/test_special_move.py."""
    at = completed or world.now
    serial = serial if serial is not None else CardStore(table).valid_card_of(resident_code) or ""
    filed = sm.MoveOut(municipality=home, resident_code=resident_code, filed_at=at - dt.timedelta(days=3),
                       planned_move_date=(at - dt.timedelta(days=2)).date(), destination_address="東京都千代田区1番1号",
                       card_serial=serial, by_post=True, state=state, requester=to if state is sm.State.COMPLETED else "",
                       changed_at=at)
    assert SpecialMoveStore(table).file(filed, {})


def carry(world: CrossWorld, serial: str):
    carry = carry_overs(world)
    correlation = carry.request(serial, NAGANO, CHIYODA, clerk=counter(CHIYODA))
    world.pump()
    return carry.complete(correlation)


def test_a_card_carried_over_to_chiyoda_is_held_and_authenticated_there(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    agreed(world)
    card = carry(world, chip.serial)
    assert (card.home, card.issuer, card.resident_code) == (CHIYODA, NAGANO, TARO.code)
    old_events, new_events = CardStore(OLD).events(chip.serial), CardStore(NEW).events(chip.serial)
    assert [e.digest_hex for e in old_events] == [e.digest_hex for e in new_events]  # one chain, no fork
    assert new_events[-1].kind.value == "moved" and new_events[-1].details == {"from": NAGANO, "to": CHIYODA}
    # within 東京都's tier now: POST /v1/challenges at 千代田区; the answer names the issuer 長野市
    world.authenticate(chip, at=CHIYODA)
    # the new home changes it; the chain goes on under 東京都's card-event key
    assert world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"}, at=CHIYODA)[0] == 200
    events = CardStore(NEW).events(chip.serial)
    assert check_chain(events, carry_overs(world).keys).status.value == "suspended"
    # a retry of the transfer changes nothing
    assert carry(world, chip.serial).home == CHIYODA
    assert len(CardStore(NEW).events(chip.serial)) == len(events)


def test_the_old_tier_refuses_changes_and_points_to_the_new_home(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    agreed(world)
    carry(world, chip.serial)
    for path in ("suspension", "revocation", "resumption"):
        status, body = world.call("POST", f"/v1/cards/{chip.serial}/{path}", {}, at=NAGANO)
        assert (status, body["error"]["code"]) == (409, "CARD_MOVED"), path
        assert CHIYODA in body["error"]["message"]
    status, body = world.call("POST", "/v1/challenges", {"serial": chip.serial}, at=MATSUMOTO)
    assert (status, body["error"]["code"]) == (409, "CARD_MOVED")
    assert CardStore(OLD).card(chip.serial).home == CHIYODA  # kept as the pointer
    # 松本市's counter authenticates it through the channel at its new home
    outcome = world.remote_authenticate(chip, at=MATSUMOTO)
    assert (outcome["status"], outcome["home"], outcome["resident_code"], outcome["issuer"]) == \
        ("authenticated", CHIYODA, TARO.code, NAGANO)


def test_a_request_reaching_the_old_home_after_the_move_is_refused_with_the_new_home(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    status, started = world.start(chip.serial, at=CHIYODA)  # sent to 長野市 before the move…
    world.pump(hold={"muni-200000"})
    [held] = world.sqs.receive_message(QueueUrl=world.queues["muni-200000"], MaxNumberOfMessages=10)["Messages"]
    world.sqs.delete_message(QueueUrl=world.queues["muni-200000"], ReceiptHandle=held["ReceiptHandle"])
    agreed(world)
    assert carry(world, chip.serial).home == CHIYODA
    world.send("muni-200000", held["Body"])  # …and arrives after it
    world.pump()
    outcome = world.poll(started["id"], at=CHIYODA)[1]
    # the card is held by 千代田区 itself now: the old home points there, the counter uses its own tier
    assert (outcome["status"], outcome["code"]) == ("refused", "CARD_MOVED") and CHIYODA in outcome["message"]


def test_attack_an_insider_of_chiyoda_cannot_pull_a_card_of_a_resident_who_did_not_move_there(
        world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    assert carry(world, chip.serial) == "CARRY_OVER_NOT_AGREED"  # no special move-out filed
    agreed(world, to=MATSUMOTO)  # a move-out filed to another municipality
    assert carry(world, chip.serial) == "CARRY_OVER_NOT_AGREED"
    world.now += dt.timedelta(minutes=1)
    agreed(world, state=sm.State.FILED)  # filed to 千代田区 but not completed by its move-in
    assert carry(world, chip.serial) == "CARRY_OVER_NOT_AGREED"
    world.now += dt.timedelta(minutes=1)
    agreed(world, serial="202011-0000000000000099")  # completed by 千代田区, for another card of the resident
    assert carry(world, chip.serial) == "CARRY_OVER_NOT_AGREED"
    assert CardStore(OLD).statistics(NAGANO, "2003-01")["remote_carry_over_CARRY_OVER_NOT_AGREED"] == 4
    world.now += dt.timedelta(minutes=1)
    agreed(world)  # completed by 千代田区 … more than 30 days ago
    world.now += dt.timedelta(days=30, seconds=1)
    assert carry(world, chip.serial) == "CARRY_OVER_NOT_AGREED"
    card = CardStore(OLD).card(chip.serial)
    assert (card.home, card.seq) == (NAGANO, 1) and CardStore(NEW).card(chip.serial) is None


def _answered_events(world: CrossWorld, serial: str) -> list[dict]:
    agreed(world)
    carry = carry_overs(world)
    correlation = carry.request(serial, NAGANO, CHIYODA, clerk=counter(CHIYODA))
    world.pump()
    return carry.reader.result(correlation).answer["events"]


def test_attack_an_altered_event_in_the_carried_chain_is_refused(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    events = _answered_events(world, chip.serial)
    thief = VirtualCard("0000")
    altered = [dict(e) for e in events]
    altered[0]["details"] = {**altered[0]["details"], "public_key": thief.public_key}  # the thief's key
    cards = carry_overs(world).cards
    with pytest.raises(CardRefusal) as refused:
        carry_over_card(cards, chip.serial, NAGANO, CHIYODA, altered, carry_overs(world).keys)
    assert (refused.value.code.name, refused.value.rule) == ("INVALID_REQUEST", "signed_chain")
    # re-signed by 東京都's key (an insider of the new tier): not the tier that wrote it
    forged = [CardEvent.from_dict(e) for e in altered]
    kms = world.kms
    resigned = [e.signed(world.keys[f"events-{TOKYO_PREF}"], kms.sign(
        KeyId=world.keys[f"events-{TOKYO_PREF}"], Message=e.digest(), MessageType="RAW",
        SigningAlgorithm="ECDSA_SHA_256")["Signature"]).to_dict() for e in forged]
    with pytest.raises(CardRefusal):
        carry_over_card(cards, chip.serial, NAGANO, CHIYODA, resigned, carry_overs(world).keys)
    # a chain cut before its moved event, or moved elsewhere
    with pytest.raises(CardRefusal):
        carry_over_card(cards, chip.serial, NAGANO, CHIYODA, events[:-1], carry_overs(world).keys)
    assert CardStore(NEW).card(chip.serial) is None
    assert carry_over_card(cards, chip.serial, NAGANO, CHIYODA, events, carry_overs(world).keys).home == CHIYODA


def test_attack_a_key_already_registered_in_the_new_tier_is_refused(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    jiro = Person(resident(53), "千代田次郎")
    world.live(CHIYODA, jiro)
    # the same public key registered to another card in 東京都's tier (keys are unique per tier)
    status, body = world.call("POST", "/v1/cards", {"resident_code": jiro.code, "card_type": "B",
                                                    "public_key": chip.public_key}, at=CHIYODA)
    assert status == 201, body
    events = _answered_events(world, chip.serial)
    with pytest.raises(CardRefusal) as refused:
        carry_over_card(carry_overs(world).cards, chip.serial, NAGANO, CHIYODA, events, carry_overs(world).keys)
    assert refused.value.code.name == "PUBLIC_KEY_IN_USE"


def test_a_card_that_comes_back_continues_the_pointer_its_old_tier_kept(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    agreed(world)
    carry(world, chip.serial)  # 長野市 → 千代田区
    world.now += dt.timedelta(days=30)
    agreed(world, to=UEDA, home=CHIYODA, table=NEW)  # 千代田区's record: the move on to 上田市 completed
    with environment(world.counter_env(NAGANO_PREF)):
        back = card_runtime.carry_overs()
    back.clock = back.cards.clock = back.reader.clock = lambda: world.now
    correlation = back.request(chip.serial, CHIYODA, UEDA, clerk=counter(UEDA))
    world.pump()
    card = back.complete(correlation)
    assert (card.home, card.seq) == (UEDA, 3)
    assert CardStore(OLD).card(chip.serial).home == UEDA and CardStore(NEW).card(chip.serial).home == UEDA
    assert [e.kind.value for e in CardStore(OLD).events(chip.serial)] == ["issued", "moved", "moved"]
    world.authenticate(chip, at=MATSUMOTO)  # held in 長野県's tier again: the within-tier path
    assert world.call("POST", f"/v1/cards/{chip.serial}/suspension", {}, at=CHIYODA)[1]["error"]["code"] == \
        "CARD_MOVED"


def test_a_card_carried_on_to_a_third_prefecture_is_asked_for_there(world: CrossWorld) -> None:
    """The old home answers CARD_MOVED naming a municipality of a third prefecture (大阪市: the card
    record here is set as a carry-over there leaves it); 千代田区's counter sends the request there
    once (its record names the new home) — this world serves no third prefecture, so the national
    tier dead-letters it and the request times out: the routing, not the answer, is under test."""
    osaka = "271004"
    chip = world.resident_with_card(TARO)
    osaka_key = world.kms.create_key(Description="channel 270008")["KeyMetadata"]["Arn"]  # 大阪府's tier's, by alias
    world.kms.create_alias(AliasName="alias/jukinet/channel/27", TargetKeyId=osaka_key)
    world.ddb.update_item(TableName=OLD, Key={"pk": {"S": f"CARD#{chip.serial}"}, "sk": {"S": "CARD"}},
                          UpdateExpression="SET home = :h", ExpressionAttributeValues={":h": {"S": osaka}})
    status, started = world.start(chip.serial)
    assert started["home"] == NAGANO
    world.pump()
    routed = world.poll(started["id"])[1]
    assert (routed["status"], routed["home"], routed["step"]) == ("pending", osaka, "challenge")
    record = CardStore(NEW).challenge_item(started["id"])
    assert (record["remote_home"], record["routes"]) == (osaka, "1")
    world.pump()
    assert [d["jukinet.reason"] for d in world.dead_letters("national")] == ["not_routable"]
    world.now += dt.timedelta(seconds=31)
    assert world.poll(started["id"])[1]["status"] == "timed_out"

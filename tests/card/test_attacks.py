"""The counter API's controls, each written as the attack it stops: an insider with one
municipality's counter role, a stolen card, a copied key, a replayed or relayed answer."""

from __future__ import annotations

import base64
import threading

import pytest

from jukinet.domain.card import MAX_PIN_FAILURES, CardLocked, VirtualCard, WrongPin

from .world import MATSUMOTO, NAGANO, UEDA, counter

TARO, HANAKO = "24727059608", "50000000016"


def issued(world, code: str = TARO, pin: str = "1234", at: str = NAGANO) -> VirtualCard:
    world.resident(code, at)
    chip = VirtualCard(pin)
    assert world.issue(code, chip, at=at)[0] == 201
    return chip


def test_another_municipalitys_staff_cannot_issue_a_card_for_a_resident_not_theirs(world):
    world.resident(TARO, NAGANO)
    # 松本市's clerk issues a card for 長野市's resident, with a key they hold.
    status, body = world.issue(TARO, VirtualCard("0000"), at=MATSUMOTO)
    assert (status, body["error"]["code"]) == (409, "RESIDENT_NOT_ACTIVE")
    assert world.store().valid_card_of(TARO) is None
    assert world.statistics(MATSUMOTO)["refused_RESIDENT_NOT_ACTIVE"] == 1
    # …nor by claiming another municipality's role from outside this tier
    status, body = world.call("POST", "/v1/cards", {"resident_code": TARO, "card_type": "A",
                                                    "public_key": VirtualCard("0000").public_key},
                              who=counter("131016"))
    assert body["error"]["code"] == "UNKNOWN_CALLER"


def test_another_municipalitys_staff_cannot_suspend_revoke_or_reset_a_card_not_theirs(world):
    chip = issued(world)
    for path in ("suspension", "resumption", "revocation", "pin-reset"):
        status, body = world.call("POST", f"/v1/cards/{chip.serial}/{path}", {"resident_code": TARO},
                                  who=counter(UEDA))
        assert body["error"]["code"] == "NOT_THIS_MUNICIPALITY", path
    assert world.store().card(chip.serial).seq == 1  # nothing changed


def test_a_replayed_answer_is_refused(world):
    chip = issued(world)
    _, challenge = world.challenge(chip.serial)
    signature = chip.sign(challenge["message"].encode(), "1234")
    assert world.answer(challenge["challenge_id"], signature)[0] == 200
    status, body = world.answer(challenge["challenge_id"], signature)
    assert (status, body["error"]["code"]) == (403, "CHALLENGE_REPLAYED")
    assert world.statistics(MATSUMOTO)["auth_refused_CHALLENGE_REPLAYED"] == 1


def test_a_replay_racing_the_answer_gets_nothing(world):
    chip = issued(world)
    _, challenge = world.challenge(chip.serial)
    signature = chip.sign(challenge["message"].encode(), "1234")
    results: list[int] = []
    barrier = threading.Barrier(4)
    containers = [world.container() for _ in range(4)]  # four concurrent invocations, four environments

    def go(container) -> None:
        barrier.wait()
        results.append(world.answer(challenge["challenge_id"], signature, container=container)[0])

    threads = [threading.Thread(target=go, args=(c,)) for c in containers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 403, 403, 403]


def test_an_answer_relayed_to_another_counter_is_refused_and_does_not_burn_the_challenge(world):
    chip = issued(world)
    _, challenge = world.challenge(chip.serial, at=MATSUMOTO)
    signature = chip.sign(challenge["message"].encode(), "1234")
    status, body = world.answer(challenge["challenge_id"], signature, at=UEDA)
    assert (status, body["error"]["code"]) == (403, "WRONG_COUNTER")
    status, body = world.answer(challenge["challenge_id"], signature,
                                who=counter(MATSUMOTO, session="another-clerk"))
    assert body["error"]["code"] == "WRONG_COUNTER"  # bound to the staff session too
    assert world.answer(challenge["challenge_id"], signature, at=MATSUMOTO)[0] == 200


def test_a_cloned_public_key_cannot_be_registered_for_another_card(world):
    chip = issued(world)
    world.resident(HANAKO)
    status, body = world.call("POST", "/v1/cards", {"resident_code": HANAKO, "card_type": "A",
                                                    "public_key": chip.public_key})
    assert (status, body["error"]["code"]) == (409, "PUBLIC_KEY_IN_USE")
    assert world.store().valid_card_of(HANAKO) is None


def test_a_clone_with_the_public_key_but_not_the_private_key_cannot_authenticate(world):
    chip = issued(world)
    clone = VirtualCard("0000")  # a blank chip, told the genuine card's serial
    clone.serial = chip.serial
    status, body = world.authenticate(clone, "0000")
    assert (status, body["error"]["code"]) == (403, "SIGNATURE_INVALID")
    status, body = world.answer(world.challenge(chip.serial)[1]["challenge_id"], b"\x30\x06\x02\x01\x01\x02\x01\x01")
    assert body["error"]["code"] == "SIGNATURE_INVALID"


def test_brute_forcing_a_stolen_cards_pin_at_many_counters_stops_at_three(world):
    chip = issued(world, pin="7305")
    counters = [MATSUMOTO, UEDA, NAGANO, MATSUMOTO, UEDA]
    tried = 0
    for guess, at in zip(["0000", "1111", "2222", "3333", "7305"], counters, strict=True):
        status, challenge = world.challenge(chip.serial, at=at)
        if status != 200:
            assert challenge["error"]["code"] == "PIN_LOCKED"
            break
        try:
            chip.sign(challenge["message"].encode(), guess)
        except (WrongPin, CardLocked):
            tried += 1
            world.call("POST", f"/v1/challenges/{challenge['challenge_id']}/pin-failure", who=counter(at))
    assert tried == MAX_PIN_FAILURES
    assert chip.locked
    assert world.store().card(chip.serial).pin_locked
    # Even the right PIN gets nothing now, on the chip or through the network.
    with pytest.raises(CardLocked):
        chip.sign(b"x", "7305")
    assert world.challenge(chip.serial)[1]["error"]["code"] == "PIN_LOCKED"


def test_a_terminal_that_hides_wrong_pins_still_meets_the_chips_own_lock(world):
    chip = issued(world, pin="7305")
    for guess in ("0000", "1111", "2222"):
        _, challenge = world.challenge(chip.serial)
        with pytest.raises((WrongPin, CardLocked)):
            chip.sign(challenge["message"].encode(), guess)  # never reported to the network
    _, challenge = world.challenge(chip.serial)
    with pytest.raises(CardLocked):
        chip.sign(challenge["message"].encode(), "7305")


def test_a_pin_failure_report_needs_the_reporters_own_unused_challenge(world):
    chip = issued(world)
    _, challenge = world.challenge(chip.serial, at=MATSUMOTO)
    path = f"/v1/challenges/{challenge['challenge_id']}/pin-failure"
    assert world.call("POST", path, who=counter(UEDA))[1]["error"]["code"] == "WRONG_COUNTER"
    assert world.call("POST", path, who=counter(MATSUMOTO))[0] == 200
    assert world.call("POST", path, who=counter(MATSUMOTO))[1]["error"]["code"] == "CHALLENGE_REPLAYED"
    assert world.store().card(chip.serial).pin_failures == 1


def test_a_forged_signature_encoding_is_refused_cleanly(world):
    chip = issued(world)
    _, challenge = world.challenge(chip.serial)
    status, body = world.call("POST", "/v1/authentications", {"challenge_id": challenge["challenge_id"],
                                                              "signature": "not base64!"})
    assert (status, body["error"]["code"]) == (400, "INVALID_REQUEST")
    status, body = world.answer(challenge["challenge_id"], base64.b64decode("AAAA"))
    assert body["error"]["code"] == "SIGNATURE_INVALID"

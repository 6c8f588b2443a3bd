"""Every endpoint of the counter API against moto: issue, lifecycle, authentication, and
each documented refusal; every call recorded and counted per municipality and month."""

from __future__ import annotations

import datetime as dt

import pytest

from jukinet.domain.card import CHALLENGE_TTL, CardEvent, VirtualCard, replay, verify_event

from .world import MATSUMOTO, NAGANO, OPERATOR, UEDA, counter

TARO, HANAKO, JIRO = "24727059608", "50000000016", "31415926530"


def issued(world, code: str = TARO, pin: str = "1234", at: str = NAGANO) -> VirtualCard:
    world.resident(code, at)
    chip = VirtualCard(pin)
    status, body = world.issue(code, chip, at=at)
    assert status == 201, body
    return chip


def test_issue_gives_a_ten_year_card_with_only_the_public_key_stored(world):
    world.resident(TARO)
    chip = VirtualCard("1234")
    status, card = world.issue(TARO, chip)
    assert status == 201, card
    assert card["serial"].startswith(f"{NAGANO}-")
    assert (card["issuer"], card["home"], card["status"], card["card_type"]) == (NAGANO, NAGANO, "active", "B")
    assert card["valid_until"] == "2036-11-30"
    item = world.ddb.get_item(TableName=world.table, Key={"pk": {"S": f"CARD#{card['serial']}"},
                                                          "sk": {"S": "CARD"}})["Item"]
    assert set(item) == {"pk", "sk", "resident_code", "issuer", "home", "card_type", "issued_at", "valid_until",
                         "public_key", "status", "pin_locked", "pin_failures", "seq", "head"}
    assert item["public_key"]["S"] == chip.public_key


def test_the_card_authenticates_at_another_municipalitys_counter_with_the_code_and_issuer_only(world):
    chip = issued(world)
    status, answer = world.authenticate(chip, "1234", at=MATSUMOTO)
    assert status == 200, answer
    assert answer == {"resident_code": TARO, "issuer": NAGANO}
    assert world.statistics(MATSUMOTO)["auth_ok"] == 1
    assert world.statistics(NAGANO)["issued"] == 1


def test_every_change_is_a_signed_ordered_event_that_replays_to_the_card(world):
    chip = issued(world)
    assert world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"})[0] == 200
    assert world.call("POST", f"/v1/cards/{chip.serial}/resumption")[0] == 200
    status, card = world.call("POST", f"/v1/cards/{chip.serial}/revocation")
    assert status == 200 and card["status"] == "revoked"
    events = world.events(chip.serial)
    assert [e.kind.value for e in events] == ["issued", "suspended", "resumed", "revoked"]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    key = world.public_key()
    assert all(verify_event(key, e) for e in events)
    assert replay(list(reversed(events))).status.value == "revoked"


def test_reissuance_revokes_the_previous_card(world):
    first = issued(world)
    second = VirtualCard("5678")
    status, card = world.issue(TARO, second)
    assert status == 201
    assert world.store().card(first.serial).status.value == "revoked"
    assert world.events(first.serial)[-1].details == {"reason": "reissued"}
    assert world.authenticate(first, "1234")[1]["error"]["code"] == "CARD_REVOKED"
    assert world.authenticate(second, "5678")[0] == 200


@pytest.mark.parametrize("setup, code", [
    ("unknown", "RESIDENT_NOT_ACTIVE"),
    ("moved_out", "RESIDENT_NOT_ACTIVE"),
    ("dead", "RESIDENT_NOT_ACTIVE"),
    ("other_municipality", "RESIDENT_NOT_ACTIVE"),
])
def test_issuance_is_checked_against_the_tiers_own_register(world, setup, code):
    if setup == "moved_out":
        world.resident(TARO, NAGANO, "11", "2026-10-01")
        world.resident(TARO, NAGANO, "21", "2026-11-01")
    elif setup == "dead":
        world.resident(TARO, NAGANO, "11", "2026-10-01")
        world.resident(TARO, NAGANO, "22", "2026-11-01")
    elif setup == "other_municipality":
        world.resident(TARO, MATSUMOTO)
    status, body = world.issue(TARO, VirtualCard("1234"), at=NAGANO)
    assert (status, body["error"]["code"]) == (409, code)
    assert world.statistics(NAGANO).get(f"refused_{code}") == 1


def test_a_notice_of_death_revokes_the_card_automatically(world):
    chip = issued(world)
    world.now += dt.timedelta(days=1)
    world.resident(TARO, NAGANO, "22", "2026-12-01")
    status, body = world.authenticate(chip, "1234")
    assert body["error"]["code"] == "CARD_REVOKED"
    last = world.events(chip.serial)[-1]
    assert (last.kind.value, last.actor, last.details) == ("revoked", "system:notice", {"reason": "death"})


def test_deletion_by_authority_and_code_change_revoke_automatically(world):
    chip = issued(world)
    other = issued(world, HANAKO)
    world.now += dt.timedelta(days=1)
    world.resident(TARO, NAGANO, "23", "2026-12-01")
    world.resident(JIRO, NAGANO, "33", "2026-12-01", previous=HANAKO)
    assert world.authenticate(chip, "1234")[1]["error"]["code"] == "CARD_REVOKED"
    assert world.authenticate(other, "1234")[1]["error"]["code"] == "CARD_REVOKED"
    assert world.events(chip.serial)[-1].details == {"reason": "deleted_by_authority"}
    assert world.events(other.serial)[-1].details == {"reason": "code_changed"}


def test_a_card_issued_after_a_re_entry_is_not_ended_by_the_earlier_deletion(world):
    world.resident(TARO, NAGANO, "23", "2026-11-01")
    world.resident(TARO, NAGANO, "14", "2026-11-10")
    chip = VirtualCard("1234")
    world.now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert world.issue(TARO, chip)[0] == 201
    assert world.authenticate(chip, "1234")[0] == 200


def test_a_suspended_card_fails_at_once_and_a_challenge_issued_before_the_suspension_too(world):
    chip = issued(world)
    status, challenge = world.challenge(chip.serial, at=UEDA)
    signature = chip.sign(challenge["message"].encode(), "1234")
    # The operator suspends the lost card (around the clock); the clock does not move: the bound is zero.
    assert world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"}, who=OPERATOR)[0] == 200
    status, body = world.answer(challenge["challenge_id"], signature, at=UEDA)
    assert (status, body["error"]["code"]) == (403, "CARD_SUSPENDED")
    status, body = world.authenticate(chip, "1234", at=MATSUMOTO)
    assert (status, body["error"]["code"]) == (403, "CARD_SUSPENDED")
    assert world.statistics(MATSUMOTO)["auth_refused_CARD_SUSPENDED"] == 1
    assert world.statistics(UEDA)["auth_refused_CARD_SUSPENDED"] == 1


def test_a_challenge_answered_after_suspension_within_its_expiry_is_refused(world):
    chip = issued(world)
    _, challenge = world.challenge(chip.serial, at=UEDA)
    signature = chip.sign(challenge["message"].encode(), "1234")
    assert world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"})[0] == 200
    status, body = world.answer(challenge["challenge_id"], signature, at=UEDA)
    assert (status, body["error"]["code"]) == (403, "CARD_SUSPENDED")


def test_a_challenge_expires(world):
    chip = issued(world)
    _, challenge = world.challenge(chip.serial)
    signature = chip.sign(challenge["message"].encode(), "1234")
    world.now += CHALLENGE_TTL
    assert world.answer(challenge["challenge_id"], signature)[1]["error"]["code"] == "CHALLENGE_EXPIRED"


def test_the_card_expires_after_ten_years_and_the_expiry_is_an_event(world):
    chip = issued(world)
    world.now = dt.datetime(2036, 11, 30, 15, 0, tzinfo=dt.UTC)  # 2036-12-01 00:00 JST
    status, body = world.challenge(chip.serial)
    assert (status, body["error"]["code"]) == (403, "CARD_EXPIRED")
    assert world.events(chip.serial)[-1].kind.value == "expired"
    status, card = world.call("POST", f"/v1/cards/{chip.serial}/expiry")
    assert (status, card["status"]) == (200, "expired")


def test_expiry_before_the_validity_ends_is_refused(world):
    chip = issued(world)
    status, body = world.call("POST", f"/v1/cards/{chip.serial}/expiry")
    assert (status, body["error"]["code"]) == (409, "INVALID_TRANSITION")


def test_wrong_pins_lock_the_chip_and_the_network_counts_and_locks_too(world):
    chip = issued(world)
    for i in range(3):
        _, challenge = world.challenge(chip.serial)
        with pytest.raises(Exception):
            chip.sign(challenge["message"].encode(), "0000")
        status, body = world.call("POST", f"/v1/challenges/{challenge['challenge_id']}/pin-failure",
                                  who=counter(MATSUMOTO))
        assert status == 200 and body == {"failures": i + 1, "locked": i == 2}
    assert chip.locked
    status, body = world.challenge(chip.serial)
    assert body["error"]["code"] == "PIN_LOCKED"
    # PIN reset at the holder's counter, the resident's code read from their documents:
    status, body = world.call("POST", f"/v1/cards/{chip.serial}/pin-reset", {"resident_code": HANAKO})
    assert body["error"]["code"] == "INVALID_REQUEST"
    status, body = world.call("POST", f"/v1/cards/{chip.serial}/pin-reset", {"resident_code": TARO})
    assert status == 200, body
    chip.reset_pin("9999", CardEvent.from_dict(body["event"]))
    assert verify_event(world.public_key(), CardEvent.from_dict(body["event"]))
    assert world.authenticate(chip, "9999")[0] == 200


def test_only_the_holders_counter_changes_a_card_and_the_operator_only_suspends(world):
    chip = issued(world)
    for path in ("suspension", "revocation", "pin-reset"):
        status, body = world.call("POST", f"/v1/cards/{chip.serial}/{path}", {"resident_code": TARO},
                                  who=counter(MATSUMOTO))
        assert (status, body["error"]["code"]) == (403, "NOT_THIS_MUNICIPALITY")
    status, body = world.call("POST", f"/v1/cards/{chip.serial}/revocation", who=OPERATOR)
    assert body["error"]["code"] == "NOT_THIS_MUNICIPALITY"
    status, body = world.call("POST", "/v1/cards", {"resident_code": TARO, "card_type": "A",
                                                    "public_key": VirtualCard("1111").public_key}, who=OPERATOR)
    assert body["error"]["code"] == "NOT_THIS_MUNICIPALITY"


@pytest.mark.parametrize("who, vpce, code", [
    ("arn:aws:sts::123456789012:assumed-role/someone-else/x", "vpce-0c000000000000200", "UNKNOWN_CALLER"),
    ("arn:aws:sts::123456789012:assumed-role/jukinet-counter-131016/x", "vpce-0c000000000000200", "UNKNOWN_CALLER"),
    ("arn:aws:sts::999999999999:assumed-role/jukinet-counter-202011/x", "vpce-0c000000000000200", "UNKNOWN_CALLER"),
    (counter(NAGANO), "vpce-0ffffffffffffffff", "ENDPOINT_NOT_ALLOWED"),
    ("", "vpce-0c000000000000200", "UNKNOWN_CALLER"),
])
def test_unknown_callers_and_endpoints_are_refused_before_anything_is_read(world, who, vpce, code):
    status, body = world.call("POST", "/v1/challenges", {"serial": "202011-0000000000000000"}, who=who, vpce=vpce)
    assert (status, body["error"]["code"]) == (403, code)


@pytest.mark.parametrize("body, field", [
    ({"resident_code": "24727059609", "card_type": "A", "public_key": "x"}, "resident_code"),
    ({"resident_code": TARO, "card_type": "C", "public_key": "x"}, "card_type"),
    ({"resident_code": TARO, "card_type": "A", "public_key": "bm90IGEga2V5"}, "public_key"),
    ({"resident_code": TARO, "card_type": "A"}, "public_key"),
])
def test_bad_issue_requests_name_the_field(world, body, field):
    world.resident(TARO)
    status, answer = world.call("POST", "/v1/cards", body)
    assert status == 400 and answer["error"]["code"] == "INVALID_REQUEST" and answer["error"]["field"] == field


def test_unknown_card_and_route(world):
    assert world.challenge("202011-0000000000000000")[1]["error"]["code"] == "CARD_NOT_FOUND"
    assert world.challenge("nonsense")[1]["error"]["code"] == "INVALID_REQUEST"
    assert world.call("GET", "/v1/nothing")[1]["error"]["code"] == "NOT_FOUND"


def test_every_call_is_recorded_with_who_where_which_resident_and_what(world):
    chip = issued(world)
    world.authenticate(chip, "1234", at=MATSUMOTO)
    world.challenge("202011-0000000000000000", at=MATSUMOTO)
    issued_calls = world.store().calls(NAGANO, "2026-12")
    assert [(c["action"], c["outcome"], c["resident_code"], c["principal"]) for c in issued_calls] == [
        ("issue", "ok", TARO, counter(NAGANO))]
    at_matsumoto = sorted((c["action"], c["outcome"], c["resident_code"]) for c in world.store().calls(MATSUMOTO,
                                                                                                    "2026-12"))
    assert at_matsumoto == [("authenticate", "ok", TARO), ("challenge", "CARD_NOT_FOUND", ""),
                            ("challenge", "ok", TARO)]


def test_a_moved_card_keeps_serial_key_pin_and_issuer_and_belongs_to_its_new_home(world):
    """継続利用 (decision 0027): the special move-in (part 2) calls ``CardService.move``."""
    from jukinet.handlers import card_runtime

    chip = issued(world)
    with world.environment():
        service = card_runtime.runtime()
        service.clock = lambda: world.now
        moved = service.move(service.store.card(chip.serial), MATSUMOTO, actor="system:special-move-in",
                             now=world.now)
    assert (moved.serial, moved.issuer, moved.home, moved.public_key) == (chip.serial, NAGANO, MATSUMOTO,
                                                                          chip.public_key)
    assert world.events(chip.serial)[-1].details == {"from": NAGANO, "to": MATSUMOTO}
    assert world.authenticate(chip, "1234", at=UEDA)[1] == {"resident_code": TARO, "issuer": NAGANO}
    status, body = world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"},
                              who=counter(NAGANO))
    assert body["error"]["code"] == "NOT_THIS_MUNICIPALITY"
    status, body = world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"},
                              who=counter(MATSUMOTO))
    assert (status, body["status"]) == (200, "suspended")

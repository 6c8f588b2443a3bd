"""A card of 長野県's tier authenticated at 千代田区's counter (東京都's tier) through the channel
(decision 0050): the challenge bound to the requesting municipality and the clerk's session,
the answer judged at the home tier, {resident_code, issuer} and nothing else; the refusals."""

from __future__ import annotations

import datetime as dt

from jukinet.adapters.card_store import REMOTE_CHALLENGES, CardStore

from ..channel.world import CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, TOKYO_PREF, resident
from ..copy.world import Person, counter
from .world import CrossWorld

TARO = Person(resident(21), "信濃太郎")


def test_a_nagano_card_is_authenticated_at_chiyoda_and_nothing_else_is_answered(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    status, started = world.start(chip.serial)
    assert (status, started["status"], started["home"]) == (202, "pending", NAGANO)
    assert world.poll(started["id"])[1]["status"] == "pending"  # not sent yet
    world.pump()
    status, body = world.poll(started["id"])
    assert (status, body["status"]) == (200, "challenge")
    assert f'"municipality":"{CHIYODA}"' in body["message"]  # bound to the requesting municipality
    signature = chip.sign(body["message"].encode(), "1234")
    status, sent = world.answer(started["id"], signature)
    assert (status, sent["status"]) == (202, "pending")
    world.pump()
    status, outcome = world.poll(started["id"])
    assert outcome["status"] == "authenticated"
    assert (outcome["resident_code"], outcome["issuer"]) == (TARO.code, NAGANO)
    assert set(outcome) == {"id", "serial", "home", "step", "status", "resident_code", "issuer"}  # nothing else
    # The home tier's record: the challenge bound to 千代田区 and the clerk's session, spent.
    home = CardStore(f"jukinet-cards-{NAGANO_PREF}")
    challenge = CardStore(home.table_name, challenge_partition=REMOTE_CHALLENGES).challenge(body["challenge_id"])
    assert home.challenge(body["challenge_id"]) is None  # never among the tier's own counters' (CHALLENGE#)
    assert (challenge.municipality, challenge.principal, challenge.used) == (CHIYODA, counter(CHIYODA), True)
    assert challenge.expires_at - challenge.issued_at == dt.timedelta(seconds=120)
    # Counted at X (as a within-tier authentication is) and at the home, per card home.
    assert CardStore(f"jukinet-cards-{TOKYO_PREF}").statistics(CHIYODA, "2003-01")["auth_ok"] == 1
    served = home.statistics(NAGANO, "2003-01")
    assert served["remote_challenge_ok"] == 1 and served["remote_authenticate_ok"] == 1
    # The home's record of each call from the other tier: who asked (municipality and clerk), under its correlation id.
    remote_calls = [c for c in home.calls(NAGANO, "2003-01") if c["action"].startswith("remote_")]
    assert sorted((c["action"], c["outcome"]) for c in remote_calls) == [("remote_authenticate", "ok"),
                                                                        ("remote_challenge", "ok")]
    assert {c["principal"] for c in remote_calls} == {f"{CHIYODA}|{counter(CHIYODA)}"}
    assert all(c["sk"].split("#", 1)[1].startswith(f"{CHIYODA}-200301-") for c in remote_calls)
    # Polling again counts nothing twice.
    world.poll(started["id"])
    assert CardStore(f"jukinet-cards-{TOKYO_PREF}").statistics(CHIYODA, "2003-01")["auth_ok"] == 1


def test_the_within_tier_path_is_unchanged_and_refuses_to_route(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    world.authenticate(chip, at=MATSUMOTO)  # POST /v1/challenges + /v1/authentications as before
    status, body = world.start(chip.serial, at=MATSUMOTO)
    assert (status, body["error"]["code"], body["error"]["rule"]) == (400, "INVALID_REQUEST", "other_tier")
    status, body = world.call("POST", "/v1/challenges", {"serial": chip.serial}, at=CHIYODA)
    assert (status, body["error"]["code"]) == (404, "CARD_NOT_FOUND")  # not in 東京都's table

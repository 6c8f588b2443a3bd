"""A successful authentication across tiers is a wide-area copy's card proof at the counter that
made it (decision 0050): 千代田区's counter issues a copy of a 長野市 resident's record with the
resident's 長野市 card as proof, no ID document."""

from __future__ import annotations

from jukinet.adapters.copy_store import CopyStore

from ..channel.world import CHIYODA, NAGANO, TOKYO_PREF, resident
from ..copy.world import Person, counter
from .world import CrossWorld

TARO = Person(resident(41), "信濃太郎", household="1001", relationship="01", householder="信濃太郎")
HANAKO = Person(resident(42), "信濃花子", household="1002", relationship="01", householder="信濃花子")


def test_a_card_authenticated_across_prefectures_is_the_proof_of_a_wide_area_copy(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    outcome = world.remote_authenticate(chip)
    assert outcome["status"] == "authenticated"
    result = world.copy(TARO.code, NAGANO, at=CHIYODA, proof={"card_authentication": outcome["id"]})
    assert result["status"] == "issued" and result["serial"].startswith(f"{CHIYODA}-2003-")
    record = CopyStore(f"jukinet-cards-{TOKYO_PREF}").request(result["correlation"])
    assert chip.serial in record["proof"] and '"kind": "card"' in record["proof"]


def test_the_proof_vouches_only_for_its_resident_clerk_and_one_request(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    world.live(NAGANO, HANAKO)
    outcome = world.remote_authenticate(chip)
    proof = {"card_authentication": outcome["id"]}
    status, body = world.ask(HANAKO.code, NAGANO, at=CHIYODA, proof=proof)  # another resident
    assert (status, body["error"]["code"]) == (403, "PROOF_NOT_VALID")
    status, body = world.ask(TARO.code, NAGANO, at=CHIYODA, proof=proof, who=counter(CHIYODA, "clerk-2"))
    assert (status, body["error"]["code"]) == (403, "PROOF_NOT_VALID")
    assert world.ask(TARO.code, NAGANO, at=CHIYODA, proof=proof)[0] == 202


def test_an_authentication_that_was_refused_or_is_still_pending_proves_nothing(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    body = world.challenge(chip.serial)  # the challenge, not answered
    status, refused = world.ask(TARO.code, NAGANO, at=CHIYODA, proof={"card_authentication": body["id"]})
    assert (status, refused["error"]["code"]) == (403, "PROOF_NOT_VALID")


def test_a_card_suspended_after_the_authentication_is_refused_by_the_home(world: CrossWorld) -> None:
    chip = world.resident_with_card(TARO)
    outcome = world.remote_authenticate(chip)
    assert world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"}, at=NAGANO)[0] == 200
    result = world.copy(TARO.code, NAGANO, at=CHIYODA, proof={"card_authentication": outcome["id"]})
    assert (result["status"], result["refusal"]) == ("refused", "card_suspended")

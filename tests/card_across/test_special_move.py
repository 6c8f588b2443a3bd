"""The special move-out/move-in across prefectures (issue 16 part 4 with issue 15 item 5;
decisions 0049, 0050), in-process (moto): 長野市 (A, 長野県's tier) → 千代田区 (B, 東京都's tier).

A's counter files the move-out with the card authenticated there; B's counter authenticates the
card through the channel (``/v1/remote-authentications``: 長野県's tier issues and judges the
challenge, ``REMOTE-CHALLENGE#``); B asks A for the certificate naming that authentication, A
checks **its own** record of it and binds it to the request once; B registers the move-in, the
転入通知 completes A's record; the card record is carried over (``card-carry-over``, agreed on
A's completed record); the card then authenticates at B's tier within the tier and A's tier
answers ``CARD_MOVED``. The attacks: B's request naming a remote authentication of another clerk,
another resident, an expired or an already used one; a municipality of another tier asking for
the certificate or the card without a completed move to it."""

from __future__ import annotations

import datetime as dt

import pytest

from jukinet.adapters.card_requests import CardRequests
from jukinet.adapters.card_store import REMOTE_CHALLENGES, CardStore
from jukinet.domain import special_move as sm
from jukinet.handlers import card_runtime
from embedded_aws.monitoring import ALARM, OK

from ..channel.world import CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, TOKYO_PREF, resident
from ..copy.world import Person, counter
from ..moto_world import moto_world
from ..pipeline.harness import environment
from ..special_move.world import MoveWorld
from .conftest import HOME_ALARMS
from .world import CrossWorld

TARO = Person(resident(61), "信濃太郎")
HANAKO = Person(resident(62), "信濃花子", sex="2")
OLD, NEW = f"jukinet-cards-{NAGANO_PREF}", f"jukinet-cards-{TOKYO_PREF}"
DESTINATION = "東京都千代田区霞が関1丁目1番1号"


class XMoveWorld(CrossWorld, MoveWorld):
    """Both: the remote authentication (CrossWorld) and the special-move routes (MoveWorld)."""

    def move_out_at_nagano(self, person: Person, chip) -> dict:  # noqa: ANN001
        status, body = self.file(person.code, at=NAGANO, auth=self.authenticate(chip, at=NAGANO),
                                 destination=DESTINATION)
        assert status == 201, body
        return body

    def remote_auth(self, chip, *, who: str | None = None) -> str:  # noqa: ANN001
        outcome = self.remote_authenticate(chip, at=CHIYODA, who=who)
        assert outcome["status"] == "authenticated", outcome
        return outcome["id"]

    def ask(self, person: Person, auth: str) -> tuple[int, dict]:  # type: ignore[override]
        return self.move_in_request(person.code, None, at=CHIYODA, home=NAGANO, auth=auth)

    def result(self, correlation: str) -> dict:
        status, body = self.move_in_result(correlation, at=CHIYODA)
        assert status == 200, body
        return body


@pytest.fixture
def world():
    with moto_world(XMoveWorld) as made:
        yield made


def carry_overs(world: XMoveWorld):  # noqa: ANN201 (CardCarryOvers)
    """千代田区's side of a carry-over, called directly (as an insider of its counter function could)."""
    with environment(world.counter_env(TOKYO_PREF)):
        carry = card_runtime.carry_overs()
    carry.clock = carry.cards.clock = carry.reader.clock = lambda: world.now
    return carry


def home_challenge(auth_id: str) -> str:
    """The challenge 長野県's tier issued for 千代田区's remote authentication (its mirror names it)."""
    return CardRequests(NEW).authentication(auth_id)["home_challenge"]


def forged(world: XMoveWorld, person: Person, serial: str, auth_id: str, *, clerk: str = counter(CHIYODA),
           challenge: str | None = None, requester: str = CHIYODA) -> str:
    """An insider at 千代田区's tier sends the certificate query itself (signed as ``requester``
    by its channel function), naming a remote authentication: A's answer's refusal code."""
    tokyo = world.endpoint(TOKYO_PREF)
    query = sm.CertificateQuery(person.code, serial, auth_id, dt.date(2003, 1, 20), clerk,
                                challenge if challenge is not None else home_challenge(auth_id)).to_dict()
    correlation = tokyo.request(requester, NAGANO, query)
    world.pump()
    result = tokyo.result(correlation)
    return result.refusal or ("certificate" if (result.answer or {}).get("certificate") else "?")


def test_a_card_holder_moves_from_nagano_to_chiyoda_by_the_special_procedure(world: XMoveWorld) -> None:
    chip = world.holder(TARO, NAGANO)
    filed = world.move_out_at_nagano(TARO, chip)
    assert (filed["state"], filed["card_serial"]) == ("filed", chip.serial)
    # B: the card authenticated through the channel, then the certificate asked for with it
    auth = world.remote_auth(chip)
    status, accepted = world.ask(TARO, auth)
    assert status == 202, accepted
    world.pump()
    certified = world.result(accepted["correlation"])
    assert certified["status"] == "certified", certified
    cert = certified["certificate"]
    assert (cert["name"], cert["home_municipality"], cert["destination_address"]) == (
        "信濃太郎", NAGANO, DESTINATION)
    assert cert["registered_domicile"] == "長野県長野市大字鶴賀緑町1613番地"
    assert world.move_out(TARO.code, at=NAGANO)[1]["state"] == "certificate_requested"
    # A bound its own record of the challenge to this one request
    remote = CardStore(OLD, challenge_partition=REMOTE_CHALLENGES).challenge_item(home_challenge(auth))
    assert remote["move_correlation"] == accepted["correlation"] and remote["municipality"] == CHIYODA
    # B registers the move-in: the 転入通知 completes A's record; the carry-over is asked then
    status, registered = world.register_move_in(accepted["correlation"], at=CHIYODA)
    assert (status, registered["status"]) == (202, "moved_in")
    world.pump()
    done = world.result(accepted["correlation"])
    assert (done["status"], done["card_carry_over"]) == ("completed", "pending")
    assert world.move_out(TARO.code, at=NAGANO)[1]["state"] == "completed"
    assert CardStore(NEW).card(chip.serial) is None  # not before A's answer is stored
    world.pump()
    done = world.result(accepted["correlation"])
    assert (done["status"], done["card_carry_over"]) == ("completed", "moved")
    card = CardStore(NEW).card(chip.serial)
    assert (card.home, card.issuer, card.resident_code, card.status.value) == (CHIYODA, NAGANO, TARO.code, "active")
    assert CardStore(OLD).card(chip.serial).home == CHIYODA  # the old tier's pointer
    events = CardStore(NEW).events(chip.serial)
    assert events[-1].kind.value == "moved" and events[-1].details == {"from": NAGANO, "to": CHIYODA}
    # the card authenticates at 千代田区 within 東京都's tier; 長野県's tier refuses changes
    world.authenticate(chip, at=CHIYODA)
    status, body = world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"}, at=NAGANO)
    assert (status, body["error"]["code"]) == (409, "CARD_MOVED") and CHIYODA in body["error"]["message"]
    status, body = world.call("POST", "/v1/challenges", {"serial": chip.serial}, at=MATSUMOTO)
    assert (status, body["error"]["code"]) == (409, "CARD_MOVED")
    assert world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"}, at=CHIYODA)[0] == 200
    # reading again changes nothing: one move, counted once at each side
    assert world.result(accepted["correlation"])["card_carry_over"] == "moved"
    assert sum(e.kind.value == "moved" for e in CardStore(NEW).events(chip.serial)) == 1
    b = CardStore(NEW).statistics(CHIYODA, "2003-01")
    assert (b["special_move_in_requested"], b["special_move_in_certified"], b["special_move_in_completed"],
            b["carried_over"]) == (1, 1, 1, 1)
    a = CardStore(OLD).statistics(NAGANO, "2003-01")
    assert (a["special_move_out_filed"], a["remote_carry_over_ok"]) == (1, 1)


def test_the_certificate_request_names_a_remote_authentication_of_this_clerk_and_resident(
        world: XMoveWorld) -> None:
    chip = world.holder(TARO, NAGANO)
    other = world.holder(HANAKO, NAGANO)
    world.move_out_at_nagano(TARO, chip)
    # another clerk's authentication of the card; the authentication of another resident's card
    by_colleague = world.remote_auth(chip, who=counter(CHIYODA, "clerk-2"))
    of_hanako = world.remote_auth(other)
    for auth in (by_colleague, of_hanako):
        status, body = world.ask(TARO, auth)
        assert (status, body["error"]["code"], body["error"]["field"]) == (
            403, "PROOF_NOT_VALID", "card_authentication"), body
    # … and sent by an insider through 東京都's channel function: A checks its own record
    assert forged(world, TARO, chip.serial, by_colleague) == "not_authenticated_here"  # clerk-1 is not clerk-2
    assert forged(world, TARO, chip.serial, of_hanako) == "not_authenticated_here"  # Hanako's card
    assert forged(world, TARO, other.serial, of_hanako) == "not_authenticated_here"  # … for Taro
    assert forged(world, TARO, chip.serial, by_colleague, challenge="0" * 32) == "not_authenticated_here"
    assert world.move_out(TARO.code, at=NAGANO)[1]["state"] == "filed"


def test_an_expired_or_already_used_remote_authentication_gives_no_certificate(world: XMoveWorld) -> None:
    chip = world.holder(TARO, NAGANO)
    world.move_out_at_nagano(TARO, chip)
    stale = world.remote_auth(chip)
    world.later(minutes=26)  # 15 minutes at B, + the channel's longest deadline at A
    status, body = world.ask(TARO, stale)
    assert (status, body["error"]["code"]) == (403, "PROOF_NOT_VALID")
    assert forged(world, TARO, chip.serial, stale) == "not_authenticated_here"
    # a fresh one vouches for one request: a second request naming it (another correlation) is refused
    auth = world.remote_auth(chip)
    status, accepted = world.ask(TARO, auth)
    assert status == 202
    world.pump()
    assert world.result(accepted["correlation"])["status"] == "certified"
    assert forged(world, TARO, chip.serial, auth) == "not_authenticated_here"
    # the same request again from B's counter: the same correlation (a retry), nothing twice
    status, again = world.ask(TARO, auth)
    assert (status, again["correlation"]) == (202, accepted["correlation"])
    assert world.move_out(TARO.code, at=NAGANO)[1]["state"] == "certificate_requested"


def test_attack_a_municipality_of_another_tier_without_a_completed_move_there(world: XMoveWorld) -> None:
    chip = world.holder(TARO, NAGANO)
    world.move_out_at_nagano(TARO, chip)
    # 千代田区 asks for the card while the move-out is only filed: not agreed
    carry = carry_overs(world)
    asked = carry.request(chip.serial, NAGANO, CHIYODA, clerk=counter(CHIYODA))
    world.pump()
    assert carry.complete(asked) == "CARRY_OVER_NOT_AGREED"
    # the move goes to 松本市 (長野県's tier) instead, completed there
    done = world.special_move(TARO, chip, at=MATSUMOTO, home=NAGANO)
    assert (done["status"], done["card_carry_over"]) == ("completed", "moved")
    # 千代田区 (C for this move) asks for the card again, and for the certificate with a genuine
    # authentication of the card (held by 松本市 now): nothing is given
    for home in (MATSUMOTO, NAGANO):
        asked = carry.request(chip.serial, home, CHIYODA, clerk=counter(CHIYODA))
        world.pump()
        assert carry.complete(asked) == ("CARRY_OVER_NOT_AGREED" if home == MATSUMOTO else "NOT_THIS_MUNICIPALITY")
    auth = world.remote_auth(chip)
    status, accepted = world.move_in_request(TARO.code, None, at=CHIYODA, home=MATSUMOTO, auth=auth)
    assert status == 202, accepted
    world.pump()
    refused = world.result(accepted["correlation"])
    assert (refused["status"], refused["refusal"]) == ("refused", "no_special_move_out")
    status, accepted = world.ask(TARO, world.remote_auth(chip))  # 長野市 named: its move-out is completed
    assert status == 202, accepted
    world.pump()
    refused = world.result(accepted["correlation"])
    assert (refused["status"], refused["refusal"]) == ("refused", "already_moved_in")
    assert CardStore(OLD).card(chip.serial).home == MATSUMOTO and CardStore(NEW).card(chip.serial) is None


def test_a_lost_carry_over_request_is_asked_again_and_the_card_moves_once(world: XMoveWorld) -> None:
    chip = world.holder(TARO, NAGANO)
    world.move_out_at_nagano(TARO, chip)
    status, accepted = world.ask(TARO, world.remote_auth(chip))
    world.pump()
    assert world.result(accepted["correlation"])["status"] == "certified"
    world.register_move_in(accepted["correlation"], at=CHIYODA)
    world.pump()
    assert world.result(accepted["correlation"])["card_carry_over"] == "pending"
    world.pump(drop={"muni-130001"})  # the counter's nudge is lost: the request is never sent
    world.later(seconds=89)
    assert world.result(accepted["correlation"])["card_carry_over"] == "pending"
    world.later(seconds=2)  # past the deadline and the grace: asked again
    assert world.result(accepted["correlation"])["card_carry_over"] == "pending"
    world.pump(drop={"pref-200000"})  # … sent this time, lost between the tiers
    assert world.result(accepted["correlation"])["card_carry_over"] == "pending"
    world.later(minutes=1)  # the request timed out: asked a third time
    assert world.result(accepted["correlation"])["card_carry_over"] == "pending"
    world.pump()
    assert world.result(accepted["correlation"])["card_carry_over"] == "moved"
    assert sum(e.kind.value == "moved" for e in CardStore(NEW).events(chip.serial)) == 1
    assert CardStore(NEW).card(chip.serial).home == CHIYODA


def test_every_message_delivered_twice_moves_the_card_once(world: XMoveWorld) -> None:
    chip = world.holder(TARO, NAGANO)
    world.move_out_at_nagano(TARO, chip)
    status, accepted = world.ask(TARO, world.remote_auth(chip))
    world.pump(duplicate=True, rounds=200)
    assert world.result(accepted["correlation"])["status"] == "certified"
    world.register_move_in(accepted["correlation"], at=CHIYODA)
    world.pump(duplicate=True, rounds=200)
    assert world.result(accepted["correlation"])["card_carry_over"] == "pending"
    world.pump(duplicate=True, rounds=200)
    assert world.result(accepted["correlation"])["card_carry_over"] == "moved"
    assert world.result(accepted["correlation"])["card_carry_over"] == "moved"
    for table in (OLD, NEW):
        assert sum(e.kind.value == "moved" for e in CardStore(table).events(chip.serial)) == 1, table
    assert CardStore(NEW).statistics(CHIYODA, "2003-01")["carried_over"] == 1
    assert CardStore(OLD).statistics(NAGANO, "2003-01")["special_move_out_filed"] == 1


def test_a_special_move_across_prefectures_keeps_the_old_homes_card_alarms_quiet(world: XMoveWorld,
                                                                                 home_alarms) -> None:
    """The whole move, every channel message delivered as usual: the old home's card alarms (fed by
    its channel function: the remote authentication, the certificate, the carry-over) stay quiet."""
    chip = world.holder(TARO, NAGANO)
    world.move_out_at_nagano(TARO, chip)
    status, accepted = world.ask(TARO, world.remote_auth(chip))
    assert status == 202, accepted
    world.pump()
    assert world.register_move_in(accepted["correlation"], at=CHIYODA)[0] == 202
    world.pump()
    assert world.result(accepted["correlation"])["card_carry_over"] == "pending"  # asked of A at this look
    world.pump()
    assert world.result(accepted["correlation"])["card_carry_over"] == "moved"
    assert home_alarms() == dict.fromkeys(HOME_ALARMS, OK)


def test_attack_a_card_pulled_without_a_move_raises_the_old_homes_unauthorised_attempts_alarm(
        world: XMoveWorld, home_alarms) -> None:
    """An insider with 千代田区's channel rights asks 長野市 for a card whose holder filed no move
    to 千代田区: refused (the test above), and 長野県's ``card-unauthorised-attempts`` fires."""
    chip = world.holder(TARO, NAGANO)
    carry = carry_overs(world)
    asked = carry.request(chip.serial, NAGANO, CHIYODA, clerk=counter(CHIYODA))
    world.pump()
    assert carry.complete(asked) == "CARRY_OVER_NOT_AGREED"
    assert home_alarms() == {**dict.fromkeys(HOME_ALARMS, OK), "card-unauthorised-attempts": ALARM}

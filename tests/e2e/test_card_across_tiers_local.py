"""Cards across prefectures on the deployed assembly (decision 0050): ``two-prefectures-compact``
(長野県 and 東京都) synthesized and deployed into the embedded AWS; a resident entered at 長野市
through its deployed CS gets a card at 長野市's counter; 千代田区's counter (東京都's tier, its own
private counter API) asks for a challenge — its deployed counter function records and nudges,
東京都's channel function signs and sends as 千代田区, the 東京都 and 長野県 processors and the
national processor route it, 長野県's channel function issues the challenge with the tier's
card-event key and table — the card signs, the answer goes the same way, and the counter reads
{resident_code, issuer}; then a wide-area copy at 千代田区 with that authentication as proof, and
a suspended card refused. The embedded AWS does not enforce key or queue policies
(tests/infra/test_card_across_tiers.py asserts those): this checks the wiring end to end."""

from __future__ import annotations

import base64
import json
import random
import time

import pytest

from infra.naming import Names
from jukinet.adapters.card_store import CardStore
from jukinet.clock import system_clock
from jukinet.domain.card import VirtualCard

from ..dates import months_jst
from ..pipeline.exports import csv_bytes, person, row
from .embedded import counter_api, deployed_nagano, drop_export

pytestmark = pytest.mark.slow

NAGANO, CHIYODA = "202011", "131016"
DEPLOYMENT = "two-prefectures-compact"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with deployed_nagano(tmp_path_factory, deployment_name=DEPLOYMENT) as (deployment, env, runner):
        nagano, tokyo = deployment.prefectures
        rng = random.Random(50)
        people = [person(rng) for _ in range(2)]
        drop_export(deployment, NAGANO, "residents.csv", csv_bytes([row(p, "転入", "2003-01-06") for p in people]))
        assert runner.run_until_idle(timeout_s=300).idle
        with counter_api(deployment, env, runner, (NAGANO,), prefecture_code=nagano.code) as (at_nagano, by), \
                counter_api(deployment, env, runner, (CHIYODA,), prefecture_code=tokyo.code) as (at_chiyoda, by_t):
            yield deployment, runner, {NAGANO: at_nagano, CHIYODA: at_chiyoda}, {**by, **by_t}, people


def _call(world, at, method, path, body=None):
    _, _, apis, by, _ = world
    response = apis[at].request(by[at], method, path, body=None if body is None else json.dumps(body),
                                headers={"Content-Type": "application/json"})
    return response.status, response.json()


def _poll(world, auth_id, until, timeout_s=120.0):
    runner = world[1]
    deadline = time.monotonic() + timeout_s
    while True:
        runner.run_until_idle(timeout_s=60)
        status, body = _call(world, CHIYODA, "GET", f"/v1/remote-authentications/{auth_id}")
        assert status == 200, body
        if body["status"] in until or time.monotonic() > deadline:
            return body


def test_a_nagano_card_is_authenticated_at_chiyodas_counter_and_proves_a_wide_area_copy(world):
    people = world[4]
    chip = VirtualCard("1357")
    status, card = _call(world, NAGANO, "POST", "/v1/cards", {"resident_code": people[0]["resident_code"],
                                                              "card_type": "B", "public_key": chip.public_key})
    assert status == 201, card
    chip.serial = card["serial"]
    began, started = system_clock(), time.monotonic()
    status, accepted = _call(world, CHIYODA, "POST", "/v1/remote-authentications", {"serial": chip.serial})
    assert (status, accepted["status"], accepted["home"]) == (202, "pending", NAGANO)
    challenge = _poll(world, accepted["id"], ("challenge", "refused", "timed_out"))
    assert challenge["status"] == "challenge", challenge
    signature = base64.b64encode(chip.sign(challenge["message"].encode(), "1357")).decode()
    status, sent = _call(world, CHIYODA, "POST", f"/v1/remote-authentications/{accepted['id']}/answer",
                         {"signature": signature})
    assert status == 202, sent
    outcome = _poll(world, accepted["id"], ("authenticated", "refused", "timed_out"))
    took = time.monotonic() - started
    assert (outcome["status"], outcome["resident_code"], outcome["issuer"]) == \
        ("authenticated", people[0]["resident_code"], NAGANO), outcome
    assert took < 30, took  # two channel round trips across prefectures and the polls (measured: see docs/card.md)
    # the home tier's count of what it answered a counter of another tier (per card home and month)
    names = Names.of(world[0])
    home = CardStore(names.card_table(world[0].prefectures[0].code))
    assert sum(home.statistics(NAGANO, month).get("remote_authenticate_ok", 0)  # every month (JST) it ran through
               for month in months_jst(began, system_clock())) == 1
    # the authentication is a wide-area copy's card proof at 千代田区
    status, copy = _call(world, CHIYODA, "POST", "/v1/wide-area-copies", {
        "resident_code": people[0]["resident_code"], "home_municipality": NAGANO,
        "proof": {"card_authentication": accepted["id"]}})
    assert status == 202, copy
    world[1].run_until_idle(timeout_s=60)
    status, result = _call(world, CHIYODA, "GET", f"/v1/wide-area-copies/{copy['correlation']}")
    assert (status, result["status"]) == (200, "issued"), result
    assert result["serial"].startswith(f"{CHIYODA}-")


def test_a_suspended_nagano_card_is_refused_at_chiyoda(world):
    people = world[4]
    chip = VirtualCard("2468")
    status, card = _call(world, NAGANO, "POST", "/v1/cards", {"resident_code": people[1]["resident_code"],
                                                              "card_type": "A", "public_key": chip.public_key})
    assert status == 201, card
    assert _call(world, NAGANO, "POST", f"/v1/cards/{card['serial']}/suspension", {"reason": "lost"})[0] == 200
    status, accepted = _call(world, CHIYODA, "POST", "/v1/remote-authentications", {"serial": card["serial"]})
    assert status == 202, accepted
    outcome = _poll(world, accepted["id"], ("challenge", "refused", "timed_out"))
    assert (outcome["status"], outcome["code"]) == ("refused", "CARD_SUSPENDED"), outcome

"""The special move-out/move-in across prefectures on the deployed assembly (docs/second-phase.md
part 4; decisions 0049, 0050): ``two-prefectures-compact`` (長野県 and 東京都) synthesized and
deployed into the embedded AWS. A resident entered at 長野市 through its deployed CS (with 本籍
and the household) gets a card at 長野市's counter and files the special move-out there; 千代田区's
counter (東京都's tier, its own counter API) authenticates the card through the channel, asks for
the certificate information with that authentication (長野県's channel function checks its own
record of the challenge), registers the move-in; 長野市 completes; the card record is carried
over to 東京都's tier (``pending`` then ``moved``) and authenticates there within the tier, while
長野県's tier answers ``CARD_MOVED``; then the two CSs send the 転出 and the 特例転入 as export files,
東京都's tier's register shows 千代田区, and the month reconciles in both prefectures. The embedded AWS
does not enforce key or queue policies (tests/infra/ asserts those): this checks the wiring."""

from __future__ import annotations

import random
import time

import pytest

from infra.naming import Names
from jukinet.adapters.card_store import CardStore
from jukinet.clock import system_clock, today_jst
from jukinet.domain.card import VirtualCard
from jukinet_ops.card_demo import Counter, special_move_rows
from jukinet_ops.reconcile import reconcile_deployment

from ..dates import months_jst
from ..pipeline.exports import WITH_LOCAL_COLUMNS, csv_bytes, person, row
from .embedded import counter_api, deployed_nagano, drop_export

pytestmark = pytest.mark.slow

NAGANO, CHIYODA = "202011", "131016"
DEPLOYMENT = "two-prefectures-compact"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with deployed_nagano(tmp_path_factory, deployment_name=DEPLOYMENT) as (deployment, env, runner):
        nagano, tokyo = deployment.prefectures
        rng = random.Random(52)
        people = [person(rng) for _ in range(1)]
        local = {"household_number": "0052001", "registered_domicile": "本籍特例県長野市1番",
                 "family_register_head": "筆頭特例", "previous_address": "前住所特例県試験市2番",
                 "householder_name": people[0]["name_kanji"], "relationship": "世帯主"}
        drop_export(deployment, NAGANO, "nagano.csv",
                    csv_bytes([row(p, "転入", "2003-01-05") | local for p in people], columns=WITH_LOCAL_COLUMNS))
        assert runner.run_until_idle(timeout_s=300).idle
        with counter_api(deployment, env, runner, (NAGANO,), prefecture_code=nagano.code) as (at_nagano, by), \
                counter_api(deployment, env, runner, (CHIYODA,), prefecture_code=tokyo.code) as (at_chiyoda, by_t):
            yield deployment, runner, Counter(at_nagano, by[NAGANO]), Counter(at_chiyoda, by_t[CHIYODA]), people


def _until(runner, call, done, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while True:
        runner.run_until_idle(timeout_s=60)
        status, body = call()
        assert status == 200, body
        if done(body) or time.monotonic() > deadline:
            return body


def _remote_authentication(runner, at: Counter, chip: VirtualCard, pin: str) -> str:
    import base64
    status, accepted = at.post("/v1/remote-authentications", {"serial": chip.serial})
    assert status == 202, accepted
    path = f"/v1/remote-authentications/{accepted['id']}"
    challenge = _until(runner, lambda: at.get(path), lambda b: b["status"] != "pending")
    assert challenge["status"] == "challenge", challenge
    status, sent = at.post(f"{path}/answer", {"signature": base64.b64encode(
        chip.sign(challenge["message"].encode(), pin)).decode()})
    assert status == 202, sent
    outcome = _until(runner, lambda: at.get(path), lambda b: b["status"] != "pending")
    assert outcome["status"] == "authenticated", outcome
    return accepted["id"]


def test_a_card_holder_moves_from_nagano_to_chiyoda_and_the_notices_reconcile(world):
    deployment, runner, at_nagano, at_chiyoda, people = world
    mover = people[0]["resident_code"]
    chip = VirtualCard("5252")
    at_nagano.issue(mover, chip)
    assert at_nagano.authenticate(chip, "5252")[0] == 200
    today = today_jst(system_clock()).isoformat()
    started = time.monotonic()
    status, filed = at_nagano.post("/v1/special-move-outs", {
        "resident_code": mover, "planned_move_date": today, "destination_address": "東京都千代田区九段南1丁目2番1号",
        "card_authentication": at_nagano.authenticated[chip.serial]})
    assert (status, filed["state"]) == (201, "filed"), filed
    auth = _remote_authentication(runner, at_chiyoda, chip, "5252")
    status, asked = at_chiyoda.post("/v1/special-move-ins", {
        "resident_code": mover, "home_municipality": NAGANO, "moved_on": today, "card_authentication": auth})
    assert status == 202, asked
    path = f"/v1/special-move-ins/{asked['correlation']}"
    certified = _until(runner, lambda: at_chiyoda.get(path), lambda b: b["status"] != "requested")
    assert certified["status"] == "certified", certified
    cert = certified["certificate"]
    assert (cert["name"], cert["registered_domicile"], cert["card_serial"]) == (
        people[0]["name_kanji"], "本籍特例県長野市1番", chip.serial)
    status, registered = at_chiyoda.post(f"{path}/move-in")
    assert (status, registered["status"]) == (202, "moved_in")
    done = _until(runner, lambda: at_chiyoda.get(path), lambda b: b.get("card_carry_over") == "moved")
    took = time.monotonic() - started
    assert (done["status"], done["card_carry_over"]) == ("completed", "moved"), done
    assert took < 60, took
    print(f"the special move across prefectures at the counters: {took:.1f} s")
    assert at_nagano.get(f"/v1/special-move-outs/{mover}")[1]["state"] == "completed"
    names = Names.of(deployment)
    nagano, tokyo = deployment.prefectures
    old, new = CardStore(names.card_table(nagano.code)), CardStore(names.card_table(tokyo.code))
    assert (new.card(chip.serial).home, old.card(chip.serial).home) == (CHIYODA, CHIYODA)
    # within 東京都's tier now; 長野県's tier refuses changes and points to 千代田区
    assert at_chiyoda.authenticate(chip, "5252")[0] == 200
    status, body = at_nagano.post(f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"})
    assert (status, body["error"]["code"]) == (409, "CARD_MOVED"), body
    assert at_chiyoda.post(f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"})[0] == 200
    assert at_chiyoda.post(f"/v1/cards/{chip.serial}/resumption")[0] == 200
    # the notices through the normal path: 転出 at 長野市 (長野県), 特例転入 at 千代田区 (東京都)
    dropped = system_clock()
    out_file, in_file = special_move_rows(mover, cert, today)
    drop_export(deployment, NAGANO, "nagano-tokurei.csv", out_file)
    drop_export(deployment, CHIYODA, "chiyoda-tokurei.csv", in_file)
    while runner.process_new_objects():
        pass
    assert runner.run_until_idle(timeout_s=120).idle
    register = new.register(mover)
    assert (register.municipality, register.reason.value) == (CHIYODA, "12")
    months = months_jst(dropped, system_clock())  # a run crossing midnight at a month's end: both months
    for prefecture, code in ((nagano, NAGANO), (tokyo, CHIYODA)):
        rows = [r for month in months for r in reconcile_deployment(deployment, month, prefecture.code)
                if r.municipality == code]
        assert sum(r.sent for r in rows) >= 1 and all(r.problems == [] for r in rows), rows

"""The special move-out/move-in on the deployed assembly (docs/second-phase.md part 4): the
synthesized Nagano assembly in the embedded AWS; residents entered at 上田市 through its deployed
CS (with 本籍 and the household); 上田市's counter issues a card and records the special move-out
(the card authenticated there); 飯田市's counter authenticates the card and asks for the
certificate information through the deployed counter function, channel function and prefecture
processor; registers the move-in; 上田市 completes the move-out; the card is carried over
(``moved``); then the two CSs send the 転出 and the 特例転入 as export files and the month
reconciles. The demo's own step (``card_demo.run_special_move_demo``) runs on the same assembly.
The embedded AWS does not enforce key or queue policies (tests/infra/test_special_move.py)."""

from __future__ import annotations

import random

import pytest

from infra.naming import Names
from jukinet.adapters.card_store import CardStore
from jukinet.clock import system_clock, today_jst
from jukinet.domain.card import VirtualCard
from jukinet_ops.card_demo import Counter, run_special_move_demo, special_move_rows
from jukinet_ops.reconcile import reconcile_deployment

from ..dates import months_jst
from ..pipeline.exports import WITH_LOCAL_COLUMNS, csv_bytes, person, row
from .embedded import counter_api, deployed_nagano, drop_export

pytestmark = pytest.mark.slow

UEDA, IIDA, MATSUMOTO = "202037", "202053", "202029"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with deployed_nagano(tmp_path_factory) as (deployment, env, runner):
        rng = random.Random(49)
        people = [person(rng) for _ in range(3)]
        local = {"household_number": "0049001", "registered_domicile": "本籍特例県上田市1番",
                 "family_register_head": "筆頭特例", "previous_address": "前住所特例県試験市2番"}
        rows = [row(p, "転入", "2003-01-05") | local | {"householder_name": people[0]["name_kanji"],
                                                        "relationship": "世帯主" if i == 0 else "子"}
                for i, p in enumerate(people)]
        drop_export(deployment, UEDA, "ueda.csv", csv_bytes(rows, columns=WITH_LOCAL_COLUMNS))
        assert runner.run_until_idle(timeout_s=300).idle
        with counter_api(deployment, env, runner, (UEDA, IIDA, MATSUMOTO)) as (api, by):
            yield deployment, runner, api, by, people


def test_a_card_holder_moves_from_ueda_to_iida_and_the_notices_reconcile(world):
    deployment, runner, api, by, people = world
    mover = people[0]["resident_code"]
    at_ueda, at_iida, at_matsumoto = Counter(api, by[UEDA]), Counter(api, by[IIDA]), Counter(api, by[MATSUMOTO])
    chip = VirtualCard("4949")
    at_ueda.issue(mover, chip)
    assert at_ueda.authenticate(chip, "4949")[0] == 200
    today = today_jst(system_clock()).isoformat()
    status, filed = at_ueda.post("/v1/special-move-outs", {
        "resident_code": mover, "planned_move_date": today, "destination_address": "長野県飯田市追手町2丁目678番地",
        "card_authentication": at_ueda.authenticated[chip.serial]})
    assert (status, filed["state"]) == (201, "filed"), filed
    # 松本市 asks without the resident at its counter: refused before anything is sent
    status, refused = at_matsumoto.post("/v1/special-move-ins", {
        "resident_code": mover, "home_municipality": UEDA, "moved_on": today,
        "card_authentication": at_ueda.authenticated[chip.serial]})
    assert (status, refused["error"]["code"]) == (403, "PROOF_NOT_VALID")
    assert at_iida.authenticate(chip, "4949")[0] == 200
    status, asked = at_iida.post("/v1/special-move-ins", {
        "resident_code": mover, "home_municipality": UEDA, "moved_on": today,
        "card_authentication": at_iida.authenticated[chip.serial]})
    assert status == 202, asked
    path = f"/v1/special-move-ins/{asked['correlation']}"
    assert runner.run_until_idle(timeout_s=120).idle
    status, certified = at_iida.get(path)
    assert (status, certified["status"]) == (200, "certified"), certified
    cert = certified["certificate"]
    assert (cert["name"], cert["registered_domicile"], cert["card_serial"]) == (
        people[0]["name_kanji"], "本籍特例県上田市1番", chip.serial)
    status, registered = at_iida.post(f"{path}/move-in")
    assert (status, registered["status"]) == (202, "moved_in")
    assert runner.run_until_idle(timeout_s=120).idle
    status, done = at_iida.get(path)
    assert (done["status"], done["card_carry_over"]) == ("completed", "moved"), done
    assert at_ueda.get(f"/v1/special-move-outs/{mover}")[1]["state"] == "completed"
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    cards = CardStore(names.card_table(prefecture.code))
    assert cards.card(chip.serial).home == IIDA
    # the card still authenticates anywhere in the tier, and 飯田市 now holds it
    assert at_matsumoto.authenticate(chip, "4949")[0] == 200
    assert at_iida.post(f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"})[0] == 200
    assert at_iida.post(f"/v1/cards/{chip.serial}/resumption")[0] == 200
    # the notices through the normal path: 転出 at 上田市, 特例転入 at 飯田市; the month reconciles
    dropped = system_clock()
    out_file, in_file = special_move_rows(mover, cert, today)
    drop_export(deployment, UEDA, "ueda-tokurei.csv", out_file)
    drop_export(deployment, IIDA, "iida-tokurei.csv", in_file)
    while runner.process_new_objects():
        pass
    assert runner.run_until_idle(timeout_s=120).idle
    register = cards.register(mover)
    assert (register.municipality, register.reason.value) == (IIDA, "12")
    months = months_jst(dropped, system_clock())  # a run crossing midnight at a month's end: both months
    rows = [r for month in months for r in reconcile_deployment(deployment, month, prefecture.code)]
    for code in (UEDA, IIDA):
        mine = [r for r in rows if r.municipality == code]
        assert sum(r.sent for r in mine) >= 1 and all(r.problems == [] for r in mine), mine


def test_the_demos_step_on_the_deployed_assembly(world):
    deployment, runner, api, by, people = world
    move = run_special_move_demo(api, by, runner, deployment, home=(UEDA, "上田市"), to=(IIDA, "飯田市"),
                                 resident=people[1]["resident_code"])
    assert (move.filed, move.certified, move.status, move.carry_over, move.card_home, move.move_out) == (
        "filed", "certified", "completed", "moved", IIDA, "completed"), move
    assert move.register == f"{IIDA} 特例転入" and move.balanced, move
    assert move.seconds < 30
    print(f"the demo's special move: {move.seconds:.1f} s")

"""The counter API end to end on the embedded AWS: the synthesized Nagano assembly deployed
into a moto server, residents entered through the deployed CSs (which record them in the
tier's card table), and the deployed private counter API served by ``LocalApi`` — called
with SigV4 by the municipalities' counter-staff roles through the tier's execute-api endpoint."""

from __future__ import annotations

import base64
import json
import random

import pytest

from jukinet.domain.card import VirtualCard

from ..pipeline.exports import csv_bytes, person, row
from .embedded import E2E_DEPLOYMENT, counter_api, deployed_nagano, drop_export

pytestmark = pytest.mark.slow

NAGANO, MATSUMOTO = "202011", "202029"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with deployed_nagano(tmp_path_factory) as (deployment, env, runner):
        rng = random.Random(15)
        people = [person(rng) for _ in range(3)]
        drop_export(deployment, NAGANO, "residents.csv", csv_bytes([row(p, "転入", "2003-01-06") for p in people]))
        # a resident of 上田市: the demo step's special move 上田市 → 飯田市 (docs/second-phase.md part 4)
        drop_export(deployment, "202037", "ueda.csv", csv_bytes([row(person(rng), "転入", "2003-01-06")]))
        runner.run_until_idle(timeout_s=300)
        with counter_api(deployment, env, runner, (NAGANO, MATSUMOTO), operator=True) as (api, by):
            yield api, by, people


def _post(api, principal, path, body=None, headers=None):
    response = api.request(principal, "POST", path, body=json.dumps(body or {}),
                           headers={"Content-Type": "application/json", **(headers or {})})
    return response.status, response.json()


def _authenticate(api, principal, chip, pin):
    status, challenge = _post(api, principal, "/v1/challenges", {"serial": chip.serial})
    if status != 200:
        return status, challenge
    signature = chip.sign(challenge["message"].encode(), pin)
    return _post(api, principal, "/v1/authentications", {"challenge_id": challenge["challenge_id"],
                                                      "signature": base64.b64encode(signature).decode()})


def test_issue_authenticate_elsewhere_suspend_and_refuse(world):
    api, by, people = world
    code = people[0]["resident_code"]
    chip = VirtualCard("2468")
    status, card = _post(api, by[NAGANO], "/v1/cards", {"resident_code": code, "card_type": "B",
                                                     "public_key": chip.public_key})
    assert status == 201, card
    chip.serial = card["serial"]
    status, answer = _authenticate(api, by[MATSUMOTO], chip, "2468")
    assert (status, answer) == (200, {"resident_code": code, "issuer": NAGANO})
    status, suspended = _post(api, by["operator"], f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"})
    assert (status, suspended["status"]) == (200, "suspended")
    status, body = _authenticate(api, by[MATSUMOTO], chip, "2468")
    assert (status, body["error"]["code"]) == (403, "CARD_SUSPENDED")


def test_another_municipalitys_counter_cannot_issue_for_a_resident_not_theirs(world):
    api, by, people = world
    status, body = _post(api, by[MATSUMOTO], "/v1/cards", {"resident_code": people[1]["resident_code"],
                                                        "card_type": "A", "public_key": VirtualCard("1111").public_key})
    assert (status, body["error"]["code"]) == (409, "RESIDENT_NOT_ACTIVE")


def test_the_gateway_denies_a_counter_role_outside_the_tiers_endpoint_and_the_operator_off_suspension(world):
    api, by, people = world
    status, body = _post(api, by[NAGANO], "/v1/challenges", {"serial": "202011-0000000000000000"},
                         headers={"X-Jukinet-Local-Source-Vpce": "vpce-0bad0000000000bad"})
    assert status == 403 and "explicit deny" in body["message"]
    status, body = _post(api, by["operator"], "/v1/cards", {"resident_code": people[2]["resident_code"],
                                                         "card_type": "A", "public_key": VirtualCard("1111").public_key})
    assert status == 403 and "message" in body


def test_the_demo_step_issues_authenticates_suspends_and_locks(world, tmp_path):
    import io
    import time

    from rich.console import Console

    from jukinet.adapters import aws as _aws  # noqa: F401 — the world's environment is in effect
    from jukinet_ops.card_demo import run_card_demo

    api, _, _ = world
    console = Console(file=io.StringIO(), width=200)
    from infra.config import load_deployment

    started = time.perf_counter()
    out = run_card_demo(console, load_deployment(E2E_DEPLOYMENT), api.env, api.runner, reports_dir=tmp_path)
    seconds = time.perf_counter() - started
    assert out["authenticated"][0] == 200 and set(out["authenticated"][1]) == {"resident_code", "issuer"}
    assert out["lost"][1]["error"]["code"] == "CARD_SUSPENDED"
    assert [t["failures"] for t in out["pin"]] == [1, 2, 3] and out["pin"][-1]["locked"]
    assert out["after_lock"][1]["error"]["code"] == "PIN_LOCKED"
    assert "authenticated at" in console.file.getvalue()  # the step's lines; the demo prints the statistics
    # The wide-area copy at 松本市's counter for the 長野市 resident whose card it authenticated:
    # issued, its PDF written; a copy naming a member not in the household refused with its code.
    copy = out["copy"]
    assert (copy.issuer, copy.home, copy.proof, copy.status) == (MATSUMOTO, NAGANO, "card", "issued"), copy
    assert copy.serial.startswith(f"{MATSUMOTO}-") and copy.pages == 1
    assert copy.path == tmp_path / f"wide-area-copy-{copy.serial}.pdf" and copy.path.read_bytes()[:5] == b"%PDF-"
    assert copy.path.stat().st_size == copy.size
    assert (copy.refused_status, copy.refusal) == ("refused", "not_in_household")
    assert copy.seconds < 5, copy.seconds
    # The special move 上田市 → 飯田市 of the world's 上田市 resident (the step in detail:
    # tests/e2e/test_special_move_local.py).
    move = out["special_move"]
    assert (move.status, move.card_home, move.register, move.balanced) == (
        "completed", "202053", "202053 特例転入", True), move
    from jukinet_ops.demo_report import DemoOutput

    shown = Console(file=io.StringIO(), width=300)
    DemoOutput(shown).wide_area_copies(copy, tmp_path)
    lines = shown.file.getvalue().splitlines()
    assert len(lines) == 2 and copy.serial in lines[0] and copy.path.name in lines[0], lines
    assert "refused not_in_household" in lines[1]
    print("\n".join(lines), f"\ncard step {seconds:.1f} s, of which the copies {copy.seconds:.2f} s")
    # No card authenticated at this counter: the clerk's documented ID check is the proof.
    from jukinet_ops.card_demo import Counter, run_copy_demo

    _, by, people = world
    other = run_copy_demo(Counter(api, by[MATSUMOTO]), api.runner, issuer=(MATSUMOTO, "松本市"), home=(NAGANO, "長野市"),
                          applicant=people[2]["resident_code"], card_serial="", stranger=people[0]["resident_code"],
                          reports_dir=None)
    assert (other.proof, other.status, other.path, other.refusal) == ("document", "issued", None, "not_in_household")
    assert other.serial > copy.serial

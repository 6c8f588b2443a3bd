"""The wide-area copy on the deployed assembly (decision 0046): the synthesized Nagano assembly in
the embedded AWS, a household entered at 長野市 through its deployed CS (with the local fields:
household, relationship, 本籍 and 筆頭者), and 松本市's counter asking through the deployed
private counter API (SigV4, the tier's execute-api endpoint) — the deployed counter function
records the request and nudges the deployed channel function, which signs and sends it as
松本市; the prefecture processor routes it down; the channel function answers as 長野市 from the
local-record table; the counter reads the answer and returns the PDF. The embedded AWS does not
enforce key or queue policies (tests/infra/test_wide_area_copy.py asserts those): this checks the
wiring — names, environment, the bundled reportlab and the names file — end to end."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random

import pypdf
import pytest

from infra.naming import Names
from jukinet.adapters import aws
from jukinet.adapters.copy_store import CopyStore
from jukinet.domain.card import VirtualCard

from ..pipeline.exports import WITH_LOCAL_COLUMNS, csv_bytes, person, row
from .embedded import counter_api, deployed_nagano, drop_export

pytestmark = pytest.mark.slow

NAGANO, MATSUMOTO = "202011", "202029"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with deployed_nagano(tmp_path_factory) as (deployment, env, runner):
        rng = random.Random(46)
        head, child = person(rng), person(rng)
        local = {"householder_name": head["name_kanji"], "household_number": "0046001",
                 "registered_domicile": "本籍広域県試験市1番", "family_register_head": "筆頭広域",
                 "previous_address": "前住所広域県試験市2番"}
        rows = [row(head, "転入", "2003-01-05") | local | {"relationship": "世帯主"},
                row(child, "転入", "2003-01-05") | local | {"relationship": "子"}]
        drop_export(deployment, NAGANO, "household.csv", csv_bytes(rows, columns=WITH_LOCAL_COLUMNS))
        assert runner.run_until_idle(timeout_s=300).idle
        with counter_api(deployment, env, runner, (NAGANO, MATSUMOTO)) as (api, by):
            yield deployment, runner, api, by, head, child


def _call(api, principal, method, path, body=None):
    response = api.request(principal, method, path, body=None if body is None else json.dumps(body),
                           headers={"Content-Type": "application/json"})
    return response.status, response.json()


def test_matsumotos_counter_issues_a_copy_of_a_nagano_household(world):
    deployment, runner, api, by, head, child = world
    status, accepted = _call(api, by[MATSUMOTO], "POST", "/v1/wide-area-copies", {
        "resident_code": head["resident_code"], "home_municipality": NAGANO, "members": [child["resident_code"]],
        "proof": {"document": {"type": "driving_licence", "number": "461234567890", "clerk": "松本 窓口"}}})
    assert status == 202, accepted
    status, pending = _call(api, by[MATSUMOTO], "GET", f"/v1/wide-area-copies/{accepted['correlation']}")
    assert (status, pending["status"]) == (200, "pending")
    assert runner.run_until_idle(timeout_s=300).idle
    status, copy = _call(api, by[MATSUMOTO], "GET", f"/v1/wide-area-copies/{accepted['correlation']}")
    assert (status, copy["status"]) == (200, "issued"), copy
    assert [r["resident_code"] for r in copy["rows"]] == [head["resident_code"], child["resident_code"]]
    pdf = base64.b64decode(copy["pdf"])
    assert hashlib.sha256(pdf).hexdigest() == copy["pdf_sha256"]
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    for expected in ("住民票の写し（広域交付）", head["name_kanji"], child["name_kanji"], "松本市長", "長野市（202011）",
                     "前住所広域県試験市2番", copy["serial"]):
        assert expected in text, expected
    for absent in ("本籍広域県試験市1番", "筆頭広域"):
        assert absent not in text and absent not in json.dumps(copy, ensure_ascii=False)
    # 長野市's clerk cannot read 松本市's copy; 長野市 recorded the copy answered for issue elsewhere.
    status, refused = _call(api, by[NAGANO], "GET", f"/v1/wide-area-copies/{accepted['correlation']}")
    assert (status, refused["error"]["code"]) == (403, "NOT_THIS_MUNICIPALITY")
    names = Names.of(deployment)
    month = accepted["correlation"].split("-")[1]
    elsewhere = CopyStore(names.card_table("200000")).answered_elsewhere(NAGANO, f"{month[:4]}-{month[4:]}")
    assert [(e["sk"], e["requester"]) for e in elsewhere] == [(accepted["correlation"], MATSUMOTO)]


def test_a_card_authenticated_at_matsumoto_is_the_proof(world):
    deployment, runner, api, by, head, child = world
    chip = VirtualCard("4646")
    status, card = _call(api, by[NAGANO], "POST", "/v1/cards", {"resident_code": child["resident_code"],
                                                               "card_type": "B", "public_key": chip.public_key})
    assert status == 201, card
    status, challenge = _call(api, by[MATSUMOTO], "POST", "/v1/challenges", {"serial": card["serial"]})
    signature = base64.b64encode(chip.sign(challenge["message"].encode(), "4646")).decode()
    status, _ = _call(api, by[MATSUMOTO], "POST", "/v1/authentications",
                      {"challenge_id": challenge["challenge_id"], "signature": signature})
    assert status == 200
    status, accepted = _call(api, by[MATSUMOTO], "POST", "/v1/wide-area-copies", {
        "resident_code": child["resident_code"], "home_municipality": NAGANO,
        "proof": {"card_authentication": challenge["challenge_id"]}})
    assert status == 202, accepted
    assert runner.run_until_idle(timeout_s=300).idle
    status, copy = _call(api, by[MATSUMOTO], "GET", f"/v1/wide-area-copies/{accepted['correlation']}")
    assert (status, copy["status"], len(copy["rows"])) == (200, "issued", 1), copy
    # nothing was dead-lettered on the way
    names = Names.of(deployment)
    sqs = aws.client("sqs")
    for queue in (names.dead_letter_queue(names.channel_queue("200000")),
                  names.dead_letter_queue(names.inbound_queue("pref-200000"))):
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0", queue

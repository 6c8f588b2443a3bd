"""The deployed assembly on the embedded AWS: a CS given an export with the municipality-only
fields stores them in its tier's local-record table (created from the template, with its
household index) and sends the basic facts only (decision 0044)."""

from __future__ import annotations

import random

import pytest

from infra.naming import Names, prefecture_tier
from jukinet.adapters import aws
from jukinet.adapters.local_records import LocalRecords
from jukinet.domain.local_record import Relationship

from ..pipeline.exports import WITH_LOCAL_COLUMNS, csv_bytes, person, row
from .embedded import deployed_nagano, drop_export

pytestmark = pytest.mark.slow

NAGANO = "202011"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    with deployed_nagano(tmp_path_factory) as world:
        yield world


def test_the_deployed_cs_keeps_the_local_fields_in_its_tier_and_sends_none_of_them(deployed):
    deployment, _env, runner = deployed
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    rng = random.Random(16)
    head, child = person(rng), person(rng)
    local = {"householder_name": head["name_kanji"], "household_number": "0016002",
             "registered_domicile": "本籍デプロイ県試験市1番", "family_register_head": head["name_kanji"],
             "previous_address": "前住所デプロイ県試験市2番"}
    rows = [row(head, "転入", "2003-01-05") | local | {"relationship": "世帯主"},
            row(child, "転入", "2003-01-05") | local | {"relationship": "子"}]
    drop_export(deployment, NAGANO, "local.csv", csv_bytes(rows, columns=WITH_LOCAL_COLUMNS))
    assert runner.process_new_objects() == 1

    inbound = names.queue_url(prefecture.env, names.inbound_queue(prefecture_tier(prefecture.code)))
    bodies = [m["Body"] for m in aws.client("sqs").receive_message(
        QueueUrl=inbound, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])]
    assert len(bodies) == 1
    assert runner.run_until_idle(timeout_s=120).idle

    store = LocalRecords(names.local_record_table(prefecture.code), NAGANO)
    record = store.current(head["resident_code"])
    assert record.local.registered_domicile == "本籍デプロイ県試験市1番"
    assert record.local.relationship is Relationship.HEAD
    assert [m.resident_code for m in store.household("0016002")] == [head["resident_code"], child["resident_code"]]
    # The signed message carries the basic facts only (the leak test scans every tier in tests/pipeline).
    import base64
    import gzip
    import json
    payload = gzip.decompress(base64.b64decode(json.loads(bodies[0])["payload"])).decode()
    assert head["name_kana"] in payload
    for value in ("本籍デプロイ県試験市1番", "前住所デプロイ県試験市2番", "0016002"):
        assert value not in payload

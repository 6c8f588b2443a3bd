"""End to end on the embedded AWS: the synthesized Nagano assembly deployed into a moto
server, the deployed functions run in-process, a small set of notices through all tiers."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from infra.naming import Names, prefecture_tier
from jukinet.adapters import aws
from jukinet.adapters.identity_store import IdentityStore
from jukinet.adapters.kms import DataKeys
from jukinet_ops.reconcile import reconcile_deployment

from ..dates import months_jst
from ..pipeline.exports import csv_bytes, person, row
from .embedded import deployed_nagano

pytestmark = pytest.mark.slow

NAGANO, MATSUMOTO = "202011", "202029"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    with deployed_nagano(tmp_path_factory) as world:
        yield world


def _identity(deployment, tier: str) -> IdentityStore:
    names = Names.of(deployment)
    alias = names.key_alias(tier, "envelope")
    key_id = aws.client("kms").describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
    context = {"tier": "national"} if tier == "national" else {"tier": "prefecture", "prefecture": "200000"}
    return IdentityStore(names.identity_table(tier), DataKeys(key_id, context))


def test_notices_flow_through_the_deployed_tiers_with_reorder_duplicate_and_poison(deployed):
    deployment, _env, runner = deployed
    started = dt.datetime.now(dt.UTC)
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    muni_env = prefecture.municipality_tier.env
    rng = random.Random(42)
    stayer, mover = person(rng), person(rng)
    moved = dict(stayer, address="長野県長野市篠ノ井布施高田1番地")
    bad = dict(person(rng), resident_code="12345678901")  # check digit wrong
    s3 = aws.client("s3")
    drop = names.drop_zone_bucket
    s3.put_object(Bucket=drop(muni_env, NAGANO), Key="incoming/a.csv", Body=csv_bytes(
        [row(stayer, "転入", "2003-01-05"), row(mover, "転入", "2003-01-05"), row(bad, "転入", "2003-01-05")]))
    assert runner.process_new_objects() == 1
    s3.put_object(Bucket=drop(muni_env, NAGANO), Key="incoming/b.csv", Body=csv_bytes(
        [row(moved, "転居", "2003-01-20"), row(mover, "転出", "2003-01-18")], encoding="cp932"))
    s3.put_object(Bucket=drop(muni_env, MATSUMOTO), Key="incoming/c.csv", Body=csv_bytes(
        [row(dict(mover, address="長野県松本市丸の内3番7号"), "転入", "2003-01-19")]))
    assert runner.process_new_objects() == 2

    sqs = aws.client("sqs")
    inbound = names.queue_url(prefecture.env, names.inbound_queue(prefecture_tier(prefecture.code)))
    messages = []
    for _ in range(10):  # SQS may answer a receive with fewer messages than it holds
        messages += sqs.receive_message(QueueUrl=inbound, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages", [])
    assert len(messages) == 3
    for m in messages:
        sqs.delete_message(QueueUrl=inbound, ReceiptHandle=m["ReceiptHandle"])
    for m in reversed(messages):  # reorder: the newest changes arrive first
        sqs.send_message(QueueUrl=inbound, MessageBody=m["Body"])
    sqs.send_message(QueueUrl=inbound, MessageBody=messages[0]["Body"])  # duplicate delivery
    sqs.send_message(QueueUrl=inbound, MessageBody="poison")
    assert runner.run_until_idle(timeout_s=120).idle

    for tier in ("national", prefecture_tier(prefecture.code)):
        store = _identity(deployment, tier)
        current = store.current(stayer["resident_code"])
        assert current.facts.address == "長野県長野市篠ノ井布施高田1番地"
        assert [h.reason for h in store.history(stayer["resident_code"])] == ["11", "31"]
        assert store.current(mover["resident_code"]).municipality == MATSUMOTO
    dlq = names.queue_url(prefecture.env, names.dead_letter_queue(inbound.rsplit("/", 1)[-1]))
    [dead] = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert dead["Body"] == "poison"
    assert dead["MessageAttributes"]["jukinet.reason"]["StringValue"] == "malformed_envelope"

    # Counted by the month (Japan time) each file was sent in: the run may cross a month's end.
    rows = [r for month in months_jst(started, dt.datetime.now(dt.UTC))
            for r in reconcile_deployment(deployment, month, prefecture.code)]

    def total(code: str, field: str) -> int:
        return sum(getattr(r, field) for r in rows if r.municipality == code)

    assert (total(NAGANO, "sent"), total(NAGANO, "rejected"), total(NAGANO, "stored_national")) == (4, 1, 4)
    assert (total(MATSUMOTO, "sent"), total(MATSUMOTO, "stored_prefecture")) == (1, 1)
    assert all(r.balanced for r in rows)

    # The deployed ledger watches (their five-minute schedule, fired now and 20 minutes on):
    # everything arrived, so no aged gap and nothing overdue — the reorder stayed quiet.
    for minutes in (0, 20):
        at = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for tier in (prefecture_tier(prefecture.code), "national"):
            result = runner.invoke(names.ledger_watch_function(tier), {"source": "aws.events", "time": at})
            assert result.ok, result
            assert (result.response["municipalities"], result.response["aged_missing"],
                    result.response["overdue"]) == (len(prefecture.municipality_tier.municipalities), 0, 0), tier

    # The deployed nightly reconciliations (01:30 JST; fired now): nothing to report but a
    # balanced month, written as Markdown and CSV to each tier's security-reports bucket.
    at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for tier in (prefecture_tier(prefecture.code), "national"):
        result = runner.invoke(names.reconciliation_function(tier), {"source": "aws.events", "time": at})
        assert result.ok, result
        assert result.response["mismatches"] == [], tier
        bucket = names.security_reports_bucket(prefecture.env if tier != "national" else deployment.national.env, tier)
        # The notices' Markdown and CSV, and at a prefecture tier the channel's CSV (decision 0047).
        md, csv_key, *channel_csv = (k.removeprefix(f"s3://{bucket}/") for k in result.response["reports"])
        assert len(channel_csv) == (0 if tier == "national" else 1), result.response["reports"]
        text = s3.get_object(Bucket=bucket, Key=md)["Body"].read().decode()
        assert "**Mismatches: 0**" in text
        for key in (csv_key, *channel_csv):
            assert s3.head_object(Bucket=bucket, Key=key)["ContentType"].startswith("text/csv")

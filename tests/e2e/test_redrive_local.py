"""``jukinet redrive`` on the deployed assembly in the embedded AWS: a notice dead-lettered
because a municipality's signing-key alias was missing (a key administrator's mistake), the
alias put back, the dry run counting it, ``--apply`` moving it, the pipeline storing it at
both tiers, and ``jukinet reconcile --strict`` balancing — the dead letter no longer counted."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from infra.naming import Names, prefecture_tier
from jukinet.adapters import aws
from jukinet.adapters.identity_store import IdentityStore
from jukinet.adapters.kms import DataKeys
from jukinet.clock import fixed
from jukinet.services.tier_processor import UNKNOWN_SENDER
from jukinet_ops.cli import main

from ..dates import months_jst
from ..pipeline.exports import csv_bytes, person, row
from .embedded import deployed_nagano

pytestmark = pytest.mark.slow

UEDA, PREFECTURE = "202037", "200000"
TIER = prefecture_tier(PREFECTURE)
REDRIVE_AT = dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=dt.UTC)  # the record's time: the command's clock


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    with deployed_nagano(tmp_path_factory) as world:
        yield world


def _stored(names: Names, tier: str, code: str) -> bool:
    got = aws.client("dynamodb").get_item(TableName=names.identity_table(tier), Key={
        "pk": {"S": f"R#{code}"}, "sk": {"S": "CURRENT"}}, ProjectionExpression="pk")
    return "Item" in got


def _reconcile_strict(months: list[str], capsys) -> list[int]:
    codes = [main(["reconcile", "--strict", "--json", "--month", m, "--prefecture", PREFECTURE]) for m in months]
    capsys.readouterr()
    return codes


def test_a_dead_lettered_notice_is_redriven_after_the_fix_stored_once_and_reconciliation_balances(deployed, capsys):
    deployment, _, runner = deployed
    names = Names.of(deployment)
    started = dt.datetime.now(dt.UTC)
    kms = aws.client("kms")
    alias = names.signing_alias(UEDA)
    key = kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
    kms.delete_alias(AliasName=alias)  # the receiving tier can no longer find Ueda's key
    resident = person(random.Random(17))
    bucket = names.drop_zone_bucket(deployment.prefectures[0].municipality_tier.env, UEDA)
    aws.client("s3").put_object(Bucket=bucket, Key="incoming/redrive.csv",
                                Body=csv_bytes([row(resident, "転入", "2003-01-07")]))
    runner.run_until_idle(timeout_s=600)
    assert not _stored(names, TIER, resident["resident_code"])
    months = months_jst(started, dt.datetime.now(dt.UTC))
    assert 1 in _reconcile_strict(months, capsys), "the lost notice shows as a mismatch"

    assert main(["redrive"], clock=fixed(REDRIVE_AT)) == 0  # dry run: every tier, nothing moves
    dry = capsys.readouterr().out
    assert f"{TIER}: jukinet-{TIER}-inbound-dlq → jukinet-{TIER}-inbound" in dry
    assert "unknown_sender" in dry and "would be moved with --apply" in dry and f"senders: {UEDA}" in dry
    assert "dry run: nothing moved; --apply moves 1 message(s)" in dry
    assert "national: jukinet-national-inbound-dlq is empty" in dry

    kms.create_alias(AliasName=alias, TargetKeyId=key)  # the fix
    assert main(["redrive", "--apply", "--tier", TIER, "--reason", "unknown_sender", "--json"],
                clock=fixed(REDRIVE_AT)) == 0
    [report] = json.loads(capsys.readouterr().out)["queues"]
    assert report["moved"] == {"unknown_sender": 1}
    assert report["record"] == f"/jukinet/redrive/{TIER}/20300506T070809Z"

    runner.run_until_idle(timeout_s=600)
    assert _stored(names, TIER, resident["resident_code"]) and _stored(names, "national", resident["resident_code"])
    months = months_jst(started, dt.datetime.now(dt.UTC))
    assert _reconcile_strict(months, capsys) == [0] * len(months)
    for m in months:
        main(["reconcile", "--json", "--month", m, "--prefecture", PREFECTURE])
        rows = {r["municipality"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
        if rows[UEDA]["sent"]:
            assert (rows[UEDA]["sent"], rows[UEDA]["stored_prefecture"], rows[UEDA]["stored_national"],
                    rows[UEDA]["dead_lettered_prefecture"]) == (1, 1, 1, 0)

    unknown = IdentityStore(names.identity_table(TIER), DataKeys("unused", {})).ledger(UNKNOWN_SENDER)
    assert sum(unknown.dead_in(m) for m in months) == 0, "the dead letter no longer counts under 'unknown'"
    assert sum(unknown.redriven_in(m) for m in months) == 1

    record = json.loads(aws.client("ssm").get_parameter(Name=report["record"])["Parameter"]["Value"])
    assert record["requested_by"].startswith("arn:aws:") and record["started_at"] == "2030-05-06T07:08:09Z"
    assert (record["tier"], record["reasons"], record["moved"], record["status"]) == (
        TIER, ["unknown_sender"], {"unknown_sender": 1}, "done")
    assert main(["redrive"], clock=fixed(REDRIVE_AT)) == 0
    assert "dry run: nothing moved; --apply moves 0 message(s)" in capsys.readouterr().out

"""Provision statistics per prefecture, and the month's counters checked against the log
(issue 19, part 5): the sealer that seals a month's last hour compares the counters
(``STAT#<month>``) with the provisions the log holds and emits ``ProvisionStatsMismatch``, on
which ``provision-stats-mismatch`` alarms (``docs/provision.md``)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from jukinet.adapters import aws
from jukinet.services.provision_audit import check_statistics
from jukinet_ops.provision import prefecture_rows

MONTH = "2026-11"
DAY = "2026-11-26"
MONTH_SEALED = dt.datetime(2026, 11, 30, 15, 15, tzinfo=dt.UTC)  # 2026-12-01 00:15 JST: hour 23 is due
TOKYO = "131016"  # 千代田区: a resident registered in another prefecture


@pytest.fixture
def month(world) -> dict[str, list[str]]:
    """A month's traffic: look-ups of residents of two prefectures, one search, one look-up
    asking a code twice and an unknown code (neither counted twice nor at all)."""
    nagano = [r.code for r in world.add_residents(3, seed=5)]
    tokyo = [r.code for r in world.add_residents(2, seed=6, municipality=TOKYO)]
    for affair, codes in [("PAY", nagano + tokyo), ("ALIVE", nagano[:2]), ("PAY", [tokyo[0], tokyo[0]])]:
        status, body = world.call("POST", "/v1/lookups", {"affair_code": affair, "resident_codes": codes})
        assert status == 200, body
    world.seal(DAY)  # the day's hours, sealed as the hourly runs would
    return {"200000": nagano, "130001": tokyo}


def mismatch_metrics(capfd) -> list[list[float]]:
    docs = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    return [d["ProvisionStatsMismatch"] for d in docs if "ProvisionStatsMismatch" in d]


def test_the_statistics_are_kept_per_prefecture_of_the_resident_provided(world, month):
    counts = world.log().statistics_by_prefecture(MONTH, ["pension"])
    assert counts == {("pension", "200000"): 5, ("pension", "130001"): 3}
    rows = prefecture_rows(counts)
    assert [(r.prefecture, r.recipient_id, r.records) for r in rows if not r.is_total] == [
        ("130001", "pension", 3), ("200000", "pension", 5)]
    assert rows[-1].records == 8


def test_a_normal_month_checks_equal_and_the_sealer_reports_zero(world, month, capfd):
    capfd.readouterr()
    world.seal(at=MONTH_SEALED)
    assert mismatch_metrics(capfd) == [[0.0]]
    check = check_statistics(world.log(), MONTH, now=MONTH_SEALED)
    assert check.ok and check.entries == 8 and check.sealed == 8 and check.missing == 0


def test_a_run_that_does_not_seal_the_months_last_hour_does_not_check(world, month, capfd):
    capfd.readouterr()
    world.seal(at=dt.datetime(2026, 11, 27, 3, 15, tzinfo=dt.UTC))
    assert mismatch_metrics(capfd) == []


@pytest.mark.parametrize("attribute, what", [("c#PAY#lookup", "PAY/lookup"), ("p#200000", "prefecture 200000")])
def test_a_counter_tampered_with_is_reported_by_the_sealer_at_the_months_end(world, month, capfd, attribute, what):
    # An insider with the state table's write rights inflates (or a bug drifts) one counter.
    aws.client("dynamodb").update_item(
        TableName=world.state_table, Key={"pk": {"S": f"STAT#{MONTH}"}, "sk": {"S": "pension"}},
        UpdateExpression="ADD #a :n", ExpressionAttributeNames={"#a": attribute},
        ExpressionAttributeValues={":n": {"N": "40"}})
    capfd.readouterr()
    world.seal(at=MONTH_SEALED)
    assert mismatch_metrics(capfd) == [[1.0]]
    check = check_statistics(world.log(), MONTH, now=MONTH_SEALED)
    [row] = check.mismatches
    assert (row.recipient, row.what, row.counted - row.logged) == ("pension", what, 40)


def test_a_log_entry_removed_under_a_counter_is_a_mismatch(world, month):
    # The other direction: the counters stand, the log lost a provision (a seal names it).
    code = month["130001"][1]
    aws.client("dynamodb").delete_item(TableName=world.log_table,
                                       Key={"pk": {"S": f"P#{code}"}, "sk": {"S": "E#00000001"}})
    check = check_statistics(world.log(), MONTH, now=MONTH_SEALED)
    assert check.missing == 1
    assert {(m.what, m.counted, m.logged) for m in check.mismatches} == {
        ("PAY/lookup", 6, 5), ("prefecture 130001", 3, 2)}

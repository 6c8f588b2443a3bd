"""The nightly reconciliation of each processing tier (``handlers.reconciliation``, decision 0033),
on the moto server with the alarms evaluated by the embedded AWS's CloudWatch, as synthesized
(``reconciliation-mismatches``; ``tests/infra/test_security_reports.py`` asserts the names).

The month is played "yesterday" (25 hours before the run, so it is always the previous day's
month whatever today's date) and the run fires at its scheduled instant: a month with a lost
message raises the prefecture's alarm and names the municipality in the report; a month with
duplicate and out-of-order delivery at both tiers stays quiet and its report balances.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json

import pytest

from jukinet.handlers import reconciliation
from embedded_aws.monitoring import evaluate_alarms

from ..pipeline.harness import REGION, Context, environment
from .test_alarms_with_meaning import A, B, MINUTE, PERIOD, firing, start
from .test_alarms_with_meaning import server, world  # noqa: F401 — fixtures

pytestmark = pytest.mark.slow

BUCKETS = {"prefecture": "jukinet-sec-reports-pref-200000-test", "national": "jukinet-sec-reports-national-test"}
SERVICES = {"prefecture": "jukinet-pref-200000", "national": "jukinet-national"}
NAMES = {A: "長野市", B: "松本市"}


@pytest.fixture
def tiers(world, tmp_path):  # noqa: F811
    """Both tiers' reconciliation: sources file, reports bucket and alarm, as infra writes them."""
    s3 = world.sink_factory("s3")
    cloudwatch = world.sink_factory("cloudwatch")
    files = {}
    for tier, bucket in BUCKETS.items():
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        source = {"cs_state_table": "jukinet-cs-20", "municipalities": NAMES,
                  "prefecture_table": world.pref_table if tier == "national" else ""}
        path = tmp_path / f"reconciliation-{tier}.json"
        path.write_text(json.dumps({"sources": [source]}, ensure_ascii=False), encoding="utf-8")
        files[tier] = str(path)
        cloudwatch.put_metric_alarm(
            AlarmName=f"{tier}-reconciliation-mismatches", Namespace="Jukinet",
            MetricName="ReconciliationMismatches", Statistic="Sum", Period=PERIOD,
            Dimensions=[{"Name": "service", "Value": SERVICES[tier]}, {"Name": "tier", "Value": tier}],
            EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=0, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching")
    reconciliation._runtime.cache_clear()
    yield files
    reconciliation._runtime.cache_clear()


def run(world, files, tier: str, at: dt.datetime, out=None) -> dict:  # noqa: F811
    env = {"TABLE_NAME": world.pref_table if tier == "prefecture" else world.national_table, "TIER": tier,
           "TIER_NAME": "pref-200000" if tier == "prefecture" else "national", "REPORTS_BUCKET": BUCKETS[tier],
           "SOURCES_FILE": files[tier], "AWS_DEFAULT_REGION": REGION, "POWERTOOLS_SERVICE_NAME": SERVICES[tier]}
    event = {"version": "0", "source": "aws.events", "detail-type": "Scheduled Event",
             "time": at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "resources": [], "detail": {}}
    with environment(env), contextlib.redirect_stdout(world.sink if out is None else out):
        return reconciliation.handler(event, Context())


def reconcile_both(world, files, at: dt.datetime) -> tuple[dict[str, dict], list[str]]:  # noqa: F811
    results = {tier: run(world, files, tier, at) for tier in BUCKETS}
    world.sink.flush()
    assert not world.sink.problems, world.sink.problems
    states = {v.name: v.new_state for v in evaluate_alarms(world.sink_factory, at)}
    return results, firing({n: s for n, s in states.items() if "reconciliation" in n})


def report(world, tier: str, key: str) -> str:  # noqa: F811
    body = world.sink_factory("s3").get_object(Bucket=BUCKETS[tier], Key=key)["Body"].read()
    return body.decode("utf-8")


def test_a_month_that_does_not_balance_raises_the_prefectures_alarm_and_the_report_names_it(world, tiers):  # noqa: F811
    at = start()
    t = at - dt.timedelta(hours=25)  # yesterday, Japan time or not: the previous day's month
    world.export(A, "a1.csv", t)
    world.export(A, "a2.csv", t + MINUTE)
    world.export(B, "b1.csv", t + MINUTE)
    a1, _a2_lost, b1 = world.collect("prefecture")  # A's last message is lost: no gap shows it
    world.deliver("prefecture", [a1, b1], t + 2 * MINUTE)
    world.deliver("national", world.collect("national"), t + 3 * MINUTE)

    results, alarms = reconcile_both(world, tiers, at)
    assert alarms == ["prefecture-reconciliation-mismatches"]  # the national tier got all the prefecture stored
    month = t.astimezone(dt.timezone(dt.timedelta(hours=9))).strftime("%Y-%m")
    assert [(m["municipality"], m["month"]) for m in results["prefecture"]["mismatches"]] == [(A, month)]
    assert results["prefecture"]["mismatches"][0]["problems"] == ["sent 6 ≠ stored at prefecture 3 + dead-lettered "
                                                                  "there 0"]
    assert results["national"]["mismatches"] == []
    day = (at.astimezone(dt.timezone(dt.timedelta(hours=9))).date() - dt.timedelta(days=1)).isoformat()
    assert results["prefecture"]["reports"] == [f"s3://{BUCKETS['prefecture']}/reconciliation/{day}.md",
                                                f"s3://{BUCKETS['prefecture']}/reconciliation/{day}.csv"]
    markdown = report(world, "prefecture", f"reconciliation/{day}.md")
    assert "**Mismatches: 1**" in markdown
    assert f"- {month} {A} 長野市: sent 6 ≠ stored at prefecture 3 + dead-lettered there 0" in markdown
    assert f"| {month} | {B} | 松本市 | 3 | 0 | 3 | 0 | – | – | – | – | balanced |" in markdown
    rows = {(r["month"], r["municipality"]): r
            for r in csv.DictReader(io.StringIO(report(world, "prefecture", f"reconciliation/{day}.csv")))}
    assert rows[(month, A)]["sent"] == "6" and rows[(month, A)]["stored_prefecture"] == "3"
    assert rows[(month, A)]["balanced"] == "false" and rows[(month, B)]["balanced"] == "true"
    national = report(world, "national", f"reconciliation/{day}.md")
    assert "**Mismatches: 0**" in national
    assert f"| {month} | {A} | 長野市 | 6 | 0 | 3 | 0 | 3 | 0 | – | – | balanced |" in national


def test_a_balanced_month_with_duplicates_and_out_of_order_delivery_stays_quiet(world, tiers):  # noqa: F811
    at = start()
    t = at - dt.timedelta(hours=25)
    for i in range(3):
        s = t + i * 6 * MINUTE
        world.export(A, f"a{i}.csv", s)
        world.export(B, f"b{i}.csv", s)
        a_msg, b_msg = world.collect("prefecture")
        world.export(A, f"a{i}-late.csv", s + MINUTE)
        [a_late] = world.collect("prefecture")
        world.deliver("prefecture", [b_msg, a_late], s + 2 * MINUTE)  # A's later message overtakes
        world.deliver("prefecture", [a_msg, a_late, b_msg], s + 4 * MINUTE)  # and redeliveries
        forwards = world.collect("national")
        world.deliver("national", list(reversed(forwards)), s + 5 * MINUTE)
        world.deliver("national", forwards[:1], s + 5 * MINUTE)

    results, alarms = reconcile_both(world, tiers, at)
    assert alarms == []
    assert results["prefecture"]["mismatches"] == [] and results["national"]["mismatches"] == []
    day = (at.astimezone(dt.timezone(dt.timedelta(hours=9))).date() - dt.timedelta(days=1)).isoformat()
    month = t.astimezone(dt.timezone(dt.timedelta(hours=9))).strftime("%Y-%m")
    for tier in BUCKETS:
        rows = {(r["month"], r["municipality"]): r
                for r in csv.DictReader(io.StringIO(report(world, tier, f"reconciliation/{day}.csv")))}
        assert rows[(month, A)]["sent"] == "18" and rows[(month, A)]["stored_prefecture"] == "18"
        assert rows[(month, A)]["stored_national"] == ("18" if tier == "national" else "")
        assert rows[(month, B)]["sent"] == "9" and rows[(month, B)]["stored_prefecture"] == "9"
        assert all(r["balanced"] == "true" and r["in_flight"] == "false" for r in rows.values())
        assert "**Mismatches: 0**" in report(world, tier, f"reconciliation/{day}.md")


def test_a_month_still_in_flight_is_reported_not_judged(world, tiers):  # noqa: F811
    """The CS's last file 5 minutes before the run: a shortfall is not yet a mismatch (a fixed
    day, its metrics not sent to CloudWatch: only the judgement is checked)."""
    t = dt.datetime(2027, 3, 10, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    world.export(A, "a1.csv", t)
    world.collect("prefecture")  # not delivered yet
    results = run(world, tiers, "prefecture", t + 5 * MINUTE, out=io.StringIO())
    assert results["mismatches"] == [] and results["months"] == ["2027-02", "2027-03"]
    markdown = report(world, "prefecture", "reconciliation/2027-03-09.md")
    assert f"| 2027-03 | {A} | 長野市 | 3 | 0 | 0 | 0 | – | – | – | – | in flight |" in markdown
    results = run(world, tiers, "prefecture", t + 20 * MINUTE, out=io.StringIO())
    assert [m["municipality"] for m in results["mismatches"]] == [A]


def test_a_channel_request_in_no_outcome_raises_the_prefectures_alarm_and_the_report_names_it(world, tmp_path):  # noqa: F811
    """Decision 0047: the prefecture's run also reads its municipality tier's channel records; a
    request neither answered, refused nor timed out after its deadline (a state no code writes)
    is a mismatch, the same metric and alarm; the notice rows balance (nothing was sent)."""
    from jukinet.domain import channel

    s3, ddb, cloudwatch = world.sink_factory("s3"), world.sink_factory("dynamodb"), world.sink_factory("cloudwatch")
    s3.create_bucket(Bucket=BUCKETS["prefecture"], CreateBucketConfiguration={"LocationConstraint": REGION})
    ddb.create_table(TableName="jukinet-muni-200000-cards", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])
    cloudwatch.put_metric_alarm(
        AlarmName="prefecture-reconciliation-mismatches", Namespace="Jukinet", MetricName="ReconciliationMismatches",
        Statistic="Sum", Period=PERIOD, Dimensions=[{"Name": "service", "Value": SERVICES["prefecture"]},
                                                   {"Name": "tier", "Value": "prefecture"}],
        EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=0, ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching")
    at = start()
    sent = at - dt.timedelta(hours=25)
    month = sent.astimezone(dt.timezone(dt.timedelta(hours=9))).strftime("%Y-%m")
    for i, status in enumerate(("answered", "refused", "timed_out", "pending", "stuck")):
        correlation = channel.new_correlation_id(A, sent, f"{i:032x}")
        ddb.put_item(TableName="jukinet-muni-200000-cards", Item={
            "pk": {"S": f"CHANNEL#{A}#{month}"}, "sk": {"S": f"OUT#{correlation}"}, "to": {"S": B},
            "deadline": {"S": (sent + dt.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")},
            "status": {"S": status}})
    ddb.put_item(TableName="jukinet-muni-200000-cards", Item={
        "pk": {"S": f"CHANNEL-IN#{B}#{month}"}, "sk": {"S": "IN#x"}, "kind": {"S": "answer"}})
    path = tmp_path / "reconciliation-channel.json"
    path.write_text(json.dumps({"sources": [{"cs_state_table": "jukinet-cs-20", "municipalities": NAMES,
                                             "channel_table": "jukinet-muni-200000-cards"}]}, ensure_ascii=False),
                    encoding="utf-8")
    reconciliation._runtime.cache_clear()
    result = run(world, {"prefecture": str(path)}, "prefecture", at)
    world.sink.flush()
    assert not world.sink.problems, world.sink.problems
    states = {v.name: v.new_state for v in evaluate_alarms(world.sink_factory, at)}
    assert firing(states) == ["prefecture-reconciliation-mismatches"]
    assert result["mismatches"] == [{"municipality": A, "month": month, "problems": [
        "channel: 1 request(s) neither answered, refused nor timed out after the deadline (state unreadable)"]}]
    day = (at.astimezone(dt.timezone(dt.timedelta(hours=9))).date() - dt.timedelta(days=1)).isoformat()
    assert result["reports"][-1] == f"s3://{BUCKETS['prefecture']}/reconciliation/{day}-channel.csv"
    markdown = report(world, "prefecture", f"reconciliation/{day}.md")
    assert "**Mismatches: 0**" in markdown  # the notices' own section: nothing sent, nothing missing
    assert f"| {month} | {A} | 長野市 | 5 | 1 | 1 | 2 | 0 | 0 | 0 | **mismatch** |" in markdown
    assert f"| {month} | {B} | 松本市 | 0 | 0 | 0 | 0 | 0 | 1 | 0 | balanced |" in markdown
    reconciliation._runtime.cache_clear()

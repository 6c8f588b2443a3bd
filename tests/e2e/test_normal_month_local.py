"""The quiet half of every alarm at once: the synthesized assembly deployed into the embedded
AWS, a normal stretch of work through it, and then EVERY alarm of the deployment evaluated by
the local CloudWatch (``embedded_aws.monitoring``) — none may be in ALARM.

Normal work: files from two municipalities, their messages delivered to the prefecture out of
order and one twice; the ledger watches on their schedule (now and 20 minutes on, past the gap
bound); the nightly reconciliations; the provision log's hourly sealer; permitted look-ups by a
recipient. The functions' metrics, the SQS and Lambda metrics local mode observes
(``service_metrics``) and the metric filters on the functions' logs all feed the evaluation.
What local mode cannot observe (API Gateway 5XX, Lambda throttles, the age of a queue's oldest
message; CloudTrail) gives those alarms no data here (OK: missing data is not breaching); their
fire tests below put the metric in as AWS would publish it (the trail filters' halves are
``tests/infra/test_security_monitoring.py``). Each alarm's fire test and the rest of its quiet tests:
``tests/alarm_catalogue.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from infra.components.monitoring import alarm_kind
from infra.naming import Names, prefecture_tier
from jukinet.adapters import aws
from jukinet_ops.agency_traffic import recipient_principals, sample_residents
from embedded_aws.api import LocalApi
from embedded_aws.monitoring import ALARM, evaluate_alarms

from ..alarm_catalogue import CATALOGUE, KNOWN_GAPS
from ..pipeline.exports import csv_bytes, person, row
from .embedded import deployed_nagano

pytestmark = pytest.mark.slow

NAGANO, MATSUMOTO = "202011", "202029"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with deployed_nagano(tmp_path_factory, monitoring=True, service_metrics=True) as (deployment, env, runner):
        yield deployment, env, runner


def _normal_stretch(deployment, env, runner) -> None:
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    muni_env = prefecture.municipality_tier.env
    rng = random.Random(23)
    people = [person(rng) for _ in range(6)]
    s3, sqs = aws.client("s3"), aws.client("sqs")
    drop = names.drop_zone_bucket
    s3.put_object(Bucket=drop(muni_env, NAGANO), Key="incoming/a.csv",
                  Body=csv_bytes([row(p, "転入", "2003-01-05") for p in people[:4]]))
    s3.put_object(Bucket=drop(muni_env, NAGANO), Key="incoming/b.csv",
                  Body=csv_bytes([row(dict(people[0], address="長野県長野市篠ノ井布施高田1番地"),
                                      "転居", "2003-01-20")], encoding="cp932"))
    s3.put_object(Bucket=drop(muni_env, MATSUMOTO), Key="incoming/c.csv",
                  Body=csv_bytes([row(p, "転入", "2003-01-19") for p in people[4:]]))
    assert runner.process_new_objects() == 3
    inbound = names.queue_url(prefecture.env, names.inbound_queue(prefecture_tier(prefecture.code)))
    messages = []
    for _ in range(10):  # SQS may answer a receive with fewer messages than it holds
        messages += sqs.receive_message(QueueUrl=inbound, MaxNumberOfMessages=10,
                                        VisibilityTimeout=60).get("Messages", [])
    # Nagano's two files were taken in one batch and share a message (decision 0051); Matsumoto's one
    assert len(messages) == 2
    for m in messages:
        sqs.delete_message(QueueUrl=inbound, ReceiptHandle=m["ReceiptHandle"])
    for m in reversed(messages):  # out of order: the newest first
        sqs.send_message(QueueUrl=inbound, MessageBody=m["Body"])
    sqs.send_message(QueueUrl=inbound, MessageBody=messages[0]["Body"])  # and one delivered twice
    assert runner.run_until_idle(timeout_s=180).idle

    now = dt.datetime.now(dt.UTC)
    for minutes in (0, 20):  # the ledger watches' schedule, past the 15-minute gap bound
        at = (now + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for tier in (prefecture_tier(prefecture.code), "national"):
            result = runner.invoke(names.ledger_watch_function(tier), {"source": "aws.events", "time": at})
            assert result.ok and result.response["aged_missing"] == 0 and result.response["overdue"] == 0, result
    at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    for tier in (prefecture_tier(prefecture.code), "national"):
        result = runner.invoke(names.reconciliation_function(tier), {"source": "aws.events", "time": at})
        assert result.ok and result.response["mismatches"] == [], result

    with LocalApi(env, runner, credentials={}, api=names.provision_api()) as api:
        principals = recipient_principals(deployment, runner, api)
        api.principals.update({p.access_key_id: p for p in principals.values()})
        codes = [r["code"] for r in sample_residents(deployment, 6)]
        for i in range(0, 6, 2):  # a permitted recipient, its affair, real residents
            response = api.request(principals["mhlw-engo"], "POST", "/v1/lookups", headers={
                "Content-Type": "application/json"}, body=json.dumps(
                {"affair_code": "DEMO-T1-ENGO-PENSION", "resident_codes": codes[i:i + 2]}))
            assert response.status == 200, response.json()
    for _ in range(2):  # the hourly sealer (its heartbeat): the first run starts the chain
        result = runner.invoke(names.provision_function("sealer"), {})
        assert result.ok, result


# Alarm kinds on metrics local mode has no source for: evaluated with no data (notBreaching).
NOT_EVALUATED_LOCALLY = {"inbound-oldest-message-age", "processor-throttles", "cs-throttles",
                         "provision-api-errors", "provision-sealer-throttled", "counter-api-errors"}


def test_a_normal_stretch_with_out_of_order_and_duplicate_delivery_keeps_every_alarm_quiet(world):
    deployment, env, runner = world
    _normal_stretch(deployment, env, runner)
    # the sealer's hourly run once more, just before: the heartbeat's one-hour period is the clock's
    assert runner.invoke(Names.of(deployment).provision_function("sealer"), {}).ok
    verdicts = runner.monitoring.evaluate(dt.datetime.now(dt.UTC), runner=runner)
    kinds = {alarm_kind(v.name) for v in verdicts}
    catalogued = set(CATALOGUE) | set(KNOWN_GAPS)
    assert kinds == catalogued, kinds ^ catalogued  # every alarm kind of the deployment, evaluated
    firing = {v.name: v.reason for v in verdicts if v.new_state == ALARM}
    assert firing == {}
    unevaluated = {alarm_kind(v.name) for v in verdicts if not v.evaluated}
    assert unevaluated <= NOT_EVALUATED_LOCALLY, unevaluated


def _alarms_of_kind(env, verdicts, kinds: set[str]) -> dict[str, dict]:
    found = {}
    for v in verdicts:
        if alarm_kind(v.name) in kinds:
            [found[v.name]] = env.client("cloudwatch", v.region, v.account).describe_alarms(
                AlarmNames=[v.name])["MetricAlarms"]
            found[v.name]["_where"] = (v.region, v.account)
    return found


def test_a_message_in_each_dead_letter_queue_and_a_failed_run_of_each_function_fire_their_alarms(world):
    """After the quiet stretch above (same module): a poison message through the prefecture's
    deployed processor, a message waiting in each other dead-letter queue, and a failing
    invocation of each watched function (an event its handler cannot read) — each raises
    exactly its own alarm (and the dead letter of the poison message nothing else)."""
    deployment, env, runner = world
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    sqs = aws.client("sqs")
    inbound = names.queue_url(prefecture.env, names.inbound_queue(prefecture_tier(prefecture.code)))
    sqs.send_message(QueueUrl=inbound, MessageBody="poison")
    assert runner.run_until_idle(timeout_s=120).idle
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)  # a new period: the new samples decide
    verdicts = runner.monitoring.evaluate(later, runner=runner)
    queues = _alarms_of_kind(env, verdicts, {"cs-failed-events-dlq-not-empty", "provision-batch-dlq-not-empty",
                                             "channel-dlq-not-empty"})
    assert len(queues) == 1 + 2 * len(deployment.prefectures)
    for alarm in queues.values():
        [dimension] = alarm["Dimensions"]
        region, account = alarm["_where"]
        client = env.client("sqs", region, account)
        url = client.get_queue_url(QueueName=dimension["Value"])["QueueUrl"]
        client.send_message(QueueUrl=url, MessageBody=json.dumps({"test": "a dead letter"}))
    functions = _alarms_of_kind(env, verdicts, {"processor-errors", "provision-sealer-errors", "cs-errors",
                                                "channel-errors"})
    for alarm in functions.values():
        metrics = [q["MetricStat"]["Metric"] for q in alarm.get("Metrics", []) if "MetricStat" in q] or [alarm]
        function = metrics[0]["Dimensions"][0]["Value"]
        result = runner.invoke(function, {"Records": "not a list", "day": "not a day"})
        assert not result.ok, function
    later += dt.timedelta(minutes=5)
    verdicts = runner.monitoring.evaluate(later, runner=runner)
    # (the sealer's hourly heartbeat is left out: ten minutes on may be the next clock hour, in
    # which this test runs no sealer — that is its own trigger, tested below)
    firing = {v.name for v in verdicts if v.new_state == ALARM} - {names.alarm("national", "provision-log-not-sealed")}
    expected = set(queues) | set(functions) | {names.alarm(prefecture_tier(prefecture.code), "inbound-dlq-not-empty")}
    assert firing == expected, firing ^ expected


# The alarms on metrics only AWS publishes (API Gateway 5XX, Lambda throttles, the age of a
# queue's oldest message): local mode cannot make AWS publish them, so their trigger is the
# metric as AWS would publish it, put into the embedded CloudWatch for the alarm's dimensions.
AWS_PUBLISHED = {"inbound-oldest-message-age", "processor-throttles", "cs-throttles", "provision-api-errors",
                 "provision-sealer-throttled", "counter-api-errors"}


def test_metrics_only_aws_publishes_fire_their_alarms_and_a_silent_sealer_raises_its_heartbeat(world):
    deployment, env, runner = world
    names = Names.of(deployment)
    start = int((dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)).timestamp())
    at = dt.datetime.fromtimestamp(start - start % 300 + 150, dt.UTC)  # 150 s into a five-minute period
    verdicts = runner.monitoring.evaluate(at, runner=runner)
    alarms = _alarms_of_kind(env, verdicts, AWS_PUBLISHED)
    assert {alarm_kind(n) for n in alarms} == AWS_PUBLISHED
    for name, alarm in alarms.items():
        region, account = alarm["_where"]
        stats = [q["MetricStat"] for q in alarm.get("Metrics", []) if "MetricStat" in q]
        metric = stats[0]["Metric"] if stats else alarm
        period = stats[0]["Period"] if stats else alarm["Period"]
        env.client("cloudwatch", region, account).put_metric_data(Namespace=metric["Namespace"], MetricData=[
            {"MetricName": metric["MetricName"], "Dimensions": metric.get("Dimensions", []),
             "Value": float(alarm["Threshold"] + 1), "Timestamp": at - dt.timedelta(seconds=period * k)}
            for k in range(alarm["EvaluationPeriods"])])
    verdicts = runner.monitoring.evaluate(at, runner=runner)
    states = {v.name: v.new_state for v in verdicts}
    assert {n: states[n] for n in alarms} == dict.fromkeys(alarms, ALARM)
    # and one period later, with no more data, they clear (notBreaching)
    clear = runner.monitoring.evaluate(at + dt.timedelta(minutes=20), runner=runner)
    assert {v.name: v.new_state for v in clear if v.name in alarms} == dict.fromkeys(alarms, "OK")
    # The sealer's heartbeat: no run for more than its hour is the alarm (missing data breaches).
    # (evaluated without publishing: metric data more than two hours ahead would be refused)
    silent = evaluate_alarms(env, dt.datetime.now(dt.UTC) + dt.timedelta(hours=2, minutes=10))
    assert {v.name: v.new_state for v in silent}[names.alarm("national", "provision-log-not-sealed")] == ALARM


def test_a_recipients_day_far_above_its_trailing_level_fires_its_volume_anomaly_alarm(world):
    """The anomaly-detection alarm of one recipient: twelve days of ordinary daily volume, then a
    day far above it (the local band: mean ± 3 standard deviations of the history)."""
    _deployment, env, runner = world
    verdicts = runner.monitoring.evaluate(dt.datetime.now(dt.UTC), runner=runner)
    alarms = _alarms_of_kind(env, verdicts, {"provision-volume-anomaly"})
    assert alarms
    name = sorted(alarms)[0]
    alarm = alarms[name]
    assert {v.name: v.new_state for v in verdicts}[name] != ALARM  # quiet without history
    [stat] = [q["MetricStat"] for q in alarm["Metrics"] if "MetricStat" in q]
    metric = stat["Metric"]
    now = dt.datetime.now(dt.UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(minutes=30)
    client = env.client("cloudwatch", *alarm["_where"])
    history = [today - dt.timedelta(days=k) for k in range(1, 14)]
    rng = random.Random(5)
    client.put_metric_data(Namespace=metric["Namespace"], MetricData=[
        {"MetricName": metric["MetricName"], "Dimensions": metric["Dimensions"], "Timestamp": t,
         "Value": float(rng.randint(90, 110))} for t in [*history, today]])
    quiet = {v.name: v for v in runner.monitoring.evaluate(now, runner=runner)}[name]
    assert quiet.new_state == "OK", quiet.reason  # an ordinary day after an ordinary fortnight
    client.put_metric_data(Namespace=metric["Namespace"], MetricData=[
        {"MetricName": metric["MetricName"], "Dimensions": metric["Dimensions"], "Timestamp": today,
         "Value": 5000.0}])
    fired = {v.name: v for v in runner.monitoring.evaluate(now, runner=runner)}[name]
    assert fired.new_state == ALARM, fired.reason

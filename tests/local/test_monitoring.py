"""Alarms evaluated for real in local mode (embedded_aws/monitoring/).

Against a moto server: alarms created through the CloudWatch API as the stacks define them,
metric data from EMF lines printed by the runtime's own Powertools ``Metrics``
(``jukinet.observability``) into a ``MetricSink``, log events through CloudWatch Logs. The
last test runs a forged message through the deployed Nagano assembly.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import os
import random
import threading
import time
from types import SimpleNamespace

import pytest
from rich.console import Console

from jukinet import observability
from embedded_aws.monitoring import (
    ALARM,
    INSUFFICIENT_DATA,
    NEEDS_HISTORY,
    OK,
    EmfError,
    LocalMonitoring,
    LogMetricFilters,
    MetricSink,
    ServiceMetrics,
    UnsupportedAlarm,
    UnsupportedFilterPattern,
    apply_metric_filters,
    evaluate_alarms,
    parse_emf,
    parse_filter_pattern,
    print_alarm_status,
)
from embedded_aws.server import MotoServer, local_credentials

from ..e2e.embedded import E2E_DEPLOYMENT, nagano_assembly

REGION = "ap-northeast-1"
ACCOUNT = "123456789012"
OTHER_ACCOUNT = "111111111111"
SERVICE, TIER = "jukinet-pref-200000", "prefecture"
PERIOD = 300


@pytest.fixture(scope="module")
def server():
    with MotoServer() as aws:
        yield aws


@pytest.fixture
def aws(server):
    server.reset()
    yield server
    server.reset()


def factory_for(server):
    def factory(service, region=None, account=None):
        return server.client(service, region or REGION, account)

    return factory


@pytest.fixture
def factory(aws):
    return factory_for(aws)


@pytest.fixture
def cloudwatch(aws):
    return aws.client("cloudwatch", REGION)


@pytest.fixture
def powertools(monkeypatch):
    """The runtime's metrics object, as a handler of SERVICE uses it."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", SERVICE)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    observability.metrics.clear_metrics()
    observability.metrics.provider.timestamp = None
    yield observability
    observability.metrics.clear_metrics()
    observability.metrics.provider.timestamp = None


def emit(sink, powertools, metrics: dict[str, float], *, tier: str = TIER, at: dt.datetime | None = None) -> None:
    """One invocation's metrics, printed by Powertools into ``sink`` (as the runner redirects stdout)."""
    powertools.use_tier(tier)
    for name, value in metrics.items():
        powertools.metrics.add_metric(name=name, unit=powertools.MetricUnit.Count, value=value)
    if at is not None:
        powertools.metrics.set_timestamp(at)
    with contextlib.redirect_stdout(sink):
        powertools.flush()
    powertools.metrics.provider.timestamp = None  # set_timestamp would stick to later flushes


def custom_alarm(cloudwatch, name: str, metric: str, *, service: str = SERVICE, tier: str = TIER, **overrides):
    """Exactly what infra/components/monitoring.py's TierAlarms.alarm + custom_metric synthesize."""
    request = {"AlarmName": name, "Namespace": "Jukinet", "MetricName": metric, "Statistic": "Sum", "Period": PERIOD,
               "Dimensions": [{"Name": "service", "Value": service}, {"Name": "tier", "Value": tier}],
               "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Threshold": 0,
               "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching"}
    request.update(overrides)
    cloudwatch.put_metric_alarm(**request)


def aligned_now(offset_s: int = 150) -> dt.datetime:
    """A time ``offset_s`` into the current 5-minute period (data at it belongs to that period)."""
    now = int(dt.datetime.now(dt.UTC).timestamp())
    return dt.datetime.fromtimestamp(now - now % PERIOD + offset_s, dt.UTC)


def by_name(verdicts):
    return {v.name: v for v in verdicts}


def state(cloudwatch, name: str) -> str:
    return cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]


# -- EMF -> PutMetricData ------------------------------------------------------------------------


def test_powertools_emf_lands_in_cloudwatch_with_its_declared_dimensions(factory, cloudwatch, powertools):
    passed = io.StringIO()
    sink = MetricSink(factory, passed)
    emit(sink, powertools, {"SignatureFailures": 1, "NoticesDeadLettered": 1})
    line = passed.getvalue()
    assert line.endswith("\n") and json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["tier", "service"]]
    assert cloudwatch.list_metrics(Namespace="Jukinet")["Metrics"] == []  # batched: nothing sent before flush
    sink.flush()
    assert sink.emf_lines == 1 and sink.datums_published == 2 and not sink.problems
    listed = cloudwatch.list_metrics(Namespace="Jukinet", MetricName="SignatureFailures")["Metrics"]
    assert {(d["Name"], d["Value"]) for d in listed[0]["Dimensions"]} == {("service", SERVICE), ("tier", TIER)}
    stamp = json.loads(line)["_aws"]["Timestamp"] / 1000
    start = dt.datetime.fromtimestamp(stamp - stamp % 60, dt.UTC)
    result = cloudwatch.get_metric_statistics(
        Namespace="Jukinet", MetricName="SignatureFailures", StartTime=start, EndTime=start + dt.timedelta(minutes=1),
        Period=60, Statistics=["Sum", "SampleCount"], Unit="Count",
        Dimensions=[{"Name": "service", "Value": SERVICE}, {"Name": "tier", "Value": TIER}])
    assert [(p["Sum"], p["SampleCount"], p["Unit"]) for p in result["Datapoints"]] == [(1.0, 1.0, "Count")]


def test_parse_emf_follows_the_specification():
    event = {"_aws": {"Timestamp": 1_700_000_000_000, "CloudWatchMetrics": [
        {"Namespace": "N", "Dimensions": [["a"], ["a", "b"], []],
         "Metrics": [{"Name": "M", "Unit": "Milliseconds", "StorageResolution": 1}]}]},
        "a": "x", "b": "y", "M": [1, 2, 2]}
    data = parse_emf(json.dumps(event))
    assert [d.dimensions for d in data] == [(("a", "x"),), (("a", "x"), ("b", "y")), ()]
    assert data[0].values == (1.0, 2.0, 2.0) and data[0].unit == "Milliseconds" and data[0].storage_resolution == 1
    assert data[0].timestamp == dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
    items = data[0].request_items()
    assert items[0]["Values"] == [1.0, 2.0] and items[0]["Counts"] == [1.0, 2.0] and items[0]["StorageResolution"] == 1
    for broken in ({**event, "b": 3}, {**event, "M": "many"}, {"_aws": {"Timestamp": "now"}}):
        with pytest.raises(EmfError):
            parse_emf(broken)


def test_invalid_or_stale_emf_is_counted_never_raised_from_write(factory, cloudwatch):
    sink = MetricSink(factory)
    sink.write('{"_aws": {"Timestamp": 1, "CloudWatchMetrics": "no"}}\nplain text line\n{"level": "INFO"}\n')
    old = int((dt.datetime.now(dt.UTC) - dt.timedelta(days=15)).timestamp() * 1000)
    sink.write(json.dumps({"_aws": {"Timestamp": old, "CloudWatchMetrics": [
        {"Namespace": "N", "Dimensions": [], "Metrics": [{"Name": "M"}]}]}, "M": 1}) + "\n")
    sink.flush()
    assert sink.lines == 4 and sink.datums_published == 0 and len(sink.problems) == 2
    assert "14 days" in sink.problems[1]


def test_sink_is_thread_safe_with_interleaved_partial_writes(factory, cloudwatch):
    sink = MetricSink(factory, io.StringIO(), max_pending=50)  # small batches: sent while writing
    stamp = int(dt.datetime.now(dt.UTC).timestamp() * 1000)

    def writer(k: int) -> None:
        for i in range(40):
            line = json.dumps({"_aws": {"Timestamp": stamp, "CloudWatchMetrics": [
                {"Namespace": "T", "Dimensions": [["w"]], "Metrics": [{"Name": "N", "Unit": "Count"}]}]},
                "w": str(k), "N": 1})
            sink.write(line[:17])  # print() writes the text and the newline separately; split further
            sink.write(line[17:])
            sink.write("\n")
            if i % 7 == 0:
                sink.write(f"plain line {k} {i}\n")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()
    assert sink.emf_lines == 160 and not sink.problems and sink.lines == 160 + 4 * 6
    for k in range(4):
        stats = cloudwatch.get_metric_statistics(
            Namespace="T", MetricName="N", Dimensions=[{"Name": "w", "Value": str(k)}], Period=60,
            StartTime=dt.datetime.fromtimestamp(stamp / 1000 - 60, dt.UTC), Statistics=["Sum"],
            EndTime=dt.datetime.fromtimestamp(stamp / 1000 + 60, dt.UTC))["Datapoints"]
        assert sum(p["Sum"] for p in stats) == 40


def test_data_written_during_an_invocation_goes_to_the_functions_account_and_log_group(aws, factory, powertools,
                                                                                        monkeypatch):
    sink = MetricSink(factory)
    function_env = {"AWS_LAMBDA_FUNCTION_NAME": "fn", "AWS_REGION": REGION, "AWS_ENDPOINT_URL": aws.endpoint_url,
                    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn", "AWS_LAMBDA_LOG_STREAM_NAME": "local/fn",
                    **local_credentials(aws.endpoint_url, REGION, OTHER_ACCOUNT)}
    for key, value in function_env.items():
        monkeypatch.setenv(key, value)
    with contextlib.redirect_stdout(sink):
        print("a log line")
    emit(sink, powertools, {"SignatureFailures": 1})
    for key in function_env:
        monkeypatch.delenv(key)
    sink.flush()
    other = aws.client("cloudwatch", REGION, OTHER_ACCOUNT)
    assert [m["MetricName"] for m in other.list_metrics(Namespace="Jukinet")["Metrics"]] == ["SignatureFailures"]
    assert aws.client("cloudwatch", REGION).list_metrics(Namespace="Jukinet")["Metrics"] == []
    events = aws.client("logs", REGION, OTHER_ACCOUNT).filter_log_events(logGroupName="/aws/lambda/fn")["events"]
    assert events[0]["message"] == "a log line" and '"_aws"' in events[1]["message"]
    assert sink.log_events_forwarded == 2


# -- alarms on custom metrics --------------------------------------------------------------------


def test_signature_failures_alarm_fires_on_a_failure_and_stays_ok_on_normal_traffic(factory, cloudwatch, powertools):
    custom_alarm(cloudwatch, "sig", "SignatureFailures")
    custom_alarm(cloudwatch, "gaps", "SequenceGaps")
    sink = MetricSink(factory)
    emit(sink, powertools, {"NoticesStored": 40, "NoticesDuplicate": 0})
    emit(sink, powertools, {"SignatureFailures": 1}, tier="national")  # another tier's dimensions
    sink.flush()
    verdicts = by_name(evaluate_alarms(factory))
    assert {n: v.new_state for n, v in verdicts.items()} == {"sig": OK, "gaps": OK}
    assert verdicts["sig"].old_state == INSUFFICIENT_DATA  # never evaluated: CloudWatch's initial state
    assert "treated as [NonBreaching]" in verdicts["sig"].reason

    emit(sink, powertools, {"NoticesStored": 3, "SignatureFailures": 1})
    sink.flush()
    verdicts = by_name(evaluate_alarms(factory))
    assert verdicts["sig"].new_state == ALARM and verdicts["sig"].old_state == OK and verdicts["sig"].changed
    assert "was greater than the threshold (0)" in verdicts["sig"].reason
    assert [p.value for p in verdicts["sig"].datapoints] == [1.0]
    assert verdicts["gaps"].new_state == OK
    assert state(cloudwatch, "sig") == ALARM and state(cloudwatch, "gaps") == OK
    reason_data = json.loads(cloudwatch.describe_alarms(AlarmNames=["sig"])["MetricAlarms"][0]["StateReasonData"])
    assert reason_data["recentDatapoints"] == [1.0] and reason_data["statistic"] == "Sum"

    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)  # the failure's period has passed
    assert by_name(evaluate_alarms(factory, later))["sig"].new_state == OK


def test_evaluation_periods_and_datapoints_to_alarm(factory, cloudwatch, powertools):
    now = aligned_now()
    custom_alarm(cloudwatch, "two-of-three", "SequenceGaps", EvaluationPeriods=3, DatapointsToAlarm=2)
    custom_alarm(cloudwatch, "three-of-three", "SequenceGaps", EvaluationPeriods=3, DatapointsToAlarm=3)
    custom_alarm(cloudwatch, "one-of-one", "SequenceGaps")
    sink = MetricSink(factory)
    emit(sink, powertools, {"SequenceGaps": 2}, at=now - dt.timedelta(seconds=2 * PERIOD))
    sink.flush()
    verdicts = by_name(evaluate_alarms(factory, now))
    assert {n: v.new_state for n, v in verdicts.items()} == {"two-of-three": OK, "three-of-three": OK,
                                                             "one-of-one": OK}
    assert [p.value for p in verdicts["two-of-three"].datapoints] == [2.0, None, None]

    emit(sink, powertools, {"SequenceGaps": 1}, at=now)
    sink.flush()
    verdicts = by_name(evaluate_alarms(factory, now))
    assert {n: v.new_state for n, v in verdicts.items()} == {"two-of-three": ALARM, "three-of-three": OK,
                                                             "one-of-one": ALARM}
    assert [p.breaching for p in verdicts["two-of-three"].datapoints] == [True, False, True]
    assert "2 out of the last 3 datapoints" in verdicts["two-of-three"].reason

    emit(sink, powertools, {"SequenceGaps": 5}, at=now - dt.timedelta(seconds=PERIOD))
    sink.flush()
    assert by_name(evaluate_alarms(factory, now))["three-of-three"].new_state == ALARM


def test_treat_missing_data_with_no_data_at_all(factory, cloudwatch):
    for treat in ("notBreaching", "missing", "breaching", "ignore"):
        custom_alarm(cloudwatch, treat, "SignatureFailures", TreatMissingData=treat)
    custom_alarm(cloudwatch, "default", "SignatureFailures", TreatMissingData="missing")
    cloudwatch.set_alarm_state(AlarmName="default", StateValue=ALARM, StateReason="set by hand")
    verdicts = by_name(evaluate_alarms(factory))
    assert {n: v.new_state for n, v in verdicts.items()} == {
        "notBreaching": OK, "missing": INSUFFICIENT_DATA, "breaching": ALARM, "ignore": INSUFFICIENT_DATA,
        "default": INSUFFICIENT_DATA}
    cloudwatch.set_alarm_state(AlarmName="ignore", StateValue=ALARM, StateReason="set by hand")
    assert by_name(evaluate_alarms(factory))["ignore"].new_state == ALARM  # ignore keeps the state


def test_alarms_on_aws_service_metrics_say_they_have_no_local_source(factory, cloudwatch):
    cloudwatch.put_metric_alarm(
        AlarmName="dlq", Namespace="AWS/SQS", MetricName="ApproximateNumberOfMessagesVisible", Statistic="Maximum",
        Period=PERIOD, Dimensions=[{"Name": "QueueName", "Value": "q-dlq"}], EvaluationPeriods=1, Threshold=0,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")
    [verdict] = evaluate_alarms(factory)
    assert verdict.new_state == OK and "no local source: AWS/SQS" in verdict.reason


def test_transitions_notify_the_alarm_topic(aws, factory, cloudwatch, powertools):
    sns, sqs = aws.client("sns", REGION), aws.client("sqs", REGION)
    topic = sns.create_topic(Name="alarms")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    custom_alarm(cloudwatch, "sig", "SignatureFailures", AlarmActions=[topic], OKActions=[topic])
    sink = MetricSink(factory)
    emit(sink, powertools, {"SignatureFailures": 1})
    sink.flush()
    [verdict] = evaluate_alarms(factory)
    assert verdict.notified == (topic,)
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert (body["AlarmName"], body["OldStateValue"], body["NewStateValue"]) == ("sig", INSUFFICIENT_DATA, ALARM)
    [again] = evaluate_alarms(factory)  # no transition, no notification
    assert again.notified == () and not again.changed


def test_every_notified_transition_is_one_line_of_the_notification_log(aws, factory, cloudwatch, powertools,
                                                                         tmp_path):
    """What the embedded AWS would send: time, tier, alarm, old→new, reason — one line per
    transition that notifies a topic; none for an alarm without actions or without a change."""
    from embedded_aws.monitoring import NotificationLog

    topic = aws.client("sns", REGION).create_topic(Name="jukinet-pref-200000-alarms")["TopicArn"]
    name = "jukinet-pref-200000-signature-failures"
    custom_alarm(cloudwatch, name, "SignatureFailures", AlarmActions=[topic], OKActions=[topic])
    custom_alarm(cloudwatch, "silent", "SignatureFailures")  # no actions: nothing is sent
    log = NotificationLog(tmp_path / ".jukinet" / "notifications.log", truncate=True)
    now = aligned_now()
    sink = MetricSink(factory)
    emit(sink, powertools, {"SignatureFailures": 1}, at=now)
    sink.flush()
    evaluate_alarms(factory, now, notifications=log)
    evaluate_alarms(factory, now, notifications=log)  # no change: no line
    later = now + dt.timedelta(seconds=PERIOD)
    evaluate_alarms(factory, later, notifications=log)  # recovered
    lines = log.lines()
    assert len(lines) == 2
    stamp, tier, alarm, change, reason = lines[0].split("  ", 4)
    assert (stamp, tier, alarm, change) == (now.strftime("%Y-%m-%dT%H:%M:%SZ"), "pref-200000", name,
                                            "INSUFFICIENT_DATA→ALARM")
    assert "greater than the threshold" in reason and "\n" not in reason
    assert lines[1].split("  ")[3] == "ALARM→OK"
    assert NotificationLog(log.path).lines() == lines  # reopened without truncate: kept


def test_service_metrics_are_opt_in_and_feed_the_queue_and_function_alarms(aws, factory, cloudwatch):
    sqs = aws.client("sqs", REGION)
    dlq = sqs.create_queue(QueueName="tier-inbound-dlq")["QueueUrl"]
    cloudwatch.put_metric_alarm(
        AlarmName="dlq", Namespace="AWS/SQS", MetricName="ApproximateNumberOfMessagesVisible", Statistic="Maximum",
        Period=PERIOD, Dimensions=[{"Name": "QueueName", "Value": "tier-inbound-dlq"}], EvaluationPeriods=1,
        Threshold=0, ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")
    cloudwatch.put_metric_alarm(
        AlarmName="errors", Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=PERIOD,
        Dimensions=[{"Name": "FunctionName", "Value": "fn"}], EvaluationPeriods=1, Threshold=0,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")
    runner = SimpleNamespace(stats={"fn": SimpleNamespace(invocations=3, errors=0)},
                             functions={"fn": SimpleNamespace(region=REGION, account=ACCOUNT)})
    service = ServiceMetrics(factory, runner)
    service.publish()
    assert {v.name: v.new_state for v in evaluate_alarms(factory)} == {"dlq": OK, "errors": OK}
    sqs.send_message(QueueUrl=dlq, MessageBody="dead")
    runner.stats["fn"].invocations, runner.stats["fn"].errors = 4, 1
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=PERIOD)  # a new period: the new samples decide
    service.publish(later)
    verdicts = by_name(evaluate_alarms(factory, later))
    assert verdicts["dlq"].new_state == ALARM and verdicts["errors"].new_state == ALARM
    assert verdicts["errors"].datapoints[0].value == 1.0  # the errors since the last publish


# -- metric math ---------------------------------------------------------------------------------


def test_metric_math_ratio_alarm(factory, cloudwatch, powertools):
    dims = [{"Name": "service", "Value": SERVICE}, {"Name": "tier", "Value": TIER}]

    def stat(name):
        return {"Metric": {"Namespace": "Jukinet", "MetricName": name, "Dimensions": dims}, "Period": PERIOD,
                "Stat": "Sum"}

    cloudwatch.put_metric_alarm(
        AlarmName="scan-ratio", EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=0.5,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching", Metrics=[
            {"Id": "e1", "Expression": "m1/(m1+m2)", "Label": "not-found ratio", "ReturnData": True},
            {"Id": "m1", "MetricStat": stat("NotFoundAnswers"), "ReturnData": False},
            {"Id": "m2", "MetricStat": stat("RecordsProvided"), "ReturnData": False}])
    cloudwatch.put_metric_alarm(  # the CS errors alarms' shape (infra/stacks/municipality.py)
        AlarmName="group-errors", EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=0,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching", Metrics=[
            {"Id": "expr_1", "Expression": "SUM(FILL(METRICS(), 0))", "ReturnData": True},
            {"Id": "m0", "MetricStat": stat("SignatureFailures"), "ReturnData": False},
            {"Id": "m1", "MetricStat": stat("SequenceGaps"), "ReturnData": False}])
    sink = MetricSink(factory)
    now = aligned_now()
    verdicts = by_name(evaluate_alarms(factory, now))
    assert verdicts["scan-ratio"].new_state == OK and verdicts["group-errors"].new_state == OK
    assert [p.value for p in verdicts["group-errors"].datapoints] == [0.0]  # FILL: a datapoint, not missing

    emit(sink, powertools, {"RecordsProvided": 9, "NotFoundAnswers": 1}, at=now)  # normal look-ups
    sink.flush()
    verdicts = by_name(evaluate_alarms(factory, now))
    assert verdicts["scan-ratio"].new_state == OK and verdicts["scan-ratio"].datapoints[0].value == 0.1

    emit(sink, powertools, {"RecordsProvided": 1, "NotFoundAnswers": 17, "SequenceGaps": 2}, at=now)  # a scan
    sink.flush()
    verdicts = by_name(evaluate_alarms(factory, now))
    assert verdicts["scan-ratio"].new_state == ALARM and verdicts["scan-ratio"].datapoints[0].value == 18 / 28
    assert verdicts["group-errors"].new_state == ALARM and verdicts["group-errors"].datapoints[0].value == 2.0


def test_metric_math_functions_and_unsupported_ones(factory, cloudwatch, powertools):
    dims = [{"Name": "service", "Value": SERVICE}, {"Name": "tier", "Value": TIER}]
    stat = {"Metric": {"Namespace": "Jukinet", "MetricName": "SequenceGaps", "Dimensions": dims}, "Period": PERIOD,
            "Stat": "Maximum"}

    def alarm(name, expression, threshold=0.0):
        cloudwatch.put_metric_alarm(
            AlarmName=name, EvaluationPeriods=3, DatapointsToAlarm=1, Threshold=threshold,
            ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="missing", Metrics=[
                {"Id": "e", "Expression": expression, "ReturnData": True},
                {"Id": "m", "MetricStat": stat, "ReturnData": False}])

    alarm("if", "IF(m > 3, 1, 0)", 1)
    alarm("repeat", "FILL(m, REPEAT) * 2 - ABS(-1)", 9)
    alarm("not-yet", "RUNNING_SUM(m)")
    now = aligned_now()
    sink = MetricSink(factory)
    emit(sink, powertools, {"SequenceGaps": 5}, at=now - dt.timedelta(seconds=2 * PERIOD))
    sink.flush()
    verdicts = by_name(evaluate_alarms(factory, now))
    assert verdicts["if"].new_state == ALARM and [p.value for p in verdicts["if"].datapoints] == [1.0, None, None]
    assert [p.value for p in verdicts["repeat"].datapoints] == [9.0, 9.0, 9.0]
    assert not verdicts["not-yet"].evaluated and "RUNNING_SUM" in verdicts["not-yet"].reason
    assert verdicts["not-yet"].new_state == verdicts["not-yet"].old_state
    with pytest.raises(UnsupportedAlarm, match="not-yet: metric math function RUNNING_SUM"):
        evaluate_alarms(factory, now, strict=True)


def test_anomaly_detection_band_needs_history(factory, cloudwatch):
    metric = {"Namespace": "Jukinet", "MetricName": "RecordsProvided",
              "Dimensions": [{"Name": "service", "Value": "jukinet-provision"}, {"Name": "tier", "Value": "national"}]}
    cloudwatch.put_metric_alarm(
        AlarmName="volume", EvaluationPeriods=1, ThresholdMetricId="ad1", TreatMissingData="notBreaching",
        ComparisonOperator="GreaterThanUpperThreshold", Metrics=[
            {"Id": "ad1", "Expression": "ANOMALY_DETECTION_BAND(m1, 2)", "ReturnData": True},
            {"Id": "m1", "MetricStat": {"Metric": metric, "Period": PERIOD, "Stat": "Sum"}, "ReturnData": True}])
    now = aligned_now()
    cloudwatch.put_metric_data(Namespace="Jukinet", MetricData=[
        {"MetricName": "RecordsProvided", "Dimensions": metric["Dimensions"], "Value": 5000.0, "Timestamp": now}])
    [verdict] = evaluate_alarms(factory, now)
    assert verdict.new_state == INSUFFICIENT_DATA and NEEDS_HISTORY in verdict.reason

    rng = random.Random(7)
    history = [now - dt.timedelta(seconds=PERIOD * k) for k in range(1, 2 * 24 * 12)]  # two days, every period
    for i in range(0, len(history), 500):
        cloudwatch.put_metric_data(Namespace="Jukinet", MetricData=[
            {"MetricName": "RecordsProvided", "Dimensions": metric["Dimensions"], "Timestamp": t,
             "Value": float(rng.randint(80, 120))} for t in history[i:i + 500]])
    [verdict] = evaluate_alarms(factory, now)
    assert verdict.new_state == ALARM and "approximation" in verdict.reason
    assert verdict.datapoints[0].upper is not None and verdict.datapoints[0].upper < 200
    later = now + dt.timedelta(seconds=PERIOD)
    cloudwatch.put_metric_data(Namespace="Jukinet", MetricData=[
        {"MetricName": "RecordsProvided", "Dimensions": metric["Dimensions"], "Value": 101.0, "Timestamp": later}])
    [verdict] = evaluate_alarms(factory, later)
    assert verdict.new_state == OK


# -- metric filters ------------------------------------------------------------------------------


def test_metric_filter_counts_403_lines_only(aws, factory, cloudwatch):
    logs = aws.client("logs", REGION)
    logs.create_log_group(logGroupName="/access")
    logs.create_log_stream(logGroupName="/access", logStreamName="s")
    logs.put_metric_filter(logGroupName="/access", filterName="refusals", filterPattern="{ $.status = 403 }",
                           metricTransformations=[{"metricName": "Refusals", "metricNamespace": "Jukinet",
                                                   "metricValue": "1"}])
    cloudwatch.put_metric_alarm(AlarmName="refusals", Namespace="Jukinet", MetricName="Refusals", Statistic="Sum",
                                Period=PERIOD, EvaluationPeriods=1, Threshold=0,
                                ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")
    base = int(dt.datetime.now(dt.UTC).timestamp() * 1000)

    def put(*statuses):
        logs.put_log_events(logGroupName="/access", logStreamName="s", logEvents=[
            {"timestamp": base + i, "message": json.dumps({"status": s, "path": "/v1/lookups"})}
            for i, s in enumerate(statuses)])
        time.sleep(0.02)  # the events' timestamps (base + i ms) must be in the past when the filters run

    filters = LogMetricFilters(factory, since=base - 1000)
    put(200, 200, 404, "403")  # normal traffic; a string "403" is not the number 403
    report = filters.apply()
    assert report.matches == {"/access:refusals": 0} and report.events == 4
    assert by_name(evaluate_alarms(factory))["refusals"].new_state == OK

    put(403, 200, 403)
    report = filters.apply()
    assert report.matches == {"/access:refusals": 2} and report.events == 3  # earlier events not counted again
    verdict = by_name(evaluate_alarms(factory))["refusals"]
    assert verdict.new_state == ALARM and verdict.datapoints[-1].value == 2.0


def test_metric_filter_values_dimensions_and_defaults(aws, factory, cloudwatch):
    logs = aws.client("logs", REGION)
    logs.create_log_group(logGroupName="/app")
    logs.create_log_stream(logGroupName="/app", logStreamName="s")
    logs.put_metric_filter(logGroupName="/app", filterName="latency", filterPattern='{ $.level = "INFO" }',
                           metricTransformations=[{"metricName": "Latency", "metricNamespace": "App",
                                                   "metricValue": "$.ms", "unit": "Milliseconds",
                                                   "dimensions": {"route": "$.route"}}])
    logs.put_metric_filter(logGroupName="/app", filterName="errors", filterPattern="ERROR -retrying",
                           metricTransformations=[{"metricName": "Errors", "metricNamespace": "App",
                                                   "metricValue": "1", "defaultValue": 0}])
    base = int(dt.datetime.now(dt.UTC).timestamp() * 1000) // 60_000 * 60_000
    logs.put_log_events(logGroupName="/app", logStreamName="s", logEvents=[
        {"timestamp": base + 1, "message": json.dumps({"level": "INFO", "ms": 12, "route": "/a"})},
        {"timestamp": base + 2, "message": json.dumps({"level": "INFO", "ms": 30})},  # no route: no metric
        {"timestamp": base + 3, "message": "ERROR retrying in 1s"},
        {"timestamp": base + 60_000, "message": "ERROR lost"}])
    report = apply_metric_filters(factory, base, base + 120_000)
    assert report.matches == {"/app:errors": 1, "/app:latency": 2}
    assert report.next_since == base + 120_001
    latency = cloudwatch.get_metric_statistics(
        Namespace="App", MetricName="Latency", Dimensions=[{"Name": "route", "Value": "/a"}],
        StartTime=dt.datetime.fromtimestamp(base / 1000, dt.UTC), Period=60, Statistics=["Sum"],
        EndTime=dt.datetime.fromtimestamp(base / 1000 + 120, dt.UTC))["Datapoints"]
    assert [(p["Sum"], p["Unit"]) for p in latency] == [(12.0, "Milliseconds")]
    errors = cloudwatch.get_metric_data(StartTime=dt.datetime.fromtimestamp(base / 1000, dt.UTC),
                                        EndTime=dt.datetime.fromtimestamp(base / 1000 + 120, dt.UTC),
                                        MetricDataQueries=[{"Id": "e", "MetricStat": {"Metric": {
                                            "Namespace": "App", "MetricName": "Errors"}, "Period": 60,
                                            "Stat": "Sum"}}], ScanBy="TimestampAscending")["MetricDataResults"][0]
    assert errors["Values"] == [0.0, 1.0]  # the first minute matched nothing: its default value


@pytest.mark.parametrize(("pattern", "message", "expected"), [
    ('{ ($.errorCode = "*UnauthorizedOperation") || ($.errorCode = "AccessDenied*") }',
     {"errorCode": "Client.UnauthorizedOperation"}, True),
    ('{ ($.errorCode = "*UnauthorizedOperation") || ($.errorCode = "AccessDenied*") }',
     {"errorCode": "AccessDeniedException"}, True),
    ('{ ($.errorCode = "*UnauthorizedOperation") || ($.errorCode = "AccessDenied*") }',
     {"errorCode": "ThrottlingException"}, False),
    ('{ $.userIdentity.type = "Root" && $.userIdentity.invokedBy NOT EXISTS && $.eventType != "AwsServiceEvent" }',
     {"userIdentity": {"type": "Root"}, "eventType": "AwsApiCall"}, True),
    ('{ $.userIdentity.type = "Root" && $.userIdentity.invokedBy NOT EXISTS && $.eventType != "AwsServiceEvent" }',
     {"userIdentity": {"type": "Root", "invokedBy": "s3.amazonaws.com"}, "eventType": "AwsApiCall"}, False),
    ("{ ($.eventName = ConsoleLogin) && ($.additionalEventData.MFAUsed != \"Yes\") }",
     {"eventName": "ConsoleLogin", "additionalEventData": {"MFAUsed": "No"}}, True),
    ("{($.eventSource = kms.amazonaws.com) && (($.eventName=DisableKey)||($.eventName=ScheduleKeyDeletion))}",
     {"eventSource": "kms.amazonaws.com", "eventName": "ScheduleKeyDeletion"}, True),
    ("{($.eventSource = kms.amazonaws.com) && (($.eventName=DisableKey)||($.eventName=ScheduleKeyDeletion))}",
     {"eventSource": "kms.amazonaws.com", "eventName": "Decrypt"}, False),
    ('{ ($.status = "403") && (($.errorResponseType = "ACCESS_DENIED") || ($.errorResponseType = "INVALID_API_KEY")) }',
     {"status": "403", "errorResponseType": "INVALID_API_KEY"}, True),
    ('{ ($.status = "403") && (($.errorResponseType = "ACCESS_DENIED") || ($.errorResponseType = "INVALID_API_KEY")) }',
     {"status": "403", "errorResponseType": "-"}, False),
    ("{ $.latency > 1000 }", {"latency": 1500}, True),
    ("{ $.latency > 1000 }", {"latency": "1500"}, False),
    ("{ $.latency >= 1000 && $.error IS TRUE }", {"latency": 1000, "error": True}, True),
    ("{ $.resources[0].type = AWS::KMS::Key }", {"resources": [{"type": "AWS::KMS::Key"}]}, True),
    ("{ $.sourceIPAddress != 123.123.* }", {"sourceIPAddress": "10.0.0.1"}, True),
    ("{ $.sourceIPAddress != 123.123.* }", {"sourceIPAddress": "123.123.4.5"}, False),
    ("{ $.missing != 1 }", {"other": 1}, False),
    ("{ $.value IS NULL }", {"value": None}, True),
    ("", "anything at all", True),
    ("ERROR", "[ERROR] boom", True),
    ("ERROR", "error", False),
    ('"Failed authentication" user', "user: Failed authentication", True),
    ("?ERROR ?WARN", "WARN disk", True),
    ("?ERROR ?WARN", "INFO ok", False),
    ("ERROR -retrying", "ERROR retrying", False),
    ("{ $.status = 403 }", "not json at all", False),
    ("[ip, user, status=403]", "10.0.0.1 alice 403", True),
    ("[ip, user, status=403]", "10.0.0.1 alice 403 extra", False),
    ('[ip != "10.1.*" && ip != "10.2.*", user, status >= 400]', "10.3.0.1 bob 404", True),
    ('[ip != "10.1.*" && ip != "10.2.*", user, status >= 400]', "10.2.0.1 bob 404", False),
    ('[ip, user = "al*", status]', "10.0.0.1 bob 200", False),
])
def test_filter_patterns(pattern, message, expected):
    text = message if isinstance(message, str) else json.dumps(message)
    assert parse_filter_pattern(pattern).matches(text) is expected


@pytest.mark.parametrize("pattern", ["[ip, user, status=403 || status=404]", "[ip, ...]", "{ $.message = %denied% }", "{ $.items[*].id = 1 }",
                                     '{ $.name < "x" }', "{ $.a = 1 ", "{ $.a 1 }", "?A B"])
def test_unsupported_filter_patterns_fail_loudly(pattern):
    with pytest.raises(UnsupportedFilterPattern):
        parse_filter_pattern(pattern)


def test_print_alarm_status(factory, cloudwatch, powertools):
    custom_alarm(cloudwatch, "sig", "SignatureFailures")
    custom_alarm(cloudwatch, "gaps", "SequenceGaps", TreatMissingData="missing")
    cloudwatch.put_metric_alarm(AlarmName="p99", Namespace="Jukinet", MetricName="SignatureFailures",
                                ExtendedStatistic="p99", Period=PERIOD, EvaluationPeriods=1, Threshold=0,
                                Dimensions=[{"Name": "service", "Value": SERVICE}, {"Name": "tier", "Value": TIER}],
                                ComparisonOperator="GreaterThanThreshold")
    sink = MetricSink(factory)
    emit(sink, powertools, {"SignatureFailures": 1})
    sink.flush()
    verdicts = evaluate_alarms(factory)
    console = Console(record=True, width=200)
    print_alarm_status(console, verdicts)
    text = console.export_text()
    assert "ALARM" in text and "sig" in text and "was greater than the threshold" in text
    assert "INSUFFICIENT_DATA" in text and "not evaluated" in text and "p99" in text


# -- end to end on the deployed Nagano assembly --------------------------------------------------


@pytest.fixture(scope="module")
def nagano(tmp_path_factory):
    from infra.config import load_deployment
    from jukinet.adapters import aws
    from embedded_aws.deploy import deploy_assembly
    from embedded_aws.runner import LocalRunner, replace_environ

    deployment = load_deployment(E2E_DEPLOYMENT)
    out = nagano_assembly(tmp_path_factory)
    saved = dict(os.environ)
    with MotoServer() as server, open(os.devnull, "w") as devnull:
        env = deploy_assembly(out, server.endpoint_url, default_region=deployment.region)
        os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_DEFAULT_REGION": deployment.region,
                           **local_credentials(server.endpoint_url, deployment.region)})
        aws.reset_clients()
        with LocalMonitoring(env, stream=devnull) as monitoring, \
                LocalRunner(env, log_stream=monitoring.sink, share_modules=True) as runner:
            # The sealer's hourly run, as a deployment has it (the embedded runner fires no
            # schedule here): its heartbeat keeps provision-log-not-sealed quiet.
            from infra.naming import Names

            runner.invoke(Names.of(deployment).provision_function("sealer"), {})
            yield deployment, env, runner, monitoring
    replace_environ(saved)
    aws.reset_clients()


@pytest.mark.slow
def test_a_forged_message_raises_exactly_the_prefectures_signature_alarm(nagano):
    from infra.naming import Names, prefecture_tier
    from jukinet.adapters import aws
    from jukinet.domain.message import Payload
    from embedded_aws.runner import sqs_record

    from ..pipeline.exports import csv_bytes, person, row

    deployment, env, runner, monitoring = nagano
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    tier = prefecture_tier(prefecture.code)
    rng = random.Random(5)
    aws.client("s3").put_object(Bucket=names.drop_zone_bucket(prefecture.municipality_tier.env, "202011"),
                                Key="incoming/a.csv", Body=csv_bytes([row(person(rng), "転入", "2003-01-05")]))
    assert runner.process_new_objects() == 1

    verdicts = monitoring.evaluate()  # normal traffic so far: nothing fires
    assert verdicts and all(v.evaluated for v in verdicts), [v.reason for v in verdicts if not v.evaluated]
    assert [v.name for v in verdicts if v.new_state == ALARM] == []

    sqs = aws.client("sqs")
    inbound = names.queue_url(prefecture.env, names.inbound_queue(tier))
    [message] = sqs.receive_message(QueueUrl=inbound, MaxNumberOfMessages=1, VisibilityTimeout=0)["Messages"]
    envelope = json.loads(message["Body"])
    payload = Payload.from_bytes(base64.b64decode(envelope["payload"]))
    payload.notices[0]["facts"]["address"] = "改ざんされた住所"
    envelope["payload"] = base64.b64encode(payload.to_bytes()).decode()
    sqs.send_message(QueueUrl=inbound, MessageBody=json.dumps(envelope))  # the original flows on too
    # The deployed processor, run by the runner as its SQS poller would (sqs_record): both messages in a batch.
    batch = []
    for _ in range(5):
        batch += sqs.receive_message(QueueUrl=inbound, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                     AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        if len(batch) == 2:
            break
    assert len(batch) == 2
    queue_arn = Names.queue_arn(prefecture.env, names.inbound_queue(tier))
    result = runner.invoke(names.processor_function(tier),
                           {"Records": [sqs_record(m, queue_arn, prefecture.env.region) for m in batch]})
    assert result.ok and not (result.response or {}).get("batchItemFailures")  # the forgery is dead-lettered
    for m in batch:
        sqs.delete_message(QueueUrl=inbound, ReceiptHandle=m["ReceiptHandle"])
    dlq = names.queue_url(prefecture.env, names.dead_letter_queue(names.inbound_queue(tier)))
    [dead] = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"], VisibilityTimeout=0)["Messages"]
    assert dead["MessageAttributes"]["jukinet.reason"]["StringValue"] == "signature_invalid"

    verdicts = monitoring.evaluate()
    assert monitoring.sink.emf_lines and not monitoring.sink.problems
    firing = [v.name for v in verdicts if v.new_state == ALARM]
    assert firing == [names.alarm(tier, "signature-failures")]
    assert {v.new_state for v in verdicts} <= {ALARM, OK, INSUFFICIENT_DATA}
    assert all(v.evaluated for v in verdicts)
    cloudwatch = env.client("cloudwatch", prefecture.env.region, prefecture.env.account)
    assert [a["AlarmName"] for a in cloudwatch.describe_alarms(StateValue=ALARM)["MetricAlarms"]] == firing

    # With the AWS-service metrics local mode can observe, the DLQ alarm joins, as it would in AWS.
    ServiceMetrics(env, runner).publish()
    verdicts = evaluate_alarms(env)
    assert sorted(v.name for v in verdicts if v.new_state == ALARM) == sorted(
        [names.alarm(tier, "signature-failures"), names.alarm(tier, "inbound-dlq-not-empty")])

"""The network watch's alarms (``flow-log-rejects``, ``flow-log-leaving-vpc``,
``dns-outside-endpoint-zones``) evaluated by the embedded AWS's local CloudWatch.

The flow-log records come from ``FlowLogRecorder``, armed for a function as the runner arms each
invocation: every boto3 call the function makes and every other socket it opens becomes the
record its VPC would write. The metric filters and alarms are created exactly as
``infra/components/network_watch.py`` synthesizes them (same patterns, namespace, thresholds;
``tests/infra/test_network_watch.py`` asserts the templates).

The DNS records come from the same recorder (each call's service name, each name the function
resolves itself); two tests also write Route 53 Resolver records directly, for names boto3 never
resolves (another region, a global endpoint).
"""

from __future__ import annotations

import datetime as dt
import json
import socket

import pytest

from infra.components.network_watch import (
    DNS_KIND,
    DNS_METRIC,
    LEAVING_KIND,
    LEAVING_METRIC,
    REJECTS_KIND,
    REJECTS_METRIC,
    dns_pattern,
    leaving_pattern,
    network_namespace,
    rejects_pattern,
)
from embedded_aws.flow_logs import FlowLogRecorder, TierNetworkView
from embedded_aws.monitoring import ALARM, OK, LogMetricFilters, evaluate_alarms
from embedded_aws.server import MotoServer

REGION, ACCOUNT = "ap-northeast-1", "123456789012"
TIER, CIDR = "pref-200000", "10.20.0.0/22"
PERIOD = 300
FLOW_GROUP, DNS_GROUP = "/flow-logs/pref-200000", "/jukinet/pref-200000/dns-queries"
FUNCTION = "jukinet-pref-200000-processor"


def alarm_name(kind: str) -> str:
    return f"jukinet-{TIER}-{kind}"


@pytest.fixture(scope="module")
def server():
    with MotoServer() as s:
        yield s


@pytest.fixture
def aws(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def factory(aws):
    def make(service, region=None, account=None):
        return aws.client(service, region or REGION, account or ACCOUNT)
    return make


@pytest.fixture
def watch(factory):
    """The tier's log groups, metric filters and alarms as synthesized."""
    logs, cloudwatch = factory("logs"), factory("cloudwatch")
    for group in (FLOW_GROUP, DNS_GROUP):
        logs.create_log_group(logGroupName=group)
    for kind, metric, group, pattern in ((REJECTS_KIND, REJECTS_METRIC, FLOW_GROUP, rejects_pattern()),
                                         (LEAVING_KIND, LEAVING_METRIC, FLOW_GROUP, leaving_pattern([CIDR])),
                                         (DNS_KIND, DNS_METRIC, DNS_GROUP, dns_pattern(REGION))):
        logs.put_metric_filter(logGroupName=group, filterName=alarm_name(kind), filterPattern=pattern,
                               metricTransformations=[{"metricNamespace": network_namespace(TIER),
                                                       "metricName": metric, "metricValue": "1"}])
        cloudwatch.put_metric_alarm(AlarmName=alarm_name(kind), Namespace=network_namespace(TIER), MetricName=metric,
                                    Statistic="Sum", Period=PERIOD, EvaluationPeriods=1, DatapointsToAlarm=1,
                                    Threshold=0, ComparisonOperator="GreaterThanThreshold",
                                    TreatMissingData="notBreaching")
    return LogMetricFilters(factory)


class Clock:
    def __init__(self) -> None:
        now = int(dt.datetime.now(dt.UTC).timestamp())
        self.t = dt.datetime.fromtimestamp(now - now % PERIOD - 6 * 3600 + 60, dt.UTC)  # within CloudWatch's 2 weeks

    def __call__(self) -> float:
        return self.t.timestamp()


VIEW = TierNetworkView("vpc-1", CIDR, FLOW_GROUP, REGION, ACCOUNT, frozenset({"sqs", "kms"}),
                       frozenset({"s3", "dynamodb"}), DNS_GROUP)


def states(factory, watch, now) -> dict[str, str]:
    watch.apply(now)
    return {v.name: v.new_state for v in evaluate_alarms(factory, now)}


def normal_invocation(factory) -> None:
    """What a processor does: SQS, KMS through interface endpoints; DynamoDB, S3 through gateways."""
    factory("sqs").list_queues()
    factory("kms").list_keys()
    factory("dynamodb").list_tables()
    factory("s3").list_buckets()


def test_a_normal_month_of_endpoint_traffic_keeps_both_flow_log_alarms_quiet(factory, watch):
    clock = Clock()
    recorder = FlowLogRecorder(factory, now=clock)
    with recorder.installed():
        for _day in range(30):  # a month in miniature: one period of traffic a "day"
            with recorder.armed(FUNCTION, VIEW):
                normal_invocation(factory)
            got = states(factory, watch, clock.t)
            assert got[alarm_name(REJECTS_KIND)] == OK and got[alarm_name(LEAVING_KIND)] == OK, got
            assert got[alarm_name(DNS_KIND)] == OK, got
            clock.t += dt.timedelta(minutes=5)
    assert len(recorder.records) == 120 and len(recorder.queries) == 120
    assert {json.loads(q)["query_name"] for q in recorder.queries} == {
        f"{s}.{REGION}.amazonaws.com." for s in ("sqs", "kms", "dynamodb", "s3")}
    services = {line.split()[-1] for line in recorder.records}
    assert services == {"-", "S3", "DYNAMODB"}  # interface endpoints inside the VPC, gateways by service


def test_a_call_to_a_service_without_an_endpoint_raises_leaving_vpc(factory, watch):
    clock = Clock()
    recorder = FlowLogRecorder(factory, now=clock)
    with recorder.installed(), recorder.armed(FUNCTION, VIEW):
        normal_invocation(factory)
        factory("sts").get_caller_identity()  # STS has no endpoint in the tier: the public name, no route
    got = states(factory, watch, clock.t)
    assert got[alarm_name(LEAVING_KIND)] == ALARM and got[alarm_name(REJECTS_KIND)] == OK
    [leaving] = [line for line in recorder.records if line.endswith("egress AMAZON")]
    assert leaving.split()[12] == "ACCEPT" and leaving.split()[6] == "443"
    clock.t += dt.timedelta(minutes=5)  # the next period: nothing new, the alarm clears
    assert states(factory, watch, clock.t)[alarm_name(LEAVING_KIND)] == OK


def test_a_connection_on_a_port_other_than_443_is_refused_and_raises_rejects(factory, watch):
    clock = Clock()
    recorder = FlowLogRecorder(factory, now=clock)
    with recorder.installed(), recorder.armed(FUNCTION, VIEW):
        normal_invocation(factory)
        with pytest.raises(TimeoutError):  # an insider's code mailing data out: SMTP to the internet
            socket.create_connection(("203.0.113.5", 25), timeout=1)
    got = states(factory, watch, clock.t)
    assert got[alarm_name(REJECTS_KIND)] == ALARM
    assert got[alarm_name(LEAVING_KIND)] == ALARM  # it was also an attempt to leave
    [reject] = [line for line in recorder.records if " REJECT " in line]
    assert reject.split()[4:7] == ["203.0.113.5", reject.split()[5], "25"]


def test_a_function_resolving_a_public_name_raises_the_dns_alarm_and_its_connection_leaving(factory, watch):
    clock = Clock()
    recorder = FlowLogRecorder(factory, now=clock)
    with recorder.installed(), recorder.armed(FUNCTION, VIEW):
        normal_invocation(factory)
        with pytest.raises(TimeoutError):  # resolved (the VPC's resolver answers public names), then no route
            socket.create_connection(("exfil.example.com", 443), timeout=1)
    got = states(factory, watch, clock.t)
    assert got[alarm_name(DNS_KIND)] == ALARM and got[alarm_name(LEAVING_KIND)] == ALARM
    assert got[alarm_name(REJECTS_KIND)] == OK
    assert "exfil.example.com." in {json.loads(q)["query_name"] for q in recorder.queries}


def test_https_to_an_internet_address_is_accepted_by_the_group_but_leaves_no_way_out(factory, watch):
    clock = Clock()
    recorder = FlowLogRecorder(factory, now=clock)
    with recorder.installed(), recorder.armed(FUNCTION, VIEW), pytest.raises(TimeoutError):
        socket.create_connection(("198.51.100.7", 443), timeout=1)
    got = states(factory, watch, clock.t)
    assert got[alarm_name(LEAVING_KIND)] == ALARM and got[alarm_name(REJECTS_KIND)] == OK


def test_unarmed_calls_write_nothing(factory, watch):
    recorder = FlowLogRecorder(factory)
    with recorder.installed():
        normal_invocation(factory)
    assert recorder.records == []


def _query(name: str, at: dt.datetime) -> str:
    return json.dumps({"version": "1.100000", "account_id": ACCOUNT, "region": REGION, "vpc_id": "vpc-1",
                       "query_timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "query_name": name, "query_type": "A",
                       "query_class": "IN", "rcode": "NOERROR", "answers": [], "srcaddr": "10.20.1.17",
                       "srcport": "53000", "transport": "UDP", "srcids": {}})


def _put_queries(factory, names: list[str], at: dt.datetime) -> None:
    logs = factory("logs")
    stream = f"q-{int(at.timestamp())}"
    logs.create_log_stream(logGroupName=DNS_GROUP, logStreamName=stream)
    logs.put_log_events(logGroupName=DNS_GROUP, logStreamName=stream,
                        logEvents=[{"timestamp": int(at.timestamp() * 1000), "message": _query(n, at)}
                                   for n in names])


def test_dns_names_of_the_regions_service_zones_stay_quiet_for_a_month(factory, watch):
    clock = Clock()
    for _day in range(30):
        _put_queries(factory, [f"sqs.{REGION}.amazonaws.com.", f"kms.{REGION}.amazonaws.com.",
                               f"dynamodb.{REGION}.amazonaws.com.",
                               f"jukinet-dropzone-123456789012-{REGION}-202011.s3.{REGION}.amazonaws.com."], clock.t)
        assert states(factory, watch, clock.t)[alarm_name(DNS_KIND)] == OK
        clock.t += dt.timedelta(minutes=5)


@pytest.mark.parametrize("name", ["sts.amazonaws.com.", "sqs.us-east-1.amazonaws.com."])
def test_dns_name_outside_the_regions_zone_raises_the_alarm(factory, watch, name):
    clock = Clock()
    _put_queries(factory, [f"sqs.{REGION}.amazonaws.com.", name], clock.t)
    assert states(factory, watch, clock.t)[alarm_name(DNS_KIND)] == ALARM

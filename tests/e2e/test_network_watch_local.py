"""The network watch on the deployed Nagano assembly in the embedded AWS: the runner arms every
invocation with its function's VPC (read back from the embedded AWS: subnets, flow log,
endpoints), so a normal file's traffic through the three tiers writes flow-log records that keep
``flow-log-rejects``, ``flow-log-leaving-vpc`` and ``dns-outside-endpoint-zones`` quiet, and a connection out of a deployed
function's VPC raises them (``embedded_aws/flow_logs.py``)."""

from __future__ import annotations

import random
import socket

import pytest

from infra.components.network_watch import DNS_KIND, LEAVING_KIND, REJECTS_KIND
from infra.naming import Names, municipality_tier, prefecture_tier
from jukinet.adapters import aws
from embedded_aws.flow_logs import FlowLogRecorder
from embedded_aws.monitoring import ALARM, OK

from ..pipeline.exports import csv_bytes, person, row
from .embedded import deployed_nagano

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    recorder = FlowLogRecorder(lambda service, region, account: aws.client(service))
    with recorder.installed(), deployed_nagano(tmp_path_factory, monitoring=True, flow_logs=recorder) as (
            deployment, env, runner):
        recorder.client = lambda service, region, account: env.client(service, region, account)
        yield deployment, env, runner, recorder


def _states(runner, names, tiers):
    verdicts = {v.name: v for v in runner.monitoring.evaluate()}
    return {name: verdicts[name].new_state for name in names}, verdicts


def test_normal_traffic_through_the_tiers_is_recorded_and_keeps_the_flow_log_alarms_quiet(world):
    deployment, _env, runner, recorder = world
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    tiers = ("national", prefecture_tier(prefecture.code), municipality_tier(prefecture.code))
    rng = random.Random(7)
    aws.client("s3").put_object(Bucket=names.drop_zone_bucket(prefecture.municipality_tier.env, "202011"),
                                Key="incoming/a.csv", Body=csv_bytes([row(person(rng), "転入", "2003-01-05")]))
    assert runner.process_new_objects() == 1
    assert runner.run_until_idle(timeout_s=120).idle
    watched = [names.alarm(t, k) for t in tiers for k in (REJECTS_KIND, LEAVING_KIND, DNS_KIND)]
    states, verdicts = _states(runner, watched, tiers)
    assert states == dict.fromkeys(watched, OK), {n: verdicts[n].reason for n in watched}
    groups = {line.split()[2] for line in recorder.records}
    assert len(groups) >= 3  # the CS, the prefecture and the national processor each wrote records
    assert all(line.split()[12] == "ACCEPT" for line in recorder.records)
    assert {line.split()[-1] for line in recorder.records} <= {"-", "S3", "DYNAMODB"}
    assert recorder.queries and all(f'.{deployment.region}.amazonaws.com."' in q for q in recorder.queries)


def test_a_deployed_function_connecting_out_of_its_vpc_raises_both_alarms_of_its_tier_only(world):
    """An insider's change to one function (here: the prefecture processor's code path, run as
    that function by the runner's recorder) opens SMTP to the internet."""
    deployment, _env, runner, recorder = world
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    tier = prefecture_tier(prefecture.code)
    function = runner.functions[names.processor_function(tier)]
    view = recorder.view(function.name, function.region, function.account)
    assert view is not None and view.cidr == prefecture.network.cidr
    with recorder.armed(function.name, view), pytest.raises(TimeoutError):
        socket.create_connection(("203.0.113.5", 25), timeout=1)
    watched = [names.alarm(t, k) for t in ("national", tier, municipality_tier(prefecture.code))
               for k in (REJECTS_KIND, LEAVING_KIND)]
    states, _ = _states(runner, watched, None)
    assert [n for n, s in states.items() if s == ALARM] == [names.alarm(tier, REJECTS_KIND),
                                                          names.alarm(tier, LEAVING_KIND)]

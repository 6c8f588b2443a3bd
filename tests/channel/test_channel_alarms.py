"""The channel's alarm and metrics evaluated by the embedded AWS (decision 0047): the channel
world on a moto server, its handlers' EMF metrics put into the embedded CloudWatch by a
``MetricSink`` as Lambda's log agent would, and the alarm as ``infra/components/channel.py``
synthesizes it (``tests/infra/test_channel.py`` asserts the same name, metric and dimensions),
evaluated by ``embedded_aws.monitoring.evaluate_alarms``.

``channel-dead-letters`` fires when the tier's channel function dead-letters a message (here a
request that reached the home tier after its deadline) and stays quiet through normal traffic
with every message delivered twice; a request that times out is counted
(``ChannelRequestsTimedOut``) and its dead letter by reason (``ChannelDeadLettersByReason``),
which the monthly monitoring report sums."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from jukinet import observability
from jukinet.adapters import aws
from jukinet.clock import system_clock
from jukinet.domain.channel import Outcome
from jukinet.handlers import channel_endpoint, national_processor, prefecture_processor
from embedded_aws.monitoring import ALARM, OK, MetricSink, evaluate_alarms
from embedded_aws.runner import replace_environ
from embedded_aws.server import MotoServer, local_credentials

from ..pipeline.harness import environment
from .world import CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, REGION, TOKYO_PREF, World, resident

pytestmark = pytest.mark.slow

PERIOD = 300
ALARMS = {f"jukinet-muni-{p}-channel-dead-letters": f"jukinet-muni-{p}" for p in (NAGANO_PREF, TOKYO_PREF)}


@pytest.fixture(scope="module")
def server():
    with MotoServer() as s:
        yield s


@pytest.fixture
def world(server):
    server.reset()
    saved = dict(os.environ)
    os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_DEFAULT_REGION": REGION,
                       **local_credentials(server.endpoint_url, REGION)})
    aws.reset_clients()
    observability.metrics.clear_metrics()

    def factory(service, region=None, account=None):
        return server.client(service, region or REGION, account)

    sink = MetricSink(factory)
    w = World(stdout=sink)
    w.factory = factory
    for name, service in ALARMS.items():  # as infra/components/channel.py synthesizes it
        factory("cloudwatch").put_metric_alarm(
            AlarmName=name, Namespace="Jukinet", MetricName="ChannelDeadLettered", Statistic="Sum", Period=PERIOD,
            Dimensions=[{"Name": "service", "Value": service}, {"Name": "tier", "Value": "municipality"}],
            EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=0, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching")
    yield w
    sink.close()
    observability.metrics.clear_metrics()
    for module in (channel_endpoint, prefecture_processor, national_processor):
        module._runtime.cache_clear()
    replace_environ(saved)
    aws.reset_clients()
    server.reset()


def states(world: World) -> dict[str, str]:
    world.stdout.flush()
    assert not world.stdout.problems, world.stdout.problems
    # The handlers' metrics are stamped with the process clock: evaluate at it.
    return {v.name: v.new_state for v in evaluate_alarms(world.factory, system_clock() + dt.timedelta(seconds=1))
            if v.name in ALARMS}


def flush_endpoint_metrics(world: World, pref: str) -> None:
    """What a counter function's invocation would print after calling the endpoint."""
    with environment(world.channel_env(pref)):
        observability.use_tier("municipality")
        import contextlib
        with contextlib.redirect_stdout(world.stdout):
            observability.flush()


def metric_sum(world: World, name: str, dimensions: dict[str, str]) -> float:
    now = system_clock()
    points = world.factory("cloudwatch").get_metric_statistics(
        Namespace="Jukinet", MetricName=name, Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=now - dt.timedelta(hours=1), EndTime=now + dt.timedelta(minutes=5), Period=3600,
        Statistics=["Sum"])["Datapoints"]
    return sum(p["Sum"] for p in points)


def test_normal_traffic_delivered_twice_keeps_channel_dead_letters_quiet(world: World) -> None:
    world.register(resident(51), MATSUMOTO)
    world.register(resident(52), CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    query = {"query": "resident-status"}
    asked = [nagano.request(NAGANO, MATSUMOTO, {**query, "resident_code": resident(51)}),
             nagano.request(NAGANO, CHIYODA, {**query, "resident_code": resident(52)}),
             nagano.request(NAGANO, MATSUMOTO, {**query, "resident_code": resident(59)})]  # refused: not an error
    world.pump(duplicate=True)
    assert [nagano.result(c).outcome for c in asked] == [Outcome.ANSWERED, Outcome.ANSWERED, Outcome.REFUSED]
    flush_endpoint_metrics(world, NAGANO_PREF)
    assert states(world) == {name: OK for name in ALARMS}
    muni = {"service": f"jukinet-muni-{NAGANO_PREF}", "tier": "municipality"}
    assert metric_sum(world, "ChannelRefusalsReceived", muni) == 1
    assert metric_sum(world, "ChannelRequestsSettled", muni) == 3


def test_a_dead_letter_at_the_home_tier_fires_channel_dead_letters_and_the_timeout_is_counted(world: World) -> None:
    world.register(resident(61), CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    late = nagano.request(NAGANO, CHIYODA, {"query": "resident-status", "resident_code": resident(61)},
                          wait=dt.timedelta(seconds=5))
    world.pump(hold={"muni-130001"})  # it waits in 千代田区's tier's channel queue…
    world.now += dt.timedelta(seconds=10)  # …past its deadline
    world.pump()
    [dead] = world.dead_letters("muni-130001")
    assert dead["jukinet.reason"] == "deadline_passed"
    assert nagano.result(late).outcome is Outcome.TIMED_OUT
    flush_endpoint_metrics(world, NAGANO_PREF)
    assert states(world) == {f"jukinet-muni-{NAGANO_PREF}-channel-dead-letters": OK,
                             f"jukinet-muni-{TOKYO_PREF}-channel-dead-letters": ALARM}
    tokyo = {"service": f"jukinet-muni-{TOKYO_PREF}", "tier": "municipality"}
    assert metric_sum(world, "ChannelDeadLettered", tokyo) == 1
    assert metric_sum(world, "ChannelDeadLettersByReason", {**tokyo, "reason": "deadline_passed"}) == 1
    nagano_dims = {"service": f"jukinet-muni-{NAGANO_PREF}", "tier": "municipality"}
    assert metric_sum(world, "ChannelRequestsTimedOut", nagano_dims) == 1
    nagano.result(late)  # read again: already timed out, not counted twice
    flush_endpoint_metrics(world, NAGANO_PREF)
    world.stdout.flush()
    assert metric_sum(world, "ChannelRequestsTimedOut", nagano_dims) == 1

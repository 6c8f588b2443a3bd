from __future__ import annotations

import boto3
import pytest

from jukinet import observability
from embedded_aws.monitoring import MetricSink, evaluate_alarms

from ..channel.world import REGION
from ..moto_world import moto_world
from .world import CrossWorld

HOME_SERVICE = "jukinet-muni-200000"  # the home tier (長野県) of the cards
# The home tier's counter alarms that its channel function feeds, as infra/components/counter.py
# synthesizes them (tests/alarm_catalogue.py checks the bounds): kind → (metric, Sum > threshold
# in 5 minutes), dimensions {service, tier}.
HOME_ALARMS = {"card-authentication-refusals": ("CardAuthenticationRefusals", 10),
               "ended-card-presented": ("EndedCardPresented", 0),
               "card-unauthorised-attempts": ("CardUnauthorisedAttempts", 0)}


@pytest.fixture
def world():
    with moto_world(CrossWorld) as made:
        yield made


@pytest.fixture
def home_alarms(world, monkeypatch, metrics_at_one_instant):
    """The home tier's card alarms, evaluated by the embedded AWS's CloudWatch evaluator on what
    the channel functions print (at one instant, evaluated there: tests/conftest.py); the fixture
    gives a function returning {kind: state}."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)

    def factory(service, region=None, account=None):
        return boto3.client(service, region_name=region or REGION)

    for kind, (metric, threshold) in HOME_ALARMS.items():
        factory("cloudwatch").put_metric_alarm(
            AlarmName=f"{HOME_SERVICE}-{kind}", Namespace="Jukinet", MetricName=metric, Statistic="Sum", Period=300,
            Dimensions=[{"Name": "service", "Value": HOME_SERVICE}, {"Name": "tier", "Value": "municipality"}],
            EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=threshold, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching")
    sink = MetricSink(factory)
    observability.metrics.clear_metrics()
    world.stdout = sink  # the channel functions print their metrics there

    def states() -> dict[str, str]:
        sink.flush()
        assert not sink.problems, sink.problems
        return {v.name.removeprefix(f"{HOME_SERVICE}-"): v.new_state for v in evaluate_alarms(factory, metrics_at_one_instant)}

    yield states
    sink.close()
    observability.metrics.clear_metrics()

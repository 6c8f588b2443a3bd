"""Where a stolen card tried at counters of other prefectures is alarmed (decision 0050): the home
tier's channel function emits ``CardAuthenticationRefusals`` and ``EndedCardPresented`` under the
home tier's service, so the home tier's ``card-authentication-refusals`` and
``ended-card-presented`` alarms — as ``infra/components/counter.py`` synthesizes them — evaluated by
the embedded AWS's CloudWatch evaluator see every refusal of its cards, whichever tier asked."""

from __future__ import annotations

import boto3
import pytest

from jukinet import observability
from embedded_aws.monitoring import ALARM, OK, MetricSink, evaluate_alarms

from ..channel.world import CHIYODA, NAGANO, REGION, resident
from ..copy.world import Person, counter
from .world import CrossWorld

SERVICE = "jukinet-muni-200000"  # the home tier (長野県) of the card
ALARMS = {"card-authentication-refusals": ("CardAuthenticationRefusals", 10),
          "ended-card-presented": ("EndedCardPresented", 0)}


@pytest.fixture
def home_alarms(world: CrossWorld, monkeypatch):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)

    def factory(service, region=None, account=None):
        return boto3.client(service, region_name=region or REGION)

    for kind, (metric, threshold) in ALARMS.items():
        factory("cloudwatch").put_metric_alarm(
            AlarmName=f"{SERVICE}-{kind}", Namespace="Jukinet", MetricName=metric, Statistic="Sum", Period=300,
            Dimensions=[{"Name": "service", "Value": SERVICE}, {"Name": "tier", "Value": "municipality"}],
            EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=threshold, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching")
    sink = MetricSink(factory)
    observability.metrics.clear_metrics()
    world.stdout = sink  # the channel functions print their metrics there

    def states() -> dict[str, str]:
        sink.flush()
        assert not sink.problems, sink.problems
        return {v.name.removeprefix(f"{SERVICE}-"): v.new_state for v in evaluate_alarms(factory)}

    yield states
    sink.close()
    observability.metrics.clear_metrics()


def test_a_stolen_card_tried_at_counters_of_another_prefecture_raises_its_home_tiers_alarms(
        world: CrossWorld, home_alarms) -> None:
    chip = world.resident_with_card(Person(resident(61), "信濃太郎"))
    outcome = world.remote_authenticate(chip)  # the resident, before the loss: quiet
    assert outcome["status"] == "authenticated"
    assert home_alarms() == dict.fromkeys(ALARMS, OK)
    assert world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "stolen"}, at=NAGANO)[0] == 200
    for n in range(11):  # the thief at 千代田区's counters, clerk after clerk
        body = world.challenge(chip.serial, who=counter(CHIYODA, f"clerk-{n}"))
        assert body["code"] == "CARD_SUSPENDED"
    assert home_alarms() == dict.fromkeys(ALARMS, ALARM)

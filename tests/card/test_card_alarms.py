"""The counter API's alarms, evaluated by the embedded AWS's CloudWatch evaluator
(``embedded_aws.monitoring``) on the metrics the counter function itself prints: quiet
through a normal day at the counters (cards issued, authenticated at another counter, a wrong
PIN, a card suspended by its own municipality), and each raised by its attack. The alarms are
created as ``infra/components/counter.py`` synthesizes them (``tests/alarm_catalogue.py`` checks
the bounds against the template)."""

from __future__ import annotations

import contextlib

import boto3
import pytest

from jukinet import observability
from jukinet.domain.card import VirtualCard, WrongPin
from embedded_aws.monitoring import ALARM, OK, MetricSink, evaluate_alarms

from .world import MATSUMOTO, NAGANO, REGION, UEDA, counter

SERVICE = "jukinet-muni-200000"
ALARMS = {  # kind: (metric, threshold): Sum > threshold in 5 minutes, dimensions {service, tier}
    "card-authentication-refusals": ("CardAuthenticationRefusals", 10),
    "ended-card-presented": ("EndedCardPresented", 0),
    "card-unauthorised-attempts": ("CardUnauthorisedAttempts", 0),
}
CODES = ["24727059608", "50000000016", "11111111113"]


@pytest.fixture
def counters(world, monkeypatch, metrics_at_one_instant):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    world.env["POWERTOOLS_SERVICE_NAME"] = SERVICE
    world.env.pop("POWERTOOLS_METRICS_DISABLED", None)

    def factory(service, region=None, account=None):
        return boto3.client(service, region_name=region or REGION)

    cloudwatch = factory("cloudwatch")
    for kind, (metric, threshold) in ALARMS.items():
        cloudwatch.put_metric_alarm(
            AlarmName=f"jukinet-muni-200000-{kind}", Namespace="Jukinet", MetricName=metric, Statistic="Sum",
            Period=300, Dimensions=[{"Name": "service", "Value": SERVICE}, {"Name": "tier", "Value": "municipality"}],
            EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=threshold, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching")
    sink = MetricSink(factory)
    observability.metrics.clear_metrics()

    @contextlib.contextmanager
    def printed():
        with contextlib.redirect_stdout(sink):
            yield

    def states() -> dict[str, str]:
        sink.flush()
        assert not sink.problems, sink.problems
        return {v.name.removeprefix("jukinet-muni-200000-"): v.new_state for v in evaluate_alarms(factory, metrics_at_one_instant)}

    yield printed, states
    sink.close()
    observability.metrics.clear_metrics()


def _normal_day(world) -> VirtualCard:
    chips = []
    for code in CODES:
        world.resident(code, NAGANO)
        chip = VirtualCard("1234")
        assert world.issue(code, chip)[0] == 201
        chips.append(chip)
        assert world.authenticate(chip, "1234", at=MATSUMOTO)[0] == 200
    _, challenge = world.challenge(chips[1].serial, at=UEDA)
    with pytest.raises(WrongPin):  # a resident mistypes the PIN once (the chip refuses to sign)
        chips[1].sign(challenge["message"].encode(), "9999")
    assert world.authenticate(chips[1], "1234", at=UEDA)[0] == 200
    assert world.call("POST", f"/v1/cards/{chips[2].serial}/suspension", {"reason": "lost"},
                      who=counter(NAGANO))[0] == 200  # its own municipality suspends a lost card
    return chips[0]


def test_a_normal_day_at_the_counters_keeps_the_card_alarms_quiet(world, counters):
    printed, states = counters
    with printed():
        _normal_day(world)
    assert states() == dict.fromkeys(ALARMS, OK)


def test_each_card_alarm_fires_on_its_attack(world, counters):
    printed, states = counters
    with printed():
        chip = _normal_day(world)
        # another municipality's staff tries to suspend a card not theirs
        status, body = world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"},
                                  who=counter(UEDA))
        assert body["error"]["code"] == "NOT_THIS_MUNICIPALITY"
    assert states() == {**dict.fromkeys(ALARMS, OK), "card-unauthorised-attempts": ALARM}
    with printed():
        lost = VirtualCard("1234")
        world.resident("50000000024", NAGANO)
        assert world.issue("50000000024", lost)[0] == 201
        world.call("POST", f"/v1/cards/{lost.serial}/suspension", {"reason": "stolen"}, who=counter(NAGANO))
        status, body = world.authenticate(lost, "1234", at=MATSUMOTO)  # the stolen card at a counter
        assert body["error"]["code"] == "CARD_SUSPENDED"
    assert states()["ended-card-presented"] == ALARM
    with printed():
        _, challenge = world.challenge(chip.serial)
        signature = chip.sign(challenge["message"].encode(), "1234")
        assert world.answer(challenge["challenge_id"], signature)[0] == 200
        for _ in range(11):  # the same answer replayed: a burst of refused authentications
            assert world.answer(challenge["challenge_id"], signature)[0] == 403
    assert states()["card-authentication-refusals"] == ALARM

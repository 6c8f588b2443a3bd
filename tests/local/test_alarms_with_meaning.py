"""The alarms judged from the ledger (``sequence-gaps`` on ``AgedSequenceGaps``, ``notices-overdue``),
evaluated by the embedded AWS's local CloudWatch (``embedded_aws.monitoring``).

The three tiers' handlers run in-process against a moto server (``tests/pipeline/harness.py``),
each with its clock set to the instant the test says; their Powertools metrics are printed into
a ``MetricSink`` as Lambda's log agent would, stamped with that instant; the tier's ledger watch
runs from a scheduled event whose ``time`` is that instant. The alarms are created exactly as
``infra`` synthesizes them (``tests/infra/test_alarms.py`` asserts the metric names).

Each alarm: fires on its trigger, and stays quiet through a normal month in miniature — files
from two municipalities, messages delivered out of order (a later file's message first, the
gap open for minutes) and twice (a redelivery), forwarded to the national tier out of order too.

Metric data must lie within CloudWatch's two weeks, so instants are taken relative to the
process clock (aligned to a five-minute period), never to a fixed date.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random

import pytest

from jukinet import clock, observability
from jukinet.adapters import aws
from jukinet.domain.message import Payload, SignedMessage
from jukinet.domain.notice import JST
from jukinet.handlers import ledger_watch, municipality_cs, national_processor, prefecture_processor
from jukinet.settings import NationalSettings, PrefectureSettings, load_settings
from embedded_aws.monitoring import ALARM, OK, MetricSink, evaluate_alarms
from embedded_aws.runner import replace_environ
from embedded_aws.server import MotoServer, local_credentials

from ..pipeline.exports import csv_bytes, person, row
from ..pipeline.harness import REGION, Context, Pipeline, environment

pytestmark = pytest.mark.slow

PERIOD = 300
A, B = "202011", "202029"
MINUTE = dt.timedelta(minutes=1)
ALARMS = {  # name: (metric, service, tier) — as infra/stacks/processing.py synthesizes them
    "pref-sequence-gaps": ("AgedSequenceGaps", "jukinet-pref-200000", "prefecture"),
    "pref-notices-overdue": ("NoticesOverdue", "jukinet-pref-200000", "prefecture"),
    "national-sequence-gaps": ("AgedSequenceGaps", "jukinet-national", "national"),
    "national-notices-overdue": ("NoticesOverdue", "jukinet-national", "national"),
}


@pytest.fixture(scope="module")
def server():
    with MotoServer() as s:
        yield s


class World(Pipeline):
    """The pipeline harness on the moto server, with metrics on and clocks the test sets."""

    def __init__(self, sink: MetricSink, tmp_path) -> None:
        super().__init__()
        self.sink = sink
        self.watch_files = {}
        for tier, sources in (("prefecture", [{"cs_state_table": "jukinet-cs-20", "municipalities": [A, B]}]),
                              ("national", [{"cs_state_table": "jukinet-cs-20", "municipalities": [A, B],
                                             "tiers_below": [self.pref_table]}])):
            path = tmp_path / f"watch-{tier}.json"
            path.write_text(json.dumps({"sources": sources}))
            self.watch_files[tier] = str(path)
        self.held: dict[str, list[dict]] = {"prefecture": [], "national": []}
        self.rng = random.Random(19)

    def prefecture_env(self) -> dict[str, str]:
        env = {**super().prefecture_env(), "POWERTOOLS_SERVICE_NAME": "jukinet-pref-200000"}
        env.pop("POWERTOOLS_METRICS_DISABLED")
        return env

    def national_env(self) -> dict[str, str]:
        env = {**super().national_env(), "POWERTOOLS_SERVICE_NAME": "jukinet-national"}
        env.pop("POWERTOOLS_METRICS_DISABLED")
        return env

    # --- driving, at chosen instants -------------------------------------------------------
    def export(self, municipality: str, name: str, at: dt.datetime, rows: int = 3) -> None:
        day = (at.astimezone(JST).date() - dt.timedelta(days=1)).isoformat()
        data = csv_bytes([row(person(self.rng), "転入", day) for _ in range(rows)])
        self.drop(municipality, name, data, now=at)

    def collect(self, tier: str) -> list[dict]:
        """Take every message waiting in the tier's inbound queue (as pollers would), ordered by
        municipality and first sequence number; the test then decides when each is delivered."""
        queue = self.pref_queue if tier == "prefecture" else self.national_queue
        got: dict[str, dict] = {}
        while batch := self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=3600,
                                                AttributeNames=["All"]).get("Messages", []):
            got.update((m["MessageId"], m) for m in batch)
            for m in batch:
                self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return sorted(got.values(), key=first_notice)

    def deliver(self, tier: str, messages: list[dict], at: dt.datetime) -> None:
        """One invocation of the tier's processor with ``messages`` as its batch, its clock at ``at``."""
        module, env, settings_type = {
            "prefecture": (prefecture_processor, self.prefecture_env(), PrefectureSettings),
            "national": (national_processor, self.national_env(), NationalSettings),
        }[tier]
        event = {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs", "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:x", "awsRegion": REGION,
        } for m in messages]}
        with environment(env):
            runtime = module._runtime(load_settings(settings_type), os.environ.get("AWS_ENDPOINT_URL"))
            processor = runtime[0] if isinstance(runtime, tuple) else runtime
            processor.clock = clock.fixed(at)
            for part in runtime[1:] if isinstance(runtime, tuple) else ():
                part.clock = clock.fixed(at)
            with contextlib.redirect_stdout(self.sink):
                response = module.handler(event, Context())
        assert response["batchItemFailures"] == []

    def watch(self, tier: str, at: dt.datetime) -> dict:
        """The tier's ledger watch, fired by its schedule at ``at`` (the event's ``time``)."""
        env = {"TABLE_NAME": self.pref_table if tier == "prefecture" else self.national_table, "TIER": tier,
               "WATCH_FILE": self.watch_files[tier], "AWS_DEFAULT_REGION": REGION,
               "POWERTOOLS_SERVICE_NAME": "jukinet-pref-200000" if tier == "prefecture" else "jukinet-national"}
        event = {"version": "0", "source": "aws.events", "detail-type": "Scheduled Event",
                 "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "resources": [], "detail": {}}
        with environment(env), contextlib.redirect_stdout(self.sink):
            return ledger_watch.handler(event, Context())

    def alarms(self, at: dt.datetime) -> dict[str, str]:
        """Both tiers' watches run at ``at``; then every alarm is evaluated there."""
        self.watch("prefecture", at)
        self.watch("national", at)
        self.sink.flush()
        assert not self.sink.problems, self.sink.problems
        return {v.name: v.new_state for v in evaluate_alarms(self.sink_factory, at)}


def first_notice(message: dict) -> tuple[str, int]:
    signed = SignedMessage.from_body(message["Body"])
    payload = Payload.from_bytes(signed.payload)
    if payload.origins:  # a prefecture's forward: its first municipality's payload
        inner = Payload.from_bytes(payload.origins[0].message.payload)
        return inner.notices[0]["municipality"], inner.notices[0]["sequence"]
    return payload.notices[0]["municipality"], payload.notices[0]["sequence"]


@pytest.fixture
def world(server, tmp_path, monkeypatch):
    server.reset()
    saved = dict(os.environ)
    os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_DEFAULT_REGION": REGION,
                       **local_credentials(server.endpoint_url, REGION)})
    for module in (municipality_cs, prefecture_processor, national_processor, ledger_watch):
        module._runtime.cache_clear()
    aws.reset_clients()
    observability.metrics.clear_metrics()

    def factory(service, region=None, account=None):
        return server.client(service, region or REGION, account)

    sink = MetricSink(factory)
    w = World(sink, tmp_path)
    w.sink_factory = factory
    cloudwatch = factory("cloudwatch")
    for name, (metric, service, tier) in ALARMS.items():
        cloudwatch.put_metric_alarm(
            AlarmName=name, Namespace="Jukinet", MetricName=metric, Statistic="Sum", Period=PERIOD,
            Dimensions=[{"Name": "service", "Value": service}, {"Name": "tier", "Value": tier}],
            EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=0, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching")
    yield w
    w.stop_counting()
    sink.close()
    observability.metrics.clear_metrics()
    observability.metrics.provider.timestamp = None
    for module in (municipality_cs, prefecture_processor, national_processor, ledger_watch):
        module._runtime.cache_clear()
    replace_environ(saved)
    aws.reset_clients()
    server.reset()


def start() -> dt.datetime:
    """30 s into a five-minute period an hour ago (so every instant of a test is in the past)."""
    now = int(clock.system_clock().timestamp()) - 3600
    return dt.datetime.fromtimestamp(now - now % PERIOD + 30, dt.UTC)


def firing(states: dict[str, str]) -> list[str]:
    return sorted(n for n, s in states.items() if s == ALARM)


def test_a_normal_month_with_out_of_order_and_duplicate_delivery_raises_neither_alarm(world):
    t = start()
    for i in range(3):  # three rounds of files from both municipalities, some minutes apart
        at = t + i * 6 * MINUTE
        world.export(A, f"a{i}.csv", at)
        world.export(B, f"b{i}.csv", at)
        a_msg, b_msg = world.collect("prefecture")
        world.deliver("prefecture", [b_msg], at + MINUTE)
        world.export(A, f"a{i}-late.csv", at + MINUTE)
        [a_late] = world.collect("prefecture")
        world.deliver("prefecture", [a_late], at + 2 * MINUTE)  # overtakes a_msg: A has a gap for 2 minutes
        assert world.alarms(at + 3 * MINUTE) == {n: OK for n in ALARMS}
        world.deliver("prefecture", [a_msg, a_late], at + 4 * MINUTE)  # the late one, and a redelivery
        forwards = world.collect("national")
        world.deliver("national", list(reversed(forwards)), at + 5 * MINUTE)  # out of order nationally too
        world.deliver("national", forwards[:1], at + 5 * MINUTE)  # and one twice
    end = t + 18 * MINUTE
    for minutes in (0, 5, 20, 60):  # after the last delivery, the watches keep running: still quiet
        assert firing(world.alarms(end + minutes * MINUTE)) == []
    assert world.watch("prefecture", end + 60 * MINUTE)["findings"] == []


def test_sequence_gaps_fires_on_a_gap_older_than_15_minutes_and_clears_when_it_closes(world):
    t = start()
    world.export(A, "a1.csv", t)
    world.export(A, "a2.csv", t)
    world.export(A, "a3.csv", t)
    first, lost, third = world.collect("prefecture")
    world.deliver("prefecture", [first, third], t + MINUTE)  # a2's message is lost (held back here)
    world.deliver("national", world.collect("national"), t + 2 * MINUTE)
    assert firing(world.alarms(t + 10 * MINUTE)) == []  # a young gap: out-of-order delivery, quiet
    states = world.alarms(t + 17 * MINUTE)  # both tiers' gaps (seen at +1 and +2) are 15 minutes old
    # At both tiers; the same loss is also 3 notices overdue (sent 9, stored 6), which is what
    # notices-overdue counts whatever their place in the sequence.
    assert firing(states) == ["national-notices-overdue", "national-sequence-gaps", "pref-notices-overdue",
                              "pref-sequence-gaps"]
    found = world.watch("prefecture", t + 17 * MINUTE)["findings"]
    assert [(f["municipality"], [g[:2] for g in f["aged_gaps"]]) for f in found] == [(A, [[4, 6]])]
    world.deliver("prefecture", [lost], t + 25 * MINUTE)  # it turns up: the gap closes
    world.deliver("national", world.collect("national"), t + 25 * MINUTE)
    assert firing(world.alarms(t + 30 * MINUTE)) == []


def test_the_processor_reports_an_aged_gap_when_a_later_message_arrives(world):
    """Between two watch runs a later message of the municipality finds the old gap: the
    processor's own AgedSequenceGaps raises the alarm in that period."""
    t = start()
    for name in ("a1.csv", "a2.csv", "a3.csv"):
        world.export(A, name, t)
    first, _lost, third = world.collect("prefecture")
    world.deliver("prefecture", [first], t + MINUTE)
    world.deliver("prefecture", [third], t + 2 * MINUTE)
    world.export(A, "a4.csv", t + 20 * MINUTE)
    world.deliver("prefecture", world.collect("prefecture"), t + 20 * MINUTE)
    world.sink.flush()  # no watch has run since
    states = {v.name: v.new_state for v in evaluate_alarms(world.sink_factory, t + 20 * MINUTE)}
    assert firing(states) == ["pref-sequence-gaps"]


def test_notices_overdue_fires_when_the_last_message_is_lost_and_nothing_shows_a_gap(world):
    t = start()
    world.export(A, "a1.csv", t)
    world.export(A, "a2.csv", t + MINUTE)
    first, last = world.collect("prefecture")
    world.deliver("prefecture", [first], t + 2 * MINUTE)  # the last message never arrives
    world.deliver("national", world.collect("national"), t + 3 * MINUTE)
    assert firing(world.alarms(t + 10 * MINUTE)) == []  # the last file was sent 9 minutes ago: in flight
    states = world.alarms(t + 17 * MINUTE)
    # No gap anywhere (nothing after it): only "overdue" can see it, at both tiers.
    assert firing(states) == ["national-notices-overdue", "pref-notices-overdue"]
    found = world.watch("prefecture", t + 17 * MINUTE)["findings"]
    assert [(f["municipality"], list(f["overdue"].values()), f["aged_gaps"]) for f in found] == [(A, [3], [])]
    world.deliver("prefecture", [last], t + 20 * MINUTE)
    world.deliver("national", world.collect("national"), t + 20 * MINUTE)
    assert firing(world.alarms(t + 25 * MINUTE)) == []


def test_notices_overdue_at_the_national_tier_when_a_forward_is_lost(world):
    """The prefecture stored everything; its forward to the nation is lost: the prefecture's
    alarm stays quiet, the national one fires (sent − dead-lettered below ≠ stored nationally)."""
    t = start()
    world.export(B, "b1.csv", t)
    world.deliver("prefecture", world.collect("prefecture"), t + MINUTE)
    assert len(world.collect("national")) == 1  # and dropped
    assert firing(world.alarms(t + 17 * MINUTE)) == ["national-notices-overdue"]

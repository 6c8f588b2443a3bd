"""The channel between municipalities on the deployed assembly (decisions 0041, 0042): the
synthesized Nagano assembly in the embedded AWS, residents entered through the deployed CSs,
and a request from 松本市 to 長野市 carried by the deployed functions — the prefecture
processor routes it down into the municipality tier's channel queue, the deployed channel
function answers from the register as 長野市 (its signing key, sealed under the tier's channel
key), the answer comes back the same way and is settled. The request is made in this process
with the deployed channel function's own environment (the counter route that would make it is
not built yet, docs/second-phase.md). The embedded AWS does not enforce key or queue policies
(tests/infra/test_channel.py asserts those): this checks the wiring — names, aliases, routes,
environment — end to end."""

from __future__ import annotations

import datetime as dt
import os
import random

import pytest

from infra.naming import Names
from jukinet.adapters import aws
from jukinet.domain.channel import Outcome
from jukinet.handlers import channel_endpoint
from jukinet.settings import ChannelSettings, load_settings
from embedded_aws.runner import replace_environ

from ..dates import months_jst
from ..pipeline.exports import csv_bytes, person, row
from .embedded import deployed_nagano, drop_export

pytestmark = pytest.mark.slow

NAGANO, MATSUMOTO = "202011", "202029"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with deployed_nagano(tmp_path_factory) as (deployment, env, runner):
        rng = random.Random(16)
        people = [person(rng) for _ in range(2)]
        drop_export(deployment, NAGANO, "residents.csv", csv_bytes([row(p, "転入", "2003-01-06") for p in people]))
        assert runner.run_until_idle(timeout_s=300).idle
        yield deployment, runner, people


def test_a_request_from_matsumoto_to_nagano_is_answered_through_the_deployed_functions(world):
    deployment, runner, people = world
    names = Names.of(deployment)
    function_env = runner.functions[names.channel_function(deployment.prefectures[0].code)].environment
    saved = dict(os.environ)
    try:
        os.environ.update(function_env)
        endpoint = channel_endpoint._runtime(load_settings(ChannelSettings), os.environ.get("AWS_ENDPOINT_URL"))
        code = people[0]["resident_code"]
        asked = endpoint.request(MATSUMOTO, NAGANO, {"query": "resident-status", "resident_code": code},
                                 wait=dt.timedelta(minutes=10))
        unknown = endpoint.request(MATSUMOTO, NAGANO, {"query": "resident-status", "resident_code": "00000000019"},
                                   wait=dt.timedelta(minutes=10))
        assert runner.run_until_idle(timeout_s=300).idle
        answered = endpoint.result(asked)
        assert answered.outcome is Outcome.ANSWERED, answered
        assert answered.answer == {"resident_code": code, "municipality": NAGANO, "reason": "11",  # 転入
                                   "active": True}
        refused = endpoint.result(unknown)
        assert refused.outcome is Outcome.REFUSED, refused
        month = asked.split("-")[1]
        row_ = endpoint.reconcile(MATSUMOTO, f"{month[:4]}-{month[4:]}")
        assert (row_.requested, row_.answered, row_.refused, row_.timed_out, row_.pending) == (2, 1, 1, 0, 0)
        # nothing was dead-lettered on the way (the channel DLQ and the prefecture's inbound DLQ are empty)
        sqs = aws.client("sqs")
        for queue in (names.dead_letter_queue(names.channel_queue("200000")),
                      names.dead_letter_queue(names.inbound_queue("pref-200000"))):
            url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0", queue
    finally:
        replace_environ(saved)
        aws.reset_clients()


def _into_dead_letters(names, prefecture_code: str) -> None:
    """Take the request waiting in the prefecture's inbound queue and put it into the municipality
    tier's channel dead-letter queue, as SQS would after the channel function failed five times."""
    sqs = aws.client("sqs")
    inbound = sqs.get_queue_url(QueueName=names.inbound_queue(f"pref-{prefecture_code}"))["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=names.dead_letter_queue(names.channel_queue(prefecture_code)))["QueueUrl"]
    [message] = sqs.receive_message(QueueUrl=inbound, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    sqs.send_message(QueueUrl=dlq, MessageBody=message["Body"])
    sqs.delete_message(QueueUrl=inbound, ReceiptHandle=message["ReceiptHandle"])


def test_the_channel_is_reconciled_nightly_and_redriven_within_its_deadline_only(world):
    """Decision 0047 on the deployed assembly: `jukinet reconcile`'s channel rows and the deployed
    prefecture reconciliation's channel section; `jukinet redrive --tier muni-200000` moves a
    dead-lettered request within its deadline (then answered) and leaves one past it."""
    import time

    from jukinet.clock import system_clock
    from jukinet_ops.reconcile import reconcile_channel
    from jukinet_ops.redrive import Redrive

    deployment, runner, people = world
    names = Names.of(deployment)
    pcode = deployment.prefectures[0].code
    function_env = runner.functions[names.channel_function(pcode)].environment
    saved = dict(os.environ)
    started = system_clock()
    try:
        os.environ.update(function_env)
        aws.reset_clients()
        endpoint = channel_endpoint._runtime(load_settings(ChannelSettings), os.environ.get("AWS_ENDPOINT_URL"))
        query = {"query": "resident-status", "resident_code": people[1]["resident_code"]}
        patient = endpoint.request(MATSUMOTO, NAGANO, query, wait=dt.timedelta(minutes=10))
        _into_dead_letters(names, pcode)
        hurried = endpoint.request(MATSUMOTO, NAGANO, query, wait=dt.timedelta(seconds=1))
        _into_dead_letters(names, pcode)
        time.sleep(2)  # the hurried one's deadline passes
        [report] = Redrive(deployment).run(tiers=[f"muni-{pcode}"], apply=True)
        assert (report.moved, report.past_deadline) == ({"none": 1}, {"none": 1}), report
        assert runner.run_until_idle(timeout_s=300).idle
        assert endpoint.result(patient).outcome is Outcome.ANSWERED
        assert endpoint.result(hurried).outcome is Outcome.TIMED_OUT

        now = system_clock()
        # every month (JST) the test ran through: a run crossing midnight at a month's end counts
        # the requests in the month they were made (tests/dates.py)
        rows = [r for month in months_jst(started, now) for r in reconcile_channel(deployment, month, now, pcode)]
        assert not [r for r in rows if r.problems]

        def total(municipality: str, column: str) -> int:
            return sum(getattr(r, column) for r in rows if r.municipality == municipality)

        assert total(MATSUMOTO, "timed_out") >= 1 and total(MATSUMOTO, "answered") >= 1
        assert total(MATSUMOTO, "pending") == 0
        assert total(NAGANO, "answers_given") >= 1
        at = (now + dt.timedelta(days=1)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # tonight's run
        result = runner.invoke(names.reconciliation_function(f"pref-{pcode}"), {
            "source": "aws.events", "detail-type": "Scheduled Event", "time": at, "resources": [], "detail": {}})
        assert result.ok, result.error
        assert result.response["channel_rows"] >= len(deployment.prefectures[0].municipality_tier.municipalities)
        assert result.response["reports"][-1].endswith("-channel.csv")
    finally:
        replace_environ(saved)
        aws.reset_clients()

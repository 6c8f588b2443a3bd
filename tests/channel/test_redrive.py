"""``jukinet redrive`` on the channel (decision 0047): each municipality tier's channel
dead-letter queue goes back into its channel queue by the tier's operator; a channel message
within its deadline is redriven and answered, one past its deadline is never redriven (its
requester has already timed out) — skipped, said so and counted, in the channel DLQ and in a
router's inbound DLQ alike."""

from __future__ import annotations

import datetime as dt
import io
import json

import boto3

from jukinet.domain.channel import Outcome
from jukinet_ops.redrive import Redrive, RedriveRecord, channel_deadline, print_reports

from .world import CHIYODA, NAGANO, NAGANO_PREF, REGION, TOKYO_PREF, World, resident

MUNI, PREF = f"muni-{TOKYO_PREF}", f"pref-{NAGANO_PREF}"


def _tool(world: World) -> Redrive:
    from infra.config import load_deployment

    return Redrive(load_deployment("nagano-demo"), clients=lambda s: boto3.client(s, region_name=REGION),
                   clock=lambda: world.now, queue_urls={
                       MUNI: (world.queues[f"{MUNI}-dlq"], world.queues[MUNI]),
                       PREF: (world.queues[f"{PREF}-dlq"], world.queues[PREF])})


def _moved_by_sqs(world: World, queue: str) -> int:
    """What SQS does after five failed receives (the channel function down): every message waiting
    in ``queue`` moves to its DLQ, without a reason."""
    moved = 0
    while batch := world.sqs.receive_message(QueueUrl=world.queues[queue], MaxNumberOfMessages=10).get("Messages"):
        for m in batch:
            world.sqs.send_message(QueueUrl=world.queues[f"{queue}-dlq"], MessageBody=m["Body"])
            world.sqs.delete_message(QueueUrl=world.queues[queue], ReceiptHandle=m["ReceiptHandle"])
            moved += 1
    return moved


def test_a_request_within_its_deadline_is_redriven_and_answered_one_past_it_is_skipped_and_counted(
        world: World) -> None:
    world.register(resident(71), CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    query = {"query": "resident-status", "resident_code": resident(71)}
    patient = nagano.request(NAGANO, CHIYODA, query, wait=dt.timedelta(minutes=10))
    hurried = nagano.request(NAGANO, CHIYODA, query, wait=dt.timedelta(seconds=5))
    world.pump(hold={MUNI})
    assert _moved_by_sqs(world, MUNI) == 2  # 千代田区's tier's channel function failed on both
    world.now += dt.timedelta(seconds=30)  # the cause is fixed; one deadline has passed meanwhile

    [dry] = _tool(world).run(tiers=[MUNI])
    assert (dry.redrivable, dry.past_deadline, dry.moved) == ({"none": 1}, {"none": 1}, {})
    tool = _tool(world)
    [applied] = tool.run(tiers=[MUNI], apply=True)
    assert applied.moved == {"none": 1} and applied.past_deadline == {"none": 1}
    record = RedriveRecord.from_json(boto3.client("ssm", region_name=REGION).get_parameter(
        Name=applied.record)["Parameter"]["Value"])
    assert (record.tier, record.moved, record.past_deadline, record.status) == (MUNI, {"none": 1}, {"none": 1}, "done")

    world.pump()
    assert nagano.result(patient).outcome is Outcome.ANSWERED
    assert nagano.result(hurried).outcome is Outcome.TIMED_OUT
    # The late one stays in the DLQ (nobody purges it): it is the one past its deadline.
    [left] = world.dead_letters(MUNI)
    assert world.envelope_of(left["body"])["correlation"] == hurried
    row = nagano.reconcile(NAGANO, "2003-01")
    assert (row.requested, row.answered, row.timed_out, row.pending) == (2, 1, 1, 0)

    out = io.StringIO()
    print_reports([applied], apply=True, out=out)
    text = out.getvalue()
    assert "past its deadline: not redriven (the requester has timed out and asks again)" in text
    assert "1 channel message(s) past their deadline left in place (never redriven)" in text


def test_a_past_deadline_channel_message_in_a_routers_dead_letters_is_skipped_even_when_named(world: World) -> None:
    world.register(resident(72), CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    nagano.request(NAGANO, CHIYODA, {"query": "resident-status", "resident_code": resident(72)},
                   wait=dt.timedelta(seconds=5))
    world.now += dt.timedelta(seconds=10)
    world.pump()  # 長野県's router finds it past its deadline
    [dead] = world.dead_letters(PREF)
    world.sqs.send_message(QueueUrl=world.queues[f"{PREF}-dlq"], MessageBody=dead["body"], MessageAttributes={
        k: {"DataType": "String", "StringValue": v} for k, v in dead.items() if k.startswith("jukinet.")})
    [report] = _tool(world).run(tiers=[PREF], reasons=["deadline_passed"], apply=True)
    assert (report.redrivable, report.moved, report.past_deadline) == ({}, {}, {"deadline_passed": 1})
    assert report.record is None  # nothing selected: nothing moved, nothing recorded
    assert len(world.dead_letters(PREF)) == 1


def test_channel_deadline_reads_the_headers_of_channel_messages_only(world: World) -> None:
    nagano = world.endpoint(NAGANO_PREF)
    nagano.request(NAGANO, CHIYODA, {"query": "resident-status", "resident_code": resident(73)},
                   wait=dt.timedelta(seconds=7))
    body = world.sqs.receive_message(QueueUrl=world.queues[PREF])["Messages"][0]["Body"]
    assert channel_deadline(body) == world.now + dt.timedelta(seconds=7)
    assert channel_deadline("not a message") is None
    assert channel_deadline(json.dumps({"kind": "notice"})) is None


def test_the_municipality_tiers_are_redrive_tiers_when_the_deployment_has_the_channel() -> None:
    import dataclasses

    from infra.config import load_deployment

    deployment = load_deployment("nagano-demo")
    assert deployment.channel
    tool = Redrive(deployment, clients=lambda s: None)
    assert "muni-200000" in tool.tiers()
    dlq, source = tool.queues("muni-200000")
    assert dlq.endswith("/jukinet-muni-200000-channel-dlq") and source.endswith("/jukinet-muni-200000-channel")
    assert "muni-200000" not in Redrive(dataclasses.replace(deployment, channel=False), clients=lambda s: None).tiers()

"""The CS taking several files in one invocation (its inbox queue's batches, decision 0051)."""

from __future__ import annotations

import json

import pytest

from jukinet.adapters.cs_state import CsState
from jukinet.domain.message import Payload, SignedMessage

from .exports import csv_bytes, move_ins
from .harness import MUNICIPALITIES, utc

NAGANO, MATSUMOTO, _ = MUNICIPALITIES
NOW = utc(2003, 1, 20, 1, 0)


def files(*sizes: int, seed: int = 1) -> list[tuple[str, bytes]]:
    return [(f"f{i}.csv", csv_bytes(move_ins(n, seed=seed + i)[1])) for i, n in enumerate(sizes)]


def queued_notices(p) -> list[dict]:
    """Every notice in the prefecture's inbound queue (left there), in sequence order."""
    notices = []
    got = p.sqs.receive_message(QueueUrl=p.pref_queue, MaxNumberOfMessages=10, VisibilityTimeout=60)
    while got.get("Messages"):
        for m in got["Messages"]:
            notices += Payload.from_bytes(SignedMessage.from_body(m["Body"]).payload).notices
        got = p.sqs.receive_message(QueueUrl=p.pref_queue, MaxNumberOfMessages=10, VisibilityTimeout=60)
    return sorted(notices, key=lambda n: n["sequence"])


def recon_sent(p, municipality=NAGANO):
    return CsState("jukinet-cs-20", municipality).month_stats("2003-01")


def test_files_of_one_batch_get_consecutive_ranges_in_order_and_share_signed_messages(pipeline):
    batch = files(3, 5, 2)
    pipeline.calls.clear()
    response = pipeline.drop_batch(NAGANO, batch)
    assert response["batchItemFailures"] == []
    outcomes = response["files"]
    assert [(o["status"], o["first_seq"], o["last_seq"]) for o in outcomes] == [
        ("sent", 1, 3), ("sent", 4, 8), ("sent", 9, 10)]
    # 10 notices of three files: one message, one signature, one send, for the batch.
    assert pipeline.calls["kms:Sign"] == 1
    assert pipeline.calls["sqs:SendMessageBatch"] == 1
    # The state table: one read of the files, the counter, one reservation, one finish.
    assert pipeline.calls["dynamodb:BatchGetItem"] == 1
    assert pipeline.calls["dynamodb:TransactWriteItems"] <= 2 + 1  # + the local records of 10 notices
    assert pipeline.calls["s3:GetObject"] == 3 and pipeline.calls["s3:PutObject"] == 6  # reports per file
    assert [n["sequence"] for n in queued_notices(pipeline)] == list(range(1, 11))
    assert recon_sent(pipeline) == {"sent": 10, "rejected": 0, "files": 3, "rejected_files": 0}
    for name, _ in batch:  # each file's own report, unchanged
        summary = pipeline.s3.get_object(Bucket=pipeline.bucket, Key=f"{NAGANO}/reports/{name}.summary.json")
        assert json.loads(summary["Body"].read())


def test_the_next_batch_continues_the_numbers_gap_free(pipeline):
    pipeline.drop_batch(NAGANO, files(2, 2))
    second = pipeline.drop_batch(NAGANO, files(3, seed=9), now=utc(2003, 1, 20, 2))
    assert [(o["first_seq"], o["last_seq"]) for o in second["files"]] == [(5, 7)]
    assert [n["sequence"] for n in queued_notices(pipeline)] == list(range(1, 8))


def test_an_identical_file_twice_in_one_batch_or_the_same_event_twice_is_sent_once(pipeline):
    (_, a), (_, b) = files(4, 3)
    response = pipeline.drop_batch(NAGANO, [("a.csv", a), ("a-again.csv", a), ("b.csv", b), ("b.csv", b)])
    assert response["batchItemFailures"] == []
    assert [o["status"] for o in response["files"]] == ["sent", "duplicate", "sent", "duplicate"]
    assert [n["sequence"] for n in queued_notices(pipeline)] == list(range(1, 8))
    later = pipeline.drop_batch(NAGANO, [("a-third-time.csv", a)], now=utc(2003, 1, 21))
    assert [o["status"] for o in later["files"]] == ["duplicate"]
    assert recon_sent(pipeline)["sent"] == 7 and recon_sent(pipeline)["files"] == 2


def test_a_file_that_cannot_be_read_fails_alone_and_its_retry_takes_the_next_numbers(pipeline):
    batch = files(2, 3)
    response = pipeline.drop_batch(NAGANO, [batch[0], ("missing.csv", None), batch[1]])
    assert response["batchItemFailures"] == [{"itemIdentifier": response["messageIds"][1]}]
    assert [o["status"] for o in response["files"]] == ["sent", "failed", "sent"]
    assert "NoSuchKey" in response["files"][1]["error"]
    # The file arrives; its event comes again (the retry of the failed item).
    late = files(4, seed=30)[0][1]
    retry = pipeline.drop_batch(NAGANO, [("missing.csv", late)], receives=2, now=utc(2003, 1, 20, 1, 5))
    assert retry["batchItemFailures"] == [] and (retry["files"][0]["first_seq"], retry["files"][0]["last_seq"]) == (6, 9)
    assert [n["sequence"] for n in queued_notices(pipeline)] == list(range(1, 10))


def test_a_batch_that_dies_after_sending_is_resent_byte_identical_whatever_the_next_batch_holds(pipeline, monkeypatch):
    import jukinet.services.communication_server as cs

    batch = files(3, 2, 4)
    real_finish = cs.CsState.finish_many

    def dies(self, done, now=None):
        raise ConnectionError("the function died after sending, before finishing")

    monkeypatch.setattr(cs.CsState, "finish_many", dies)
    failed = pipeline.drop_batch(NAGANO, batch)
    assert {f["itemIdentifier"] for f in failed["batchItemFailures"]} == set(failed["messageIds"])
    first_time = queued_notices(pipeline)
    assert [n["sequence"] for n in first_time] == list(range(1, 10))
    monkeypatch.setattr(cs.CsState, "finish_many", real_finish)
    # The retry comes an hour later, in another batch: the second and third file, and a new one.
    new = files(2, seed=50)[0]
    retry = pipeline.drop_batch(NAGANO, [batch[2], batch[1], ("new.csv", new[1])], receives=2,
                                now=utc(2003, 1, 20, 2, 0))
    assert retry["batchItemFailures"] == []
    assert [(o["first_seq"], o["last_seq"]) for o in retry["files"]] == [(6, 9), (4, 5), (10, 11)]
    again = {n["sequence"]: n for n in queued_notices(pipeline)}
    for n in first_time[3:]:
        assert again[n["sequence"]] == n  # the same notice, byte for byte (same notice time)
    assert again[10]["notice_time"] != first_time[0]["notice_time"]  # the new file: the retry's time
    # The first file, never finished, comes again too: the same notices once more.
    last = pipeline.drop_batch(NAGANO, [batch[0]], receives=2, now=utc(2003, 1, 20, 3))
    assert [(o["first_seq"], o["last_seq"]) for o in last["files"]] == [(1, 3)]
    assert {n["sequence"]: n for n in queued_notices(pipeline)} == {n["sequence"]: n for n in first_time[:3]}
    assert recon_sent(pipeline) == {"sent": 11, "rejected": 0, "files": 4, "rejected_files": 0}
    pipeline.run()


def test_the_notices_of_a_resumed_batch_reach_the_tiers_once(pipeline, monkeypatch):
    import jukinet.services.communication_server as cs

    batch = files(3, 2)
    real = cs.CsState.finish_many
    monkeypatch.setattr(cs.CsState, "finish_many", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("died")))
    pipeline.drop_batch(NAGANO, batch)
    monkeypatch.setattr(cs.CsState, "finish_many", real)
    pipeline.drop_batch(NAGANO, batch, receives=2, now=utc(2003, 1, 20, 4))
    pipeline.run()
    from jukinet_ops.reconcile import TierTables, reconcile
    row = {r.municipality: r for r in reconcile(TierTables("jukinet-cs-20", pipeline.pref_table,
                                                           pipeline.national_table), {NAGANO: NAGANO}, "2003-01")}
    r = row[NAGANO]
    assert (r.sent, r.stored_prefecture, r.stored_national, r.gaps_prefecture) == (5, 5, 5, [])


def test_s3_test_event_is_acknowledged_and_a_malformed_event_is_kept_with_the_reason(pipeline):
    response = pipeline.drop_batch(NAGANO, files(2), bodies=[
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": pipeline.bucket}), "not json"])
    assert response["batchItemFailures"] == []
    assert [o["status"] for o in response["files"]] == ["sent"]
    kept = pipeline.sqs.receive_message(QueueUrl=pipeline.cs_failed, MessageAttributeNames=["All"])["Messages"]
    assert len(kept) == 1 and kept[0]["Body"] == "not json"
    assert kept[0]["MessageAttributes"]["jukinet.reason"]["StringValue"] == "malformed_event"
    assert "not JSON" in kept[0]["MessageAttributes"]["jukinet.detail"]["StringValue"]


@pytest.mark.parametrize("receives, kept", [(2, False), (3, True)])
def test_a_file_failing_its_last_attempt_is_kept_with_the_reason_not_lost(pipeline, receives, kept):
    response = pipeline.drop_batch(NAGANO, [("gone.csv", None)], receives=receives)
    assert (response["batchItemFailures"] == []) is kept
    got = pipeline.sqs.receive_message(QueueUrl=pipeline.cs_failed, MessageAttributeNames=["All"]).get("Messages", [])
    assert bool(got) is kept
    if kept:
        attributes = got[0]["MessageAttributes"]
        assert attributes["jukinet.reason"]["StringValue"] == "file_failed"
        assert "gone.csv" in attributes["jukinet.detail"]["StringValue"]
        assert attributes["jukinet.sender"]["StringValue"] == NAGANO
        # The body is the S3 event: an operator's redrive or re-upload names the file again.
        assert json.loads(got[0]["Body"])["Records"][0]["s3"]["object"]["key"] == f"{NAGANO}/incoming/gone.csv"


def test_an_object_of_another_drop_zone_in_the_batch_is_ignored_not_sent(pipeline):
    other = json.dumps({"Records": [{"s3": {"bucket": {"name": "jukinet-dropzone-other"},
                                            "object": {"key": f"{NAGANO}/incoming/x.csv"}}}]})
    response = pipeline.drop_batch(NAGANO, files(2), bodies=[other])
    assert [o["status"] for o in response["files"]] == ["sent", "ignored"]
    assert response["batchItemFailures"] == []


def test_ten_small_files_cost_one_signature_and_four_state_requests(pipeline):
    batch = files(*([1] * 10))
    pipeline.calls.clear()
    response = pipeline.drop_batch(NAGANO, batch)
    assert [o["first_seq"] for o in response["files"]] == list(range(1, 11))
    assert pipeline.calls["kms:Sign"] == 1
    state = (pipeline.calls["dynamodb:BatchGetItem"] + pipeline.calls["dynamodb:GetItem"]
             + pipeline.calls["dynamodb:TransactWriteItems"])
    assert state <= 4 + 1  # files, counter, reservation, finish; + one local-record write


def test_large_files_are_taken_in_chunks_and_what_there_is_no_time_for_comes_again(pipeline):
    """Initial-load files (~15 MB each): one chunk each; the harness's invocation has 60 s left,
    under the CS's 150-s reserve, so after the first chunk the rest is reported back — not as a
    failure: it is not kept in the failed-event queue even at its last attempt."""
    from jukinet.domain.inbox import MAX_CHUNK_BYTES

    batch = files(2, 3, 1)
    response = pipeline.drop_batch(NAGANO, batch, size=MAX_CHUNK_BYTES - 1, receives=3)
    assert [(o["status"], o["first_seq"]) for o in response["files"]] == [("sent", 1)]
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == set(response["messageIds"][1:])
    assert "Messages" not in pipeline.sqs.receive_message(QueueUrl=pipeline.cs_failed)
    again = pipeline.drop_batch(NAGANO, batch[1:2], size=MAX_CHUNK_BYTES - 1, receives=4)
    assert [(o["status"], o["first_seq"], o["last_seq"]) for o in again["files"]] == [("sent", 3, 5)]


def test_chunks_keep_each_within_the_limit_and_take_an_oversized_file_alone():
    from jukinet.domain.inbox import chunks

    assert [list(r) for r in chunks([5, 5, 5, 20, 1, 1], limit=10)] == [[0, 1], [2], [3], [4, 5]]
    assert [list(r) for r in chunks([0] * 4, limit=10)] == [[0, 1, 2, 3]]
    assert chunks([], limit=10) == []

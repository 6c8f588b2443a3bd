"""Batch provision jobs (一括提供): the job item, the input and result objects, the task queue.

Job item ``JOB#<job id>`` / ``JOB`` in the provision state table. Chunks are counted with a
number set ``done`` under ``NOT contains(done, :k)``, so a chunk retried by SQS counts once.
Objects: the recipient uploads ``in/<recipient id>/...``; the job pins the object's version
(the bucket is versioned) and ETag at submission, and the worker reads exactly that version; results are written as JSON Lines to
``out/<recipient id>/<job id>/part-<k:05d>.jsonl`` (bucket default encryption: SSE-KMS with the
batch key).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from . import aws

OUTCOME_COUNTERS = ("provided", "not_found", "deleted", "code_changed", "invalid_code")
JOB_TTL_DAYS = 30


@dataclass
class Job:
    job_id: str
    recipient_id: str
    affair_code: str
    function: str
    fields: tuple[str, ...]
    input_key: str
    provision_id: str
    status: str  # accepted | running | complete | failed
    created_at: str
    rows: int = 0
    chunks: int = 0
    done: frozenset[int] = frozenset()
    counts: dict[str, int] = field(default_factory=dict)
    completed_at: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    input_version: str | None = None  # the object version pinned at submission
    input_etag: str | None = None
    input_size: int | None = None

    def result_key(self, chunk: int) -> str:
        return f"out/{self.recipient_id}/{self.job_id}/part-{chunk:05d}.jsonl"

    def to_status(self) -> dict:
        out = {
            "job_id": self.job_id, "provision_id": self.provision_id, "affair_code": self.affair_code,
            "status": self.status, "input_key": self.input_key, "created_at": self.created_at, "rows": self.rows,
            "chunks": self.chunks, "chunks_done": len(self.done),
            "outcomes": {k: self.counts.get(k, 0) for k in OUTCOME_COUNTERS},
        }
        if self.status == "complete":
            out["completed_at"] = self.completed_at
            out["result_keys"] = [self.result_key(k) for k in range(self.chunks)]
        if self.status == "failed":
            out["error"] = {"code": self.error_code, "message": self.error_message}
        return out


class InputChanged(Exception):
    """The input object is no longer the one pinned at submission."""


@dataclass(frozen=True)
class PinnedObject:
    size: int
    version_id: str | None
    etag: str


def new_job_id() -> str:
    return f"J-{secrets.token_hex(10)}"


def _key(job_id: str) -> dict:
    return {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}}


class BatchJobs:
    def __init__(self, state_table: str, bucket: str, queue_url: str) -> None:
        self.state_table = state_table
        self.bucket = bucket
        self.queue_url = queue_url

    # --- the job item -------------------------------------------------------------------
    def create(self, job: Job, now: dt.datetime) -> None:
        expires = int((now + dt.timedelta(days=JOB_TTL_DAYS)).timestamp())
        aws.client("dynamodb").put_item(TableName=self.state_table, ConditionExpression="attribute_not_exists(pk)",
                                        Item={**_key(job.job_id), "recipient_id": {"S": job.recipient_id},
                                              "affair_code": {"S": job.affair_code}, "function": {"S": job.function},
                                              "fields": {"S": json.dumps(sorted(job.fields))},
                                              "input_key": {"S": job.input_key}, "provision_id": {"S": job.provision_id},
                                              "status": {"S": job.status}, "created_at": {"S": job.created_at},
                                              "expires_at": {"N": str(expires)}, **_pin(job)})

    def get(self, job_id: str) -> Job | None:
        item = aws.client("dynamodb").get_item(TableName=self.state_table, Key=_key(job_id),
                                               ConsistentRead=True).get("Item")
        return None if item is None else _job(item)

    def start(self, job_id: str, rows: int, chunks: int) -> None:
        aws.client("dynamodb").update_item(
            TableName=self.state_table, Key=_key(job_id), ConditionExpression="#s IN (:a, :r)",
            UpdateExpression="SET #s = :r, #rows = :n, chunks = :c",
            ExpressionAttributeNames={"#s": "status", "#rows": "rows"},
            ExpressionAttributeValues={":a": {"S": "accepted"}, ":r": {"S": "running"}, ":n": {"N": str(rows)},
                                       ":c": {"N": str(chunks)}})

    def fail(self, job_id: str, code: str, message: str, now: dt.datetime) -> None:
        aws.client("dynamodb").update_item(
            TableName=self.state_table, Key=_key(job_id),
            UpdateExpression="SET #s = :f, error_code = :c, error_message = :m, completed_at = :t",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":f": {"S": "failed"}, ":c": {"S": code}, ":m": {"S": message[:500]},
                                       ":t": {"S": now.isoformat()}})

    def complete_chunk(self, job_id: str, chunk: int, counts: Mapping[str, int], now: dt.datetime) -> Job | None:
        """Count one chunk once; mark the job complete when it was the last. Returns the job
        after the update, or None if this chunk had been counted before."""
        ddb = aws.client("dynamodb")
        adds = ["done :k"] + [f"{name} :{name}" for name in OUTCOME_COUNTERS]
        values = {":k": {"NS": [str(chunk)]}, ":kn": {"N": str(chunk)},
                  **{f":{name}": {"N": str(int(counts.get(name, 0)))} for name in OUTCOME_COUNTERS}}
        try:
            item = ddb.update_item(TableName=self.state_table, Key=_key(job_id),
                                   UpdateExpression="ADD " + ", ".join(adds),
                                   ConditionExpression="attribute_not_exists(done) OR NOT contains(done, :kn)",
                                   ExpressionAttributeValues=values, ReturnValues="ALL_NEW")["Attributes"]
        except Exception as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        job = _job(item)
        if len(job.done) >= job.chunks and job.status == "running":
            try:
                ddb.update_item(TableName=self.state_table, Key=_key(job_id), ConditionExpression="#s = :r",
                                UpdateExpression="SET #s = :c, completed_at = :t",
                                ExpressionAttributeNames={"#s": "status"},
                                ExpressionAttributeValues={":r": {"S": "running"}, ":c": {"S": "complete"},
                                                           ":t": {"S": now.isoformat()}})
                job.status, job.completed_at = "complete", now.isoformat()
            except Exception as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise
        return job

    # --- objects ------------------------------------------------------------------------
    def input_size(self, key: str) -> int | None:
        found = self.input_object(key)
        return None if found is None else found.size

    def input_object(self, key: str) -> PinnedObject | None:
        """The object's current version, size and ETag (what a job pins), or None."""
        try:
            head = aws.client("s3").head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        version = head.get("VersionId")
        return PinnedObject(int(head["ContentLength"]), version if version and version != "null" else None,
                            str(head.get("ETag", "")))

    def read_input(self, job: Job) -> list[str]:
        """Exactly the object the job pinned: its version (``GetObject VersionId``), and its
        ETag and size checked, so a file replaced after the size check is never read."""
        kwargs: dict = {"Bucket": self.bucket, "Key": job.input_key}
        if job.input_version:
            kwargs["VersionId"] = job.input_version
        if job.input_etag:
            kwargs["IfMatch"] = job.input_etag
        try:
            got = aws.client("s3").get_object(**kwargs)
        except Exception as exc:
            if aws.error_code(exc) in ("PreconditionFailed", "412", "NoSuchVersion", "NoSuchKey", "404"):
                raise InputChanged(f"{job.input_key} is no longer the object accepted with the job "
                                   f"(version {job.input_version}, ETag {job.input_etag}): upload it again and "
                                   "submit a new job") from None
            raise
        if job.input_size is not None and int(got.get("ContentLength", -1)) != job.input_size:
            raise InputChanged(f"{job.input_key} has {got.get('ContentLength')} bytes, not the {job.input_size} "
                               "accepted with the job")
        return got["Body"].read().decode("utf-8-sig").splitlines()

    def put_result(self, key: str, lines: Iterable[dict]) -> None:
        body = "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines)
        aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body.encode("utf-8"),
                                    ContentType="application/x-ndjson")

    def result_exists(self, key: str) -> bool:
        return self.input_size(key) is not None

    # --- tasks --------------------------------------------------------------------------
    def enqueue(self, tasks: list[dict]) -> None:
        sqs = aws.client("sqs")
        for start in range(0, len(tasks), 10):
            entries = [{"Id": str(i), "MessageBody": json.dumps(t, separators=(",", ":"))}
                       for i, t in enumerate(tasks[start:start + 10])]
            response = sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if response.get("Failed"):
                raise RuntimeError(f"SendMessageBatch to {self.queue_url} failed: {response['Failed']}")


def _pin(job: Job) -> dict:
    out: dict = {}
    if job.input_version:
        out["input_version"] = {"S": job.input_version}
    if job.input_etag:
        out["input_etag"] = {"S": job.input_etag}
    if job.input_size is not None:
        out["input_size"] = {"N": str(job.input_size)}
    return out


def _job(item: Mapping) -> Job:
    return Job(
        job_id=item["pk"]["S"][4:], recipient_id=item["recipient_id"]["S"], affair_code=item["affair_code"]["S"],
        function=item["function"]["S"], fields=tuple(json.loads(item["fields"]["S"])),
        input_key=item["input_key"]["S"], provision_id=item["provision_id"]["S"], status=item["status"]["S"],
        created_at=item["created_at"]["S"], rows=int(item.get("rows", {}).get("N", 0)),
        chunks=int(item.get("chunks", {}).get("N", 0)),
        done=frozenset(int(x) for x in item.get("done", {}).get("NS", [])),
        counts={k: int(item[k]["N"]) for k in OUTCOME_COUNTERS if k in item},
        completed_at=item.get("completed_at", {}).get("S"), error_code=item.get("error_code", {}).get("S"),
        error_message=item.get("error_message", {}).get("S"),
        input_version=item.get("input_version", {}).get("S"), input_etag=item.get("input_etag", {}).get("S"),
        input_size=int(item["input_size"]["N"]) if "input_size" in item else None,
    )

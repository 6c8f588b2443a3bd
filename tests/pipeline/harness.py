"""An in-process (moto ``mock_aws``) copy of the three tiers, wired as the handlers expect.

It plays Lambda's part for the tests: invokes the handlers with their environment, drives
SQS the way an event source mapping does (delete only what succeeded) and counts every
botocore call so tests and benchmarks can assert request budgets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field

import boto3

from jukinet import clock
from jukinet.adapters import aws
from jukinet.handlers import municipality_cs, national_processor, prefecture_processor
from jukinet.settings import MunicipalityCsSettings, load_settings
from embedded_aws.runner import replace_environ

REGION = "ap-northeast-1"
PREFECTURE = "200000"
MUNICIPALITIES = ("202011", "202029", "202037")
ALIAS_PREFIX = "alias/jukinet/signing/"


class Context:
    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:ap-northeast-1:123456789012:function:test"
    aws_request_id = "req"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@contextlib.contextmanager
def environment(values: dict[str, str]):
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        replace_environ(saved)


@dataclass
class Pipeline:
    keys: dict[str, str] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)
    # The CS's clock: when a dropped file is sent (its notices' time). Fixed, never today.
    now: dt.datetime = dt.datetime(2003, 1, 20, 1, 0, tzinfo=dt.UTC)

    def __post_init__(self) -> None:
        self.kms = boto3.client("kms", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.s3 = boto3.client("s3", region_name=REGION)
        for tier in ("prefecture", "national"):
            self.keys[f"data-{tier}"] = self.kms.create_key(Description=f"{tier} data")["KeyMetadata"]["Arn"]
        for code in (*MUNICIPALITIES, PREFECTURE, "131016", "130001"):
            self.add_signing_key(code)
        self.pref_table = self._identity_table("jukinet-pref-200000")
        self.national_table = self._identity_table("jukinet-national")
        self.ddb.create_table(
            TableName="jukinet-cs-20", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        )
        self.pref_dlq = self._queue("jukinet-pref-200000-dlq")
        self.pref_queue = self._queue("jukinet-pref-200000-inbound", dlq=self.pref_dlq)
        self.national_dlq = self._queue("jukinet-national-dlq")
        self.national_queue = self._queue("jukinet-national-inbound", dlq=self.national_dlq)
        self.cs_failed = self._queue("jukinet-muni-20-cs-failed-events")
        self.bucket = "jukinet-dropzone-20"
        self.s3.create_bucket(Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        self._count_calls()

    # --- setup helpers -----------------------------------------------------------------
    def add_signing_key(self, code: str) -> str:
        arn = self.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        self.kms.create_alias(AliasName=ALIAS_PREFIX + code, TargetKeyId=arn)
        self.keys[f"sign-{code}"] = arn
        return arn

    def _identity_table(self, name: str) -> str:
        attrs = [("pk", "S"), ("sk", "S"), ("bidx", "S")]
        self.ddb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in attrs],
            GlobalSecondaryIndexes=[
                {"IndexName": "by_blind_index", "Projection": {"ProjectionType": "KEYS_ONLY"},
                 "KeySchema": [{"AttributeName": "bidx", "KeyType": "HASH"},
                               {"AttributeName": "pk", "KeyType": "RANGE"}]},
            ],
        )
        return name

    def _queue(self, name: str, dlq: str | None = None) -> str:
        attributes = {"VisibilityTimeout": "0"}
        if dlq:
            arn = self.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})
        return self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]

    def _count_calls(self) -> None:
        """Count every AWS request the handlers make (clients come from ``jukinet.adapters.aws``)."""
        aws.reset_clients()
        self.stop_counting = aws.observe_calls(lambda service, op: self.calls.update([f"{service}:{op}"]))

    # --- environments -------------------------------------------------------------------
    def cs_env(self, municipality: str) -> dict[str, str]:
        return {
            "MUNICIPALITY_CODE": municipality, "STATE_TABLE_NAME": "jukinet-cs-20",
            "SIGNING_KEY_ID": self.keys[f"sign-{municipality}"], "OUTBOUND_QUEUE_URL": self.pref_queue,
            "DROP_ZONE_BUCKET": self.bucket, "DROP_ZONE_PREFIX": f"{municipality}/",
            "FAILED_EVENTS_QUEUE_URL": self.cs_failed,
            "AWS_DEFAULT_REGION": REGION, "POWERTOOLS_METRICS_DISABLED": "true",
        }

    def prefecture_env(self) -> dict[str, str]:
        return {
            "PREFECTURE_CODE": PREFECTURE, "TABLE_NAME": self.pref_table, "DATA_KEY_ID": self.keys["data-prefecture"],
            "SIGNING_KEY_ID": self.keys[f"sign-{PREFECTURE}"], "SENDER_KEY_ALIAS_PREFIX": ALIAS_PREFIX,
            "FORWARD_QUEUE_URL": self.national_queue, "DEAD_LETTER_QUEUE_URL": self.pref_dlq,
            "AWS_DEFAULT_REGION": REGION, "POWERTOOLS_METRICS_DISABLED": "true",
        }

    def national_env(self) -> dict[str, str]:
        return {
            "TABLE_NAME": self.national_table, "DATA_KEY_ID": self.keys["data-national"],
            "SENDER_KEY_ALIAS_PREFIX": ALIAS_PREFIX, "ALLOWED_PREFECTURES": PREFECTURE,
            "DEAD_LETTER_QUEUE_URL": self.national_dlq, "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_METRICS_DISABLED": "true",
        }

    # --- driving ------------------------------------------------------------------------
    def drop(self, municipality: str, filename: str, data: bytes, now: dt.datetime | None = None) -> dict:
        """Drop an export file and run the municipality's CS on it, its clock at ``now``
        (default: the pipeline's ``now``)."""
        key = f"{municipality}/incoming/{filename}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        event = {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": self.bucket}, "object": {"key": key}}}]}
        with environment(self.cs_env(municipality)):
            server = municipality_cs._runtime(load_settings(MunicipalityCsSettings), os.environ.get("AWS_ENDPOINT_URL"))
            server.clock = clock.fixed(now or self.now)
            return municipality_cs.handler(event, Context())

    def drop_batch(self, municipality: str, files: list[tuple[str, bytes | None]], now: dt.datetime | None = None,
                   receives: int = 1, bodies: list[str] | None = None, size: int | None = None) -> dict:
        """Drop export files (``None``: name a file that is not there) and run the CS once on
        one batch of its inbox: one SQS record per file, each an S3 event notification, as the
        event source mapping delivers them (``receives``: their ApproximateReceiveCount;
        ``bodies``: further raw SQS bodies; ``size``: the object size each event claims, else none).
        Returns the handler's response, with the records'
        ``messageIds`` in the order given."""
        records, ids = [], []
        for name, data in files:
            key = f"{municipality}/incoming/{name}"
            if data is not None:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
            obj = {"key": key} if size is None else {"key": key, "size": size}
            body = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
                "bucket": {"name": self.bucket}, "object": obj}}]})
            records.append(body)
        records += bodies or []
        event = {"Records": []}
        for body in records:
            ids.append(new_id())
            event["Records"].append({
                "messageId": ids[-1], "receiptHandle": new_id(), "body": body, "md5OfBody": "",
                "attributes": {"ApproximateReceiveCount": str(receives)}, "messageAttributes": {},
                "eventSource": "aws:sqs", "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:cs-inbox",
                "awsRegion": REGION})
        with environment(self.cs_env(municipality)):
            server = municipality_cs._runtime(load_settings(MunicipalityCsSettings), os.environ.get("AWS_ENDPOINT_URL"))
            server.clock = clock.fixed(now or self.now)
            response = municipality_cs.handler(event, Context())
        return {**response, "messageIds": ids}

    def drain(self, tier: str, max_rounds: int = 50) -> list[dict]:
        """Deliver the tier's inbound queue to its handler until empty, like an event source mapping."""
        queue, module, env = {
            "prefecture": (self.pref_queue, prefecture_processor, self.prefecture_env()),
            "national": (self.national_queue, national_processor, self.national_env()),
        }[tier]
        responses = []
        for _ in range(max_rounds):
            received = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                                AttributeNames=["All"], MessageAttributeNames=["All"])
            messages = received.get("Messages", [])
            if not messages:
                break
            event = {"Records": [{
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m.get("Attributes", {}), "md5OfBody": m["MD5OfBody"],
                "messageAttributes": {k: {"dataType": v["DataType"], "stringValue": v.get("StringValue")}
                                      for k, v in (m.get("MessageAttributes") or {}).items()},
                "eventSource": "aws:sqs", "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:x",
                "awsRegion": REGION,
            } for m in messages]}
            with environment(env):
                response = module.handler(event, Context())
            responses.append(response)
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            for m in messages:
                if m["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return responses

    def run(self) -> None:
        self.drain("prefecture")
        self.drain("national")

    def send_raw(self, tier: str, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.pref_queue if tier == "prefecture" else self.national_queue, MessageBody=body)

    def dead_letters(self, tier: str) -> list[dict]:
        queue = self.pref_dlq if tier == "prefecture" else self.national_dlq
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                           VisibilityTimeout=60).get("Messages", [])
            if not got:
                return out
            out.extend(got)


def new_id() -> str:
    return uuid.uuid4().hex


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)

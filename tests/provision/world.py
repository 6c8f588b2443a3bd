"""An in-process (moto ``mock_aws``) national tier for the provision API: identity table with
residents, provision log and state tables, keys, batch bucket and queue, and the agreements
file — wired as the provision functions expect, invoked through their handlers."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from jukinet.adapters import aws
from jukinet.adapters.identity_store import IdentityStore
from jukinet.adapters.kms import DataKeys
from jukinet.adapters.provision_log import ProvisionLog
from jukinet.domain.notice import UpdateNotice
from jukinet.handlers import provision_api, provision_batch, provision_sealer
from embedded_aws.runner import replace_environ

from ..pipeline.exports import person

REGION = "ap-northeast-1"
ACCOUNT = "123456789012"


def role(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/agencies/{name}"


def session(name: str) -> str:
    """What API Gateway reports as ``userArn`` for a SigV4 call made with the role."""
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/session-1"


def agreement(code: str, functions: list[str], fields: list[str], **extra) -> dict:
    return {"affair_code": code, "affair": f"affair {code}", "appended_table": "別表第一", "appended_table_item": "1",
            "functions": functions, "fields": fields, "valid_from": "2002-08-05", "valid_until": "2099-03-31",
            "monthly_record_limit": extra.pop("monthly_record_limit", 1_000_000),
            "max_batch_records": extra.pop("max_batch_records", 1_000_000), "agreed_hours": None, **extra}


ALL_FIELDS = ["resident_code", "name", "birth_date", "sex", "address", "status", "change_information"]

AGREEMENTS = {"version": 1, "recipients": [
    {"id": "pension", "name": "Pension body", "name_ja": "年金機関", "kind": "agency", "prefecture": None,
     "principals": [role("pension")], "vpc_endpoint_ids": ["vpce-0a000000000000001"], "disclosure_principals": [],
     "agreements": [
         agreement("ALIVE", ["batch", "lookup"], ["resident_code", "status", "change_information"]),
         agreement("PAY", ["lookup", "search", "batch"], ALL_FIELDS),
         agreement("EXPIRED", ["lookup"], ALL_FIELDS, valid_until="2010-03-31"),
         agreement("SMALL", ["lookup", "batch"], ["resident_code", "status"], monthly_record_limit=3,
                   max_batch_records=5),
     ]},
    {"id": "fsa", "name": "FSA", "name_ja": "金融庁", "kind": "agency", "prefecture": None,
     "principals": [role("fsa")], "vpc_endpoint_ids": ["vpce-0a000000000000002"], "disclosure_principals": [],
     "agreements": [agreement("BANK", ["lookup", "search"], ["resident_code", "name", "address"],
                              agreed_hours="08:00-20:00")]},
    {"id": "pref", "name": "Prefecture (own use)", "name_ja": "長野県", "kind": "prefecture", "prefecture": "200000",
     "principals": [role("pref-own-use")], "vpc_endpoint_ids": [], "disclosure_principals": [role("pref-disclosure")],
     "agreements": [agreement("PASSPORT", ["own_use"], ["resident_code", "name", "birth_date", "sex", "address",
                                                      "status"])]},
]}
ENDPOINTS = {"pension": "vpce-0a000000000000001", "fsa": "vpce-0a000000000000002", "pref": "vpce-0f000000000000200",
             "pref-disclosure": "vpce-0f000000000000200"}
PREFECTURE_ENDPOINTS = {"200000": "vpce-0f000000000000200"}


class Context:
    function_name = "provision"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:provision"
    aws_request_id = "req"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


@dataclass
class Resident:
    code: str
    kana: str
    birth_date: str
    sex: str
    address: str
    municipality: str


@dataclass
class World:
    root: Path
    calls: Counter = field(default_factory=Counter)
    residents: list[Resident] = field(default_factory=list)
    now: dt.datetime = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)  # 12:00 JST

    def __post_init__(self) -> None:
        self.kms = boto3.client("kms", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.data_key = self.kms.create_key(Description="national envelope")["KeyMetadata"]["Arn"]
        self.seal_key = self.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        self.seal_key_alias = "alias/jukinet/national/provision-seal"  # what the deployment configuration names
        self.kms.create_alias(AliasName=self.seal_key_alias, TargetKeyId=self.seal_key)
        self.identity_table = "jukinet-national-identity"
        self._table(self.identity_table, gsi=("by_blind_index", "bidx", "pk", {"ProjectionType": "KEYS_ONLY"}))
        self.log_table = "jukinet-national-provision-log"
        self._table(self.log_table, gsi=("by_day", "day_shard", "entry_ref",
                                         {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["hash"]}))
        self.state_table = "jukinet-national-provision-state"
        self._table(self.state_table)
        self.bucket = "jukinet-provision-batch-123456789012-ap-northeast-1"
        self.s3.create_bucket(Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        self.seal_archive = "jukinet-provision-seals-123456789012-ap-northeast-1"
        self.s3.create_bucket(Bucket=self.seal_archive, CreateBucketConfiguration={"LocationConstraint": REGION},
                              ObjectLockEnabledForBucket=True)
        self.s3.put_object_lock_configuration(Bucket=self.seal_archive, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 8}}})
        self.queue = self.sqs.create_queue(QueueName="jukinet-national-provision-batch")["QueueUrl"]
        (self.root / "agreements.json").write_text(json.dumps(AGREEMENTS), encoding="utf-8")
        self.env = {
            "TABLE_NAME": self.identity_table, "DATA_KEY_ID": self.data_key, "PROVISION_LOG_TABLE": self.log_table,
            "PROVISION_STATE_TABLE": self.state_table, "BATCH_BUCKET": self.bucket, "BATCH_QUEUE_URL": self.queue,
            "AGREEMENTS_FILE": "agreements.json", "PREFECTURE_API_ENDPOINTS": json.dumps(PREFECTURE_ENDPOINTS),
            "SEAL_KEY_ID": self.seal_key, "SEAL_ARCHIVE_BUCKET": self.seal_archive, "LAMBDA_TASK_ROOT": str(self.root),
            "POWERTOOLS_SERVICE_NAME": "jukinet-provision", "POWERTOOLS_METRICS_NAMESPACE": "Jukinet",
            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        }
        self._stop = aws.observe_calls(lambda service, op: self.calls.update([f"{service}.{op}"]))

    def _table(self, name: str, gsi: tuple | None = None) -> None:
        attrs = {"pk", "sk"}
        kwargs: dict = {}
        if gsi:
            index, hash_key, range_key, projection = gsi
            attrs |= {hash_key, range_key}
            kwargs["GlobalSecondaryIndexes"] = [{"IndexName": index, "Projection": projection, "KeySchema": [
                {"AttributeName": hash_key, "KeyType": "HASH"}, {"AttributeName": range_key, "KeyType": "RANGE"}]}]
        self.ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                         {"AttributeName": "sk", "KeyType": "RANGE"}],
                              AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in sorted(attrs)],
                              **kwargs)

    # --- data ----------------------------------------------------------------------------
    def store(self) -> IdentityStore:
        return IdentityStore(self.identity_table, DataKeys(self.data_key, {"tier": "national"}))

    def log(self) -> ProvisionLog:
        return ProvisionLog(self.log_table, self.state_table)

    def add_residents(self, n: int, seed: int = 1, municipality: str = "202011") -> list[Resident]:
        rng = random.Random(seed)
        notices, added = [], []
        for i in range(n):
            p = person(rng)
            added.append(Resident(p["resident_code"], p["name_kana"], p["birth_date"], p["sex"],
                                  f"長野県長野市{i}番地", municipality))
            notices.append(UpdateNotice.from_dict({
                "municipality": municipality, "sequence": len(self.residents) + i + 1,
                "resident_code": p["resident_code"], "reason": "11", "change_date": "2003-01-06",
                "notice_time": "2003-01-06T09:00:00Z",
                "facts": {"resident_code": p["resident_code"], "name": {"kanji": p["name_kanji"], "kana": p["name_kana"]},
                          "birth_date": p["birth_date"], "sex": p["sex"], "address": f"長野県長野市{i}番地"}}))
        self.store().apply(notices, now=self.now)
        self.residents.extend(added)
        return added

    def delete_resident(self, r: Resident, sequence: int) -> None:
        self.store().apply([UpdateNotice.from_dict({
            "municipality": r.municipality, "sequence": sequence, "resident_code": r.code, "reason": "22",
            "change_date": "2004-02-01", "notice_time": "2004-02-01T09:00:00Z", "facts": None})], now=self.now)

    # --- invoking --------------------------------------------------------------------------
    @contextlib.contextmanager
    def environment(self):
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            yield
        finally:
            replace_environ(saved)

    def call(self, method: str, path: str, body: object = None, *, who: str = "pension",
             vpce: str | None = None, query: dict | None = None, raw_body: str | None = None) -> tuple[int, dict]:
        event = api_event(method, path, body, user_arn=session(who) if who else None,
                          vpce=ENDPOINTS.get(who, "vpce-0ffffffffffffffff") if vpce is None else vpce,
                          query=query, raw_body=raw_body)
        with self.environment():
            service, _ = provision_api.runtime()
            service.clock = lambda: self.now
            response = provision_api.handler(event, Context())
        body_text = response["body"]
        if response.get("isBase64Encoded"):
            body_text = base64.b64decode(body_text).decode()
        return response["statusCode"], json.loads(body_text) if body_text else {}

    def run_batch_queue(self, max_rounds: int = 100) -> int:
        handled = 0
        for _ in range(max_rounds):
            messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return handled
            records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                        "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q", "awsRegion": REGION}
                       for m in messages]
            with self.environment():
                service, _ = provision_api.runtime()
                service.clock = lambda: self.now
                response = provision_batch.handler({"Records": records}, Context())
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            for m in messages:
                if m["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
            handled += len(messages)
        return handled

    def jobs_status(self, job_id: str, **who) -> dict:
        status, job = self.call("GET", f"/v1/batches/{job_id}", **who)
        assert status == 200, job
        return job

    def seal(self, day: str | None = None, *, at: dt.datetime | None = None) -> dict:
        """Run the sealer at ``at`` (default: two days after ``now``): for ``day``, an
        operator's catch-up of that day; without, the hourly scheduled run."""
        with self.environment():
            sealer = provision_sealer._runtime(provision_sealer.load_settings(provision_sealer.SealerSettings),
                                               os.environ.get("AWS_ENDPOINT_URL"))
            instant = at or self.now + dt.timedelta(days=2)
            sealer.clock = lambda: instant
            return provision_sealer.handler({"day": day} if day else {}, Context())

    def public_key(self) -> bytes:
        """The deployment's seal public key (DER), as the configuration pins it."""
        return self.kms.get_public_key(KeyId=self.seal_key_alias)["PublicKey"]


def api_event(method: str, path: str, body: object = None, *, user_arn: str | None, vpce: str | None,
              query: dict | None = None, raw_body: str | None = None) -> dict:
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body, ensure_ascii=False))
    return {
        "resource": path, "path": path, "httpMethod": method,
        "headers": {"Content-Type": "application/json"}, "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": query, "multiValueQueryStringParameters": (
            {k: [v] for k, v in query.items()} if query else None),
        "pathParameters": None, "stageVariables": None, "body": text, "isBase64Encoded": False,
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "api1", "stage": "v1", "resourcePath": path, "httpMethod": method,
            "path": f"/v1{path}", "requestId": str(uuid.uuid4()), "requestTimeEpoch": 0, "protocol": "HTTP/1.1",
            "identity": {"userArn": user_arn, "caller": None, "accountId": ACCOUNT, "sourceIp": "10.0.0.1",
                         "vpceId": vpce, "accessKey": "ASIA000", "userAgent": "test"},
        },
    }

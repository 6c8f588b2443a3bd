"""An in-process (moto ``mock_aws``) copy of what the channel between municipalities crosses:
two prefectures (長野県 200000, 東京都 130001), their municipality tiers and the national tier,
wired as the handlers expect. It plays Lambda's part: ``pump`` drains every queue into the
handler an event source mapping would invoke, deleting only what succeeded. The clock is the
world's ``now``, which a test moves."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
from dataclasses import dataclass, field

import boto3

from jukinet.adapters import aws
from jukinet.domain.codes import ResidentCode
from jukinet.handlers import channel_endpoint, national_processor, prefecture_processor
from jukinet.settings import ChannelSettings, NationalSettings, PrefectureSettings, load_settings

from ..pipeline.harness import Context, environment

REGION = "ap-northeast-1"
ACCOUNT = "123456789012"
NAGANO_PREF, TOKYO_PREF = "200000", "130001"
NAGANO, MATSUMOTO, UEDA, CHIYODA = "202011", "202029", "202037", "131016"
SIGNING = "alias/jukinet/signing/"
CHANNEL = "alias/jukinet/channel/"
T0 = dt.datetime(2003, 1, 20, 1, 0, tzinfo=dt.UTC)  # 10:00 JST, a Monday


def resident(n: int) -> str:
    return ResidentCode.from_body(f"{n:010d}").value


@dataclass
class World:
    now: dt.datetime = T0
    keys: dict[str, str] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)
    delivered: list[tuple[str, str]] = field(default_factory=list)  # (queue, body) as handed to a function
    stdout: object = None  # where the handlers print (their EMF metrics): a MetricSink, or swallowed

    def __post_init__(self) -> None:
        self.kms = boto3.client("kms", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        for code in (NAGANO, MATSUMOTO, UEDA, CHIYODA, NAGANO_PREF, TOKYO_PREF):
            arn = self.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
            self.kms.create_alias(AliasName=SIGNING + code, TargetKeyId=arn)
            self.keys[f"sign-{code}"] = arn
        for pref in (NAGANO_PREF, TOKYO_PREF):
            arn = self.kms.create_key(Description=f"channel {pref}")["KeyMetadata"]["Arn"]
            self.kms.create_alias(AliasName=CHANNEL + pref[:2], TargetKeyId=arn)
            self.keys[f"channel-{pref}"] = arn
            self.keys[f"data-{pref}"] = self.kms.create_key(Description=f"data {pref}")["KeyMetadata"]["Arn"]
            self._table(f"jukinet-pref-{pref}")
            self._table(f"jukinet-cards-{pref}")
        self.keys["data-national"] = self.kms.create_key(Description="data national")["KeyMetadata"]["Arn"]
        self._table("jukinet-national")
        for name in ("pref-200000", "pref-130001", "national", "muni-200000", "muni-130001"):
            suffix = "channel" if name.startswith("muni") else "inbound"
            self.queues[f"{name}-dlq"] = self._queue(f"jukinet-{name}-dlq")
            self.queues[name] = self._queue(f"jukinet-{name}-{suffix}")
        aws.reset_clients()
        for module in (channel_endpoint, prefecture_processor, national_processor):
            module._runtime.cache_clear()

    def _table(self, name: str) -> None:
        self.ddb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])

    def _queue(self, name: str) -> str:
        return self.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "0"})["QueueUrl"]

    # --- residents in a home tier's register (as its CSs record them) ----------------------
    def register(self, code: str, municipality: str, reason: str = "11", ended: str = "") -> None:
        pref = NAGANO_PREF if municipality[:2] == "20" else TOKYO_PREF
        self.ddb.put_item(TableName=f"jukinet-cards-{pref}", Item={
            "pk": {"S": f"RESIDENT#{code}"}, "sk": {"S": "REGISTER"}, "municipality": {"S": municipality},
            "reason": {"S": reason}, "order_key": {"S": "x"}, "notice_time": {"S": "2003-01-01T00:00:00Z"},
            "ended": {"S": ended}})

    # --- environments ----------------------------------------------------------------------
    def _base(self) -> dict[str, str]:
        if self.stdout is not None:  # metrics on, as the tiers' functions print them
            return {"AWS_DEFAULT_REGION": REGION, "SENDER_KEY_ALIAS_PREFIX": SIGNING}
        return {"AWS_DEFAULT_REGION": REGION, "POWERTOOLS_METRICS_DISABLED": "true",
                "SENDER_KEY_ALIAS_PREFIX": SIGNING}

    def channel_env(self, pref: str) -> dict[str, str]:
        return {**self._base(), "POWERTOOLS_SERVICE_NAME": f"jukinet-muni-{pref}", "PREFECTURE_CODE": pref,
                "TABLE_NAME": f"jukinet-cards-{pref}",
                "CHANNEL_KEY_ID": self.keys[f"channel-{pref}"], "CHANNEL_KEY_ALIAS_PREFIX": CHANNEL,
                "SIGNING_KEY_ALIAS_PREFIX": SIGNING, "OUTBOUND_QUEUE_URL": self.queues[f"pref-{pref}"],
                "DEAD_LETTER_QUEUE_URL": self.queues[f"muni-{pref}-dlq"]}

    def prefecture_env(self, pref: str) -> dict[str, str]:
        return {**self._base(), "POWERTOOLS_SERVICE_NAME": f"jukinet-pref-{pref}", "PREFECTURE_CODE": pref,
                "TABLE_NAME": f"jukinet-pref-{pref}",
                "DATA_KEY_ID": self.keys[f"data-{pref}"], "SIGNING_KEY_ID": self.keys[f"sign-{pref}"],
                "FORWARD_QUEUE_URL": self.queues["national"], "DEAD_LETTER_QUEUE_URL": self.queues[f"pref-{pref}-dlq"],
                "CHANNEL_QUEUE_URL": self.queues[f"muni-{pref}"]}

    def national_env(self) -> dict[str, str]:
        template = self.queues["pref-200000"].replace("pref-200000", "pref-{prefecture}")
        return {**self._base(), "TABLE_NAME": "jukinet-national", "DATA_KEY_ID": self.keys["data-national"],
                "ALLOWED_PREFECTURES": f"{NAGANO_PREF},{TOKYO_PREF}",
                "DEAD_LETTER_QUEUE_URL": self.queues["national-dlq"],
                "PREFECTURE_INBOUND_URL_TEMPLATE": template}

    def _fixed(self, *parts: object) -> None:
        for part in parts:
            part.clock = lambda: self.now

    def endpoint(self, pref: str):
        """The municipality tier's channel endpoint (what its counter function calls)."""
        with environment(self.channel_env(pref)):
            runtime = channel_endpoint.runtime()
        self._fixed(runtime)
        return runtime

    # --- Lambda's part ---------------------------------------------------------------------
    def _invoke(self, queue: str, messages: list[dict]) -> dict:
        if queue.startswith("muni-"):
            module, env, settings = channel_endpoint, self.channel_env(queue[5:]), ChannelSettings
        elif queue.startswith("pref-"):
            module, env, settings = prefecture_processor, self.prefecture_env(queue[5:]), PrefectureSettings
        else:
            module, env, settings = national_processor, self.national_env(), NationalSettings
        event = {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"], "attributes": {},
            "messageAttributes": {}, "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}", "awsRegion": REGION} for m in messages]}
        with environment(env):
            runtime = module._runtime(load_settings(settings), os.environ.get("AWS_ENDPOINT_URL"))
            self._fixed(*(runtime if isinstance(runtime, tuple) else (runtime,)))
            with contextlib.redirect_stdout(io.StringIO() if self.stdout is None else self.stdout):
                return module.handler(event, Context())

    def pump(self, *, drop: set[str] = frozenset(), hold: set[str] = frozenset(), rounds: int = 20,
             duplicate: bool = False) -> None:
        """Deliver until every queue is empty (``drop``: queues whose messages are lost, as if
        never delivered; ``hold``: queues left undelivered for now; ``duplicate``: every
        message handed over twice, as SQS may)."""
        for _ in range(rounds):
            moved = False
            for name in ("muni-200000", "muni-130001", "pref-200000", "pref-130001", "national"):
                if name in hold:
                    continue
                messages = self.sqs.receive_message(QueueUrl=self.queues[name], MaxNumberOfMessages=10,
                                                    AttributeNames=["All"]).get("Messages", [])
                if not messages:
                    continue
                moved = True
                if name not in drop:
                    self.delivered.extend((name, m["Body"]) for m in messages)
                    response = self._invoke(name, messages)
                    assert response["batchItemFailures"] == [], response
                    if duplicate:
                        self._invoke(name, messages)
                for m in messages:
                    self.sqs.delete_message(QueueUrl=self.queues[name], ReceiptHandle=m["ReceiptHandle"])
            if not moved:
                return
        raise AssertionError("the queues did not drain")

    def dead_letters(self, name: str) -> list[dict]:
        got = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queues[f"{name}-dlq"], MaxNumberOfMessages=10,
                                             MessageAttributeNames=["All"]).get("Messages", [])
            if not batch:
                return got
            for m in batch:
                attributes = m.get("MessageAttributes", {})
                got.append({"body": m["Body"], **{k: v["StringValue"] for k, v in attributes.items()}})
                self.sqs.delete_message(QueueUrl=self.queues[f"{name}-dlq"], ReceiptHandle=m["ReceiptHandle"])

    def send(self, queue: str, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queues[queue], MessageBody=body)

    @staticmethod
    def envelope_of(body: str) -> dict:
        import base64
        return json.loads(base64.b64decode(json.loads(body)["payload"]))

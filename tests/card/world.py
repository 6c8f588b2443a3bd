"""An in-process (moto ``mock_aws``) municipality tier for the counter API: the card table, the
card-event key, the residents as the tier's CSs recorded them — invoked through the handler
as API Gateway would, with a fixed clock that a test moves."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import importlib.util
import json
import os
import threading
import uuid
from dataclasses import dataclass, field

import boto3

from jukinet.adapters import aws
from jukinet.adapters.card_store import CardStore, ResidentRegister
from jukinet.domain.card import CardEvent, VirtualCard
from jukinet.domain.notice import UpdateNotice
from jukinet.handlers import card_api, card_runtime
from embedded_aws.runner import replace_environ

REGION = "ap-northeast-1"
ACCOUNT = "123456789012"
NAGANO, MATSUMOTO, UEDA = "202011", "202029", "202037"
TIER = "muni-200000"
ENDPOINT = "vpce-0c000000000000200"
OPERATOR_ROLE = f"jukinet-{TIER}-operator"


def counter(code: str, session: str = "clerk-1") -> str:
    """What API Gateway reports as ``userArn`` for a SigV4 call made with a counter-staff role."""
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/jukinet-counter-{code}/{session}"


OPERATOR = f"arn:aws:sts::{ACCOUNT}:assumed-role/{OPERATOR_ROLE}/night-duty"


class Context:
    function_name = "card-api"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:card-api"
    aws_request_id = "req"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def notice(municipality: str, sequence: int, code: str, reason: str, day: str = "2026-11-20",
           previous: str | None = None) -> UpdateNotice:
    facts = None if reason in ("21", "22", "23") else {
        "resident_code": code, "name": {"kanji": "信濃太郎", "kana": "シナノタロウ"}, "birth_date": "1970-01-01",
        "sex": "1", "address": "長野県長野市1番地"}
    raw = {"municipality": municipality, "sequence": sequence, "resident_code": code, "reason": reason,
           "change_date": day, "notice_time": f"{day}T09:00:00Z", "facts": facts}
    if previous:
        raw["previous_resident_code"] = previous
    return UpdateNotice.from_dict(raw)


_ENVIRONMENT_LOCK = threading.Lock()
_ENVIRONMENT_USERS = [0]
_ENVIRONMENT_SAVED: dict[str, str] = {}


@dataclass
class World:
    now: dt.datetime = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)  # 10:00 JST
    sequence: int = 0
    env: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kms = boto3.client("kms", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.event_key = self.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        self.table = "jukinet-muni-200000-cards"
        self.ddb.create_table(TableName=self.table, BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                         {"AttributeName": "sk", "KeyType": "RANGE"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                    {"AttributeName": "sk", "AttributeType": "S"}])
        self.env = {
            "CARD_TABLE_NAME": self.table, "CARD_EVENT_KEY_ID": self.event_key,
            "MUNICIPALITIES": f"{NAGANO},{MATSUMOTO},{UEDA}", "COUNTER_ROLE_PREFIX": "jukinet-counter-",
            "OPERATOR_ROLES": OPERATOR_ROLE, "ACCOUNT_ID": ACCOUNT, "API_ENDPOINT_IDS": ENDPOINT,
            "POWERTOOLS_SERVICE_NAME": "jukinet-card", "POWERTOOLS_METRICS_NAMESPACE": "Jukinet",
            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        }

    # --- the tier's register, as the CSs write it -----------------------------------------
    def register(self, *notices: UpdateNotice) -> None:
        ResidentRegister(self.table).record(notices)

    def resident(self, code: str, municipality: str = NAGANO, reason: str = "11", day: str = "2026-11-20",
                 previous: str | None = None) -> None:
        self.sequence += 1
        self.register(notice(municipality, self.sequence, code, reason, day, previous))

    def store(self) -> CardStore:
        return CardStore(self.table)

    # --- calling ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def environment(self):
        """The counter function's environment for the duration of a call. Calls may come from
        several threads at once (the replay race): the first to enter saves the process's
        environment and the last to leave restores it, so none restores another's."""
        with _ENVIRONMENT_LOCK:
            if _ENVIRONMENT_USERS[0] == 0:
                _ENVIRONMENT_SAVED.clear()
                _ENVIRONMENT_SAVED.update(os.environ)
                os.environ.update(self.env)
            _ENVIRONMENT_USERS[0] += 1
        try:
            yield
        finally:
            with _ENVIRONMENT_LOCK:
                _ENVIRONMENT_USERS[0] -= 1
                if _ENVIRONMENT_USERS[0] == 0:
                    replace_environ(_ENVIRONMENT_SAVED)

    @staticmethod
    def container():
        """A fresh copy of the counter function's module, as a second Lambda execution environment
        would load it. Concurrent invocations never share one environment on AWS (Powertools'
        resolver keeps the current event on itself), so a race between calls gives each its own."""
        fresh = []
        for name in (card_runtime.__name__, card_api.__name__):
            spec = importlib.util.find_spec(name)
            fresh.append(importlib.util.module_from_spec(spec))
            spec.loader.exec_module(fresh[-1])
        runtime, module = fresh
        # its own services too (their caches are per module): the routes call these by name
        for name in ("runtime", "copies", "moves", "remote"):
            setattr(module, name, getattr(runtime, name))
        return module

    def call(self, method: str, path: str, body: object = None, *, who: str | None = None,
             vpce: str | None = ENDPOINT, raw_body: str | None = None, container=None) -> tuple[int, dict]:
        text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
        event = {
            "resource": path, "path": path, "httpMethod": method, "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {"Content-Type": ["application/json"]}, "queryStringParameters": None,
            "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
            "body": text, "isBase64Encoded": False,
            "requestContext": {"accountId": ACCOUNT, "apiId": "api1", "stage": "v1", "resourcePath": path,
                               "httpMethod": method, "path": f"/v1{path}", "requestId": str(uuid.uuid4()),
                               "requestTimeEpoch": 0, "protocol": "HTTP/1.1",
                               "identity": {"userArn": who if who is not None else counter(NAGANO),
                                            "accountId": ACCOUNT, "sourceIp": "10.0.0.1", "vpceId": vpce,
                                            "accessKey": "ASIA000", "userAgent": "test", "caller": None}},
        }
        with self.environment():
            function = container or card_api
            service = function.runtime()
            service.clock = lambda: self.now
            response = function.handler(event, Context())
        body_text = response["body"]
        if response.get("isBase64Encoded"):
            body_text = base64.b64decode(body_text).decode()
        return response["statusCode"], json.loads(body_text) if body_text else {}

    # --- the counter's steps -----------------------------------------------------------------
    def issue(self, code: str, chip: VirtualCard, *, at: str = NAGANO, card_type: str = "B") -> tuple[int, dict]:
        status, body = self.call("POST", "/v1/cards", {"resident_code": code, "card_type": card_type,
                                                       "public_key": chip.public_key}, who=counter(at))
        if status == 201:
            chip.serial = body["serial"]
        return status, body

    def challenge(self, serial: str, *, at: str = MATSUMOTO, who: str | None = None) -> tuple[int, dict]:
        return self.call("POST", "/v1/challenges", {"serial": serial}, who=who or counter(at))

    def answer(self, challenge_id: str, signature: bytes, *, at: str = MATSUMOTO,
               who: str | None = None, container=None) -> tuple[int, dict]:
        return self.call("POST", "/v1/authentications",
                         {"challenge_id": challenge_id, "signature": base64.b64encode(signature).decode()},
                         who=who or counter(at), container=container)

    def authenticate(self, chip: VirtualCard, pin: str, *, at: str = MATSUMOTO) -> tuple[int, dict]:
        assert chip.serial
        status, challenge = self.challenge(chip.serial, at=at)
        if status != 200:
            return status, challenge
        return self.answer(challenge["challenge_id"], chip.sign(challenge["message"].encode(), pin), at=at)

    def events(self, serial: str) -> list[CardEvent]:
        return self.store().events(serial)

    def statistics(self, municipality: str, month: str = "2026-12") -> dict[str, int]:
        return self.store().statistics(municipality, month)

    def public_key(self):
        from cryptography.hazmat.primitives.serialization import load_der_public_key
        return load_der_public_key(self.kms.get_public_key(KeyId=self.event_key)["PublicKey"])


def reset_runtime() -> None:
    aws.reset_clients()
    card_runtime._runtime.cache_clear()

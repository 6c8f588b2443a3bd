"""The wide-area copy in-process (moto ``mock_aws``): the channel's world (two prefectures, their
municipality tiers and the national tier, ``tests/channel/world.py``) plus each municipality
tier's local-record table and its counter API, invoked as API Gateway would."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import tempfile
import uuid
from dataclasses import dataclass

from jukinet.adapters.card_store import ResidentRegister
from jukinet.adapters.local_records import BY_HOUSEHOLD, LocalRecords
from jukinet.domain.card import VirtualCard
from jukinet.domain.local_record import LocalRecordFields, Relationship
from jukinet.domain.notice import UpdateNotice
from jukinet.handlers import card_api, card_runtime

from ..channel.world import ACCOUNT, CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, REGION, TOKYO_PREF, UEDA, World
from ..pipeline.harness import Context, environment

NAMES = {NAGANO: "長野市", MATSUMOTO: "松本市", UEDA: "上田市", CHIYODA: "千代田区"}
ENDPOINT = "vpce-0c000000000000200"
TIER_MUNICIPALITIES = {NAGANO_PREF: (NAGANO, MATSUMOTO, UEDA), TOKYO_PREF: (CHIYODA,)}


def counter(code: str, session: str = "clerk-1") -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/jukinet-counter-{code}/{session}"


def pref_of(municipality: str) -> str:
    return NAGANO_PREF if municipality[:2] == "20" else TOKYO_PREF


@dataclass
class Person:
    code: str
    kanji: str
    kana: str = "シナノタロウ"
    birth: str = "1970-01-01"
    sex: str = "1"
    household: str | None = None
    relationship: str | None = None
    householder: str | None = None


@dataclass
class CopyWorld(World):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.sequence = 0
        names = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8")
        json.dump(NAMES, names, ensure_ascii=False)
        names.close()
        self.names_file = names.name
        for pref in (NAGANO_PREF, TOKYO_PREF):
            self.ddb.create_table(
                TableName=f"jukinet-local-{pref}", BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "household")],
                GlobalSecondaryIndexes=[{"IndexName": BY_HOUSEHOLD, "KeySchema": [
                    {"AttributeName": "household", "KeyType": "HASH"}, {"AttributeName": "pk", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"}}])
            self.keys[f"events-{pref}"] = self.kms.create_key(KeySpec="ECC_NIST_P256",
                                                              KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        card_runtime._runtime.cache_clear()
        card_runtime._copies.cache_clear()

    def channel_env(self, pref: str) -> dict[str, str]:
        return {**super().channel_env(pref), "LOCAL_RECORDS_TABLE_NAME": f"jukinet-local-{pref}"}

    def counter_env(self, pref: str) -> dict[str, str]:
        return {**self._base(), "AWS_REGION": REGION, "CARD_TABLE_NAME": f"jukinet-cards-{pref}",
                "CARD_EVENT_KEY_ID": self.keys[f"events-{pref}"], "MUNICIPALITIES": ",".join(TIER_MUNICIPALITIES[pref]),
                "COUNTER_ROLE_PREFIX": "jukinet-counter-", "ACCOUNT_ID": ACCOUNT, "API_ENDPOINT_IDS": ENDPOINT,
                "CHANNEL_QUEUE_URL": self.queues[f"muni-{pref}"], "CHANNEL_KEY_ID": self.keys[f"channel-{pref}"],
                "CHANNEL_KEY_ALIAS_PREFIX": "alias/jukinet/channel/", "MUNICIPALITY_NAMES_FILE": self.names_file,
                "POWERTOOLS_SERVICE_NAME": "jukinet-card"}

    # --- the home municipality's records, as its CS appends them ------------------------------
    def live(self, municipality: str, person: Person, *, reason: str = "11", day: str = "2002-04-01",
             previous_address: str | None = "東京都千代田区霞が関1-1", domicile: bool = True) -> None:
        self.sequence += 1
        raw = {"municipality": municipality, "sequence": self.sequence, "resident_code": person.code,
               "reason": reason, "change_date": day, "notice_time": f"{day}T01:00:00Z"}
        if reason not in ("21", "22", "23"):
            raw["facts"] = {"resident_code": person.code, "name": {"kanji": person.kanji, "kana": person.kana},
                            "birth_date": person.birth, "sex": person.sex,
                            "address": f"長野県{NAMES.get(municipality, '')}大字鶴賀1番地",
                            "individual_number": "123456789018"}
        notice = UpdateNotice.from_dict(raw)
        local = None
        if reason not in ("21", "22", "23"):
            local = LocalRecordFields(
                household_number=person.household, householder_name=person.householder,
                relationship=Relationship(person.relationship) if person.relationship else None,
                resident_since=notice.change_date, address_since=notice.change_date,
                notification_date=notice.change_date, previous_address=previous_address,
                registered_domicile="長野県長野市大字鶴賀緑町1613番地" if domicile else None,
                family_register_head="信濃一郎" if domicile else None)
        LocalRecords(f"jukinet-local-{pref_of(municipality)}", municipality).append([(notice, local)])
        ResidentRegister(f"jukinet-cards-{pref_of(municipality)}").record([notice])

    # --- the counter API -------------------------------------------------------------------------
    def call(self, method: str, path: str, body: object = None, *, at: str = MATSUMOTO,
             who: str | None = None) -> tuple[int, dict]:
        event = {
            "resource": path, "path": path, "httpMethod": method, "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {"Content-Type": ["application/json"]}, "queryStringParameters": None,
            "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
            "body": None if body is None else json.dumps(body), "isBase64Encoded": False,
            "requestContext": {"accountId": ACCOUNT, "apiId": "api1", "stage": "v1", "resourcePath": path,
                               "httpMethod": method, "path": f"/v1{path}", "requestId": str(uuid.uuid4()),
                               "requestTimeEpoch": 0, "protocol": "HTTP/1.1",
                               "identity": {"userArn": who or counter(at), "accountId": ACCOUNT,
                                            "sourceIp": "10.0.0.1", "vpceId": ENDPOINT, "accessKey": "ASIA0",
                                            "userAgent": "test", "caller": None}}}
        with environment(self.counter_env(pref_of(at))):
            card_runtime.runtime().clock = lambda: self.now
            if body is not None or method == "GET":
                with contextlib.suppress(Exception):
                    copies = card_runtime.copies()
                    copies.clock = copies.reader.clock = lambda: self.now
            with contextlib.redirect_stdout(io.StringIO()):
                response = card_api.handler(event, Context())
        return response["statusCode"], json.loads(response["body"]) if response["body"] else {}

    def ask(self, applicant: str, home: str, *, at: str = MATSUMOTO, proof: dict | None = None,
            members: list[str] | None = None, whole: bool = False, who: str | None = None) -> tuple[int, dict]:
        body = {"resident_code": applicant, "home_municipality": home,
                "proof": proof if proof is not None else {"document": {"type": "driving_licence",
                                                                       "number": "123456789012", "clerk": "窓口 花子"}}}
        if members:
            body["members"] = members
        if whole:
            body["whole_household"] = True
        return self.call("POST", "/v1/wide-area-copies", body, at=at, who=who)

    def outcome(self, correlation: str, *, at: str = MATSUMOTO, who: str | None = None) -> tuple[int, dict]:
        return self.call("GET", f"/v1/wide-area-copies/{correlation}", at=at, who=who)

    def copy(self, applicant: str, home: str, **kwargs) -> dict:
        at = kwargs.get("at", MATSUMOTO)
        status, body = self.ask(applicant, home, **kwargs)
        assert status == 202, body
        self.pump()
        status, result = self.outcome(body["correlation"], at=at)
        assert status == 200, result
        return result

    def card(self, person: Person, home: str) -> VirtualCard:
        chip = VirtualCard("1234")
        status, body = self.call("POST", "/v1/cards", {"resident_code": person.code, "card_type": "B",
                                                       "public_key": chip.public_key}, at=home)
        assert status == 201, body
        chip.serial = body["serial"]
        return chip

    def authenticate(self, chip: VirtualCard, *, at: str = MATSUMOTO) -> str:
        status, challenge = self.call("POST", "/v1/challenges", {"serial": chip.serial}, at=at)
        assert status == 200, challenge
        signature = base64.b64encode(chip.sign(challenge["message"].encode(), "1234")).decode()
        status, body = self.call("POST", "/v1/authentications", {"challenge_id": challenge["challenge_id"],
                                                                 "signature": signature}, at=at)
        assert status == 200, body
        return challenge["challenge_id"]

"""The municipality tier's local records (adapters/local_records.py) through the CS: append-only,
the record derived on read, households, batched writes — and the leak test: the local fields
never reach a prefecture or national table, queue or dead-letter queue."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import gzip
import json
import random

import pytest

from jukinet.adapters.identity_store import IdentityStore
from jukinet.adapters.kms import DataKeys
from jukinet.adapters.local_records import BY_HOUSEHOLD, LocalRecordConflict, LocalRecords, entry_item
from jukinet.domain.export import parse_export
from jukinet.domain.codes import LocalGovernmentCode, ResidentCode
from jukinet.domain.local_record import Relationship
from jukinet.handlers import municipality_cs

from .exports import WITH_LOCAL_COLUMNS, csv_bytes, person, row
from .harness import MUNICIPALITIES, PREFECTURE, utc

TABLE = "jukinet-muni-200000-local-records"
NAGANO, MATSUMOTO, _ = MUNICIPALITIES
NOW = utc(2003, 1, 20, 1, 0)


@pytest.fixture
def local(pipeline, monkeypatch):
    pipeline.ddb.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "household")],
        GlobalSecondaryIndexes=[{"IndexName": BY_HOUSEHOLD, "Projection": {"ProjectionType": "KEYS_ONLY"},
                                 "KeySchema": [{"AttributeName": "household", "KeyType": "HASH"},
                                               {"AttributeName": "pk", "KeyType": "RANGE"}]}])
    plain = pipeline.cs_env
    monkeypatch.setattr(pipeline, "cs_env", lambda code: {**plain(code), "LOCAL_RECORD_TABLE_NAME": TABLE})
    municipality_cs._runtime.cache_clear()
    return pipeline


def export(rows: list[dict[str, str]]) -> bytes:
    return csv_bytes(rows, columns=WITH_LOCAL_COLUMNS)


def household(no: str, head: dict[str, str], relationship: str, **more: str) -> dict[str, str]:
    return {"household_number": no, "householder_name": head["name_kanji"], "relationship": relationship, **more}


def family(seed: int = 7):
    rng = random.Random(seed)
    head, spouse, child = (person(rng) for _ in range(3))
    return head, spouse, child


def scan(ddb, table: str) -> list[dict]:
    items, kwargs = [], {}
    while True:
        page = ddb.scan(TableName=table, **kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


# --- adapter: append-only, the record derived on read, households ---------------------------------

def test_the_cs_appends_each_change_and_the_current_record_is_derived(local):
    head, spouse, child = family()
    rows = [
        row(head, "転入", "2003-01-06") | household("0000123", head, "世帯主", resident_since="2003-01-06",
                                                    address_since="2003-01-06", notification_date="2003-01-10",
                                                    previous_address="東京都千代田区霞が関1-1",
                                                    registered_domicile="長野県長野市", family_register_head=head["name_kanji"]),
        row(spouse, "転入", "2003-01-06") | household("0000123", head, "妻"),
        row(child, "転入", "2003-01-06") | household("0000123", head, "子"),
    ]
    assert local.drop(NAGANO, "in.csv", export(rows))["files"][0]["sent"] == 3
    store = LocalRecords(TABLE, NAGANO)
    record = store.current(head["resident_code"])
    assert record.status == "active" and record.facts["address"] == head["address"]
    assert (record.local.household_number, record.local.relationship, record.local.previous_address) == (
        "0000123", Relationship.HEAD, "東京都千代田区霞が関1-1")
    assert [m.resident_code for m in store.household("0000123")] == [
        head["resident_code"], spouse["resident_code"], child["resident_code"]]

    # The child forms a household of their own; the spouse dies: the household now is the head alone.
    moved = {**child, "address": "長野県長野市大字南長野5番地"}
    later = [row(moved, "転居", "2003-01-15") | household("0000456", moved, "01", previous_address=child["address"]),
             row(spouse, "死亡", "2003-01-16")]
    local.drop(NAGANO, "later.csv", export(later), now=NOW + dt.timedelta(days=1))
    assert [m.resident_code for m in store.household("0000123")] == [head["resident_code"]]
    assert [m.resident_code for m in store.household("0000456")] == [child["resident_code"]]
    dead = store.current(spouse["resident_code"])
    assert dead.status == "deleted" and dead.local.relationship is Relationship.WIFE  # the 除票 keeps its values
    history = store.history(child["resident_code"])
    assert [e.reason.label_ja for e in history] == ["転入", "転居"]
    assert history[0].local.household_number == "0000123"  # the first entry is still there, unchanged
    # Another municipality's records are its own: 松本市 sees none of 長野市's.
    assert LocalRecords(TABLE, MATSUMOTO).current(head["resident_code"]) is None


def test_a_retried_file_appends_nothing_and_nothing_is_ever_overwritten(local):
    head, spouse, _ = family(3)
    rows = [row(head, "転入", "2003-01-06") | household("9", head, "世帯主"),
            row(spouse, "転入", "2003-01-06") | household("9", head, "妻")]
    local.drop(NAGANO, "a.csv", export(rows))
    first = sorted(scan(local.ddb, TABLE), key=lambda i: i["pk"]["S"])
    assert len(first) == 2
    # The CS dies after storing, before finishing the file: its retry sends and appends again.
    result = parse_export(export(rows), municipality=LocalGovernmentCode(NAGANO), notice_time=NOW, filename="a.csv")
    notices = [dataclasses.replace(n, sequence=i + 1) for i, (_, n) in enumerate(result.notices)]
    changes = list(zip(notices, [result.local_fields.get(r) for r, _ in result.notices], strict=True))
    store = LocalRecords(TABLE, NAGANO)
    outcome = store.append(changes)
    assert (outcome.written, outcome.already) == (0, 2)
    assert sorted(scan(local.ddb, TABLE), key=lambda i: i["pk"]["S"]) == first
    # Different content under a stored key (a bug, or an insider's replay with other values) is refused.
    forged = dataclasses.replace(changes[0][1], household_number="666")
    with pytest.raises(LocalRecordConflict):
        store.append([(notices[0], forged)])
    assert sorted(scan(local.ddb, TABLE), key=lambda i: i["pk"]["S"]) == first


def test_a_code_change_ends_the_old_codes_record(local):
    head, _, _ = family(5)
    local.drop(NAGANO, "in.csv", export([row(head, "転入", "2003-01-06") | household("1", head, "世帯主")]))
    new_code = ResidentCode.generate(random.Random(99)).value
    changed = {**head, "resident_code": new_code}
    local.drop(NAGANO, "cc.csv", export([row(changed, "住民票コード変更", "2003-01-12",
                                             previous_resident_code=head["resident_code"]) | household("1", changed, "世帯主")]),
               now=NOW + dt.timedelta(hours=2))
    store = LocalRecords(TABLE, NAGANO)
    old = store.current(head["resident_code"])
    assert (old.status, old.replaced_by) == ("code_changed", new_code)
    assert store.current(new_code).status == "active"
    assert [m.resident_code for m in store.household("1")] == [new_code]


def test_a_1000_row_file_takes_ten_requests_on_the_local_record_table(local, monkeypatch):
    rng = random.Random(11)
    people = [person(rng) for _ in range(1000)]
    rows = [row(p, "転入", "2003-01-06") | household(str(i // 4 + 1), people[i - i % 4], "世帯主" if i % 4 == 0 else "子")
            for i, p in enumerate(people)]
    outcomes = []
    append = LocalRecords.append
    monkeypatch.setattr(LocalRecords, "append", lambda self, changes: outcomes.append(append(self, changes)) or
                        outcomes[-1])
    local.calls.clear()
    assert local.drop(NAGANO, "big.csv", export(rows))["files"][0]["sent"] == 1000
    [outcome] = outcomes
    assert (outcome.written, outcome.requests) == (1000, 10)  # 100 conditional puts each (was 1,000 PutItems)
    # the CS's own two (reserve and finish the file in the state table) and the ten: nothing else writes
    assert local.calls["dynamodb:TransactWriteItems"] == 2 + 10
    assert local.calls["dynamodb:PutItem"] == 0 and local.calls["dynamodb:BatchWriteItem"] == 0
    assert len(scan(local.ddb, TABLE)) == 1000


def test_items_keep_their_municipality_in_the_key_the_iam_condition_reads():
    """The key format that infra/components/local_records.py's LeadingKeys condition assumes."""
    from infra.naming import local_record_partition_prefix

    result = parse_export(export([row(person(random.Random(1)), "転入", "2003-01-06")]),
                          municipality=LocalGovernmentCode(NAGANO), notice_time=NOW, filename="x.csv")
    item = entry_item(NAGANO, result.notices[0][1], None)
    assert item["pk"]["S"].startswith(local_record_partition_prefix(NAGANO))
    assert not item["pk"]["S"].startswith(local_record_partition_prefix(MATSUMOTO))


# --- the leak test ---------------------------------------------------------------------------------

def _texts(value, out: list[str]) -> None:
    """Every string in ``value``, looking through base64, gzip and JSON (how payloads travel)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _texts(k, out)
            _texts(v, out)
    elif isinstance(value, list):
        for v in value:
            _texts(v, out)
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        if data[:2] == b"\x1f\x8b":
            _texts(gzip.decompress(data), out)
            return
        try:
            _texts(data.decode("utf-8"), out)
        except UnicodeDecodeError:
            pass
    elif isinstance(value, str):
        out.append(value)
        stripped = value.strip()
        if stripped[:1] in "{[":
            try:
                _texts(json.loads(stripped), out)
            except ValueError:
                pass
        if len(value) >= 16:
            try:
                _texts(base64.b64decode(value, validate=True), out)
            except (binascii.Error, ValueError):
                pass


def _peek(sqs, queue: str) -> list[dict]:
    """Every message in the queue, left in it (made visible again)."""
    got_all = []
    while True:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                  MessageAttributeNames=["All"]).get("Messages", [])
        if not got:
            break
        got_all += got
    for m in got_all:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return [{"body": m["Body"], "attributes": m.get("MessageAttributes", {})} for m in got_all]


MARKERS = {  # a value of each local field that appears nowhere else
    "household_number": "4242424242", "householder_name": "秘密　世帯主", "relationship": "縁故者",
    "resident_since": "1999-09-09", "address_since": "1999-10-10", "notification_date": "2003-01-11",
    "previous_address": "前住所テスト県秘密市1番", "registered_domicile": "本籍テスト県秘密郡2番",
    "family_register_head": "秘密　筆頭者",
}


def test_local_fields_never_reach_the_prefecture_or_national_tables_or_queues(local):
    rng = random.Random(21)
    people = [person(rng) for _ in range(40)]
    for p in people:
        p["birth_date"] = "1960-01-01"
    rows = [row(p, "転入", "2003-01-06") | MARKERS for p in people[:30]]
    # also updates and deletions, and one row the prefecture dead-letters (its sender may not change it)
    rows += [row(p, "転居", "2003-01-07") | MARKERS | {"previous_address": "前住所テスト県秘密市1番"}
             for p in people[:5]]
    rows += [row(p, "転出", "2003-01-08") | {"notification_date": "2003-01-11"} for p in people[5:8]]
    local.drop(NAGANO, "leak.csv", export(rows))
    # 松本市 claims a resident 長野市 holds: refused into the prefecture's dead-letter queue.
    local.drop(MATSUMOTO, "claim.csv", export([row(people[10], "死亡", "2003-01-09") |
                                                {"notification_date": "2003-01-11"}]),
               now=NOW + dt.timedelta(hours=1))

    carried: list[str] = []
    for m in _peek(local.sqs, local.pref_queue):
        _texts(m, carried)
    local.drain("prefecture")
    for m in _peek(local.sqs, local.national_queue):
        _texts(m, carried)
    local.drain("national")
    for queue in (local.pref_queue, local.national_queue, local.pref_dlq, local.national_dlq):
        for m in _peek(local.sqs, queue):
            _texts(m, carried)
    assert local.dead_letters("prefecture"), "the refused claim should be in the prefecture's DLQ"

    stored: list[str] = []
    for table in (local.pref_table, local.national_table):
        _texts(scan(local.ddb, table), stored)
    pref = IdentityStore(local.pref_table, DataKeys(local.keys["data-prefecture"],
                                                    {"tier": "prefecture", "prefecture": PREFECTURE}))
    nat = IdentityStore(local.national_table, DataKeys(local.keys["data-national"], {"tier": "national"}))
    for store in (pref, nat):  # the sealed facts too, opened with the tier's key
        for p in people[:30]:
            for entry in store.history(p["resident_code"]):
                _texts(json.dumps(dataclasses.asdict(entry), default=str, ensure_ascii=False), stored)

    # The scan sees what travels and what is stored: the basic facts are there in clear once decoded …
    assert any(people[0]["name_kana"] in t for t in carried)
    assert any(people[0]["address"] in t for t in stored)
    # … and the local fields were stored where they belong.
    kept = LocalRecords(TABLE, NAGANO).current(people[0]["resident_code"]).local.given()
    assert kept == {**MARKERS, "relationship": Relationship.RELATIVE.value}
    # None of them anywhere upward.
    for value in MARKERS.values():
        assert not [t for t in carried if value in t], value
        assert not [t for t in stored if value in t], value

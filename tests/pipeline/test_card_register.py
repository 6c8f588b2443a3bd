"""The CS records each resident's latest notice in the tier's card table (the register the
counter API checks issuance against, and whose death/deletion/code-change entries end cards)."""

from __future__ import annotations

import datetime as dt

from jukinet.adapters.card_store import CardStore
from jukinet.handlers import municipality_cs

from .exports import csv_bytes, move_ins, row

CARDS = "jukinet-muni-200000-cards"


def _with_card_table(pipeline, monkeypatch) -> None:
    pipeline.ddb.create_table(
        TableName=CARDS, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}])
    plain = pipeline.cs_env
    monkeypatch.setattr(pipeline, "cs_env", lambda code: {**plain(code), "CARD_TABLE_NAME": CARDS})
    municipality_cs._runtime.cache_clear()


def test_the_cs_records_its_residents_and_the_notices_that_end_cards(pipeline, monkeypatch):
    _with_card_table(pipeline, monkeypatch)
    people, rows = move_ins(30, date="2003-01-06")
    pipeline.drop("202011", "in.csv", csv_bytes(rows))
    store = CardStore(CARDS)
    first = store.register(people[0]["resident_code"])
    assert first is not None and first.active and first.municipality == "202011"
    pipeline.drop("202011", "death.csv", csv_bytes([row(people[0], "死亡", "2003-01-19")]),
                  now=pipeline.now + dt.timedelta(days=1))
    dead = store.register(people[0]["resident_code"])
    assert not dead.active and dead.ended == "death" and dead.ended_at is not None
    assert store.register(people[1]["resident_code"]).active


def test_an_older_notice_arriving_later_does_not_overwrite_the_register(pipeline, monkeypatch):
    _with_card_table(pipeline, monkeypatch)
    people, _ = move_ins(1)
    pipeline.drop("202029", "in.csv", csv_bytes([row(people[0], "転入", "2003-01-10")]))
    # 長野市's move-out dated before 松本市's move-in arrives afterwards: the resident stays 松本市's.
    pipeline.drop("202011", "out.csv", csv_bytes([row(people[0], "転出", "2003-01-08")]),
                  now=pipeline.now + dt.timedelta(hours=1))
    state = CardStore(CARDS).register(people[0]["resident_code"])
    assert state.active and state.municipality == "202029"

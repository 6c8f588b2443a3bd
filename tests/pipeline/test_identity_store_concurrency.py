"""The ordering rule held by the identity store itself (moto DynamoDB with jukinet's
corrections: atomic conditional writes, transactions), under concurrent writers and
at-least-once delivery: any split of any arrival order, duplicates included, into batches
applied by concurrent threads ends in the state ``domain.ordering.converge`` computes.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from jukinet.adapters import aws
from jukinet.adapters.identity_store import TRANSACTION_ITEMS, IdentityStore
from jukinet.adapters.kms import DataKeys
from jukinet.domain.notice import UpdateNotice
from jukinet.domain.ordering import converge
from tests.domain.strategies import resident_stories

from .test_identity_store import _notices

REGION = "ap-northeast-1"
STORED_AT = dt.datetime(2003, 1, 20, 1, 0, tzinfo=dt.UTC)


class _World:
    def __init__(self) -> None:
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.key = boto3.client("kms", region_name=REGION).create_key(Description="data")["KeyMetadata"]["Arn"]
        self.tables = 0

    def store(self) -> IdentityStore:
        self.tables += 1
        name = f"identity-{self.tables}"
        self.ddb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])
        return IdentityStore(name, DataKeys(self.key, {"tier": "prefecture"}))


@pytest.fixture(scope="module")
def world() -> Iterator[_World]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", REGION)):
            env.setenv(name, value)
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        aws.reset_clients()
        with mock_aws():
            yield _World()
        aws.reset_clients()


@st.composite
def _deliveries(draw: st.DrawFn, notices: list[UpdateNotice]) -> list[list[UpdateNotice]]:
    """The notices in any order, some delivered again (at-least-once), cut into 1–5 batches."""
    arrival = list(draw(st.permutations(notices)))
    for again in draw(st.lists(st.sampled_from(notices), max_size=len(notices))):
        arrival.insert(draw(st.integers(0, len(arrival))), again)
    cuts = sorted(draw(st.lists(st.integers(0, len(arrival)), max_size=4)))
    bounds = [0, *cuts, len(arrival)]
    return [arrival[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if arrival[a:b]]


def _concurrently(store: IdentityStore, batches: list[list[UpdateNotice]]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(len(batches))

    def run(batch: list[UpdateNotice]) -> None:
        try:
            start.wait()
            store.apply(batch, now=STORED_AT, ledgers=True)
        except BaseException as exc:  # noqa: BLE001 — reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@settings(deadline=None, max_examples=40)
@given(story=resident_stories(), data=st.data())
def test_concurrent_batches_with_redeliveries_converge_to_the_rule_in_the_store(world, story, data):
    store = world.store()
    _concurrently(store, data.draw(_deliveries(story.notices)))
    reference = converge(story.notices)
    for code, record in reference.items():
        current = store.current(code)
        assert current is not None and current.notice_id == record.current.notice_id, code
        assert current.status == record.current.status.value
        assert [e.notice_id for e in store.history(code)] == [e.notice_id for e in record.ordered_history()]
    sequences: dict[str, set[int]] = defaultdict(set)
    months: dict[str, Counter[str]] = defaultdict(Counter)
    for n in {n.notice_id: n for n in story.notices}.values():
        sequences[n.municipality.value].add(n.sequence)
        months[n.municipality.value][n.reporting_month] += 1
    for municipality, seqs in sequences.items():
        ledger = store.ledger(municipality)
        assert all(ledger.covers(s) for s in seqs)
        assert dict(ledger.stored) == dict(months[municipality])  # each notice counted once


def test_a_batch_wider_than_one_transaction_is_stored_whole_in_few_requests(world):
    store = world.store()
    notices = _notices(1) + [n for i in range(130) for n in _notices_for(i)]
    calls: Counter[str] = Counter()
    original = aws.client("dynamodb").transact_write_items

    def counted(**kwargs):
        calls["transact"] += 1
        assert len(kwargs["TransactItems"]) <= TRANSACTION_ITEMS
        return original(**kwargs)

    ddb = aws.client("dynamodb")
    ddb.transact_write_items = counted
    try:
        result = store.apply(notices, now=STORED_AT, ledgers=True)
    finally:
        del ddb.transact_write_items
    assert len(result.stored) == len(notices) and result.current_changed == len(notices)
    # 131 history + 131 current items + 1 ledger: three transactions
    assert calls["transact"] == 3
    assert store.ledger("202011").stored_in("2003-01") == len(notices)


def test_ledger_changed_by_another_writer_between_read_and_write_is_read_again(world):
    store = world.store()
    first, second = _notices(2)
    snapshot = store.read([second], ["202011"])
    store.apply([first], now=STORED_AT, ledgers=True)  # the ledger moves on after the snapshot
    result = store.apply([second], now=STORED_AT, snapshot=snapshot, ledgers=True)
    assert result.ledgers["202011"].runs == ((1, 2),)
    assert store.ledger("202011").stored_in("2003-01") == 2
    assert store.current(second.resident_code.value).notice_id == second.notice_id


def test_current_state_overtaken_after_the_read_is_dropped_not_overwritten(world):
    store = world.store()
    old, new = _notices(2)
    snapshot = store.read([old])  # sees no current state
    store.apply([new], now=STORED_AT)
    result = store.apply([old], now=STORED_AT, snapshot=snapshot)
    assert (len(result.stored), result.current_changed, result.stale) == (1, 0, 1)
    assert store.current(old.resident_code.value).notice_id == new.notice_id


def _notices_for(i: int) -> list[UpdateNotice]:
    """One move-in of a distinct resident, sequence i + 2 of 202011."""
    import random

    from .exports import person

    p = person(random.Random(10_000 + i))
    return [UpdateNotice.from_dict({
        "municipality": "202011", "sequence": i + 2, "resident_code": p["resident_code"], "reason": "11",
        "change_date": "2003-01-10", "notice_time": "2003-01-20T01:00:00Z",
        "facts": {"resident_code": p["resident_code"], "name": {"kanji": p["name_kanji"], "kana": p["name_kana"]},
                  "birth_date": p["birth_date"], "sex": p["sex"], "address": p["address"]}})]

"""Issue 13: what a provision costs in DynamoDB requests (decision 0023), and the guarantees
the fewer requests keep — counted, not timed (the times are bench/run.py's).

- a single-code look-up: the state snapshot read together with the identity items, one
  transaction, and the delivery confirmation last (3; decisions 0034 and 0056);
- a look-up of 100 codes and a batch chunk: at most one request per 10 records;
- a chain appended with a stale head (another writer got there first, or the hint was
  rewound) continues at the real end and never forks;
- the scan window written with a stale slot is judged again with the other request's codes;
- the monthly limit, reached by someone else between the snapshot and the transaction,
  refuses and nothing is written.
"""

from __future__ import annotations

import datetime as dt

import pytest

from jukinet.adapters import aws
from jukinet.adapters.provision_log import LimitReached, StatCount, head_key
from jukinet.adapters.recipient_state import RecipientState
from jukinet.domain.agreements import ProvisionFunction
from jukinet.domain.codes import ResidentCode
from jukinet.domain.provision import ProvisionRecord, verify_chain
from jukinet.services import provision_batch

from .test_api_threats import _codes, _entries, _upload


def _dynamodb(calls) -> dict[str, int]:
    return {k.removeprefix("dynamodb."): v for k, v in calls.items() if k.startswith("dynamodb.") and v}


def _snapshot(state: RecipientState, now: dt.datetime, codes: list[str]):
    """What a look-up of ``codes`` by pension reads of the state table (decision 0056)."""
    keys = state.snapshot_keys("pension", "2026-11", now, codes)
    return state.snapshot_of(aws.batch_get_all(state.state_table, keys), "pension", "2026-11", now, codes)


def _record(code: str, at: dt.datetime, k: int = 0) -> ProvisionRecord:
    return ProvisionRecord(resident_code=code, provision_id=f"P-20261126120000-{k:016x}", at=at,
                           recipient_id="pension", recipient_name="年金", affair_code="PAY", affair="pay",
                           function=ProvisionFunction.LOOKUP, fields=frozenset({"resident_code"}),
                           provider="national", outcome="provided")


def test_a_single_code_look_up_makes_three_dynamodb_requests_the_confirmation_last(world):
    r = world.add_residents(1)[0]
    world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [r.code]})  # a warm start
    before = world.calls.copy()
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [r.code]})
    assert status == 200 and body["results"][0]["outcome"] == "provided"
    assert _dynamodb(world.calls - before) == {"BatchGetItem": 1, "TransactWriteItems": 1, "PutItem": 1}
    assert world.log().answered([body["provision_id"]]) == {body["provision_id"]}
    entries = _entries(world, r.code)
    assert [e.n for e in entries] == [1, 2] and not verify_chain(r.code, entries)


def test_a_look_up_of_100_codes_makes_at_most_one_request_per_10_records(world):
    rs = world.add_residents(100)
    before = world.calls.copy()
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": _codes(rs)})
    assert status == 200 and {a["outcome"] for a in body["results"]} == {"provided"}
    requests = _dynamodb(world.calls - before)
    assert sum(requests.values()) <= 10, requests
    assert all(len(_entries(world, r.code)) == 1 for r in rs)


def test_a_batch_chunk_makes_at_most_one_request_per_10_rows(world, monkeypatch):
    monkeypatch.setattr(provision_batch, "CHUNK_ROWS", 200)
    rs = world.add_residents(200)
    _upload(world, "in/pension/a.csv", _codes(rs))
    status, body = world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/a.csv"})
    assert status == 202
    world.run_batch_queue(max_rounds=1)  # the split
    before = world.calls.copy()
    world.run_batch_queue()  # the chunk
    requests = _dynamodb(world.calls - before)
    assert sum(requests.values()) <= 200 / 10, requests
    assert world.jobs_status(body["job_id"])["status"] == "complete"
    assert all(len(_entries(world, r.code)) == 1 for r in rs)


@pytest.mark.parametrize("stale", ["another_writer_first", "head_rewound"])
def test_a_stale_head_never_forks_the_chain(world, stale):
    code = ResidentCode.from_body("1234567890").value
    log = world.log()
    with world.environment():
        log.append([_record(code, world.now, 1)])
        heads = log.read_heads([code])  # what a look-up's snapshot read
        log.append([_record(code, world.now, 2)])  # another writer, in between
        if stale == "head_rewound":  # an insider rewinds the hint: the log, not the hint, decides
            world.ddb.delete_item(TableName=world.state_table, Key=head_key(code))
            heads = {}
        log.append([_record(code, world.now, 3)], heads=heads)
    entries = _entries(world, code)
    assert [e.n for e in entries] == [1, 2, 3] and not verify_chain(code, entries)
    assert [e.content["provision_id"][-1] for e in entries] == ["1", "2", "3"]


def test_the_scan_window_is_judged_again_when_another_request_wrote_it_meanwhile(world):
    state = RecipientState(world.state_table)
    walk = [ResidentCode.from_body(f"{b:010d}").value for b in range(5_000_000_000, 5_000_000_012)]
    with world.environment():
        snapshot = _snapshot(state, world.now, walk[6:])
        state.observe("pension", world.now, codes=walk[:6], answers=6, not_found=6)  # concurrent, first
        write = state.scan_write("pension", world.now, snapshot, codes=walk[6:], answers=6, not_found=6)
        assert write.signal.window_answers == 6  # judged on the slot as read: alone
        world.log().append([], extras=[write])
        again = _snapshot(state, world.now, [])
    assert write.signal.window_answers == 12 and write.signal.near == 6 and write.signal.suspect
    assert again.current.answers == 12 and len(again.current.bodies) == 12


def test_a_limit_reached_between_snapshot_and_transaction_refuses_and_writes_nothing(world):
    code = ResidentCode.from_body("2234567890").value
    log = world.log()
    with world.environment():
        charge = StatCount(world.state_table, "2026-11", "pension", "SMALL", "lookup", 1, requested=1, limit=3)
        log.reserve("2026-11", "pension", "SMALL", 3, 3)  # another request took the month's room
        with pytest.raises(LimitReached) as refused:
            log.append([_record(code, world.now)], extras=[charge])
    assert refused.value.reserved == 3
    assert _entries(world, code) == []
    assert "Item" not in world.ddb.get_item(TableName=world.state_table, Key=head_key(code))


# --- aws.batch_get_tables: two tables' keys read together (decision 0056) ------------------------


def test_keys_of_two_tables_are_read_together_at_most_100_keys_a_request(world):
    from jukinet.adapters.identity_store import IdentityStore
    from jukinet.adapters.recipient_state import RecipientState

    rs = world.add_residents(60)
    unknown = [ResidentCode.from_body(f"{b:010d}").value for b in range(8_000_000_000, 8_000_000_020)]
    codes = _codes(rs) + unknown
    state_keys = RecipientState.snapshot_keys("pension", "2026-11", world.now, codes)  # 4 + 80 heads
    identity_keys = IdentityStore.current_keys(codes + codes[:10])  # duplicates are read once
    with world.environment():
        before = world.calls.copy()
        read = aws.batch_get_tables({world.state_table: state_keys, world.identity_table: identity_keys})
        requests = _dynamodb(world.calls - before)
        alone = (aws.batch_get_all(world.state_table, state_keys), aws.batch_get_all(world.identity_table,
                                                                                         identity_keys))
    assert requests == {"BatchGetItem": 2}  # 164 distinct keys: 100 + 64
    key = lambda i: (i["pk"]["S"], i["sk"]["S"])  # noqa: E731
    assert sorted(map(key, read[world.state_table])) == sorted(map(key, alone[0]))
    assert sorted(map(key, read[world.identity_table])) == sorted(map(key, alone[1]))
    assert {i["pk"]["S"][2:] for i in read[world.identity_table]} == set(_codes(rs))


def test_keys_left_unprocessed_are_asked_again_per_table(monkeypatch):

    asked: list[dict] = []

    class Throttled:
        """Answers the first request's second table as unprocessed (DynamoDB's partial answer)."""

        def batch_get_item(self, RequestItems):  # noqa: N803 - botocore's name
            asked.append(RequestItems)
            answer = {"Responses": {t: [k for k in spec["Keys"]] for t, spec in RequestItems.items()}}
            if len(asked) == 1:
                answer["Responses"].pop("b")
                answer["UnprocessedKeys"] = {"b": RequestItems["b"]}
            return answer

    monkeypatch.setattr(aws, "client", lambda service: Throttled())
    a = [{"pk": {"S": f"a{i}"}} for i in range(3)]
    b = [{"pk": {"S": f"b{i}"}} for i in range(2)]
    assert aws.batch_get_tables({"a": a, "b": b}) == {"a": a, "b": b}
    assert [sorted(r) for r in asked] == [["a", "b"], ["b"]]
    assert all(spec["ConsistentRead"] for r in asked for spec in r.values())
    assert aws.batch_get_tables({"a": [], "b": []}) == {"a": [], "b": []}

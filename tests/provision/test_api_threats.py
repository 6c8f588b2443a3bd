"""Attacks on the provision API (issue 12, items 7, 8, 10–15), each written as the attack it
stops: it succeeded on the code before the control, and fails now. The threat table in
``docs/security.md`` ("Threats on the provision API") names each test."""

from __future__ import annotations

import copy
import datetime as dt
import json

from jukinet.adapters.recipient_state import isolation_key
from jukinet.domain import envelope
from jukinet.domain.codes import ResidentCode
from jukinet.domain.provision import RefusalCode
from jukinet.handlers import provision_api

from .world import AGREEMENTS, PREFECTURE_ENDPOINTS, agreement

PREF = {"who": "pref-own-use", "vpce": "vpce-0f000000000000200"}


def _codes(rs):
    return [r.code for r in rs]


def _entries(world, code):
    entries, _ = world.log().chain(code)
    return entries


def _upload(world, key: str, lines: list[str]) -> None:
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=("\n".join(lines) + "\n").encode())


def _agreements(world, change) -> None:
    """Rewrite the deployment's agreements (what a new synth and deploy does) and let the
    functions start cold with them."""
    doc = copy.deepcopy(AGREEMENTS)
    change({r["id"]: r for r in doc["recipients"]})
    (world.root / "agreements.json").write_text(json.dumps(doc), encoding="utf-8")
    provision_api._runtime.cache_clear()


def _metrics(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def _metric_sum(out: str, name: str) -> float:
    return sum(sum(doc[name]) if isinstance(doc[name], list) else doc[name] for doc in _metrics(out) if name in doc)


def _walk(start: int, count: int, step: int = 1) -> list[str]:
    return [ResidentCode.from_body(f"{b:010d}").value for b in range(start, start + count * step, step)]


# --- 7. emergency isolation holds against the agency's principals ------------------------------


def _isolate(world, recipient: str) -> None:
    """What ``jukinet isolate agency`` writes beside disabling the key (tests/ops, tests/e2e)."""
    world.ddb.put_item(TableName=world.state_table, Item={**isolation_key(recipient), "isolated": {"BOOL": True},
                                                          "record": {"S": f"agency/{recipient}"}})


def test_isolated_agency_is_refused_with_another_recipients_key_and_raises_the_alarm_metric(world, capfd):
    r = world.add_residents(1)[0]
    _isolate(world, "pension")
    capfd.readouterr()
    # The gateway let the call through (another recipient's enabled key): the handler refuses
    # the agency's own principal.
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [r.code]})
    assert status == 403 and body["error"]["code"] == RefusalCode.RECIPIENT_ISOLATED.name
    out = capfd.readouterr().out
    assert _metric_sum(out, "IsolatedRecipientCalls") == 1 and _metric_sum(out, "UnauthorisedAttempts") == 1
    assert _entries(world, r.code) == []
    # Every route, and other recipients are still served.
    status, _ = world.call("POST", "/v1/searches", {"affair_code": "PAY", "kana_name": r.kana,
                                                    "birth_date": r.birth_date})
    assert status == 403
    status, _ = world.call("POST", "/v1/lookups", {"affair_code": "BANK", "resident_codes": [r.code]}, who="fsa")
    assert status == 200


def _opened(monkeypatch) -> list[int]:
    """Counts every envelope opened (a resident's facts decrypted)."""
    opened: list[int] = []
    original = envelope.Sealer.open_facts
    monkeypatch.setattr(envelope.Sealer, "open_facts",
                        lambda self, *a, **k: opened.append(1) or original(self, *a, **k))
    return opened


def test_an_isolated_agencys_look_up_decrypts_nothing_and_leaves_no_trace_of_a_provision(world, monkeypatch):
    """Decision 0056: the look-up reads the residents' items in the same request as the
    isolation mark. The attack: an isolated agency keeps calling, hoping the facts that were
    read reach it somehow — in the answer, in a log entry, in a confirmation. They must stay
    ciphertext and be dropped: nothing opened, no data key unwrapped, nothing written."""
    r = world.add_residents(1)[0]
    _isolate(world, "pension")
    opened = _opened(monkeypatch)
    before = world.calls.copy()
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [r.code]})
    assert status == 403 and body["error"]["code"] == RefusalCode.RECIPIENT_ISOLATED.name
    calls = world.calls - before
    assert opened == [] and calls["kms.Decrypt"] == 0
    assert calls["dynamodb.TransactWriteItems"] == 0 and calls["dynamodb.PutItem"] == 0
    assert r.code not in json.dumps(body) and r.kana not in json.dumps(body)
    assert _entries(world, r.code) == []


def test_a_look_up_past_the_monthly_limit_decrypts_nothing_whether_or_not_its_codes_exist(world, monkeypatch):
    """Decision 0056 keeps 0023's rule: the limit is decided on the snapshot, on the codes
    *requested*. The attack: an agency at its limit probes which codes exist by what a refusal
    costs. Existing and unknown codes are refused alike, with the same requests, nothing opened."""
    rs = world.add_residents(4)
    status, _ = world.call("POST", "/v1/lookups", {"affair_code": "SMALL", "resident_codes": _codes(rs[:3])})
    assert status == 200  # the month's limit of 3 is reached
    opened = _opened(monkeypatch)
    costs = []
    for code in (rs[3].code, _walk(7_100_000_000, 1)[0]):
        before = world.calls.copy()
        status, body = world.call("POST", "/v1/lookups", {"affair_code": "SMALL", "resident_codes": [code]})
        assert status == 429 and body["error"]["code"] == "VOLUME_LIMIT_EXCEEDED"
        costs.append(+(world.calls - before))
    assert costs[0] == costs[1] and costs[0]["dynamodb.BatchGetItem"] == 1 and not costs[0]["kms.Decrypt"]
    assert opened == [] and _entries(world, rs[3].code) == []


def test_batch_chunks_of_an_isolated_agency_provide_nothing(world):
    rs = world.add_residents(3)
    _upload(world, "in/pension/a.csv", _codes(rs))
    _, body = world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/a.csv"})
    world.run_batch_queue(max_rounds=1)  # the split: chunks are queued
    _isolate(world, "pension")
    world.run_batch_queue()
    with world.environment():  # the agency itself cannot ask any more: the operators read the job
        job = provision_api.runtime()[1].jobs.get(body["job_id"]).to_status()
    assert job["status"] == "failed" and job["error"]["code"] == "RECIPIENT_ISOLATED"
    assert all(_entries(world, r.code) == [] for r in rs)


# --- 8. the monthly record limit holds for batches and look-ups together -------------------------


def test_monthly_limit_holds_across_concurrent_batch_jobs_and_look_ups(world):
    rs = world.add_residents(9)
    for k in range(3):  # limit 3 a month: three jobs of three rows, split side by side
        _upload(world, f"in/pension/{k}.csv", _codes(rs[3 * k:3 * k + 3]))
        status, _ = world.call("POST", "/v1/batches", {"affair_code": "SMALL", "input_key": f"in/pension/{k}.csv"})
        assert status == 202
    world.run_batch_queue()
    provided = sum(len(_entries(world, r.code)) for r in rs)
    assert provided == 3
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "SMALL", "resident_codes": [rs[8].code]})
    assert status == 429 and body["error"]["code"] == "VOLUME_LIMIT_EXCEEDED"
    assert world.log().statistics("2026-11", ["pension"]) == {("pension", "SMALL", "batch"): 3}


def test_unknown_codes_give_their_reservation_back(world):
    rs = world.add_residents(2)
    unknown = _walk(7_000_000_000, 1)
    status, _ = world.call("POST", "/v1/lookups", {"affair_code": "SMALL", "resident_codes": [rs[0].code, *unknown]})
    assert status == 200
    status, _ = world.call("POST", "/v1/lookups", {"affair_code": "SMALL", "resident_codes": _codes(rs)})
    assert status == 200  # 1 + 2 provided = the limit of 3; the unknown code reserved nothing in the end


# --- 10. a prefecture recipient is scoped to its prefecture by every function --------------------


def _pref_with_search_and_batch(recipients):
    # batch files come through an S3 endpoint the configuration must name (Recipient's rule)
    recipients["pref"]["vpc_endpoint_ids"] = [PREFECTURE_ENDPOINTS["200000"]]
    recipients["pref"]["agreements"].append(agreement("PREFALL", ["own_use", "search", "batch"], [
        "resident_code", "name", "birth_date", "sex", "address", "status"]))


def test_prefecture_search_and_batch_never_reach_another_prefectures_resident(world):
    _agreements(world, _pref_with_search_and_batch)
    ours = world.add_residents(1, seed=3, municipality="202011")[0]
    tokyo = world.add_residents(1, seed=4, municipality="131016")[0]
    status, body = world.call("POST", "/v1/searches", {"affair_code": "PREFALL", "kana_name": tokyo.kana,
                                                       "birth_date": tokyo.birth_date}, **PREF)
    assert status == 200 and body["outcome"] == "not_found" and tokyo.code not in json.dumps(body)
    _, body = world.call("POST", "/v1/searches", {"affair_code": "PREFALL", "kana_name": ours.kana,
                                                  "birth_date": ours.birth_date}, **PREF)
    assert body["outcome"] == "unique"
    _upload(world, "in/pref/b.csv", [ours.code, tokyo.code])
    status, body = world.call("POST", "/v1/batches", {"affair_code": "PREFALL", "input_key": "in/pref/b.csv"}, **PREF)
    assert status == 202, body
    world.run_batch_queue()
    job = world.jobs_status(body["job_id"], **PREF)
    assert job["outcomes"]["provided"] == 1 and job["outcomes"]["not_found"] == 1
    assert _entries(world, tokyo.code) == []


# --- 11. minimisation: exactly the permitted fields, and the log says exactly that ---------------


def _fsa_search_without_code(recipients):
    recipients["fsa"]["agreements"].append(agreement("KYC", ["lookup", "search"], ["name", "address"]))


def test_search_answer_carries_no_resident_code_unless_permitted_and_the_log_matches(world):
    _agreements(world, _fsa_search_without_code)
    r = world.add_residents(1)[0]
    status, body = world.call("POST", "/v1/searches", {"affair_code": "KYC", "kana_name": r.kana,
                                                       "birth_date": r.birth_date}, who="fsa")
    assert status == 200 and body["outcome"] == "unique"
    assert r.code not in json.dumps(body)
    assert set(body["result"]["facts"]) == {"name", "address"}
    (entry,) = _entries(world, r.code)
    assert entry.content["fields"] == ["address", "name"]
    # Permitted, the code is given and recorded among the fields.
    _, body = world.call("POST", "/v1/searches", {"affair_code": "PAY", "kana_name": r.kana,
                                                  "birth_date": r.birth_date})
    assert body["result"]["resident_code"] == r.code
    assert "resident_code" in _entries(world, r.code)[1].content["fields"]


def test_deletion_is_not_revealed_without_the_status_field(world):
    alive, dead = world.add_residents(2)
    world.delete_resident(dead, sequence=100)
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "BANK",
                                                      "resident_codes": [alive.code, dead.code]}, who="fsa")
    assert status == 200
    by_code = {x["resident_code"]: x for x in body["results"]}
    assert by_code[dead.code] == {"resident_code": dead.code, "outcome": "not_found", "facts": {}}
    assert _entries(world, dead.code) == []
    assert set(by_code[alive.code]["facts"]) == {"resident_code", "name", "address"}


# --- 12. queued batch chunks are re-authorised as they run --------------------------------------


def test_batch_chunks_stop_when_the_agreement_is_narrowed_after_submission(world):
    rs = world.add_residents(3)
    _upload(world, "in/pension/n.csv", _codes(rs))
    _, body = world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/n.csv"})
    world.run_batch_queue(max_rounds=1)  # split; the chunks wait in the queue

    def narrow(recipients):
        alive = next(a for a in recipients["pension"]["agreements"] if a["affair_code"] == "ALIVE")
        alive["fields"] = ["resident_code"]  # status and change information withdrawn

    _agreements(world, narrow)
    world.run_batch_queue()
    job = world.jobs_status(body["job_id"])
    assert job["status"] == "failed" and job["error"]["code"] == "FIELD_NOT_PERMITTED"
    assert all(_entries(world, r.code) == [] for r in rs)


def test_batch_chunks_stop_when_the_agreement_expires_while_queued(world):
    rs = world.add_residents(2)
    _upload(world, "in/pension/e.csv", _codes(rs))
    _, body = world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/e.csv"})
    world.run_batch_queue(max_rounds=1)
    world.now = dt.datetime(2099, 4, 1, 3, 0, tzinfo=dt.UTC)  # the agreement ended on 2099-03-31
    world.run_batch_queue()
    world.now = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)
    job = world.jobs_status(body["job_id"])
    assert job["status"] == "failed" and job["error"]["code"] == "AGREEMENT_NOT_IN_FORCE"
    assert all(_entries(world, r.code) == [] for r in rs)


# --- 13. the batch input is pinned at submission --------------------------------------------------


def test_batch_reads_the_version_submitted_not_a_larger_replacement(world):
    world.s3.put_bucket_versioning(Bucket=world.bucket, VersioningConfiguration={"Status": "Enabled"})
    rs = world.add_residents(6)
    _upload(world, "in/pension/p.csv", _codes(rs[:2]))
    _, body = world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/p.csv"})
    _upload(world, "in/pension/p.csv", _codes(rs))  # replaced after the size check
    world.run_batch_queue()
    job = world.jobs_status(body["job_id"])
    assert job["status"] == "complete" and job["rows"] == 2
    assert all(_entries(world, r.code) == [] for r in rs[2:])


def test_batch_whose_unversioned_input_was_replaced_fails_without_providing(world):
    rs = world.add_residents(4)
    _upload(world, "in/pension/u.csv", _codes(rs[:1]))
    _, body = world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/u.csv"})
    _upload(world, "in/pension/u.csv", _codes(rs))
    world.run_batch_queue()
    job = world.jobs_status(body["job_id"])
    assert job["status"] == "failed" and job["error"]["code"] == "INVALID_REQUEST"
    assert "no longer the object accepted" in job["error"]["message"]
    assert all(_entries(world, r.code) == [] for r in rs)


# --- 14. own use: an out-of-scope resident costs what an unknown code costs ----------------------


def test_own_use_out_of_scope_resident_is_not_decrypted_and_costs_what_an_unknown_code_costs(world, monkeypatch):
    tokyo = world.add_residents(1, seed=4, municipality="131016")[0]
    unknown = _walk(6_000_000_000, 1)[0]
    opened = []
    original = envelope.Sealer.open_facts
    monkeypatch.setattr(envelope.Sealer, "open_facts",
                        lambda self, *a, **k: opened.append(1) or original(self, *a, **k))
    costs = []
    for code in (tokyo.code, unknown):
        before, n = world.calls.copy(), len(opened)
        status, body = world.call("POST", "/v1/lookups", {"affair_code": "PASSPORT", "resident_codes": [code]},
                                  **PREF)
        assert status == 200 and body["results"][0]["outcome"] == "not_found"
        calls = world.calls - before
        costs.append((len(opened) - n, calls["kms.Decrypt"], calls["dynamodb.BatchGetItem"], +calls))
    # Nothing opened, no key unwrapped; the same requests, one by one: the state snapshot read
    # together with the identity items (one BatchGetItem, decision 0056), the scan window's
    # transaction.
    assert costs[0] == costs[1]
    assert costs[0][:3] == (0, 0, 1)


# --- 15. scans are detected per recipient across requests ---------------------------------------


def test_a_walk_through_consecutive_codes_one_per_request_is_detected(world, capfd):
    capfd.readouterr()
    for code in _walk(5_000_000_000, 12):
        world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [code]})
    out = capfd.readouterr().out
    assert _metric_sum(out, "SequentialCodes") >= 10
    assert _metric_sum(out, "ScanSuspected") >= 1


def test_a_walk_through_every_second_code_is_detected(world, capfd):
    capfd.readouterr()
    for code in _walk(5_100_000_000, 12, step=2):
        world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [code]})
    assert _metric_sum(capfd.readouterr().out, "ScanSuspected") >= 1


def test_many_unknown_codes_of_one_recipient_across_requests_are_a_suspected_scan(world, capfd):
    world.add_residents(30)  # a busy deployment: other recipients' answers must not dilute the ratio
    codes = [ResidentCode.from_body(f"{b:010d}").value for b in range(1_000_000_000, 9_000_000_000, 350_000_000)]
    capfd.readouterr()
    for code in codes[:20]:
        world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [code]})
    out = capfd.readouterr().out
    assert _metric_sum(out, "SequentialCodes") == 0  # far apart: only the ratio gives it away
    assert _metric_sum(out, "ScanSuspected") >= 1


def test_a_recipient_looking_up_its_own_residents_is_not_suspected(world, capfd):
    rs = world.add_residents(40)
    capfd.readouterr()
    for k in range(0, 40, 4):
        world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": _codes(rs[k:k + 4])})
    assert _metric_sum(capfd.readouterr().out, "ScanSuspected") == 0


def test_a_batch_walking_through_codes_is_detected(world, capfd):
    _upload(world, "in/pension/w.csv", _walk(5_200_000_000, 12, step=3))
    world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/w.csv"})
    capfd.readouterr()
    world.run_batch_queue()
    assert _metric_sum(capfd.readouterr().out, "ScanSuspected") >= 1


def test_a_client_retrying_the_same_codes_is_not_a_scan(world, capfd):
    rs = world.add_residents(10)
    capfd.readouterr()
    for _ in range(4):  # the same request four times (timeouts on the client's side)
        world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": _codes(rs)})
    out = capfd.readouterr().out
    assert _metric_sum(out, "SequentialCodes") == 0 and _metric_sum(out, "ScanSuspected") == 0

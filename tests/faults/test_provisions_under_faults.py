"""Agency traffic (look-ups and searches) while the provision API's AWS calls fail.

Every provision answered is in the log exactly once per resident it gave facts about. A
request that failed *after* its log transaction committed (``lost_response``/``kill_after``
on it: the kill point "after a provision-log entry, before the answer") is in the log
although no answer left: the log over-records, never misses — such entries are counted
exactly here (one per failed-after-commit request) and are marked: their provision has no
delivery confirmation (decision 0034), so ``jukinet verify`` lists them and a resident's
disclosure shows them as "delivery unconfirmed", while every answered one is confirmed.
``jukinet verify`` finds every chain intact under races.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest

from jukinet.adapters.provision_log import SealArchive
from embedded_aws.faults import FunctionKilled, Rule
from jukinet.services.provision import DELIVERED, UNCONFIRMED, disclosure
from jukinet_ops.provision import verify_log

DAY = "2026-11-26"  # the provision world's now: 2026-11-26 12:00 JST
RETRIES = 3  # an agency's client retries a 5xx or a dropped connection

CASES = [
    ("state-read-throttled", Rule("dynamodb", "BatchGetItem", "throttle", function="provision", rate=0.3)),
    ("data-key-kms-internal", Rule("kms", "Decrypt", "server_error", function="provision", at=(1, 2))),
    ("log-write-throttled", Rule("dynamodb", "TransactWriteItems", "throttle", function="provision", rate=0.3)),
    ("log-written-answer-lost", Rule("dynamodb", "TransactWriteItems", "lost_response", function="provision",
                                     at=(2, 5, 9))),
    ("killed-after-log-before-answer", Rule("dynamodb", "TransactWriteItems", "kill_after", function="provision",
                                            at=(3, 7))),
    ("search-killed-after-log", Rule("dynamodb", "UpdateItem", "kill", function="provision", rate=0.5)),
]
# A failure after the log transaction committed: the entry stays, the answer never left.
AFTER_COMMIT = {"lost_response", "kill_after"}


def traffic(world, faults, *, requests: int = 24, seed: int = 5):
    """Look-ups of 1–3 residents and searches, each retried by the agency on a failure.
    Returns (answered: provision id → codes given facts, failed attempts after a commit)."""
    residents = world.add_residents(12, seed=seed)
    rng = random.Random(seed)
    answered: dict[str, set[str]] = {}
    for i in range(requests):
        if i % 4 == 3:
            r = rng.choice(residents)
            path, body = "/v1/searches", {"affair_code": "PAY", "kana_name": r.kana, "birth_date": r.birth_date}
        else:
            path = "/v1/lookups"
            body = {"affair_code": "PAY", "resident_codes": [r.code for r in rng.sample(residents, rng.randint(1, 3))]}
        for _ in range(RETRIES):
            try:
                with faults.armed("provision"):
                    status, answer = world.call("POST", path, body)
            except (FunctionKilled, Exception):  # noqa: BLE001 — the function died or raised
                continue  # API Gateway answers 502; the agency retries
            if status == 200:
                if path == "/v1/lookups":
                    codes = {r["resident_code"] for r in answer["results"] if r.get("outcome") == "found"}
                else:
                    codes = {world_code(residents, body)} if answer["outcome"] == "unique" else set()
                answered[answer["provision_id"]] = codes
                break
            assert status >= 500, answer  # a fault is never answered as a refusal
    return residents, answered


def world_code(residents, body) -> str:
    return next(r.code for r in residents if r.kana == body["kana_name"] and r.birth_date == body["birth_date"])


def logged(world, residents) -> Counter:
    """(provision id, resident code) → how many log entries."""
    log = world.log()
    out: Counter = Counter()
    for r in residents:
        entries, _ = log.chain(r.code)
        for e in entries:
            if e.content.get("kind") != "disclosure":
                out[(e.content["provision_id"], r.code)] += 1
    return out


@pytest.mark.parametrize(("name", "template"), CASES, ids=[c[0] for c in CASES])
def test_provisions_under_one_fault_are_logged_once_and_chains_verify(national, faults, name, template):
    rule = faults.add(dataclasses.replace(template))
    residents, answered = traffic(national, faults)
    assert rule.hits, "the fault never fired"
    entries = logged(national, residents)
    # Every answer that gave facts is logged exactly once per resident.
    for provision_id, codes in answered.items():
        for code in codes:
            assert entries[(provision_id, code)] == 1, (provision_id, code)
    assert all(count == 1 for count in entries.values()), "an entry was written twice"
    # Logged but never answered: exactly the requests that failed after their log commit.
    unanswered = {pid for pid, _ in entries} - set(answered)
    if rule.kind in AFTER_COMMIT:
        assert len(unanswered) == rule.hits
    elif rule.operation == "UpdateItem":  # a search killed after its log entry, before the answer
        assert len(unanswered) <= rule.hits
    else:
        assert unanswered == set(), "nothing is logged that was not answered"
    # ... and what is logged but was not answered is marked: no delivery confirmation.
    log = national.log()
    logged_ids = {pid for pid, _ in entries}
    confirmed = log.answered(logged_ids)
    assert confirmed == logged_ids - unanswered, "an answered provision unconfirmed, or an unanswered one confirmed"
    national.seal(DAY)
    report = verify_log(log, [DAY], [r.code for r in residents], national.public_key(),
                        now=national.now, archive=SealArchive(national.seal_archive))
    assert report.ok, report.problems  # the marking changes no entry: chains and seals still verify
    assert set(report.unconfirmed) == {(pid, code) for pid, code in entries if pid in unanswered}
    # A resident's disclosure still shows every logged provision, the unanswered ones marked.
    for r in residents:
        shown = disclosure(log, r.code, national.now.date().replace(day=1), national.now.date(),
                           public_key=national.public_key(), now=national.now)["provisions"]
        assert {p["provision_id"]: p["delivery"] for p in shown} == {
            pid: (UNCONFIRMED if pid in unanswered else DELIVERED) for pid, code in entries if code == r.code}

"""A small month of notices through the three tiers while one kind of AWS fault hits one
function at one point: every notice ends stored once at each tier or dead-lettered with its
reason, every current state is what ``domain.ordering.converge`` says, and the
reconciliation balances (``jukinet reconcile --strict`` would exit 0).

Each fault fires a bounded number of times (fewer than the queues' ``maxReceiveCount``), as a
transient AWS problem does; the last test lets one persist, which the redrive policy ends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zlib

import pytest

from embedded_aws.faults import Rule

from ..pipeline.exports import csv_bytes, move_ins
from .world import MAX_RECEIVES, Drop, Month, check

# (id, rule): what fails, where, how often. Kill points are the next AWS call after the point.
CASES = [
    # --- the municipality CS -------------------------------------------------------------
    ("cs-reserve-throttled", Rule("dynamodb", "TransactWriteItems", "throttle", function="cs", times=2)),
    ("cs-reserve-response-lost", Rule("dynamodb", "TransactWriteItems", "lost_response", function="cs", at=(1, 4))),
    ("cs-reserve-race", Rule("dynamodb", "TransactWriteItems", "race", function="cs", at=(1, 3))),
    ("cs-killed-after-reserving-before-sending", Rule("kms", "Sign", "kill", function="cs", at=(1, 3))),
    ("cs-kms-sign-internal-error", Rule("kms", "Sign", "server_error", function="cs", times=3)),
    ("cs-kms-sign-throttled", Rule("kms", "Sign", "throttle", function="cs", rate=0.5, times=4)),
    ("cs-killed-after-sending-before-finishing", Rule("sqs", "SendMessageBatch", "kill_after", function="cs",
                                                      at=(1, 3))),
    ("cs-send-timeout", Rule("sqs", "SendMessageBatch", "timeout", function="cs", times=2)),
    ("cs-report-write-5xx", Rule("s3", "PutObject", "server_error", function="cs", times=2)),
    ("cs-finish-response-lost", Rule("dynamodb", "TransactWriteItems", "lost_response", function="cs", at=(2,))),
    # --- the prefecture --------------------------------------------------------------------
    ("pref-read-timeout", Rule("dynamodb", "BatchGetItem", "timeout", function="prefecture", times=2)),
    ("pref-write-throttled", Rule("dynamodb", "TransactWriteItems", "throttle", function="prefecture", times=3)),
    ("pref-write-5xx", Rule("dynamodb", "TransactWriteItems", "server_error", function="prefecture", times=2)),
    ("pref-write-response-lost", Rule("dynamodb", "TransactWriteItems", "lost_response", function="prefecture",
                                      at=(1, 3))),
    ("pref-write-race", Rule("dynamodb", "TransactWriteItems", "race", function="prefecture", at=(1, 2, 4))),
    ("pref-data-key-kms-internal", Rule("kms", "GenerateDataKey", "server_error", function="prefecture", times=2)),
    ("pref-public-key-throttled", Rule("kms", "GetPublicKey", "throttle", function="prefecture", times=2)),
    ("pref-killed-after-storing-before-forwarding", Rule("kms", "Sign", "kill", function="prefecture", at=(1, 2))),
    ("pref-forward-kms-throttled", Rule("kms", "Sign", "throttle", function="prefecture", times=2)),
    ("pref-forward-5xx", Rule("sqs", "SendMessageBatch", "server_error", function="prefecture", times=2)),
    ("pref-killed-after-forwarding", Rule("sqs", "SendMessageBatch", "kill_after", function="prefecture",
                                          at=(1, 2))),
    ("pref-delivered-twice-at-once", Rule("sqs", "ReceiveMessage", "duplicate", function="prefecture:event-source",
                                          rate=0.6)),
    # --- the national tier -----------------------------------------------------------------
    ("national-write-throttled", Rule("dynamodb", "TransactWriteItems", "throttle", function="national", times=3)),
    ("national-killed-after-storing", Rule("dynamodb", "TransactWriteItems", "kill_after", function="national",
                                           at=(1, 2))),
    ("national-write-race", Rule("dynamodb", "TransactWriteItems", "race", function="national", at=(1, 2))),
    ("national-kms-internal", Rule("kms", "*", "server_error", function="national", times=2)),
    ("national-delivered-twice-at-once", Rule("sqs", "ReceiveMessage", "duplicate",
                                              function="national:event-source", rate=0.6)),
]


@pytest.mark.parametrize(("name", "template"), CASES, ids=[c[0] for c in CASES])
def test_a_month_under_one_fault_loses_and_doubles_nothing(tiers, faults, name, template):
    rule = faults.add(dataclasses.replace(template))  # a fresh count of calls per test
    month = Month.generate(seed=zlib.crc32(name.encode()), intruders=1)
    tiers.play(month)
    assert rule.hits, "the fault never fired: the test would prove nothing"
    outcome = check(tiers)
    assert outcome.problems == []
    assert (outcome.lost, outcome.duplicated, outcome.wrong_current) == (0, 0, 0)
    assert outcome.uncounted_dead == {}, "nothing may reach the DLQ without its reason"
    assert outcome.sent == month.notices and not tiers.unfinished
    for row in tiers.reconciliation().values():
        assert row.balanced, row.problems  # jukinet reconcile --strict exits 0


def test_dead_letter_path_killed_between_the_dlq_and_the_ledger_counts_once(tiers, faults):
    """Kill point in the dead-letter path: the refused notice is in the DLQ, the function dies
    before its ledger counts it; the redelivery sends it to the DLQ again (two copies, same
    reason) but the ledger counts it once (its marker)."""
    faults.add(Rule("sqs", "SendMessage", "kill_after", function="prefecture", at=(1,)))
    month = Month.generate(seed=3, intruders=2)
    tiers.play(month)
    assert faults.fired
    outcome = check(tiers)
    assert (outcome.lost, outcome.duplicated, outcome.wrong_current) == (0, 0, 0), outcome.problems
    assert outcome.dead_lettered["prefecture"] >= 1
    assert all(r.balanced for r in tiers.reconciliation().values())


def test_killed_between_history_and_ledger_transactions_of_a_large_message(tiers, faults):
    """Kill point "after the history write, before the ledger update": a message of 150
    notices needs four transactions (history first, ledgers last); the function dies before
    the second (history of the first 100 stored), then before the second of the next delivery."""
    _, rows = move_ins(150, seed=5)
    faults.add(Rule("dynamodb", "TransactWriteItems", "kill", function="prefecture", at=(2, 4)))
    tiers.play(Month([Drop("202011", "big.csv", csv_bytes(rows), dt.datetime(2003, 1, 7, 1, tzinfo=dt.UTC))]))
    assert faults.rules[0].hits == 2 and tiers.kills["prefecture"] == 2
    outcome = check(tiers)
    assert (outcome.sent, outcome.lost, outcome.duplicated, outcome.wrong_current) == (150, 0, 0, 0)
    assert tiers.reconciliation()["202011"].balanced


def test_a_fault_that_persists_ends_in_the_dlq_by_redrive_policy_and_reconcile_names_it(tiers, faults):
    """A fault that outlasts ``maxReceiveCount`` receives: the queue's redrive policy moves the
    message to the DLQ *without* a jukinet reason. Nothing is lost — it is there, whole — but
    the row does not balance (``reconcile --strict`` exits 1) by exactly its notices until an
    operator redrives it once the cause is fixed (issue 17, part 3)."""
    faults.add(Rule("kms", "GenerateDataKey", "server_error", function="prefecture", rate=1.0))
    month = Month.generate(seed=4, residents=6, weeks=1)
    tiers.play(month)
    assert faults.rules[0].hits >= MAX_RECEIVES
    outcome = check(tiers)
    assert outcome.lost == 0 and outcome.duplicated == 0 and outcome.wrong_current == 0
    assert outcome.stored["prefecture"] == 0
    assert outcome.uncounted_dead["prefecture"] == month.notices
    rows = tiers.reconciliation()
    assert sum(r.sent - r.stored_prefecture - r.dead_lettered_prefecture for r in rows.values()) == month.notices
    assert not all(r.balanced for r in rows.values())

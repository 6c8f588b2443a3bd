"""A seeded random soak: every fault kind at once, on every function, over a month of about
2,000 notices (CI). The longer run, by hand, prints what fired and the outcome::

    JUKINET_FAULT_SOAK_NOTICES=20000 JUKINET_FAULT_SOAK_SEED=7 \
        .venv/bin/pytest -s -p no:cacheprovider tests/faults/test_soak.py

Faults here are not bounded: a batch can fail ``maxReceiveCount`` times and be moved to the
DLQ by the queue's redrive policy (without a jukinet reason, until part 3's redrive). So the
assertion is: nothing lost, nothing stored twice, no wrong current state, and every row's
shortfall is exactly what sits in the DLQ without a reason.
"""

from __future__ import annotations

import os
from collections import Counter

from embedded_aws.faults import FaultInjector, Rule

from .world import FaultyPipeline, Month, check

NOTICES = int(os.environ.get("JUKINET_FAULT_SOAK_NOTICES", "2000"))
SEED = int(os.environ.get("JUKINET_FAULT_SOAK_SEED", "2003"))


def soak_rules(rate: float = 0.03) -> list[Rule]:
    """Every kind, on every function's calls: errors at ``rate`` per call, deaths ten times
    rarer (a death redelivers the whole batch of ten messages, each with several calls: at
    ``rate`` every invocation would die and everything would end in the DLQ — which is what
    the persistent-fault test shows)."""
    death = rate / 10
    return [
        Rule("dynamodb", "*", "throttle", rate=rate),
        Rule("dynamodb", "TransactWriteItems", "race", rate=rate * 2),
        Rule("dynamodb", "TransactWriteItems", "lost_response", rate=rate / 2),
        Rule("dynamodb", "*", "server_error", rate=rate / 2),
        Rule("kms", "*", "server_error", rate=rate),  # KMSInternalException
        Rule("kms", "*", "throttle", rate=rate),
        Rule("kms", "Sign", "kill", rate=death * 5),  # CS: after reserving; prefecture: after storing
        Rule("sqs", "SendMessageBatch", "kill_after", rate=death * 5),
        Rule("sqs", "SendMessage", "timeout", rate=rate),
        Rule("dynamodb", "TransactWriteItems", "kill", rate=death),
        Rule("s3", "*", "server_error", rate=rate),
        Rule("sqs", "ReceiveMessage", "duplicate", rate=0.25),
    ]


def soak_month(notices: int, seed: int) -> Month:
    residents = max(12, int(notices / 2.35))  # each resident: an entry, then ~1.35 notices of changes
    return Month.generate(seed, residents=residents, weeks=3, changes_per_week=residents // 2,
                          intruders=max(1, notices // 200))


def run_soak(faults: FaultInjector, tiers: FaultyPipeline, notices: int, seed: int):
    for rule in soak_rules():
        faults.add(rule)
    month = soak_month(notices, seed)
    tiers.play(month, run_each=False)
    return month, check(tiers)


def test_seeded_soak_of_every_fault_loses_doubles_and_corrupts_nothing(tiers, faults):
    faults.random.seed(SEED)
    month, outcome = run_soak(faults, tiers, NOTICES, SEED)
    print(f"\nsoak: seed {SEED}, {outcome.sent} notices sent, {sum(faults.fired.values())} faults fired "
          f"({', '.join(f'{k}: {v}' for k, v in sorted(Counter(k for _, _, k in faults.fired.elements()).items()))}); "
          f"kills {dict(tiers.kills)}; lost {outcome.lost}, duplicated {outcome.duplicated}, wrong current state "
          f"{outcome.wrong_current}; waiting in a DLQ for redrive {outcome.uncounted_dead}; "
          f"stale DLQ copies {outcome.stale_dead_copies}")
    assert sum(faults.fired.values()) >= 10, faults.fired
    assert outcome.problems == []
    assert (outcome.lost, outcome.duplicated, outcome.wrong_current) == (0, 0, 0)
    assert outcome.sent == month.notices - sum(d.data.count(b"\r\n") - 1 for d in tiers.unfinished)
    rows = tiers.reconciliation().values()
    # Each row's shortfall is exactly what the redrive policy moved to the DLQ without a reason.
    short_pref = sum(r.sent - r.stored_prefecture - r.dead_lettered_prefecture for r in rows)
    short_national = sum(r.stored_prefecture - r.stored_national - r.dead_lettered_national for r in rows)
    assert short_pref == outcome.uncounted_dead.get("prefecture", 0)
    assert short_national == outcome.uncounted_dead.get("national", 0)
    # A gap is a sequence number some dead letter without a reason carries (its message died
    # five times after storing the rest: the skip of a notice refused upstream is recorded
    # only when a delivery completes) — a redrive closes it; otherwise the row balances.
    for tier, gaps in (("prefecture", "gaps_prefecture"), ("national", "gaps_national")):
        for r in rows:
            for first, last in getattr(r, gaps):
                for sequence in range(first, last + 1):
                    assert f"{r.municipality}-{sequence:012d}" in outcome.in_redrive[tier], (tier, r.problems)

"""The three tiers (``tests/pipeline/harness.Pipeline``, moto in-process) driven the way
Lambda drives them while AWS misbehaves (``embedded_aws.faults``), a month of notices to
run through them, and the checks that nothing was lost, doubled or left wrong.

Driving: a CS invocation that fails or dies is invoked again (Lambda's asynchronous retries;
past three attempts, the operator dropping the file again — the CS resumes the file it
reserved). A tier's batch that fails or dies is not deleted: SQS delivers it again, and after
``maxReceiveCount`` (5) receives its redrive policy moves it to the DLQ.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import random
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from jukinet.adapters import aws
from jukinet.adapters.cs_state import CsState
from jukinet.domain.export import parse_export
from jukinet.domain.codes import LocalGovernmentCode
from jukinet.domain.message import Payload, SignedMessage
from jukinet.domain.notice import UpdateNotice
from jukinet.domain.ordering import converge, events_for
from jukinet.domain.reconciliation import ReconciliationRow
from jukinet.handlers import national_processor, prefecture_processor
from embedded_aws.faults import FaultInjector, FunctionKilled
from jukinet_ops.reconcile import TierTables, reconcile

from ..pipeline.exports import csv_bytes, person, row
from ..pipeline.harness import MUNICIPALITIES, REGION, Context, Pipeline, environment

MONTH = "2003-01"
MAX_RECEIVES = 5  # the harness queues' maxReceiveCount
CS_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and two retries


@dataclass
class Drop:
    municipality: str
    name: str
    data: bytes
    when: dt.datetime


@dataclass
class Month:
    """A month of a few municipalities' register changes as export files, in drop order:
    move-ins, births, moves within, moves between municipalities (転出 at the old, 転入 at the
    new, the same day), name changes and deaths — every notice one a tier must accept."""

    drops: list[Drop] = field(default_factory=list)

    @classmethod
    def generate(cls, seed: int, residents: int = 12, weeks: int = 3, changes_per_week: int = 6,
                 intruders: int = 0) -> Month:
        """``intruders``: that many 転居 sent in the second week by a municipality that does not
        hold the resident (refused into the DLQ as ``not_holder`` — or, if it sorts before the
        resident's current state when it arrives, kept in the history only)."""
        rng = random.Random(seed)
        holder: dict[str, str] = {}
        people: dict[str, dict] = {}
        last: dict[str, int] = {}  # the day of each resident's last change
        week_rows: list[dict[str, list[dict]]] = []
        first: dict[str, list[dict]] = defaultdict(list)
        for _ in range(residents):
            p, muni = person(rng), rng.choice(MUNICIPALITIES)
            people[p["resident_code"]], holder[p["resident_code"]] = p, muni
            day = rng.randrange(1, 5)
            last[p["resident_code"]] = day
            first[muni].append(row(p, rng.choice(["転入", "出生"]), f"2003-01-{day:02d}"))
        week_rows.append(first)
        for week in range(1, weeks):
            rows: dict[str, list[dict]] = defaultdict(list)
            start = 7 * week
            for _ in range(changes_per_week):
                alive = sorted(holder)
                if not alive:
                    break
                code = rng.choice(alive)
                day = max(last[code] + 1, start + rng.randrange(0, 5))
                if day > start + 6:
                    continue
                last[code] = day
                date, p, muni = f"2003-01-{day:02d}", people[code], holder[code]
                what = rng.choice(["転居", "転居", "move", "move", "氏名変更", "死亡"])
                if what == "move":
                    new = rng.choice([m for m in MUNICIPALITIES if m != muni])
                    rows[muni].append(row(p, "転出", date))
                    p = people[code] = dict(p, address=f"長野県松本市{rng.randrange(1, 999)}番地")
                    rows[new].append(row(p, "転入", date))
                    holder[code] = new
                elif what == "死亡":
                    rows[muni].append(row(p, "死亡", date))
                    del holder[code]
                else:
                    p = people[code] = dict(p, address=f"長野県長野市{rng.randrange(1, 999)}番地") \
                        if what == "転居" else dict(p, name_kanji="田中　" + p["name_kanji"].split("　")[1],
                                                      name_kana="タナカ　" + p["name_kana"].split("　")[1])
                    rows[muni].append(row(p, what, date))
            if week == 1:
                for _ in range(intruders):
                    code = rng.choice(sorted(holder))
                    other = rng.choice([m for m in MUNICIPALITIES if m != holder[code]])
                    day = last[code] + 1
                    if day <= start + 6:
                        last[code] = day
                        rows[other].append(row(dict(people[code], address="長野県どこか1番地"), "転居",
                                               f"2003-01-{day:02d}"))
            week_rows.append(rows)
        month = cls()
        for week, rows in enumerate(week_rows):
            when = dt.datetime(2003, 1, 7 * week + 7, 1, 0, tzinfo=dt.UTC)  # 10:00 JST, the week's last day
            for muni in sorted(rows):
                month.drops.append(Drop(muni, f"week{week}-{muni}.csv", csv_bytes(rows[muni]), when))
        return month

    @property
    def notices(self) -> int:
        return sum(d.data.count(b"\r\n") - 1 for d in self.drops)


class FaultyPipeline(Pipeline):
    """``Pipeline`` whose functions run armed with a fault injector."""

    def __init__(self, faults: FaultInjector) -> None:
        super().__init__()
        self.faults = faults
        self.dropped: list[Drop] = []
        self.kills: Counter = Counter()
        self.failures: Counter = Counter()  # invocations that raised (not killed)
        self.last_failure: BaseException | None = None
        self.operator_redrops = 0
        self.unfinished: list[Drop] = []

    # --- the municipality tier ---------------------------------------------------------
    def drop_file(self, drop: Drop, attempts: int = 10) -> None:
        self.dropped.append(drop)
        for attempt in range(attempts):
            try:
                with self.faults.armed(f"cs:{drop.municipality}"):
                    self.drop(drop.municipality, drop.name, drop.data, now=drop.when)
                return
            except FunctionKilled:
                self.kills["cs"] += 1
            except Exception:  # noqa: BLE001 — a failed invocation: Lambda invokes again
                pass
            if attempt + 1 >= CS_ATTEMPTS:
                self.operator_redrops += 1
        self.unfinished.append(drop)

    # --- the tiers ---------------------------------------------------------------------
    def drain(self, tier: str, max_rounds: int = 400) -> list[dict]:
        queue, module, env = {
            "prefecture": (self.pref_queue, prefecture_processor, self.prefecture_env()),
            "national": (self.national_queue, national_processor, self.national_env()),
        }[tier]
        for _ in range(max_rounds):
            with self.faults.armed(f"{tier}:event-source"):  # ReceiveMessage may deliver twice
                received = aws.client("sqs").receive_message(
                    QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"])
            messages = received.get("Messages", [])
            if not messages:
                return []
            # Each copy of a message delivered twice goes to its own invocation, at the same time.
            halves = [messages[0::2], messages[1::2]] if len(messages) > 1 and _has_twins(messages) else [messages]
            threads = [threading.Thread(target=self._invoke, args=(tier, queue, module, half))
                       for half in halves if half]
            # One environment for the invocations at once, set and restored here: each thread
            # saving and restoring its own would leave the function's variables in os.environ
            # (POWERTOOLS_METRICS_DISABLED silenced every later test's metrics on this worker).
            with environment(env):
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        raise AssertionError(f"{tier} queue still not empty after {max_rounds} rounds")

    def _invoke(self, tier: str, queue: str, module, messages: list[dict]) -> None:
        event = {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs", "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:x", "awsRegion": REGION,
        } for m in messages]}
        try:
            with self.faults.armed(tier):
                response = module.handler(event, Context())
        except FunctionKilled:
            self.kills[tier] += 1
            return  # nothing deleted: every message comes back
        except Exception as exc:  # noqa: BLE001 — the invocation failed as a whole
            self.failures[tier] += 1
            self.last_failure = exc
            return
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

    def run(self) -> None:
        for _ in range(5):  # a forward can land on the national queue while it drains
            self.drain("prefecture")
            self.drain("national")
            if not any(_depth(self.sqs, q) for q in (self.pref_queue, self.national_queue)):
                return

    def play(self, month: Month, *, run_each: bool = True) -> None:
        """Drop the month's files; with ``run_each``, run the tiers after each week's files
        (the week's notices all processed before the next week's arrive), else once at the end
        (everything in the queues at once: any arrival order)."""
        for i, drop in enumerate(month.drops):
            self.drop_file(drop)
            last_of_week = i + 1 == len(month.drops) or month.drops[i + 1].when != drop.when
            if run_each and last_of_week:
                self.run()
        self.run()

    # --- what happened -------------------------------------------------------------------
    def sent_notices(self) -> list[UpdateNotice]:
        """Every notice the CSs sent, rebuilt exactly as they sent it: each finished file's
        rows with the notice time and sequence numbers its record holds."""
        out: list[UpdateNotice] = []
        for drop in self.dropped:
            data = drop.data
            record = CsState("jukinet-cs-20", drop.municipality).file(hashlib.sha256(data).hexdigest())
            if record is None or record.status != "sent":
                continue
            notice_time = dt.datetime.fromisoformat(record.notice_time.replace("Z", "+00:00"))
            parsed = parse_export(data, municipality=LocalGovernmentCode.parse(drop.municipality),
                                  notice_time=notice_time, filename=drop.name)
            out.extend(dataclasses.replace(n, sequence=record.first_seq + i) for i, (_, n) in enumerate(parsed.notices))
        return list({n.notice_id: n for n in out}.values())

    def dead_letter_bodies(self, tier: str) -> list[dict]:
        """The tier's DLQ, read without removing anything: body, reason (``None`` when the
        queue's redrive policy moved it there after ``maxReceiveCount``) and notice ids."""
        queue = self.pref_dlq if tier == "prefecture" else self.national_dlq
        out, handles = [], []
        while True:
            got = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                           VisibilityTimeout=30).get("Messages", [])
            if not got:
                break
            for m in got:
                handles.append(m["ReceiptHandle"])
                reason = m.get("MessageAttributes", {}).get("jukinet.reason", {}).get("StringValue")
                out.append({"reason": reason, "ids": _notice_ids(m["Body"]), "body": m["Body"],
                            "carried": _notice_ids(m["Body"], skipped=True)})
        for h in handles:  # visible again for the next reader (an operator's redrive)
            self.sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=h, VisibilityTimeout=0)
        return out

    def reconciliation(self) -> dict[str, ReconciliationRow]:
        tables = TierTables("jukinet-cs-20", self.pref_table, self.national_table)
        return {r.municipality: r for r in reconcile(tables, {m: m for m in MUNICIPALITIES}, MONTH)}


def _has_twins(messages: list[dict]) -> bool:
    ids = [m["MessageId"] for m in messages]
    return len(ids) != len(set(ids))


def _depth(sqs, queue: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages",
                                                                     "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attrs["Attributes"].values())


def _notice_ids(body: str, skipped: bool = False) -> set[str]:
    """The notice ids a dead letter holds: a signed message (the CS's, or the prefecture's with
    origins), a single notice, or an origin."""
    import json

    try:
        message = SignedMessage.from_body(body)
    except Exception:  # noqa: BLE001
        raw = json.loads(body)
        if raw.get("kind") == "notice":
            n = raw["notice"]
            return {_id(n)}
        from jukinet.domain.message import Origin

        origin = Origin.from_dict(raw["origin"], "origin")
        payload = Payload.from_bytes(origin.message.payload)
        return {_id(n) for i, n in enumerate(payload.notices) if skipped or i not in origin.skip}
    payload = Payload.from_bytes(message.payload)
    ids = {_id(n) for n in payload.notices}
    for origin in payload.origins:
        inner = Payload.from_bytes(origin.message.payload)
        ids |= {_id(n) for i, n in enumerate(inner.notices) if skipped or i not in origin.skip}
    return ids


def _id(raw: dict) -> str:
    return f"{raw.get('municipality')}-{int(raw.get('sequence') or 0):012d}"


@dataclass
class Outcome:
    """Per tier: notices sent, stored, stored more than once, lost (neither stored nor in the
    DLQ), residents whose current state differs from ``converge``; provision side apart."""

    sent: int = 0
    stored: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    uncounted_dead: dict[str, int] = field(default_factory=dict)  # moved by the redrive policy: no reason
    lost: int = 0
    duplicated: int = 0
    wrong_current: int = 0
    stale_dead_copies: int = 0
    # every notice id a reason-less dead letter carries (those an earlier tier skipped included):
    # what an operator's redrive would bring back
    in_redrive: dict[str, set[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check(p: FaultyPipeline) -> Outcome:
    """Everything the fault suite asserts about the notices, measured."""
    sent = p.sent_notices()
    out = Outcome(sent=len(sent))
    by_id = {n.notice_id: n for n in sent}
    before: set[str] = set()  # dead-lettered at an earlier tier: never reaches this one
    for tier, table in (("prefecture", p.pref_table), ("national", p.national_table)):
        dead = p.dead_letter_bodies(tier)
        dead_ids = set().union(*(d["ids"] for d in dead)) if dead else set()
        out.in_redrive[tier] = set().union(*(d["carried"] for d in dead if d["reason"] is None)) if dead else set()
        stored_ids = _history(table)
        counted_dead = _dead_letter_markers(table)
        expected = [n for n in sent if n.notice_id not in before]
        # Moved by the redrive policy (no reason) and not stored by another delivery of it: the
        # notices an operator's redrive would bring (uncounted until then).
        # A message that died after writing some history can be there too: its notices are
        # in the history but not yet counted, and their residents' current states wait with them.
        waiting = set().union(*(d["ids"] for d in dead if d["reason"] is None)) if dead else set()
        counted = _counted(table, {by_id[i].municipality.value for i in waiting if i in by_id})
        waiting = {i for i in waiting if i in by_id and i not in before
                   and by_id[i].sequence not in counted.get(by_id[i].municipality.value, set())}
        if waiting:
            out.uncounted_dead[tier] = len(waiting)
        waiting_codes = {e.resident_code for i in waiting for e in events_for(by_id[i])}
        out.stored[tier] = len(stored_ids)
        out.dead_lettered[tier] = len(dead_ids & set(by_id))
        out.duplicated += sum(c - 1 for c in stored_ids.values() if c > 1)
        extra = set(stored_ids) - set(by_id)
        if extra:
            out.problems.append(f"{tier}: stored notices no CS sent: {sorted(extra)[:5]}")
        for n in expected:
            if n.notice_id not in stored_ids and n.notice_id not in dead_ids:
                out.lost += 1
                out.problems.append(f"{tier}: {n.notice_id} neither stored nor dead-lettered")
            if n.notice_id in stored_ids and (n.municipality.value, n.sequence) in counted_dead:
                out.duplicated += 1
                out.problems.append(f"{tier}: {n.notice_id} stored and counted as dead-lettered")
            elif n.notice_id in stored_ids and n.notice_id in dead_ids:
                out.stale_dead_copies += 1  # a copy left in the DLQ by a death before counting it
        reference = converge([n for n in expected if n.notice_id in stored_ids])
        currents = _currents(table)
        for code, record in reference.items():
            if code in waiting_codes:
                continue  # behind until the waiting message is redriven
            want = (record.current.notice_id, record.current.status.value) if record.current else None
            if currents.get(code) != want:
                out.wrong_current += 1
                out.problems.append(f"{tier}: {code} current {currents.get(code)} ≠ converge {want}")
        before |= (dead_ids - set(stored_ids)) | waiting
    return out


def _history(table: str) -> Counter:
    """How many history items each notice has under one resident code (a code change writes
    one under the new code and one under the old: each counts once); more than 1 is a notice
    stored twice."""
    items = _scan(table, "begins_with(sk, :h)", {":h": {"S": "H#"}}, "pk, notice_id")
    per_code = Counter((i["pk"]["S"], i["notice_id"]["S"]) for i in items)
    out: Counter = Counter()
    for (_, nid), count in per_code.items():
        out[nid] = max(out[nid], count)
    return out


def _counted(table: str, municipalities: set[str]) -> dict[str, set[int]]:
    """The sequence numbers each municipality's ledger at this tier covers."""
    from jukinet.adapters.identity_store import IdentityStore
    from jukinet.adapters.kms import DataKeys

    store = IdentityStore(table, DataKeys("unused", {}))
    out = {}
    for m in municipalities:
        ledger = store.ledger(m)
        out[m] = {s for first, last in ledger.runs for s in range(first, last + 1)}
    return out


def _dead_letter_markers(table: str) -> set[tuple[str, int]]:
    """(municipality, sequence) of every notice a tier counted as dead-lettered (its marker)."""
    items = _scan(table, "begins_with(pk, :d)", {":d": {"S": "DLQ#"}}, "pk, sk")
    out = set()
    for item in items:
        municipality, _, sequence = item["sk"]["S"].partition("-")
        if sequence.isdigit():
            out.add((municipality, int(sequence)))
    return out


def _currents(table: str) -> dict[str, tuple[str, str]]:
    items = _scan(table, "sk = :c", {":c": {"S": "CURRENT"}}, "pk, notice_id, #s", {"#s": "status"})
    return {i["pk"]["S"][2:]: (i["notice_id"]["S"], i["status"]["S"]) for i in items}


def _scan(table: str, condition: str, values: dict, projection: str, names: dict | None = None) -> list[dict]:
    ddb = aws.client("dynamodb")
    kwargs: dict = {"TableName": table, "FilterExpression": condition, "ExpressionAttributeValues": values,
                    "ProjectionExpression": projection, "ConsistentRead": True}
    if names:
        kwargs["ExpressionAttributeNames"] = names
    items: list[dict] = []
    while True:
        page = ddb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


__all__ = ["MONTH", "Drop", "FaultyPipeline", "Month", "Outcome", "check", "events_for"]

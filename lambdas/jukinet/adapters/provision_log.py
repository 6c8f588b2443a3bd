"""The provision log (提供記録) and the provision state tables.

Provision log table (append-only: the function roles hold PutItem and reads only, with an
explicit Deny of UpdateItem/DeleteItem/BatchWriteItem — ``infra/``):

======================  =================  ===============================================
pk                      sk                 what
======================  =================  ===============================================
``P#<resident code>``   ``E#<n:08d>``      entry ``n`` of the resident's chain: ``content``
                                           (canonical JSON, with ``prev_at``), ``n``,
                                           ``prev``, ``hash``, ``day_shard``/``entry_ref``
                                           (the ``by_day`` index); ``expires_at`` (TTL) is
                                           added by the sealer only, from the sealed day
``SEALS``               ``<period>``       the seal of one hour (``YYYY-MM-DDTHH`` JST):
                                           count, digest, prev (the previous seal's id),
                                           KMS signature — one partition, so the latest
                                           seal is one Query
``SEAL#<period>``       ``PART#<k:05d>``   the period's manifest, gzip of ``ref:hash`` lines
``SEALED#<code>``       ``<period>``       the resident's last entry (n, hash) in that
                                           period's seal: where the chain must reach
======================  =================  ===============================================

Writers (the api and batch functions) may not write ``expires_at`` nor any ``SEAL*`` item;
the sealer may write only ``SEAL*`` items and change only ``expires_at`` (``infra/``).

Provision state table (mutable bookkeeping, never evidence):

=====================  ===================  =============================================
``HEAD#<code>``        ``HEAD``             where the resident's chain ends (a hint: n,
                                            hash, at — never trusted by verification)
``STAT#<yyyy-mm>``     ``<recipient id>``   records provided, ``c#<affair>#<function>``;
                                           per resident's prefecture, ``p#<code>``;
                                           reserved against the monthly limit, ``r#<affair>``
``JOB#<job id>``       ``JOB``              a batch provision job and its progress
``ANSWERED#<prov. id>`` ``ANSWERED``        the answer of that provision left the function
                                            (``at``; TTL as its entries): without it, its
                                            entries are "delivery unconfirmed" (decision 0034)
=====================  ===================  =============================================

Appending is transactional (decision 0023): each resident's entries (Put with
``attribute_not_exists``: an entry is never overwritten by this code) and its head (Put
conditioned on the head as read) go in one ``TransactWriteItems`` of at most 100 actions,
with the month's statistics and a look-up's scan window. The head is only a hint: if another
writer appended meanwhile, the transaction is cancelled, rebuilt on the chain's real end and
sent again, so the chain never forks. IAM authorises a transaction's Put/Update/Delete as
PutItem/UpdateItem/DeleteItem: the writers' Denies hold for it unchanged.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..domain.notice import JST
from ..domain.provision import (
    DAY_SHARDS,
    GENESIS,
    ChainEntry,
    ProvisionRecord,
    day_shard,
    entry_hash,
    entry_ref,
    period_day,
    retention_expiry,
    seal_id,
)
from . import aws

_PARALLEL = 8
_MAX_ATTEMPTS = 25  # a transaction rebuilt after a resident's chain or an extra moved under it
MAX_TX_ACTIONS = 100  # DynamoDB's limit of actions in one TransactWriteItems
MANIFEST_PART_REFS = 4000  # ~84 bytes a line, gzip ~50%: parts stay far below DynamoDB's 400 KB


class LimitReached(Exception):
    """A reservation would pass the agreement's monthly record limit."""

    def __init__(self, reserved: int) -> None:
        super().__init__(f"{reserved} records already reserved")
        self.reserved = reserved


class ChainConflict(RuntimeError):
    """The chains (or extras) of a transaction kept moving under us (``_MAX_ATTEMPTS`` times)."""


class Head(NamedTuple):
    """Where a resident's chain ends: position, hash and time of the last entry."""

    n: int
    hash: str
    at: str | None


class Extra(Protocol):
    """An action sent in the first transaction of an append, beside the entries and heads:
    ``action()`` the TransactWriteItems action (rebuilt for every attempt);
    ``failed(item)`` is told that its condition failed, with the item as it is now
    (``ReturnValuesOnConditionCheckFailure``): it raises to refuse (nothing is written), or
    updates itself for the next attempt."""

    def action(self) -> dict: ...

    def failed(self, item: dict | None) -> None: ...


@dataclass
class _Tail:
    """A resident's append position (n, hash, at) and the head item's ``n`` as last read (the
    head Put's condition; None: no head item)."""

    n: int
    hash: str
    at: str | None
    head_n: int | None

    @classmethod
    def of(cls, head: Head | None) -> _Tail:
        return cls(head.n, head.hash, head.at, head.n) if head else cls(0, GENESIS, None, None)

    def head_moved(self, head: Head | None) -> _Tail:
        """The head item is not the one read: another writer appended (append after it)."""
        if head is not None and head.n > self.n:
            return _Tail(head.n, head.hash, head.at, head.n)
        return _Tail(self.n, self.hash, self.at, head.n if head else None)

    def ended_at(self, end: Head | None) -> _Tail:
        """Position ``n + 1`` is taken: the head hint is behind the chain; append after its end."""
        if end is None or end.n <= self.n:
            raise ChainConflict("an entry put failed although the chain ends before it")
        return _Tail(end.n, end.hash, end.at, self.head_n)


class StatCount:
    """The month's statistics of one recipient (``STAT#<month>`` / recipient) as an extra:
    ``ADD c#<affair>#<function> :provided`` (and ``p#<prefecture>`` per resident's prefecture)
    and, for a look-up, ``ADD r#<affair> :provided``
    on the condition that the *requested* records still fit the limit
    (``r#<affair> <= limit - requested``, decided in the same transaction as the entries, so
    the limit holds exactly across concurrent requests and does not depend on which codes
    exist). A failed condition raises ``LimitReached``."""

    def __init__(self, state_table: str, month: str, recipient: str, affair: str, function: str, provided: int,
                 *, requested: int | None = None, limit: int | None = None,
                 by_prefecture: Mapping[str, int] | None = None) -> None:
        self.state_table, self.month, self.recipient = state_table, month, recipient
        self.affair, self.function, self.provided = affair, function, provided
        self.requested, self.limit = requested, limit
        self.by_prefecture = {p: n for p, n in sorted((by_prefecture or {}).items()) if n}

    def action(self) -> dict:
        names = {"#c": f"c#{self.affair}#{self.function}"}
        values = {":p": {"N": str(self.provided)}}
        adds = ["#c :p"]
        for i, (prefecture, n) in enumerate(self.by_prefecture.items()):
            names[f"#p{i}"], values[f":p{i}"] = f"p#{prefecture}", {"N": str(n)}
            adds.append(f"#p{i} :p{i}")
        update: dict = {"TableName": self.state_table, "Key": stat_key(self.month, self.recipient)}
        if self.limit is not None:
            names["#r"] = f"r#{self.affair}"
            values[":room"] = {"N": str(self.limit - (self.requested or self.provided))}
            update.update(UpdateExpression="ADD " + ", ".join([*adds, "#r :p"]),
                          ConditionExpression="attribute_not_exists(#r) OR #r <= :room",
                          ReturnValuesOnConditionCheckFailure="ALL_OLD")
        else:
            update["UpdateExpression"] = "ADD " + ", ".join(adds)
        return {"Update": {**update, "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}}

    def failed(self, item: dict | None) -> None:
        raise LimitReached(int((item or {}).get(f"r#{self.affair}", {}).get("N", 0)))


@dataclass(frozen=True)
class Seal:
    """The seal of one period (hour, JST). ``prev``: the id of the previous period's seal."""

    period: str
    count: int
    digest: str
    prev: str
    signature: bytes
    key_id: str
    algorithm: str
    parts: int
    sealed_at: str

    @property
    def day(self) -> str:
        return period_day(self.period)

    @property
    def id(self) -> str:
        return seal_id(self.period, self.count, self.digest, self.prev)


SEALS_PK = {"S": "SEALS"}


def _log_pk(code: str) -> str:
    return f"P#{code}"


def _entry_sk(n: int) -> str:
    return f"E#{n:08d}"


def head_key(code: str) -> dict:
    return {"pk": {"S": f"HEAD#{code}"}, "sk": {"S": "HEAD"}}


def answered_key(provision_id: str) -> str:
    return f"ANSWERED#{provision_id}"


def stat_key(month: str, recipient: str) -> dict:
    return {"pk": {"S": f"STAT#{month}"}, "sk": {"S": recipient}}


def _head_of(item: Mapping | None) -> Head | None:
    try:
        return Head(int(item["n"]["N"]), item["hash"]["S"], item.get("at", {}).get("S")) if item else None
    except (KeyError, TypeError, ValueError):  # not a head this code writes: as if there were none
        return None


def _entry_item(code: str, record: ProvisionRecord, n: int, prev: str,
                prev_at: str | None) -> tuple[ChainEntry, dict]:
    """Entry ``n`` of the resident's chain. No ``expires_at``: a writer never chooses when an
    entry expires (the sealer sets it from the sealed day; the writers' policies deny the
    attribute). ``prev_at``: when the entry before was made, so that a chain whose start has
    expired proves it (``domain.provision.verify_chain``); hashed with the rest."""
    base = record.content()
    content = {**base, "prev_at": prev_at} if prev_at else dict(base)
    digest = entry_hash(content, n, prev)
    item = {
        "pk": {"S": _log_pk(code)}, "sk": {"S": _entry_sk(n)}, "n": {"N": str(n)}, "prev": {"S": prev},
        "hash": {"S": digest}, "content": {"S": json.dumps(content, sort_keys=True, ensure_ascii=False)},
        "day_shard": {"S": day_shard(code, record.day)}, "entry_ref": {"S": entry_ref(code, n)},
    }
    return ChainEntry(n, n, prev, digest, content), item


def chain_entry(item: Mapping) -> ChainEntry:
    return ChainEntry(n=int(item["sk"]["S"][2:]), claimed_n=int(item["n"]["N"]), prev=item["prev"]["S"],
                      hash=item["hash"]["S"], content=json.loads(item["content"]["S"]))


class ProvisionLog:
    def __init__(self, log_table: str, state_table: str) -> None:
        self.log_table = log_table
        self.state_table = state_table

    # --- appending ----------------------------------------------------------------------
    def append(self, records: Sequence[ProvisionRecord], *, heads: Mapping[str, Head] | None = None,
               extras: Sequence[Extra | None] = (), last: Sequence[Extra | None] = ()) -> list[ChainEntry]:
        """Append every record to its resident's chain together with the resident's head and
        ``extras`` (the month's statistics, the scan window: ``Extra``), in
        ``TransactWriteItems`` of at most 100 actions — a resident's entries and head in the
        same one, ``extras`` in the first and ``last`` in the final one; sent one after the
        other, so if an extra refuses (the monthly limit) nothing is written, and a ``last``
        extra (a batch chunk's statistics) is written only once every entry is. Returns the entries written. A record
        is anything with ``resident_code``, ``at``, ``day`` and ``content()`` (a provision, or
        a disclosure: ``services.provision.DisclosureRecord``).

        ``heads``: the residents' heads as already read (``read_heads``, or a look-up's state
        snapshot); read here (BatchGetItem per 100) when not given. Every entry is a Put with
        ``attribute_not_exists(pk)`` — never an overwrite — and every head a Put conditioned
        on the head that was read, so a resident appended to by someone else meanwhile cancels
        the transaction, which is rebuilt on the chain's real end and sent again. The chain
        never forks."""
        live = [e for e in extras if e is not None]
        if not records and not live and not any(e is not None for e in last):
            return []
        by_code: dict[str, list[ProvisionRecord]] = defaultdict(list)
        for r in records:
            by_code[r.resident_code].append(r)
        if heads is None:
            heads = self.read_heads(list(by_code))
        tails = {code: _Tail.of(heads.get(code)) for code in by_code}
        # A resident's records go in slices of at most MAX_TX_ACTIONS - 1 (its head is the
        # last action of its slice); a second slice of one resident waits for the next round.
        rounds: list[list[tuple[str, list[ProvisionRecord]]]] = []
        for code, mine in by_code.items():
            for k, start in enumerate(range(0, len(mine), MAX_TX_ACTIONS - 1)):
                while len(rounds) <= k:
                    rounds.append([])
                rounds[k].append((code, mine[start:start + MAX_TX_ACTIONS - 1]))
        plan: list[tuple[list[tuple[str, list[ProvisionRecord]]], list[Extra]]] = []
        for k, units in enumerate(rounds or [[]]):
            first = live if k == 0 else []
            groups: list[list[tuple[str, list[ProvisionRecord]]]] = [[]]
            room = MAX_TX_ACTIONS - len(first)
            for unit in units:
                if len(unit[1]) + 1 > room:
                    groups.append([])
                    room = MAX_TX_ACTIONS
                groups[-1].append(unit)
                room -= len(unit[1]) + 1
            plan += [(group, list(first) if i == 0 else []) for i, group in enumerate(groups)]
        closing = [e for e in last if e is not None]
        if closing:  # into the final transaction: done only when every entry is
            units, extras = plan[-1]
            if sum(len(r) + 1 for _, r in units) + len(extras) + len(closing) > MAX_TX_ACTIONS:
                plan.append(([], closing))
            else:
                plan[-1] = (units, extras + closing)
        # One after the other: the first transaction's extras (the limit) decide before anything
        # else is written, and 20 transactions of a 1,000-row chunk take less than its 1,000
        # PutItems did 8 at a time. (The embedded AWS, moto, is not safe for concurrent
        # transactions either.)
        written: list[ChainEntry] = []
        for units, extras in plan:
            written += self._transact(units, tails, extras)
        return written

    def _transact(self, units: list[tuple[str, list[ProvisionRecord]]], tails: dict[str, _Tail],
                  extras: Sequence[Extra]) -> list[ChainEntry]:
        """One transaction: ``extras``, then each unit's entries and head; rebuilt and sent
        again while heads, chain ends or extras moved under it (``Extra.failed`` may raise)."""
        if not units and not extras:
            return []
        ddb = aws.client("dynamodb")
        for attempt in range(_MAX_ATTEMPTS):
            actions: list[dict] = [e.action() for e in extras]
            owners: list[tuple[str, int | str]] = [("extra", i) for i in range(len(extras))]
            entries: list[ChainEntry] = []
            ends: dict[str, ChainEntry] = {}
            for code, records in units:
                tail = tails[code]
                n, prev, prev_at = tail.n, tail.hash, tail.at
                for record in records:
                    n += 1
                    entry, item = _entry_item(code, record, n, prev, prev_at)
                    actions.append({"Put": {"TableName": self.log_table, "Item": item,
                                            "ConditionExpression": "attribute_not_exists(pk)"}})
                    owners.append(("entry", code))
                    entries.append(entry)
                    prev, prev_at = entry.hash, entry.content["at"]
                    ends[code] = entry
                actions.append({"Put": self._head_put(code, ends[code], tail.head_n)})
                owners.append(("head", code))
            try:
                ddb.transact_write_items(TransactItems=actions)
            except Exception as exc:
                if aws.error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = (getattr(exc, "response", None) or {}).get("CancellationReasons") or []
                codes = [r.get("Code") or "None" for r in reasons]
                if not reasons or any(c not in ("None", "ConditionalCheckFailed", "TransactionConflict") for c in codes):
                    raise
                for (kind, who), reason in zip(owners, reasons, strict=False):
                    if reason.get("Code") != "ConditionalCheckFailed":
                        continue
                    if kind == "extra":
                        extras[int(who)].failed(reason.get("Item"))  # may refuse: nothing was written
                    elif kind == "head":
                        tails[str(who)] = tails[str(who)].head_moved(_head_of(reason.get("Item")))
                    else:
                        tails[str(who)] = tails[str(who)].ended_at(self.chain_end(str(who)))
                if "TransactionConflict" in codes:  # another transaction on one of these items
                    time.sleep(min(0.02 * 2 ** attempt, 1.0) * (0.5 + random.random()))
                continue
            for code, _ in units:
                end = ends[code]
                tails[code] = _Tail(end.n, end.hash, str(end.content["at"]), end.n)
            return entries
        raise ChainConflict(f"the provision log kept moving while appending ({_MAX_ATTEMPTS} attempts)")

    def _head_put(self, code: str, end: ChainEntry, head_n: int | None) -> dict:
        """The head after ``end``, on the condition that the head is still the one read."""
        put: dict = {"TableName": self.state_table, "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                     "Item": {**head_key(code), "n": {"N": str(end.n)}, "hash": {"S": end.hash},
                              "at": {"S": str(end.content["at"])}}}
        if head_n is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put.update(ConditionExpression="#n = :n", ExpressionAttributeNames={"#n": "n"},
                       ExpressionAttributeValues={":n": {"N": str(head_n)}})
        return put

    def chain_end(self, code: str) -> Head | None:
        """The resident's last stored entry (one consistent Query): where to append when the
        head hint is behind the chain."""
        items = aws.client("dynamodb").query(
            TableName=self.log_table, KeyConditionExpression="pk = :pk AND begins_with(sk, :e)",
            ExpressionAttributeValues={":pk": {"S": _log_pk(code)}, ":e": {"S": "E#"}}, ScanIndexForward=False,
            Limit=1, ConsistentRead=True).get("Items", [])
        if not items:
            return None
        entry = chain_entry(items[0])
        return Head(entry.n, entry.hash, entry.content.get("at"))

    def read_heads(self, codes: list[str]) -> dict[str, Head]:
        """The head hints of ``codes`` (consistent BatchGetItem per 100); absent: no entry yet."""
        found: dict[str, Head] = {}
        for item in _batch_get(self.state_table, [head_key(c) for c in codes]):
            head = _head_of(item)
            if head is not None:
                found[item["pk"]["S"][5:]] = head
        return found

    # --- reading ------------------------------------------------------------------------
    def chain(self, resident_code: str) -> tuple[list[ChainEntry], int | None]:
        """A resident's entries in position order, and the head's position (None if no head)."""
        entries, head = self.chain_and_head(resident_code)
        return entries, (head[0] if head else None)

    def chain_and_head(self, resident_code: str) -> tuple[list[ChainEntry], tuple[int, str | None] | None]:
        """A resident's entries in position order, and the head hint: (position, time of that
        entry) — a hint the writers keep, which anyone with the writers' rights can rewind."""
        items = _query(self.log_table, {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :e)",
            "ExpressionAttributeValues": {":pk": {"S": _log_pk(resident_code)}, ":e": {"S": "E#"}},
            "ConsistentRead": True})
        head = aws.client("dynamodb").get_item(TableName=self.state_table, Key=head_key(resident_code),
                                               ConsistentRead=True).get("Item")
        entries = sorted((chain_entry(i) for i in items), key=lambda e: e.n)
        return entries, ((int(head["n"]["N"]), head.get("at", {}).get("S")) if head else None)

    def day_hashes(self, day: str) -> dict[str, str]:
        """ref → stored hash of every entry the table holds for ``day`` (the ``by_day`` index)."""
        found: dict[str, str] = {}
        for shard in range(DAY_SHARDS):
            for item in _query(self.log_table, {
                    "IndexName": "by_day", "KeyConditionExpression": "day_shard = :d",
                    "ExpressionAttributeValues": {":d": {"S": f"{day}#{shard:02d}"}}}):
                found[item["entry_ref"]["S"]] = item["hash"]["S"]
        return found

    def entries(self, refs: Iterable[str]) -> dict[str, ChainEntry]:
        keys = []
        for ref in refs:
            code, _, n = ref.rpartition("#")
            if code and n.isdigit():  # anything else is not a ref this code writes: the caller reports it
                keys.append({"pk": {"S": _log_pk(code)}, "sk": {"S": _entry_sk(int(n))}})
        out: dict[str, ChainEntry] = {}
        for item in _batch_get(self.log_table, keys):
            entry = chain_entry(item)
            out[entry_ref(item["pk"]["S"][2:], entry.n)] = entry
        return out

    # --- seals --------------------------------------------------------------------------
    def seal(self, period: str) -> Seal | None:
        item = aws.client("dynamodb").get_item(TableName=self.log_table, Key={"pk": SEALS_PK, "sk": {"S": period}},
                                               ConsistentRead=True).get("Item")
        return None if item is None else _seal(item)

    def seals(self, first: str, last: str) -> dict[str, Seal]:
        """The seals of the periods ``first``..``last`` (inclusive) that exist, by period."""
        items = _query(self.log_table, {
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": {":pk": SEALS_PK, ":a": {"S": first}, ":b": {"S": last}},
            "ConsistentRead": True})
        return {item["sk"]["S"]: _seal(item) for item in items}

    def latest_seal(self, before: str | None = None) -> Seal | None:
        """The last seal (before period ``before``, if given) — a hint to be checked against
        the archive by whoever relies on it."""
        condition, values = "pk = :pk", {":pk": SEALS_PK}
        if before is not None:
            condition, values = "pk = :pk AND sk < :b", {**values, ":b": {"S": before}}
        items = aws.client("dynamodb").query(TableName=self.log_table, KeyConditionExpression=condition,
                                             ExpressionAttributeValues=values, ScanIndexForward=False, Limit=1,
                                             ConsistentRead=True).get("Items", [])
        return _seal(items[0]) if items else None

    def first_seal(self) -> Seal | None:
        items = aws.client("dynamodb").query(TableName=self.log_table, KeyConditionExpression="pk = :pk",
                                             ExpressionAttributeValues={":pk": SEALS_PK}, Limit=1,
                                             ConsistentRead=True).get("Items", [])
        return _seal(items[0]) if items else None

    def manifest(self, period: str, parts: int) -> dict[str, str]:
        keys = [{"pk": {"S": f"SEAL#{period}"}, "sk": {"S": f"PART#{k:05d}"}} for k in range(parts)]
        out: dict[str, str] = {}
        for item in _batch_get(self.log_table, keys):
            for line in gzip.decompress(item["refs"]["B"]).decode().splitlines():
                ref, digest = line.split(":")
                out[ref] = digest
        return out

    def sealed_head(self, resident_code: str) -> tuple[str, int, str] | None:
        """(period, n, hash) of the resident's last sealed entry, from the sealer's index."""
        items = aws.client("dynamodb").query(
            TableName=self.log_table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"SEALED#{resident_code}"}}, ScanIndexForward=False, Limit=1,
            ConsistentRead=True).get("Items", [])
        if not items:
            return None
        return items[0]["sk"]["S"], int(items[0]["n"]["N"]), items[0]["hash"]["S"]

    def write_seal(self, seal: Seal, refs: Mapping[str, str]) -> Seal:
        """Write the manifest parts and the residents' sealed heads, then the seal (its
        presence means the period is complete). Everything is deterministic, so a sealer
        retried after a crash (or restoring from the archive) writes the same bytes."""
        ddb = aws.client("dynamodb")
        expiry = {"N": str(retention_expiry(seal.day))}
        ordered = sorted(refs.items())
        parts = [ordered[i:i + MANIFEST_PART_REFS] for i in range(0, len(ordered), MANIFEST_PART_REFS)]
        items = []
        for k, part in enumerate(parts):
            body = gzip.compress("".join(f"{r}:{h}\n" for r, h in part).encode(), mtime=0)
            items.append({"pk": {"S": f"SEAL#{seal.period}"}, "sk": {"S": f"PART#{k:05d}"}, "refs": {"B": body},
                          "expires_at": expiry})
        last: dict[str, tuple[int, str]] = {}
        for ref, digest in ordered:
            code, _, n = ref.rpartition("#")
            if code and n.isdigit() and int(n) > last.get(code, (0, ""))[0]:
                last[code] = (int(n), digest)
        items += [{"pk": {"S": f"SEALED#{code}"}, "sk": {"S": seal.period}, "n": {"N": str(n)}, "hash": {"S": h},
                   "expires_at": expiry} for code, (n, h) in sorted(last.items())]
        _put_all_new(self.log_table, items)
        ddb.put_item(TableName=self.log_table, ConditionExpression="attribute_not_exists(pk)", Item={
            "pk": SEALS_PK, "sk": {"S": seal.period}, "count": {"N": str(seal.count)}, "digest": {"S": seal.digest},
            "prev": {"S": seal.prev}, "signature": {"B": seal.signature}, "key_id": {"S": seal.key_id},
            "algorithm": {"S": seal.algorithm}, "parts": {"N": str(len(parts))}, "sealed_at": {"S": seal.sealed_at}})
        return Seal(seal.period, seal.count, seal.digest, seal.prev, seal.signature, seal.key_id, seal.algorithm,
                    len(parts), seal.sealed_at)

    def set_expiry(self, refs: Mapping[str, str], day: str) -> None:
        """Give each sealed entry its TTL, derived from the sealed day — the only change the
        sealer may make to an entry (``SET expires_at`` where it is not set and the hash is the
        sealed one)."""
        ddb = aws.client("dynamodb")
        value = {"N": str(retention_expiry(day))}

        def one(ref_hash: tuple[str, str]) -> None:
            code, _, n = ref_hash[0].rpartition("#")
            if not (code and n.isdigit()):
                return
            try:
                ddb.update_item(TableName=self.log_table, Key={"pk": {"S": _log_pk(code)}, "sk": {"S": _entry_sk(int(n))}},
                                UpdateExpression="SET expires_at = :e",
                                ConditionExpression="attribute_exists(pk) AND #h = :h AND attribute_not_exists(expires_at)",
                                ExpressionAttributeNames={"#h": "hash"},
                                ExpressionAttributeValues={":e": value, ":h": {"S": ref_hash[1]}})
            except Exception as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise

        if len(refs) <= 1:
            for pair in refs.items():
                one(pair)
        else:
            with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(refs))) as pool:
                list(pool.map(one, refs.items()))

    # --- delivery confirmations (decision 0034) -------------------------------------------
    def confirm_answered(self, provision_id: str, at: dt.datetime) -> None:
        """Record that ``provision_id``'s answer is being handed back (the last write before the
        function returns it, or after a batch chunk's result part is stored). Idempotent; never
        part of the chain or the seals: a missing confirmation can only mark entries, never hide
        one."""
        day = at.astimezone(JST).date().isoformat()
        aws.client("dynamodb").put_item(TableName=self.state_table, Item={
            "pk": {"S": answered_key(provision_id)}, "sk": {"S": "ANSWERED"},
            "at": {"S": at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")},
            "expires_at": {"N": str(retention_expiry(day))}})

    def answered(self, provision_ids: Iterable[str]) -> set[str]:
        """Which of ``provision_ids`` have their confirmation (one BatchGetItem per 100)."""
        keys = [{"pk": {"S": answered_key(p)}, "sk": {"S": "ANSWERED"}} for p in dict.fromkeys(provision_ids) if p]
        return {item["pk"]["S"].removeprefix("ANSWERED#") for item in _batch_get(self.state_table, keys)} \
            if keys else set()

    # --- statistics ---------------------------------------------------------------------
    def count(self, month: str, counts: Mapping[tuple[str, str, str], int]) -> None:
        """Add ``(recipient, affair, function) → records`` to the month's statistics: one
        UpdateItem per recipient (ADD is atomic)."""
        by_recipient: dict[str, dict[str, int]] = defaultdict(dict)
        for (recipient, affair, function), n in counts.items():
            if n:
                by_recipient[recipient][f"c#{affair}#{function}"] = n
        ddb = aws.client("dynamodb")
        for recipient, attrs in by_recipient.items():
            names = {f"#a{i}": name for i, name in enumerate(attrs)}
            values = {f":v{i}": {"N": str(n)} for i, n in enumerate(attrs.values())}
            ddb.update_item(TableName=self.state_table, Key={"pk": {"S": f"STAT#{month}"}, "sk": {"S": recipient}},
                            UpdateExpression="ADD " + ", ".join(f"#a{i} :v{i}" for i in range(len(attrs))),
                            ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def reserve(self, month: str, recipient: str, affair: str, records: int, limit: int) -> None:
        """Reserve ``records`` of the month's ``limit`` for ``(recipient, affair)`` before they
        are provided: one conditional UpdateItem on ``r#<affair>`` of the month's statistics
        item, so concurrent look-ups and batches cannot together pass the limit. Raises
        ``LimitReached`` (with what is reserved) when the records do not fit."""
        if records <= 0:
            return
        key = {"pk": {"S": f"STAT#{month}"}, "sk": {"S": recipient}}
        if records <= limit:
            try:
                aws.client("dynamodb").update_item(
                    TableName=self.state_table, Key=key, UpdateExpression="ADD #r :n",
                    ConditionExpression="attribute_not_exists(#r) OR #r <= :room",
                    ExpressionAttributeNames={"#r": f"r#{affair}"},
                    ExpressionAttributeValues={":n": {"N": str(records)}, ":room": {"N": str(limit - records)}})
                return
            except Exception as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise
        item = aws.client("dynamodb").get_item(TableName=self.state_table, Key=key, ConsistentRead=True).get("Item")
        raise LimitReached(int((item or {}).get(f"r#{affair}", {}).get("N", 0)))

    def release(self, month: str, recipient: str, affair: str, records: int) -> None:
        """Give back reserved records that were not provided (unknown codes, refused chunks)."""
        if records <= 0:
            return
        aws.client("dynamodb").update_item(
            TableName=self.state_table, Key={"pk": {"S": f"STAT#{month}"}, "sk": {"S": recipient}},
            UpdateExpression="ADD #r :n", ExpressionAttributeNames={"#r": f"r#{affair}"},
            ExpressionAttributeValues={":n": {"N": str(-records)}})

    def statistics(self, month: str, recipients: Iterable[str] | None = None) -> dict[tuple[str, str, str], int]:
        """``(recipient, affair, function) → records`` of a month (one BatchGetItem per 100
        recipients, from the configuration; ``None``: every recipient counted that month, one
        Query of the month's partition)."""
        out: dict[tuple[str, str, str], int] = {}
        for item in self._stat_items(month, recipients):
            for name, value in item.items():
                if name.startswith("c#"):
                    _, affair, function = name.split("#", 2)
                    out[(item["sk"]["S"], affair, function)] = int(value["N"])
        return out

    def statistics_by_prefecture(self, month: str,
                                 recipients: Iterable[str] | None = None) -> dict[tuple[str, str], int]:
        """``(recipient, prefecture) → records`` of a month: the prefecture (its code) of each
        resident whose record was provided (``p#<prefecture>``)."""
        out: dict[tuple[str, str], int] = {}
        for item in self._stat_items(month, recipients):
            for name, value in item.items():
                if name.startswith("p#"):
                    out[(item["sk"]["S"], name[2:])] = int(value["N"])
        return out

    def _stat_items(self, month: str, recipients: Iterable[str] | None) -> list[dict]:
        if recipients is None:
            return _query(self.state_table, {"KeyConditionExpression": "pk = :pk",
                                             "ExpressionAttributeValues": {":pk": {"S": f"STAT#{month}"}},
                                             "ConsistentRead": True})
        return _batch_get(self.state_table, [stat_key(month, r) for r in recipients])


def _seal(item: Mapping) -> Seal:
    return Seal(period=item["sk"]["S"], count=int(item["count"]["N"]), digest=item["digest"]["S"],
                prev=item["prev"]["S"], signature=item["signature"]["B"], key_id=item["key_id"]["S"],
                algorithm=item["algorithm"]["S"], parts=int(item["parts"]["N"]), sealed_at=item["sealed_at"]["S"])


def _put_all_new(table: str, items: list[dict]) -> None:
    """PutItem each (``attribute_not_exists``; an item already there is left as it is): the
    sealer holds no BatchWriteItem on the log."""
    ddb = aws.client("dynamodb")

    def one(item: dict) -> None:
        try:
            ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise

    if len(items) <= 1:
        for item in items:
            one(item)
    else:
        with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(items))) as pool:
            list(pool.map(one, items))


class SealArchive:
    """The off-table copy of every seal (its manifest included), one object per period under
    ``seals/<period>.json`` in a bucket with S3 Object Lock in compliance mode and its own KMS
    key (``infra/``): nobody — the account's root included — can rewrite or delete a copy
    before its retention ends, so the table alone cannot rewrite history."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @staticmethod
    def key(period: str) -> str:
        return f"seals/{period}.json"

    def put(self, seal: Seal, refs: Mapping[str, str]) -> None:
        body = json.dumps({"period": seal.period, "count": seal.count, "digest": seal.digest, "prev": seal.prev,
                           "signature": base64.b64encode(seal.signature).decode(), "key_id": seal.key_id,
                           "algorithm": seal.algorithm, "sealed_at": seal.sealed_at,
                           "refs": [f"{r}:{h}" for r, h in sorted(refs.items())]}, sort_keys=True)
        aws.client("s3").put_object(Bucket=self.bucket, Key=self.key(seal.period), Body=body.encode(),
                                    ContentType="application/json", ChecksumAlgorithm="SHA256")

    def first_period(self) -> str | None:
        """The period of the first archived seal: where the chain began (keys sort by period)."""
        listed = aws.client("s3").list_objects_v2(Bucket=self.bucket, Prefix="seals/", MaxKeys=1).get("Contents", [])
        return listed[0]["Key"].removeprefix("seals/").removesuffix(".json") if listed else None

    def get(self, period: str) -> tuple[Seal, dict[str, str]] | None:
        try:
            body = aws.client("s3").get_object(Bucket=self.bucket, Key=self.key(period))["Body"].read()
        except Exception as exc:
            if aws.error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        doc = json.loads(body)
        refs = dict(line.rsplit(":", 1) for line in doc["refs"])
        parts = -(-len(refs) // MANIFEST_PART_REFS)
        return Seal(doc["period"], int(doc["count"]), doc["digest"], doc["prev"], base64.b64decode(doc["signature"]),
                    doc["key_id"], doc["algorithm"], parts, doc["sealed_at"]), refs


def _batch_get(table: str, keys: list[dict]) -> list[dict]:
    return aws.batch_get_all(table, keys)


def _batch_write(table: str, items: list[dict]) -> None:
    aws.batch_put_all(table, items)


def _query(table: str, kwargs: dict) -> list[dict]:
    return aws.query_all(TableName=table, **kwargs)

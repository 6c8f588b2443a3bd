"""The provision log (提供記録) and the provision state tables.

Provision log table (append-only: the function roles hold PutItem and reads only, with an
explicit Deny of UpdateItem/DeleteItem/BatchWriteItem — ``infra/``):

======================  =================  ===============================================
pk                      sk                 what
======================  =================  ===============================================
``P#<resident code>``   ``E#<n:08d>``      entry ``n`` of the resident's chain: ``content``
                                           (canonical JSON), ``n``, ``prev``, ``hash``,
                                           ``day_shard``/``entry_ref`` (the ``by_day``
                                           index), ``expires_at`` (TTL, 7 years)
``SEAL#<day>``          ``SEAL``           the day's seal: count, digest, KMS signature
``SEAL#<day>``          ``PART#<k:05d>``   the day's manifest, gzip of ``ref:hash`` lines
======================  =================  ===============================================

Provision state table (mutable bookkeeping, never evidence):

=====================  ===================  =============================================
``HEAD#<code>``        ``HEAD``             where the resident's chain ends (a hint)
``STAT#<yyyy-mm>``     ``<recipient id>``   records provided, ``c#<affair>#<function>``;
                                           reserved against the monthly limit, ``r#<affair>``
``JOB#<job id>``       ``JOB``              a batch provision job and its progress
=====================  ===================  =============================================

Appending costs one conditional PutItem per record (``attribute_not_exists``: an entry is
never overwritten by this code) plus a BatchGetItem per 100 and a BatchWriteItem per 25 for
the heads. The head is only a hint: if another writer got to position ``n`` first, the put
fails and the writer reads that entry and moves on to ``n + 1``, so the chain never forks.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..domain.provision import (
    DAY_SHARDS,
    GENESIS,
    ChainEntry,
    ProvisionRecord,
    day_shard,
    entry_hash,
    entry_ref,
    expires_at,
)
from . import aws

_PARALLEL = 8
_MAX_PROBES = 1000
MANIFEST_PART_REFS = 4000  # ~84 bytes a line, gzip ~50%: parts stay far below DynamoDB's 400 KB


class LimitReached(Exception):
    """A reservation would pass the agreement's monthly record limit."""

    def __init__(self, reserved: int) -> None:
        super().__init__(f"{reserved} records already reserved")
        self.reserved = reserved


class ChainConflict(RuntimeError):
    """A resident's chain kept moving under us (more than ``_MAX_PROBES`` concurrent entries)."""


@dataclass(frozen=True)
class Seal:
    day: str
    count: int
    digest: str
    signature: bytes
    key_id: str
    algorithm: str
    parts: int
    sealed_at: str


def _log_pk(code: str) -> str:
    return f"P#{code}"


def _entry_sk(n: int) -> str:
    return f"E#{n:08d}"


def _head_key(code: str) -> dict:
    return {"pk": {"S": f"HEAD#{code}"}, "sk": {"S": "HEAD"}}


def chain_entry(item: Mapping) -> ChainEntry:
    return ChainEntry(n=int(item["sk"]["S"][2:]), claimed_n=int(item["n"]["N"]), prev=item["prev"]["S"],
                      hash=item["hash"]["S"], content=json.loads(item["content"]["S"]))


class ProvisionLog:
    def __init__(self, log_table: str, state_table: str) -> None:
        self.log_table = log_table
        self.state_table = state_table

    # --- appending ----------------------------------------------------------------------
    def append(self, records: Sequence[ProvisionRecord]) -> list[ChainEntry]:
        """Append every record to its resident's chain. Returns the entries written."""
        if not records:
            return []
        by_code: dict[str, list[ProvisionRecord]] = defaultdict(list)
        for r in records:
            by_code[r.resident_code].append(r)
        heads = self._heads(list(by_code))

        def write(code: str) -> tuple[str, list[ChainEntry]]:
            n, prev = heads.get(code, (0, GENESIS))
            written = []
            for record in by_code[code]:
                entry, n, prev = self._put_next(code, record, n, prev)
                written.append(entry)
            return code, written

        if len(by_code) == 1:  # a single look-up: no thread pool to start
            results = [write(next(iter(by_code)))]
        else:
            with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(by_code))) as pool:
                results = list(pool.map(write, by_code))
        self._put_heads({code: (entries[-1].n, entries[-1].hash) for code, entries in results})
        return [e for _, entries in results for e in entries]

    def _put_next(self, code: str, record: ProvisionRecord, n: int, prev: str) -> tuple[ChainEntry, int, str]:
        ddb = aws.client("dynamodb")
        content = record.content()
        for _ in range(_MAX_PROBES):
            n += 1
            digest = entry_hash(content, n, prev)
            item = {
                "pk": {"S": _log_pk(code)}, "sk": {"S": _entry_sk(n)}, "n": {"N": str(n)}, "prev": {"S": prev},
                "hash": {"S": digest}, "content": {"S": json.dumps(content, sort_keys=True, ensure_ascii=False)},
                "day_shard": {"S": day_shard(code, record.day)}, "entry_ref": {"S": entry_ref(code, n)},
                "expires_at": {"N": str(expires_at(record.at))},
            }
            try:
                ddb.put_item(TableName=self.log_table, Item=item, ConditionExpression="attribute_not_exists(pk)")
                return ChainEntry(n, n, prev, digest, content), n, digest
            except Exception as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise
            taken = ddb.get_item(TableName=self.log_table, Key={"pk": {"S": _log_pk(code)}, "sk": {"S": _entry_sk(n)}},
                                 ConsistentRead=True)["Item"]
            prev = taken["hash"]["S"]
        raise ChainConflict(f"the provision chain of one resident moved {_MAX_PROBES} times while appending")

    def _heads(self, codes: list[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        for item in _batch_get(self.state_table, [_head_key(c) for c in codes]):
            found[item["pk"]["S"][5:]] = (int(item["n"]["N"]), item["hash"]["S"])
        return found

    def _put_heads(self, heads: Mapping[str, tuple[int, str]]) -> None:
        items = [{**_head_key(code), "n": {"N": str(n)}, "hash": {"S": h}} for code, (n, h) in heads.items()]
        _batch_write(self.state_table, items)

    # --- reading ------------------------------------------------------------------------
    def chain(self, resident_code: str) -> tuple[list[ChainEntry], int | None]:
        """A resident's entries in position order, and the head's position (None if no head)."""
        items = _query(self.log_table, {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :e)",
            "ExpressionAttributeValues": {":pk": {"S": _log_pk(resident_code)}, ":e": {"S": "E#"}},
            "ConsistentRead": True})
        head = aws.client("dynamodb").get_item(TableName=self.state_table, Key=_head_key(resident_code),
                                               ConsistentRead=True).get("Item")
        entries = sorted((chain_entry(i) for i in items), key=lambda e: e.n)
        return entries, (int(head["n"]["N"]) if head else None)

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
    def seal(self, day: str) -> Seal | None:
        item = aws.client("dynamodb").get_item(TableName=self.log_table,
                                               Key={"pk": {"S": f"SEAL#{day}"}, "sk": {"S": "SEAL"}},
                                               ConsistentRead=True).get("Item")
        if item is None:
            return None
        return Seal(day=day, count=int(item["count"]["N"]), digest=item["digest"]["S"],
                    signature=item["signature"]["B"], key_id=item["key_id"]["S"], algorithm=item["algorithm"]["S"],
                    parts=int(item["parts"]["N"]), sealed_at=item["sealed_at"]["S"])

    def manifest(self, day: str, parts: int) -> dict[str, str]:
        keys = [{"pk": {"S": f"SEAL#{day}"}, "sk": {"S": f"PART#{k:05d}"}} for k in range(parts)]
        out: dict[str, str] = {}
        for item in _batch_get(self.log_table, keys):
            for line in gzip.decompress(item["refs"]["B"]).decode().splitlines():
                ref, digest = line.split(":")
                out[ref] = digest
        return out

    def write_seal(self, day: str, refs: Mapping[str, str], *, digest: str, signature: bytes, key_id: str,
                   algorithm: str, sealed_at: dt.datetime) -> Seal:
        """Write the manifest parts, then the seal (its presence means the day is complete).
        Parts are deterministic, so a sealer retried after a crash writes the same bytes."""
        ddb = aws.client("dynamodb")
        ordered = sorted(refs.items())
        parts = [ordered[i:i + MANIFEST_PART_REFS] for i in range(0, len(ordered), MANIFEST_PART_REFS)]
        for k, part in enumerate(parts):
            body = gzip.compress("".join(f"{r}:{h}\n" for r, h in part).encode(), mtime=0)
            try:
                ddb.put_item(TableName=self.log_table, ConditionExpression="attribute_not_exists(pk)", Item={
                    "pk": {"S": f"SEAL#{day}"}, "sk": {"S": f"PART#{k:05d}"}, "refs": {"B": body}})
            except Exception as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise
        seal = Seal(day, len(ordered), digest, signature, key_id, algorithm, len(parts),
                    sealed_at.astimezone(dt.UTC).isoformat())
        ddb.put_item(TableName=self.log_table, ConditionExpression="attribute_not_exists(pk)", Item={
            "pk": {"S": f"SEAL#{day}"}, "sk": {"S": "SEAL"}, "count": {"N": str(seal.count)},
            "digest": {"S": digest}, "signature": {"B": signature}, "key_id": {"S": key_id},
            "algorithm": {"S": algorithm}, "parts": {"N": str(seal.parts)}, "sealed_at": {"S": seal.sealed_at}})
        return seal

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

    def statistics(self, month: str, recipients: Iterable[str]) -> dict[tuple[str, str, str], int]:
        """``(recipient, affair, function) → records`` of a month (one BatchGetItem per 100
        recipients: the recipients come from the configuration, no scan)."""
        out: dict[tuple[str, str, str], int] = {}
        keys = [{"pk": {"S": f"STAT#{month}"}, "sk": {"S": r}} for r in recipients]
        for item in _batch_get(self.state_table, keys):
            for name, value in item.items():
                if name.startswith("c#"):
                    _, affair, function = name.split("#", 2)
                    out[(item["sk"]["S"], affair, function)] = int(value["N"])
        return out


def _batch_get(table: str, keys: list[dict]) -> list[dict]:
    return aws.batch_get_all(table, keys)


def _batch_write(table: str, items: list[dict]) -> None:
    aws.batch_put_all(table, items)


def _query(table: str, kwargs: dict) -> list[dict]:
    return aws.query_all(TableName=table, **kwargs)

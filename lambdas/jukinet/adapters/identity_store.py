"""The tier's identity table (prefecture or national): current state, history, ledgers.

Item layout (one table per tier, keys ``pk``/``sk``):

=====================  ==================  ==================================================
pk                     sk                  what
=====================  ==================  ==================================================
``R#<resident code>``  ``CURRENT``         current state; ``order_key`` guards every write
``R#<resident code>``  ``H#<order key>``   one history entry per notice (per code it touches)
``LEDGER#<muni>``      ``LEDGER``          runs of sequence numbers received (gaps), notices
                                           stored and dead-lettered per month (``Ledger``)
``DLQ#<muni>``         ``<content id>``    marker: this dead letter is counted (idempotency)
``META``               ``blind-index-key`` the blind-index HMAC key, wrapped by the data key
``META``               ``sender-key#<c>``  the signing-key ARN sender ``<c>`` is pinned to
=====================  ==================  ==================================================

Identity facts are sealed (AES-256-GCM, ``domain.envelope``) with a data key from the
tier's KMS key before they are written; the wrapped data key is stored beside them. AAD
binds each ciphertext to its resident code and notice id.

Writes follow ``domain.ordering``:

1. History: one BatchGetItem per 100 events finds the entries already stored (duplicates:
   counted, not rewritten); the rest go out 25 to a BatchWriteItem. An entry's key is its
   notice's order key, so a concurrent or repeated put of the same entry is harmless.
2. Current state: for each resident whose newest event in the batch is newer than the stored
   current state (read with one BatchGetItem per 100), a conditional put
   ``attribute_not_exists(pk) OR order_key < :k``; concurrent writers therefore converge on the
   greatest notice whatever the arrival order. These puts run in parallel.

History first, current second: if the function dies in between, the retry finds the history
stored (a duplicate) but still compares and writes the current state, which repairs it.
Why not TransactWriteItems: a transaction costs twice the write units on DynamoDB, and the
embedded AWS (moto) deep-copies the whole table for every item of a transaction, which makes
local runs quadratic (docs/decisions/0009-identity-store-writes.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..domain import envelope
from ..domain.authority import Holding
from ..domain.blind_index import blind_index
from ..domain.facts import ChangeReason, IdentityFacts
from ..domain.notice import UpdateNotice
from ..domain.ordering import ResidentEvent, ResidentStatus, events_for
from . import aws
from .kms import DataKeys

CURRENT = "CURRENT"
_PARALLEL_PUTS = 8  # boto3 clients are thread-safe; the puts are independent of each other


def resident_pk(code: str) -> str:
    return f"R#{code}"


def history_sk(order_key: str) -> str:
    return f"H#{order_key}"


def aad_for(resident_code: str, notice_id: str) -> bytes:
    return f"{resident_code}|{notice_id}".encode()


@dataclass(frozen=True)
class Attestation:
    """The signature a notice was accepted under: the municipality that signed it, its KMS
    key, the SHA-256 of the signed payload and the DER signature over it — enough for anyone
    with the public key to check again that the municipality signed that digest."""

    signer: str
    key_arn: str
    digest: str  # hex
    signature: bytes

    def to_attributes(self) -> dict:
        return {"signer": {"S": self.signer}, "signer_key": {"S": self.key_arn or "-"},
                "signed_digest": {"S": self.digest}, "signature": {"B": self.signature}}

    @classmethod
    def from_item(cls, item: dict) -> Attestation | None:
        if "signer" not in item:
            return None
        return cls(item["signer"]["S"], item["signer_key"]["S"], item["signed_digest"]["S"],
                   bytes(item["signature"]["B"]))


@dataclass
class ApplyResult:
    stored: list[UpdateNotice] = field(default_factory=list)  # newly stored notices
    duplicates: list[UpdateNotice] = field(default_factory=list)  # already stored before
    current_changed: int = 0
    stale: int = 0  # stored in history, but a newer notice already defines the current state


@dataclass(frozen=True)
class Ledger:
    """What a tier has from one municipality: sequence runs received, notices stored per
    month, notices dead-lettered per month."""

    version: int = 0
    runs: tuple[tuple[int, int], ...] = ()
    stored: tuple[tuple[str, int], ...] = ()
    dead: tuple[tuple[str, int], ...] = ()

    @property
    def gaps(self) -> list[tuple[int, int]]:
        return gaps_in(self.runs)

    def stored_in(self, month: str) -> int:
        return dict(self.stored).get(month, 0)

    def dead_in(self, month: str) -> int:
        return dict(self.dead).get(month, 0)

    def covers(self, seq: int) -> bool:
        return any(first <= seq <= last for first, last in self.runs)

    def add(self, stored: list[tuple[int, str]], received: list[int]) -> Ledger:
        counts = dict(self.stored)
        seen: set[int] = set()
        for seq, month in stored:
            if seq not in seen and not self.covers(seq):
                counts[month] = counts.get(month, 0) + 1
            seen.add(seq)
        runs = tuple(_merge_runs([*self.runs, *_runs(sorted(seen | set(received)))]))
        candidate = Ledger(self.version, runs, tuple(sorted(counts.items())), self.dead)
        return self if candidate == self else dataclasses.replace(candidate, version=self.version + 1)

    def add_dead(self, month: str, count: int) -> Ledger:
        dead = dict(self.dead)
        dead[month] = dead.get(month, 0) + count
        return Ledger(self.version + 1, self.runs, self.stored, tuple(sorted(dead.items())))

    def to_attributes(self) -> dict:
        attrs = {
            "version": {"N": str(self.version)},
            "runs": {"S": json.dumps(self.runs, separators=(",", ":"))},
            "stored": {"S": json.dumps(dict(self.stored), separators=(",", ":"))},
            "dead": {"S": json.dumps(dict(self.dead), separators=(",", ":"))},
        }
        return attrs

    @classmethod
    def from_item(cls, item: dict | None) -> Ledger:
        if not item:
            return cls()
        return cls(
            version=int(item["version"]["N"]),
            runs=tuple(tuple(r) for r in json.loads(item["runs"]["S"])),  # type: ignore[misc]
            stored=tuple(sorted(json.loads(item["stored"]["S"]).items())),
            dead=tuple(sorted(json.loads(item["dead"]["S"]).items())),
        )


@dataclass(frozen=True)
class StoredEntry:
    """A decrypted history entry or current state, for reports and tests."""

    resident_code: str
    notice_id: str
    order_key: str
    status: str
    reason: str
    change_date: str
    municipality: str
    facts: IdentityFacts | None
    replaced_by: str | None
    replaces: str | None
    accepted_under: Attestation | None = None  # history entries only


class IdentityStore:
    def __init__(self, table_name: str, data_keys: DataKeys, blind_index_key: bytes | None = None) -> None:
        self.table_name = table_name
        self.data_keys = data_keys
        self._blind_index_key = blind_index_key

    # --- blind index key -------------------------------------------------------------
    def blind_index_key(self, create: bool = True) -> bytes | None:
        """The tier's HMAC key for the blind index: its own data key (never one that seals facts),
        generated once under the tier's KMS key with purpose ``blind-index`` and kept wrapped in
        the table; unwrapped once per cold start. Readers pass ``create=False`` (they hold no
        right to generate keys): None means nothing was ever stored, so nothing can match."""
        if self._blind_index_key is None:
            ddb, kms = aws.client("dynamodb"), aws.client("kms")
            context = {**self.data_keys.context, "purpose": "blind-index"}
            key = {"pk": {"S": "META"}, "sk": {"S": "blind-index-key"}}
            item = ddb.get_item(TableName=self.table_name, Key=key, ConsistentRead=True).get("Item")
            if item is None and not create:
                return None
            if item is None:
                wrapped = kms.generate_data_key(KeyId=self.data_keys.key_id, KeySpec="AES_256",
                                                EncryptionContext=context)["CiphertextBlob"]
                _conditional(ddb.put_item, TableName=self.table_name, Item={**key, "wrapped": {"B": wrapped}},
                             ConditionExpression="attribute_not_exists(pk)")  # a concurrent creator wins
                item = ddb.get_item(TableName=self.table_name, Key=key, ConsistentRead=True)["Item"]
            self._blind_index_key = kms.decrypt(CiphertextBlob=item["wrapped"]["B"], KeyId=self.data_keys.key_id,
                                                EncryptionContext=context)["Plaintext"]
        return self._blind_index_key

    # --- sender key pins (adapters.kms.KeyPins) -------------------------------------
    def pinned_key(self, sender: str) -> str | None:
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key={"pk": {"S": "META"}, "sk": {"S": f"sender-key#{sender}"}},
            ConsistentRead=True).get("Item")
        return None if item is None else item["key_arn"]["S"]

    def pin_key(self, sender: str, key_arn: str) -> str:
        key = {"pk": {"S": "META"}, "sk": {"S": f"sender-key#{sender}"}}
        if _conditional(aws.client("dynamodb").put_item, TableName=self.table_name,
                        Item={**key, "key_arn": {"S": key_arn}}, ConditionExpression="attribute_not_exists(pk)"):
            return key_arn
        return self.pinned_key(sender) or key_arn

    # --- writes ----------------------------------------------------------------------
    def holdings(self, resident_codes: Iterable[str]) -> dict[str, Holding]:
        """Who holds each resident now (``domain.authority``): one BatchGetItem per 100."""
        keys = [{"pk": {"S": resident_pk(c)}, "sk": {"S": CURRENT}} for c in dict.fromkeys(resident_codes)]
        return {item["pk"]["S"][2:]: Holding(item["municipality"]["S"], ChangeReason(item["reason"]["S"]),
                                            dt.date.fromisoformat(item["change_date"]["S"]), item["order_key"]["S"])
                for item in aws.batch_get_all(self.table_name, keys, "pk, municipality, reason, change_date, order_key")}

    def stored_ids(self, notices: Iterable[UpdateNotice]) -> set[str]:
        """Ids of the notices whose history entry is already stored (a redelivery: it was checked
        and counted when it first arrived). One BatchGetItem per 100."""
        by_key = {(resident_pk(n.resident_code.value), history_sk(n.order_key)): n.notice_id for n in notices}
        found = self._existing_history([{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in by_key])
        return {by_key[k] for k in found}

    def apply(self, notices: list[UpdateNotice], *, now: dt.datetime,
              lineage: Mapping[str, Attestation] | None = None) -> ApplyResult:
        """Store a batch of validated notices under the ordering rule; idempotent. ``lineage``:
        per notice id, the signature the notice was accepted under, kept on its history items."""
        result = ApplyResult()
        unique: dict[str, UpdateNotice] = {}
        for notice in notices:
            if notice.notice_id in unique:
                result.duplicates.append(notice)  # the same notice twice in one message
            else:
                unique[notice.notice_id] = notice
        notices = list(unique.values())
        if not notices:
            return result
        stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        by_code: dict[str, list[ResidentEvent]] = defaultdict(list)
        for notice in notices:
            for event in events_for(notice):
                by_code[event.resident_code].append(event)
        current_keys = self._current_order_keys(list(by_code))
        plaintext_key, wrapped_key = self.data_keys.current(uses=len(notices))
        sealer = envelope.Sealer(plaintext_key)
        bidx_key = self.blind_index_key()

        planned: list[tuple[ResidentEvent, dict]] = []
        newest: dict[str, tuple[ResidentEvent, dict]] = {}
        for code, events in by_code.items():
            events.sort(key=lambda e: e.order_key)
            for event in events:
                history, current = self._items(event, sealer, wrapped_key, bidx_key, stamp)
                attestation = (lineage or {}).get(event.notice_id)
                if attestation is not None:
                    history.update(attestation.to_attributes())
                planned.append((event, history))
            if events[-1].order_key > (current_keys.get(code) or ""):
                newest[code] = (events[-1], current)

        existing = self._existing_history([h for _, h in planned])
        self._batch_put([h for _, h in planned if (h["pk"]["S"], h["sk"]["S"]) not in existing])
        changed = self._put_currents(list(newest.values()))
        for event, history in planned:
            primary = event.notice.resident_code.value == event.resident_code
            if (history["pk"]["S"], history["sk"]["S"]) in existing:
                if primary:
                    result.duplicates.append(event.notice)
                continue
            if primary:
                result.stored.append(event.notice)
            if (event.resident_code, event.order_key) in changed:
                result.current_changed += 1
            else:
                result.stale += 1
        return result

    def _items(self, event: ResidentEvent, sealer: envelope.Sealer, wrapped_key: bytes, bidx_key: bytes,
               stamp: str) -> tuple[dict, dict]:
        notice = event.notice
        common: dict = {
            "pk": {"S": resident_pk(event.resident_code)},
            "order_key": {"S": event.order_key},
            "notice_id": {"S": notice.notice_id},
            "status": {"S": event.status.value},
            "reason": {"S": notice.reason.value},
            "change_date": {"S": notice.change_date.isoformat()},
            "municipality": {"S": notice.municipality.value},
            "stored_at": {"S": stamp},
        }
        if event.replaced_by:
            common["replaced_by"] = {"S": event.replaced_by}
        if event.replaces:
            common["replaces"] = {"S": event.replaces}
        if event.facts is not None:
            common["facts"] = {"B": sealer.seal_facts(event.facts, aad_for(event.resident_code, notice.notice_id))}
            common["dek"] = {"B": wrapped_key}
        history = {**common, "sk": {"S": history_sk(event.order_key)}, "sequence": {"N": str(notice.sequence)}}
        current = {**common, "sk": {"S": CURRENT}}
        if event.facts is not None and event.status is ResidentStatus.ACTIVE:
            current["bidx"] = {"S": blind_index(bidx_key, event.facts.name.kana, event.facts.birth_date)}
        return history, current

    def _existing_history(self, items: list[dict]) -> set[tuple[str, str]]:
        """Which history items are already stored (duplicates): one BatchGetItem per 100."""
        keys = [{"pk": i["pk"], "sk": i["sk"]} for i in items]
        return {(i["pk"]["S"], i["sk"]["S"]) for i in aws.batch_get_all(self.table_name, keys, "pk, sk")}

    def _batch_put(self, items: list[dict]) -> None:
        """History items: unconditional puts are safe (an item's key is its notice's order key and
        a re-put carries the same facts), so they go 25 to a BatchWriteItem."""
        aws.batch_put_all(self.table_name, items)

    def _put_currents(self, writes: list[tuple[ResidentEvent, dict]]) -> set[tuple[str, str]]:
        """Current items, each a conditional put (the ordering rule under concurrency), issued in
        parallel. Returns the (resident code, order key) pairs that became current."""
        if not writes:
            return set()
        ddb = aws.client("dynamodb")

        def put(write: tuple[ResidentEvent, dict]) -> tuple[str, str] | None:
            event, item = write
            ok = _conditional(ddb.put_item, TableName=self.table_name, Item=item,
                              ConditionExpression="attribute_not_exists(pk) OR order_key < :k",
                              ExpressionAttributeValues={":k": {"S": event.order_key}})
            return (event.resident_code, event.order_key) if ok else None

        if len(writes) == 1:
            results = [put(writes[0])]
        else:
            with ThreadPoolExecutor(max_workers=_PARALLEL_PUTS) as pool:
                results = list(pool.map(put, writes))
        return {r for r in results if r is not None}

    def _current_order_keys(self, codes: list[str]) -> dict[str, str]:
        keys = [{"pk": {"S": resident_pk(c)}, "sk": {"S": CURRENT}} for c in codes]
        return {i["pk"]["S"][2:]: i["order_key"]["S"]
                for i in aws.batch_get_all(self.table_name, keys, "pk, order_key")}

    # --- the municipality ledger: received sequence numbers, stored and dead-lettered counts --
    def update_ledger(self, municipality: str, *, stored: Iterable[tuple[int, str]] = (),
                      received: Iterable[int] = ()) -> Ledger:
        """Record, once, what this tier got from a municipality.

        ``stored``: (sequence, month) of valid notices now in the history (new or repeated);
        ``received``: further sequence numbers that arrived but were dead-lettered. A sequence
        number already covered counts nothing, so redeliveries and retries count each notice
        once. One item per municipality, updated with optimistic locking (``version``)."""
        stored, received = list(stored), list(received)
        return self._update_ledger(municipality, lambda ledger: ledger.add(stored, received))

    def record_dead_letter(self, municipality: str, item_id: str, month: str, count: int) -> bool:
        """Count ``count`` dead-lettered notices in ``month`` against ``municipality``, once per
        ``item_id``: a marker item ``DLQ#<municipality>``/``<item id>`` is put in the same
        transaction as the ledger (dead letters are rare; the ledger stays small)."""
        marker = {"pk": {"S": f"DLQ#{municipality}"}, "sk": {"S": item_id[:512]}, "month": {"S": month},
                  "count": {"N": str(count)}}
        marker_put = {"Put": {"TableName": self.table_name, "Item": marker,
                              "ConditionExpression": "attribute_not_exists(pk)"}}
        try:
            self._update_ledger(municipality, lambda ledger: ledger.add_dead(month, count), marker_put)
        except _AlreadyCounted:
            return False
        return True

    def _update_ledger(self, municipality: str, change: Callable[[Ledger], Ledger],
                       extra: dict | None = None) -> Ledger:
        """Read-modify-write of the ledger item under ``version``; with ``extra`` (one more
        transaction item whose condition failing means "already done") in one transaction."""
        ddb = aws.client("dynamodb")
        key = {"pk": {"S": f"LEDGER#{municipality}"}, "sk": {"S": "LEDGER"}}
        for attempt in range(50):
            item = ddb.get_item(TableName=self.table_name, Key=key, ConsistentRead=True).get("Item")
            ledger = Ledger.from_item(item)
            updated = change(ledger)
            if updated == ledger and extra is None:
                return ledger
            put = {"TableName": self.table_name, "Item": {**key, **updated.to_attributes()}}
            if item:
                put["ConditionExpression"] = "version = :v"
                put["ExpressionAttributeValues"] = {":v": {"N": str(ledger.version)}}
            else:
                put["ConditionExpression"] = "attribute_not_exists(pk)"
            if extra is None:
                if _conditional(ddb.put_item, **put):
                    return updated
            else:
                try:
                    ddb.transact_write_items(TransactItems=[{"Put": put}, extra])
                    return updated
                except Exception as exc:
                    if aws.error_code(exc) != "TransactionCanceledException":
                        raise
                    reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]  # type: ignore[attr-defined]
                    if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                        raise _AlreadyCounted() from None
            time.sleep(min(0.01 * (attempt + 1), 0.2))  # another processor updated it: read again
        raise RuntimeError(f"{self.table_name}: ledger of {municipality} kept changing under us")

    def ledger(self, municipality: str) -> Ledger:
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key={"pk": {"S": f"LEDGER#{municipality}"}, "sk": {"S": "LEDGER"}},
            ConsistentRead=True).get("Item")
        return Ledger.from_item(item)

    # --- reads -------------------------------------------------------------------------
    def current(self, resident_code: str) -> StoredEntry | None:
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key={"pk": {"S": resident_pk(resident_code)}, "sk": {"S": CURRENT}},
            ConsistentRead=True,
        ).get("Item")
        return None if item is None else self._entry(item)

    def currents(self, resident_codes: Iterable[str],
                 within: Callable[[str], bool] | None = None) -> dict[str, StoredEntry]:
        """Current states of many residents (one BatchGetItem per 100), decrypted; unknown
        codes are absent. ``within(municipality)``: residents of a municipality it refuses are
        absent too, decided on the item's plaintext municipality *before* anything is
        decrypted, so an out-of-scope code costs what an unknown one costs."""
        keys = [{"pk": {"S": resident_pk(c)}, "sk": {"S": CURRENT}} for c in resident_codes]
        items = aws.batch_get_all(self.table_name, keys)
        if within is not None:
            items = [i for i in items if within(i.get("municipality", {}).get("S", ""))]
        entries = (self._entry(item) for item in items)
        return {e.resident_code: e for e in entries}

    def codes_with_blind_index(self, index: str, limit: int) -> list[str]:
        """Resident codes whose current state carries blind index ``index``, at most ``limit``
        (a search needs to know only whether there are 0, 1 or more candidates)."""
        response = aws.client("dynamodb").query(
            TableName=self.table_name, IndexName="by_blind_index", KeyConditionExpression="bidx = :b",
            ExpressionAttributeValues={":b": {"S": index}}, Limit=limit)
        return [item["pk"]["S"][2:] for item in response["Items"]]

    def history(self, resident_code: str) -> list[StoredEntry]:
        items = self._query(resident_pk(resident_code), sk_prefix="H#")
        return [self._entry(i) for i in items]

    def _entry(self, item: dict) -> StoredEntry:
        code = item["pk"]["S"][2:]
        facts = None
        if "facts" in item:
            key = self.data_keys.unwrap(item["dek"]["B"])
            facts = envelope.Sealer(key).open_facts(item["facts"]["B"], aad_for(code, item["notice_id"]["S"]))
        return StoredEntry(
            resident_code=code, notice_id=item["notice_id"]["S"], order_key=item["order_key"]["S"],
            status=item["status"]["S"], reason=item["reason"]["S"], change_date=item["change_date"]["S"],
            municipality=item["municipality"]["S"], facts=facts,
            replaced_by=item.get("replaced_by", {}).get("S"), replaces=item.get("replaces", {}).get("S"),
            accepted_under=Attestation.from_item(item),
        )

    def _query(self, pk: str, sk_prefix: str | None = None) -> list[dict]:
        return aws.query_all(
            TableName=self.table_name, ConsistentRead=True,
            KeyConditionExpression="pk = :pk" + (" AND begins_with(sk, :p)" if sk_prefix else ""),
            ExpressionAttributeValues={":pk": {"S": pk}, **({":p": {"S": sk_prefix}} if sk_prefix else {})},
        )


class _AlreadyCounted(Exception):
    """The dead-letter marker exists: this dead letter was counted before."""


def _conditional(put, **kwargs) -> bool:
    try:
        put(**kwargs)
    except Exception as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    return runs


def _merge_runs(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(runs):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def gaps_in(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Missing numbers between 1 and the highest received, given received (first, last) runs."""
    gaps: list[tuple[int, int]] = []
    expected = 1
    for first, last in sorted(runs):
        if first > expected:
            gaps.append((expected, first - 1))
        expected = max(expected, last + 1)
    return gaps

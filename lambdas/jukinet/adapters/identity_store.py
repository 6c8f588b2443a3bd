"""The tier's identity table (prefecture or national): current state, history, ledgers.

Item layout (one table per tier, keys ``pk``/``sk``):

=====================  ==================  ==================================================
pk                     sk                  what
=====================  ==================  ==================================================
``R#<resident code>``  ``CURRENT``         current state; ``order_key`` guards every write
``R#<resident code>``  ``H#<order key>``   one history entry per notice (per code it touches)
``LEDGER#<muni>``      ``LEDGER``          runs of sequence numbers received (gaps), notices
                                           stored and dead-lettered per month
                                           (``domain.ledger.Ledger``)
``DLQ#<muni>``         ``<content id>``    marker: this dead letter is counted (idempotency); removed
                                           when the message is redriven and processed
                                           (``release_dead_letters``)
``META``               ``blind-index-key`` the blind-index HMAC key, wrapped by the data key
``META``               ``sender-key#<c>``  the signing-key ARN sender ``<c>`` is pinned to
=====================  ==================  ==================================================

Identity facts are sealed (AES-256-GCM, ``domain.envelope``) with a data key from the
tier's KMS key before they are written; the wrapped data key is stored beside them. AAD
binds each ciphertext to its resident code and notice id.

Writes follow ``domain.ordering`` (docs/decisions/0021-identity-store-transactions.md):

1. One read: a consistent BatchGetItem per 100 keys finds, for the whole batch, the history
   entries already stored (duplicates: counted, not rewritten), the current state of every
   resident touched (its order key, and who holds the resident: ``holdings``) and the ledger
   of every municipality (``read``; the tier processor passes this ``Snapshot`` on, so
   nothing is read twice).
2. One write per 100 items: ``TransactWriteItems`` carrying the new history entries
   (unconditional puts: an entry's key is its notice's order key, so a concurrent or
   repeated put of the same entry is harmless), the current state of each resident whose
   newest event beats the stored one (``attribute_not_exists(pk) OR order_key < :k``), and
   last the municipalities' ledgers (``version = :v``). A cancelled transaction names the
   items whose condition failed: a current state that lost to a newer one is dropped (the
   rule holds: concurrent writers converge on the greatest notice whatever the arrival
   order), a ledger changed by a concurrent writer is read again and recomputed, and the
   rest is sent again.

History before current within a transaction changes nothing (it is atomic); across
transactions (more than 100 items) history chunks go first, so a function that dies in
between leaves history that the retry finds (a duplicate) while it still compares and
writes the current state. On DynamoDB a transactional write costs two write units per item
(one for BatchWriteItem/PutItem); the embedded AWS needs ``embedded_aws.moto_patches``
(moto copies the whole table per transaction item otherwise).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..domain import envelope
from ..domain.authority import Holding
from ..domain.blind_index import blind_index
from ..domain.facts import ChangeReason, IdentityFacts
from ..domain.ledger import Ledger
from ..domain.notice import UpdateNotice
from ..domain.ordering import ResidentEvent, ResidentStatus, events_for
from . import aws
from .kms import DataKeys, TableKeyPins

CURRENT = "CURRENT"
TRANSACTION_ITEMS = 100  # DynamoDB's limit per TransactWriteItems
_MAX_ATTEMPTS = 50


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
    ledgers: dict[str, Ledger] = field(default_factory=dict)  # apply(ledgers=True): each municipality's, after


@dataclass
class Snapshot:
    """What one batch found in the table before writing (``IdentityStore.read``): the keys it
    checked, the history keys among them that exist, the current items and ledger items
    (``None``: checked, absent). A snapshot is only a hint for what to write: every write is
    conditional on what it assumed, so a stale snapshot costs a retry, never a wrong state."""

    checked_history: set[tuple[str, str]] = field(default_factory=set)
    history: set[tuple[str, str]] = field(default_factory=set)
    checked_codes: set[str] = field(default_factory=set)
    current: dict[str, dict] = field(default_factory=dict)
    ledgers: dict[str, dict | None] = field(default_factory=dict)


def ledger_attributes(ledger: Ledger) -> dict:
    """A ledger as the identity table's item attributes (JSON strings beside ``version``)."""
    attrs = {
        "version": {"N": str(ledger.version)},
        "runs": {"S": json.dumps(ledger.runs, separators=(",", ":"))},
        "stored": {"S": json.dumps(dict(ledger.stored), separators=(",", ":"))},
        "dead": {"S": json.dumps(dict(ledger.dead), separators=(",", ":"))},
    }
    if ledger.redriven:
        attrs["redriven"] = {"S": json.dumps(dict(ledger.redriven), separators=(",", ":"))}
    if ledger.gap_since:
        attrs["gap_since"] = {"S": json.dumps(ledger.gap_since, separators=(",", ":"))}
    return attrs


def ledger_from_item(item: dict | None) -> Ledger:
    """The ledger an identity-table item holds; no item is the empty ledger. An item written
    before redrive or gap times existed reads as never redriven, its gaps seen at the epoch."""
    if not item:
        return Ledger()
    return Ledger(
        version=int(item["version"]["N"]),
        runs=tuple(tuple(r) for r in json.loads(item["runs"]["S"])),  # type: ignore[misc]
        stored=tuple(sorted(json.loads(item["stored"]["S"]).items())),
        dead=tuple(sorted(json.loads(item["dead"]["S"]).items())),
        redriven=tuple(sorted(json.loads(item["redriven"]["S"]).items())) if "redriven" in item else (),
        gap_since=tuple((int(a), int(b), str(t)) for a, b, t in json.loads(item["gap_since"]["S"]))
        if "gap_since" in item else (),
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


class IdentityStore(TableKeyPins):
    # True: history entries go in the transactions (fewest requests, two write units each);
    # False: 25 to a BatchWriteItem before them (one write unit each, more requests). Measured
    # both ways in docs/decisions/0021-identity-store-transactions.md.
    history_in_transactions = True

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

    # --- sender key pins: adapters.kms.TableKeyPins (META/sender-key#<code> in this table) ---

    # --- writes ----------------------------------------------------------------------
    def read(self, notices: Iterable[UpdateNotice], municipalities: Iterable[str] = ()) -> Snapshot:
        """The history keys, current states and ledgers a batch of ``notices`` touches (and the
        ledgers of ``municipalities``): one consistent BatchGetItem per 100 keys."""
        return self._read(Snapshot(), list(notices), municipalities)

    def _read(self, snapshot: Snapshot, notices: list[UpdateNotice], municipalities: Iterable[str] = ()) -> Snapshot:
        """Complete ``snapshot`` with whatever it lacks for ``notices`` and ``municipalities``."""
        history: dict[tuple[str, str], None] = {}
        codes: dict[str, None] = {}
        for notice in notices:
            for event in events_for(notice):
                history[(resident_pk(event.resident_code), history_sk(event.order_key))] = None
                codes[event.resident_code] = None
        ledgers = [m for m in dict.fromkeys(municipalities) if m not in snapshot.ledgers]
        history_keys = [k for k in history if k not in snapshot.checked_history]
        code_list = [c for c in codes if c not in snapshot.checked_codes]
        keys = ([{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in history_keys]
                + [{"pk": {"S": resident_pk(c)}, "sk": {"S": CURRENT}} for c in code_list]
                + [_ledger_key(m) for m in ledgers])
        if not keys:
            return snapshot
        snapshot.checked_history.update(history_keys)
        snapshot.checked_codes.update(code_list)
        snapshot.ledgers.update(dict.fromkeys(ledgers))
        for item in aws.batch_get_all(self.table_name, keys):
            pk, sk = item["pk"]["S"], item["sk"]["S"]
            if sk == CURRENT:
                snapshot.current[pk[2:]] = item
            elif sk == "LEDGER":
                snapshot.ledgers[pk.removeprefix("LEDGER#")] = item
            else:
                snapshot.history.add((pk, sk))
        return snapshot

    def holdings(self, resident_codes: Iterable[str], snapshot: Snapshot | None = None) -> dict[str, Holding]:
        """Who holds each resident now (``domain.authority``): from ``snapshot`` where it was
        read, else one BatchGetItem per 100."""
        codes = list(dict.fromkeys(resident_codes))
        if snapshot is None:
            snapshot = Snapshot()
        missing = [c for c in codes if c not in snapshot.checked_codes]
        if missing:
            keys = [{"pk": {"S": resident_pk(c)}, "sk": {"S": CURRENT}} for c in missing]
            snapshot.checked_codes.update(missing)
            for item in aws.batch_get_all(self.table_name, keys):
                snapshot.current[item["pk"]["S"][2:]] = item
        return {c: Holding(item["municipality"]["S"], ChangeReason(item["reason"]["S"]),
                           dt.date.fromisoformat(item["change_date"]["S"]), item["order_key"]["S"])
                for c in codes if (item := snapshot.current.get(c)) is not None}

    def stored_ids(self, notices: Iterable[UpdateNotice], snapshot: Snapshot | None = None) -> set[str]:
        """Ids of the notices whose history entry is already stored (a redelivery: it was checked
        and counted when it first arrived). From ``snapshot``, else one BatchGetItem per 100."""
        notices = list(notices)
        snapshot = self._read(snapshot or Snapshot(), notices)
        return {n.notice_id for n in notices
                if (resident_pk(n.resident_code.value), history_sk(n.order_key)) in snapshot.history}

    @staticmethod
    def dead_lettered_before(notices: Iterable[UpdateNotice], snapshot: Snapshot) -> set[str]:
        """Ids of ``notices`` (not in the history) whose sequence number the municipality's
        ledger in ``snapshot`` already covers: a notice refused here before (its number is
        recorded with its dead-letter count, ``record_dead_letter``). A redelivery must not
        screen it again: the resident's state may have changed since, and a notice both
        dead-lettered and stored would be counted twice."""
        ledgers = {m: ledger_from_item(item) for m, item in snapshot.ledgers.items()}
        return {n.notice_id for n in notices
                if (ledger := ledgers.get(n.municipality.value)) is not None and ledger.covers(n.sequence)}

    def apply(self, notices: list[UpdateNotice], *, now: dt.datetime,
              lineage: Mapping[str, Attestation] | None = None, snapshot: Snapshot | None = None,
              ledgers: bool = False) -> ApplyResult:
        """Store a batch of validated notices under the ordering rule; idempotent. ``lineage``:
        per notice id, the signature the notice was accepted under, kept on its history items.
        ``snapshot``: what ``read`` found (read here when absent or incomplete). ``ledgers``:
        also record each notice's (sequence, month) in its municipality's ledger, in the same
        transactions (``ApplyResult.ledgers``), as ``update_ledger`` would."""
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
        by_municipality: dict[str, list[tuple[int, str]]] = defaultdict(list)
        if ledgers:
            for notice in [*notices, *result.duplicates]:
                by_municipality[notice.municipality.value].append((notice.sequence, notice.reporting_month))
        snapshot = self._read(snapshot or Snapshot(), notices, by_municipality)
        stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        by_code: dict[str, list[ResidentEvent]] = defaultdict(list)
        for notice in notices:
            for event in events_for(notice):
                by_code[event.resident_code].append(event)
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
            stored = snapshot.current.get(code)
            if events[-1].order_key > (stored["order_key"]["S"] if stored else ""):
                newest[code] = (events[-1], current)

        existing = snapshot.history
        changed, result.ledgers = self._write(
            [h for _, h in planned if (h["pk"]["S"], h["sk"]["S"]) not in existing],
            list(newest.values()),
            {m: (snapshot.ledgers.get(m), entries) for m, entries in by_municipality.items()}, now)
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

    def _write(self, history: list[dict], currents: list[tuple[ResidentEvent, dict]],
               ledgers: Mapping[str, tuple[dict | None, list[tuple[int, str]]]], now: dt.datetime,
               ) -> tuple[set[tuple[str, str]], dict[str, Ledger]]:
        """History items, then conditional current items, then ledgers, ``TRANSACTION_ITEMS`` to a
        TransactWriteItems. Returns the (resident code, order key) pairs that became current,
        and each municipality's ledger as it now stands."""
        table = self.table_name
        if self.history_in_transactions:
            ops: list[_Op] = [_Op("history", {"Put": {"TableName": table, "Item": item}}) for item in history]
        else:
            aws.batch_put_all(table, history)
            ops = []
        for event, item in currents:
            ops.append(_Op("current", {"Put": {
                "TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pk) OR order_key < :k",
                "ExpressionAttributeValues": {":k": {"S": event.order_key}}}}, (event.resident_code, event.order_key)))
        now_ledgers: dict[str, Ledger] = {}
        for municipality, (item, entries) in sorted(ledgers.items()):
            op = self._ledger_op(municipality, item, entries, now)
            if isinstance(op, Ledger):
                now_ledgers[municipality] = op
            else:
                ops.append(op)
        changed: set[tuple[str, str]] = set()
        for start in range(0, len(ops), TRANSACTION_ITEMS):
            chunk = ops[start:start + TRANSACTION_ITEMS]
            for attempt in range(_MAX_ATTEMPTS):
                if not chunk:
                    break
                failed = _transact([op.request for op in chunk])
                if failed is None:
                    changed.update(op.current for op in chunk if op.kind == "current")
                    now_ledgers.update((op.municipality, op.ledger) for op in chunk if op.kind == "ledger")
                    break
                retry: list[_Op] = []
                for op, code in zip(chunk, failed, strict=True):
                    if code != "ConditionalCheckFailed":
                        retry.append(op)  # cancelled because of another item, or a conflict: again
                    elif op.kind == "ledger":  # another processor updated it: read again, recompute
                        item = aws.client("dynamodb").get_item(TableName=table, Key=_ledger_key(op.municipality),
                                                              ConsistentRead=True).get("Item")
                        again = self._ledger_op(op.municipality, item, op.entries, now)
                        if isinstance(again, Ledger):
                            now_ledgers[op.municipality] = again
                        else:
                            retry.append(again)
                    elif op.kind != "current":  # a history put has no condition
                        raise RuntimeError(f"{table}: unexpected condition failure on {op.kind}")
                    # a current state whose condition failed lost to a newer one: dropped
                chunk = retry
                if all(code in (None, "ConditionalCheckFailed") for code in failed):
                    continue  # nothing contended: send what is left at once
                time.sleep(min(0.01 * (attempt + 1), 0.2))
            else:
                raise RuntimeError(f"{table}: a transaction kept being cancelled ({_MAX_ATTEMPTS} attempts)")
        return changed, now_ledgers

    def _ledger_op(self, municipality: str, item: dict | None, entries: list[tuple[int, str]],
                   now: dt.datetime) -> _Op | Ledger:
        """The conditional put that records ``entries`` in a municipality's ledger, or the ledger
        itself when they change nothing."""
        ledger = ledger_from_item(item)
        updated = ledger.add(entries, [], now)
        if updated == ledger:
            return ledger
        put: dict = {"TableName": self.table_name,
                     "Item": {**_ledger_key(municipality), **ledger_attributes(updated)}}
        if item:
            put["ConditionExpression"] = "version = :v"
            put["ExpressionAttributeValues"] = {":v": {"N": str(ledger.version)}}
        else:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        return _Op("ledger", {"Put": put}, municipality=municipality, entries=entries, ledger=updated)

    # --- the municipality ledger: received sequence numbers, stored and dead-lettered counts --
    def update_ledger(self, municipality: str, *, stored: Iterable[tuple[int, str]] = (),
                      received: Iterable[int] = (), now: dt.datetime | None = None) -> Ledger:
        """Record, once, what this tier got from a municipality.

        ``stored``: (sequence, month) of valid notices now in the history (new or repeated);
        ``received``: further sequence numbers that arrived but were dead-lettered. A sequence
        number already covered counts nothing, so redeliveries and retries count each notice
        once. One item per municipality, updated with optimistic locking (``version``)."""
        stored, received = list(stored), list(received)
        return self._update_ledger(municipality, lambda ledger: ledger.add(stored, received, now))

    def record_dead_letter(self, municipality: str, item_id: str, month: str, count: int,
                           received: Iterable[int] = (), now: dt.datetime | None = None) -> bool:
        """Count ``count`` dead-lettered notices in ``month`` against ``municipality``, once per
        ``item_id``: a marker item ``DLQ#<municipality>``/``<item id>`` is put in the same
        transaction as the ledger (dead letters are rare; the ledger stays small). ``received``:
        the notice's sequence number, recorded in the same transaction — so a sequence number
        the ledger covers but the history lacks was dead-lettered here (``dead_lettered_before``);
        ``now``: when it arrived, the instant a gap it opens is first seen (``Ledger.add``)."""
        received = list(received)
        marker = {"pk": {"S": f"DLQ#{municipality}"}, "sk": {"S": item_id[:512]}, "month": {"S": month},
                  "count": {"N": str(count)}}
        marker_put = {"Put": {"TableName": self.table_name, "Item": marker,
                              "ConditionExpression": "attribute_not_exists(pk)"}}
        try:
            self._update_ledger(municipality, lambda ledger: ledger.add([], received, now).add_dead(month, count),
                                marker_put)
        except _AlreadyCounted:
            return False
        return True

    def release_dead_letters(self, content: Iterable[tuple[str, str]]) -> dict[str, int]:
        """A redriven message was processed: the dead letters it had been counted as — markers
        ``DLQ#<ledger>``/``<content id>`` among ``content`` (ledger name, content id) — leave
        their ledgers' dead-lettered counts (``Ledger.release_dead``) and the markers are
        deleted in the same transaction, so a retry releases nothing twice. Returns the
        notices released per ledger."""
        keys = [{"pk": {"S": f"DLQ#{ledger}"}, "sk": {"S": item_id[:512]}}
                for ledger, item_id in dict.fromkeys(content)]
        released: dict[str, int] = defaultdict(int)
        if not keys:
            return released
        ddb = aws.client("dynamodb")
        found: list[dict] = []
        for start in range(0, len(keys), 100):
            request = {self.table_name: {"Keys": keys[start:start + 100], "ConsistentRead": True}}
            while request:
                page = ddb.batch_get_item(RequestItems=request)
                found += page.get("Responses", {}).get(self.table_name, [])
                request = page.get("UnprocessedKeys") or {}
        for marker in found:
            ledger_name = marker["pk"]["S"].removeprefix("DLQ#")
            month, count = marker["month"]["S"], int(marker["count"]["N"])
            delete = {"Delete": {"TableName": self.table_name, "Key": {"pk": marker["pk"], "sk": marker["sk"]},
                                 "ConditionExpression": "attribute_exists(pk)"}}
            try:
                self._update_ledger(ledger_name, lambda ledger, m=month, c=count: ledger.release_dead(m, c), delete)
            except _AlreadyCounted:  # released by a concurrent delivery of the same message
                continue
            released[ledger_name] += count
        return released

    def _update_ledger(self, municipality: str, change: Callable[[Ledger], Ledger],
                       extra: dict | None = None) -> Ledger:
        """Read-modify-write of the ledger item under ``version``; with ``extra`` (one more
        transaction item whose condition failing means "already done") in one transaction."""
        ddb = aws.client("dynamodb")
        key = _ledger_key(municipality)
        for attempt in range(50):
            item = ddb.get_item(TableName=self.table_name, Key=key, ConsistentRead=True).get("Item")
            ledger = ledger_from_item(item)
            updated = change(ledger)
            if updated == ledger and extra is None:
                return ledger
            put = {"TableName": self.table_name, "Item": {**key, **ledger_attributes(updated)}}
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
        return ledger_from_item(item)

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
        return self.currents_of(aws.batch_get_all(self.table_name, self.current_keys(resident_codes)), within)

    @staticmethod
    def current_keys(resident_codes: Iterable[str]) -> list[dict]:
        """The keys of the residents' current items (for a caller that reads them together
        with another table's, ``aws.batch_get_tables``)."""
        return [{"pk": {"S": resident_pk(c)}, "sk": {"S": CURRENT}} for c in resident_codes]

    def currents_of(self, items: Iterable[dict],
                    within: Callable[[str], bool] | None = None) -> dict[str, StoredEntry]:
        """``currents`` of the current items read for ``current_keys``: scoped, then decrypted."""
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


@dataclass
class _Op:
    """One item of a TransactWriteItems: what it is for, and what to do if its condition fails."""

    kind: str  # history | current | ledger
    request: dict
    current: tuple[str, str] = ("", "")  # (resident code, order key) of a current put
    municipality: str = ""
    entries: list[tuple[int, str]] = field(default_factory=list)
    ledger: Ledger | None = None


def _ledger_key(municipality: str) -> dict:
    return {"pk": {"S": f"LEDGER#{municipality}"}, "sk": {"S": "LEDGER"}}


def _transact(items: list[dict]) -> list[str | None] | None:
    """Run one TransactWriteItems: None if it committed, else each item's cancellation code
    (None for an item that did not cause it)."""
    failed = aws.transact_write(items)
    return None if failed is None else [code for code, _ in failed]


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

"""The tier's identity table (prefecture or national): current state, history, ledgers.

Item layout (one table per tier, keys ``pk``/``sk``):

=====================  ==================  ==================================================
pk                     sk                  what
=====================  ==================  ==================================================
``R#<resident code>``  ``CURRENT``         current state; ``order_key`` guards every write
``R#<resident code>``  ``H#<order key>``   one history entry per notice (per code it touches)
``SEQ#<municipality>`` ``<first seq>``     a run of sequence numbers received (gap detection)
``DLQ#<muni>#<YYYY-MM>`` ``<message/notice>`` a notice dead-lettered by this tier
``META``               ``blind-index-key`` the blind-index HMAC key, wrapped by the data key
=====================  ==================  ==================================================

Identity facts are sealed (AES-256-GCM, ``domain.envelope``) with a data key from the
tier's KMS key before they are written; the wrapped data key is stored beside them. AAD
binds each ciphertext to its resident code and notice id.

Writes follow ``domain.ordering``: history entries are put with ``attribute_not_exists``
(a duplicate changes nothing); the current state is put only when the notice's
``order_key`` is greater than the stored one (``attribute_not_exists OR order_key < :k``),
so concurrent writers converge on the greatest notice whatever the arrival order. Writes
are grouped into TransactWriteItems of up to 100 actions; if a transaction is cancelled
(a duplicate, or a concurrent newer write), that group falls back to single conditional
writes, current state first and history second, so a crash between the two is repaired by
the retry (the history put is what marks a notice as stored).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..domain import envelope
from ..domain.blind_index import blind_index
from ..domain.facts import IdentityFacts
from ..domain.notice import UpdateNotice
from ..domain.ordering import ResidentEvent, ResidentStatus, events_for
from . import aws
from .kms import DataKeys

CURRENT = "CURRENT"
MAX_TRANSACT_ACTIONS = 100
_BATCH_GET_LIMIT = 100


def resident_pk(code: str) -> str:
    return f"R#{code}"


def history_sk(order_key: str) -> str:
    return f"H#{order_key}"


def sender_month(municipality: str, month: str) -> str:
    return f"{municipality}#{month}"


def aad_for(resident_code: str, notice_id: str) -> bytes:
    return f"{resident_code}|{notice_id}".encode()


@dataclass
class ApplyResult:
    stored: list[UpdateNotice] = field(default_factory=list)  # newly stored notices
    duplicates: list[UpdateNotice] = field(default_factory=list)  # already stored before
    current_changed: int = 0
    stale: int = 0  # stored in history, but a newer notice already defines the current state


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


class IdentityStore:
    def __init__(self, table_name: str, data_keys: DataKeys, blind_index_key: bytes | None = None) -> None:
        self.table_name = table_name
        self.data_keys = data_keys
        self._blind_index_key = blind_index_key

    # --- blind index key -------------------------------------------------------------
    def blind_index_key(self) -> bytes:
        """The tier's HMAC key for the blind index, created once and kept wrapped in the table."""
        if self._blind_index_key is None:
            ddb = aws.client("dynamodb")
            key = {"pk": {"S": "META"}, "sk": {"S": "blind-index-key"}}
            item = ddb.get_item(TableName=self.table_name, Key=key, ConsistentRead=True).get("Item")
            if item is None:
                _, wrapped = self.data_keys.current(uses=0)
                # A fresh data key would also do; reusing the current one saves a KMS call, and
                # the HMAC key is still only ever stored wrapped.
                try:
                    ddb.put_item(
                        TableName=self.table_name,
                        Item={**key, "wrapped": {"B": wrapped}},
                        ConditionExpression="attribute_not_exists(pk)",
                    )
                except Exception as exc:
                    if aws.error_code(exc) != "ConditionalCheckFailedException":
                        raise
                item = ddb.get_item(TableName=self.table_name, Key=key, ConsistentRead=True)["Item"]
            self._blind_index_key = self.data_keys.unwrap(item["wrapped"]["B"])
        return self._blind_index_key

    # --- writes ----------------------------------------------------------------------
    def apply(self, notices: list[UpdateNotice], now: dt.datetime | None = None) -> ApplyResult:
        """Store a batch of validated notices under the ordering rule; idempotent."""
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
        stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        by_code: dict[str, list[ResidentEvent]] = defaultdict(list)
        for notice in notices:
            for event in events_for(notice):
                by_code[event.resident_code].append(event)
        current_keys = self._current_order_keys(list(by_code))
        plaintext_key, wrapped_key = self.data_keys.current(uses=len(notices))
        sealer = envelope.Sealer(plaintext_key)
        bidx_key = self.blind_index_key()

        groups: list[list[tuple[ResidentEvent, dict, dict | None]]] = []
        group: list[tuple[ResidentEvent, dict, dict | None]] = []
        actions = 0
        for code, events in by_code.items():
            events.sort(key=lambda e: e.order_key)
            newest = events[-1]
            writes_current = newest.order_key > (current_keys.get(code) or "")
            planned = []
            for event in events:
                history, current = self._items(event, sealer, wrapped_key, bidx_key, stamp)
                planned.append((event, history, current if (writes_current and event is newest) else None))
            needed = len(events) + (1 if writes_current else 0)
            if group and actions + needed > MAX_TRANSACT_ACTIONS:
                groups.append(group)
                group, actions = [], 0
            group.extend(planned)
            actions += needed
        if group:
            groups.append(group)

        for planned in groups:
            outcomes = self._transact(planned) or self._one_by_one(planned)
            for (event, _, _), (stored, changed) in zip(planned, outcomes, strict=True):
                primary = event.notice.resident_code.value == event.resident_code
                if stored:
                    if primary:
                        result.stored.append(event.notice)
                    if changed:
                        result.current_changed += 1
                    else:
                        result.stale += 1
                elif primary:
                    result.duplicates.append(event.notice)
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
        if notice.resident_code.value == event.resident_code:
            # Only the primary event counts as "stored" for the municipality's statistics.
            history["sender_month"] = {"S": sender_month(notice.municipality.value, notice.reporting_month)}
        current = {**common, "sk": {"S": CURRENT}}
        if event.facts is not None and event.status is ResidentStatus.ACTIVE:
            current["bidx"] = {"S": blind_index(bidx_key, event.facts.name.kana, event.facts.birth_date)}
        return history, current

    def _put_current(self, event: ResidentEvent, item: dict) -> dict:
        return {
            "TableName": self.table_name, "Item": item,
            "ConditionExpression": "attribute_not_exists(pk) OR order_key < :k",
            "ExpressionAttributeValues": {":k": {"S": event.order_key}},
        }

    def _put_history(self, item: dict) -> dict:
        return {"TableName": self.table_name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}

    def _transact(self, planned: list[tuple[ResidentEvent, dict, dict | None]]) -> list[tuple[bool, bool]] | None:
        """All-or-nothing write of a group; None when any condition failed."""
        items = []
        for event, history, current in planned:
            if current is not None:
                items.append({"Put": self._put_current(event, current)})
            items.append({"Put": self._put_history(history)})
        if len(items) > MAX_TRANSACT_ACTIONS:  # one resident with ~100 notices in one message
            return None
        try:
            aws.client("dynamodb").transact_write_items(TransactItems=items)
        except Exception as exc:
            if aws.error_code(exc) == "TransactionCanceledException":
                return None
            raise
        return [(True, current is not None) for _, _, current in planned]

    def _one_by_one(self, planned: list[tuple[ResidentEvent, dict, dict | None]]) -> list[tuple[bool, bool]]:
        """Single conditional writes. Current state first: if we crash before the history put,
        the retry finds current == this notice (not greater), skips it and puts the history."""
        ddb = aws.client("dynamodb")
        outcomes = []
        for event, history, current in planned:
            changed = current is not None and _conditional(ddb.put_item, **self._put_current(event, current))
            stored = _conditional(ddb.put_item, **self._put_history(history))
            outcomes.append((stored, changed))
        return outcomes

    def _current_order_keys(self, codes: list[str]) -> dict[str, str]:
        ddb = aws.client("dynamodb")
        found: dict[str, str] = {}
        for start in range(0, len(codes), _BATCH_GET_LIMIT):
            keys = [{"pk": {"S": resident_pk(c)}, "sk": {"S": CURRENT}} for c in codes[start:start + _BATCH_GET_LIMIT]]
            request = {self.table_name: {"Keys": keys, "ProjectionExpression": "pk, order_key", "ConsistentRead": True}}
            while request:
                response = ddb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    found[item["pk"]["S"][2:]] = item["order_key"]["S"]
                request = response.get("UnprocessedKeys") or None
        return found

    # --- sequence ledger and dead letters ---------------------------------------------
    def record_sequence_runs(self, notices: Iterable[UpdateNotice], message_id: str) -> None:
        """Record which sequence numbers arrived, as runs per municipality (idempotent)."""
        ddb = aws.client("dynamodb")
        for municipality, runs in sequence_runs(notices).items():
            for first, last in runs:
                ddb.put_item(TableName=self.table_name, Item={
                    "pk": {"S": f"SEQ#{municipality}"}, "sk": {"S": f"{first:012d}"},
                    "last": {"N": str(last)}, "message_id": {"S": message_id},
                })

    def sequence_gaps(self, municipality: str) -> list[tuple[int, int]]:
        """Missing sequence numbers of a municipality, as inclusive (first, last) ranges."""
        runs = [(int(i["sk"]["S"]), int(i["last"]["N"])) for i in self._query(f"SEQ#{municipality}")]
        return gaps_in(runs)

    def record_dead_letter(self, municipality: str, month: str, item_id: str, count: int, reason: str) -> None:
        aws.client("dynamodb").put_item(TableName=self.table_name, Item={
            "pk": {"S": f"DLQ#{municipality}#{month}"}, "sk": {"S": item_id},
            "count": {"N": str(count)}, "reason": {"S": reason[:500]},
        })

    # --- reads -------------------------------------------------------------------------
    def count_stored(self, municipality: str, month: str) -> int:
        ddb = aws.client("dynamodb")
        total, start = 0, None
        while True:
            kwargs = {
                "TableName": self.table_name, "IndexName": "by_sender_month", "Select": "COUNT",
                "KeyConditionExpression": "sender_month = :m",
                "ExpressionAttributeValues": {":m": {"S": sender_month(municipality, month)}},
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            response = ddb.query(**kwargs)
            total += response["Count"]
            start = response.get("LastEvaluatedKey")
            if not start:
                return total

    def count_dead_lettered(self, municipality: str, month: str) -> int:
        return sum(int(i["count"]["N"]) for i in self._query(f"DLQ#{municipality}#{month}"))

    def current(self, resident_code: str) -> StoredEntry | None:
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key={"pk": {"S": resident_pk(resident_code)}, "sk": {"S": CURRENT}},
            ConsistentRead=True,
        ).get("Item")
        return None if item is None else self._entry(item)

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
        )

    def _query(self, pk: str, sk_prefix: str | None = None) -> list[dict]:
        ddb = aws.client("dynamodb")
        items: list[dict] = []
        kwargs: dict = {
            "TableName": self.table_name, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk" + (" AND begins_with(sk, :p)" if sk_prefix else ""),
            "ExpressionAttributeValues": {":pk": {"S": pk}, **({":p": {"S": sk_prefix}} if sk_prefix else {})},
        }
        while True:
            response = ddb.query(**kwargs)
            items.extend(response["Items"])
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _conditional(put, **kwargs) -> bool:
    try:
        put(**kwargs)
    except Exception as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def sequence_runs(notices: Iterable[UpdateNotice]) -> dict[str, list[tuple[int, int]]]:
    """Contiguous runs of sequence numbers per municipality, e.g. {"202011": [(1, 40), (42, 50)]}."""
    by_muni: dict[str, list[int]] = defaultdict(list)
    for notice in notices:
        by_muni[notice.municipality.value].append(notice.sequence)
    return {m: _runs(sorted(set(seqs))) for m, seqs in by_muni.items()}


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    return runs


def gaps_in(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Missing numbers between 1 and the highest received, given received (first, last) runs."""
    gaps: list[tuple[int, int]] = []
    expected = 1
    for first, last in sorted(runs):
        if first > expected:
            gaps.append((expected, first - 1))
        expected = max(expected, last + 1)
    return gaps

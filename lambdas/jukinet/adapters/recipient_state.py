"""What the provision functions keep about a recipient between requests, in the provision
state table (mutable bookkeeping, never evidence):

======================  ===============  ===================================================
pk                      sk               what
======================  ===============  ===================================================
``ISOLATED#<id>``       ``ISOLATED``     the emergency plan's mark (``jukinet isolate agency``):
                                         ``isolated`` (BOOL), the isolation record's id, since
``SCAN#<id>``           ``<slot>``       one scan-detection slot (``domain.scan``): answers,
                                         not-found answers and near codes counted, ``b`` the
                                         number set of the code bodies asked for, ``v`` its
                                         version (one more per write); expires after a day
                                         (TTL)
======================  ===============  ===================================================

The isolation mark is written by the operators' emergency command and read by the provision
functions on every request, so an isolated recipient is refused whatever API key its calls
carry (``docs/emergency.md``).

A look-up reads everything it needs of this table in one consistent BatchGetItem, together
with the residents' items (``snapshot_keys``/``snapshot_of``: the mark, the month's statistics
item, the two slots of the scan window and the residents' chain heads; decision 0056) and writes the window in the same transaction as its log entries
(``ScanWrite``, an ``Extra`` of ``ProvisionLog.append``), conditioned on the slot's version
``v`` as read: of two concurrent requests the later one is judged again with the earlier
one's codes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from ..domain import scan
from . import aws
from .provision_log import Head, _head_of, head_key, stat_key

ISOLATED_SK = "ISOLATED"
SCAN_TTL = dt.timedelta(days=1)


def isolation_key(recipient_id: str) -> dict:
    """The key of a recipient's isolation mark (also written by ``jukinet_ops/emergency.py``)."""
    return {"pk": {"S": f"ISOLATED#{recipient_id}"}, "sk": {"S": ISOLATED_SK}}


def _slot_key(recipient_id: str, slot: int) -> dict:
    return {"pk": {"S": f"SCAN#{recipient_id}"}, "sk": {"S": f"{slot:012d}"}}


@dataclass(frozen=True)
class SlotState:
    answers: int = 0
    not_found: int = 0
    near: int = 0
    bodies: frozenset[int] = frozenset()
    exists: bool = False
    version: int | None = None  # ``v``: one more on every write of the slot


def _slot(item: dict | None) -> SlotState:
    if not item:
        return SlotState()
    return SlotState(answers=int(item.get("n", {}).get("N", 0)), not_found=int(item.get("nf", {}).get("N", 0)),
                     near=int(item.get("near", {}).get("N", 0)),
                     bodies=frozenset(int(b) for b in item.get("b", {}).get("NS", [])), exists=True,
                     version=int(item["v"]["N"]) if "v" in item else None)


@dataclass(frozen=True)
class Snapshot:
    """What a look-up needs of the state table, read in one consistent BatchGetItem."""

    isolated: bool
    reserved: dict[str, int]  # affair → records provided or reserved this month (``r#<affair>``)
    previous: SlotState
    current: SlotState
    heads: dict[str, Head]


class ScanWrite:
    """A request's codes and answers added to the recipient's current scan slot, as an extra
    of the log's transaction (``ProvisionLog.append``): judged against the slots as read, and
    written only if the slot is still the one read (``v``); otherwise judged again against
    the slot as it is now (returned by the failed condition) and sent again."""

    def __init__(self, state_table: str, recipient_id: str, now: dt.datetime, codes: list[str], answers: int,
                 not_found: int, previous: SlotState, current: SlotState) -> None:
        self.state_table, self.recipient_id, self.now = state_table, recipient_id, now
        self.codes, self.answers, self.not_found = codes, answers, not_found
        self.previous = previous
        self._judge(current)

    def _judge(self, current: SlotState) -> None:
        self.current = current
        self.signal = scan.judge(self.codes, seen=self.previous.bodies | current.bodies,
                                 earlier_near=self.previous.near + current.near,
                                 answers=self.previous.answers + current.answers + self.answers,
                                 not_found=self.previous.not_found + current.not_found + self.not_found)

    def action(self) -> dict:
        values: dict = {":n": {"N": str(self.answers)}, ":nf": {"N": str(self.not_found)}, ":one": {"N": "1"},
                        ":t": {"N": str(int((self.now + SCAN_TTL).timestamp()))}}
        adds = ["n :n", "nf :nf", "v :one"]
        bodies = scan.bodies(self.codes)
        # The set is bounded (an item holds at most 400 KB): past the cap a slot only counts.
        if bodies and len(self.current.bodies) < scan.MAX_BODIES:
            adds.append("b :b")
            values[":b"] = {"NS": [str(b) for b in sorted(bodies)]}
        if self.signal.near:
            adds.append("near :k")
            values[":k"] = {"N": str(self.signal.near)}
        update = {"TableName": self.state_table, "Key": _slot_key(self.recipient_id, scan.slot_of(self.now)),
                  "UpdateExpression": "ADD " + ", ".join(adds) + " SET expires_at = :t",
                  "ExpressionAttributeValues": values, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        if not self.current.exists:
            update["ConditionExpression"] = "attribute_not_exists(pk)"
        elif self.current.version is None:
            update["ConditionExpression"] = "attribute_not_exists(v)"
        else:
            update["ConditionExpression"] = "v = :v"
            values[":v"] = {"N": str(self.current.version)}
        return {"Update": update}

    def failed(self, item: dict | None) -> None:
        self._judge(_slot(item))


class RecipientState:
    def __init__(self, state_table: str) -> None:
        self.state_table = state_table

    # --- emergency isolation ---------------------------------------------------------------
    def isolated(self, recipient_id: str) -> bool:
        item = aws.client("dynamodb").get_item(TableName=self.state_table, Key=isolation_key(recipient_id),
                                               ConsistentRead=True).get("Item")
        return bool(item and item.get("isolated", {}).get("BOOL"))

    @staticmethod
    def snapshot_keys(recipient_id: str, month: str, now: dt.datetime, codes: Iterable[str]) -> list[dict]:
        """The state table's keys a look-up's snapshot reads — the isolation mark, the month's
        statistics item, the scan window (this slot and the one before) and the chain heads of
        ``codes`` — read together with the residents' items (``aws.batch_get_tables``, decision 0056)."""
        slot = scan.slot_of(now)
        return [isolation_key(recipient_id), stat_key(month, recipient_id), _slot_key(recipient_id, slot - 1),
                _slot_key(recipient_id, slot)] + [head_key(c) for c in dict.fromkeys(codes)]

    @staticmethod
    def snapshot_of(found: Iterable[dict], recipient_id: str, month: str, now: dt.datetime,
                    codes: Iterable[str]) -> Snapshot:
        """The snapshot made of the items read for ``snapshot_keys`` (those that exist)."""
        slot = scan.slot_of(now)
        codes = list(dict.fromkeys(codes))
        items = {(i["pk"]["S"], i["sk"]["S"]): i for i in found}

        def get(key: dict) -> dict | None:
            return items.get((key["pk"]["S"], key["sk"]["S"]))

        mark, stat = get(isolation_key(recipient_id)), get(stat_key(month, recipient_id)) or {}
        heads = {c: h for c in codes if (h := _head_of(get(head_key(c)))) is not None}
        return Snapshot(isolated=bool(mark and mark.get("isolated", {}).get("BOOL")),
                        reserved={k[2:]: int(v["N"]) for k, v in stat.items() if k.startswith("r#") and "N" in v},
                        previous=_slot(get(_slot_key(recipient_id, slot - 1))),
                        current=_slot(get(_slot_key(recipient_id, slot))), heads=heads)

    def scan_write(self, recipient_id: str, now: dt.datetime, snapshot: Snapshot, *, codes: Iterable[str],
                   answers: int, not_found: int) -> ScanWrite:
        return ScanWrite(self.state_table, recipient_id, now, list(codes), answers, not_found, snapshot.previous,
                         snapshot.current)

    # --- scan detection ----------------------------------------------------------------------
    def observe(self, recipient_id: str, now: dt.datetime, *, codes: Iterable[str] = (), answers: int = 0,
                not_found: int = 0, remember: bool = True) -> scan.Signal:
        """Add one request's (or batch chunk's) codes and answers to the recipient's current
        slot and judge the sliding window (this slot and the one before). One GetItem and one
        UpdateItem (a second only when near codes are found); the slot's old state comes back
        from the update itself, so of two concurrent requests the later sees the earlier's
        codes. ``remember=False`` (batch chunks: a file of a million codes would fill the
        window and meet itself there by chance): the codes are judged among themselves only,
        and the window counts the answers."""
        codes = list(codes)
        slot = scan.slot_of(now)
        bodies = scan.bodies(codes) if remember else frozenset()
        ddb = aws.client("dynamodb")
        previous = _slot(ddb.get_item(TableName=self.state_table, Key=_slot_key(recipient_id, slot - 1),
                                      ConsistentRead=True).get("Item"))
        values: dict = {":n": {"N": str(answers)}, ":nf": {"N": str(not_found)}, ":one": {"N": "1"},
                        ":t": {"N": str(int((now + SCAN_TTL).timestamp()))}}
        update = "ADD n :n, nf :nf, v :one SET expires_at = :t"
        kwargs: dict = {}
        if bodies:
            # The set is bounded (an item holds at most 400 KB): past the cap a slot only counts.
            update = "ADD n :n, nf :nf, v :one, b :b SET expires_at = :t"
            values.update({":b": {"NS": [str(b) for b in sorted(bodies)]}, ":cap": {"N": str(scan.MAX_BODIES)}})
            kwargs["ConditionExpression"] = "attribute_not_exists(b) OR size(b) < :cap"
        try:
            old = ddb.update_item(TableName=self.state_table, Key=_slot_key(recipient_id, slot),
                                  UpdateExpression=update, ExpressionAttributeValues=values,
                                  ReturnValues="ALL_OLD", **kwargs).get("Attributes")
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
            values = {k: v for k, v in values.items() if k in (":n", ":nf", ":one", ":t")}
            old = ddb.update_item(TableName=self.state_table, Key=_slot_key(recipient_id, slot),
                                  UpdateExpression="ADD n :n, nf :nf, v :one SET expires_at = :t",
                                  ExpressionAttributeValues=values, ReturnValues="ALL_OLD").get("Attributes")
        current = _slot(old)
        signal = scan.judge(codes, seen=previous.bodies | current.bodies if remember else frozenset(),
                            earlier_near=previous.near + current.near,
                            answers=previous.answers + current.answers + answers,
                            not_found=previous.not_found + current.not_found + not_found)
        if signal.near:
            ddb.update_item(TableName=self.state_table, Key=_slot_key(recipient_id, slot),
                            UpdateExpression="ADD near :k, v :one",
                            ExpressionAttributeValues={":k": {"N": str(signal.near)}, ":one": {"N": "1"}})
        return signal

"""What the provision functions keep about a recipient between requests, in the provision
state table (mutable bookkeeping, never evidence):

======================  ===============  ===================================================
pk                      sk               what
======================  ===============  ===================================================
``ISOLATED#<id>``       ``ISOLATED``     the emergency plan's mark (``jukinet isolate agency``):
                                         ``isolated`` (BOOL), the isolation record's id, since
``SCAN#<id>``           ``<slot>``       one scan-detection slot (``domain.scan``): answers,
                                         not-found answers and near codes counted, ``b`` the
                                         number set of the code bodies asked for; expires
                                         after a day (TTL)
======================  ===============  ===================================================

The isolation mark is written by the operators' emergency command and read by the provision
functions on every request, so an isolated recipient is refused whatever API key its calls
carry (``docs/emergency.md``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from ..domain import scan
from . import aws

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


def _slot(item: dict | None) -> SlotState:
    if not item:
        return SlotState()
    return SlotState(answers=int(item.get("n", {}).get("N", 0)), not_found=int(item.get("nf", {}).get("N", 0)),
                     near=int(item.get("near", {}).get("N", 0)),
                     bodies=frozenset(int(b) for b in item.get("b", {}).get("NS", [])))


class RecipientState:
    def __init__(self, state_table: str) -> None:
        self.state_table = state_table

    # --- emergency isolation ---------------------------------------------------------------
    def isolated(self, recipient_id: str) -> bool:
        item = aws.client("dynamodb").get_item(TableName=self.state_table, Key=isolation_key(recipient_id),
                                               ConsistentRead=True).get("Item")
        return bool(item and item.get("isolated", {}).get("BOOL"))

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
        values: dict = {":n": {"N": str(answers)}, ":nf": {"N": str(not_found)},
                        ":t": {"N": str(int((now + SCAN_TTL).timestamp()))}}
        update = "ADD n :n, nf :nf SET expires_at = :t"
        kwargs: dict = {}
        if bodies:
            # The set is bounded (an item holds at most 400 KB): past the cap a slot only counts.
            update = "ADD n :n, nf :nf, b :b SET expires_at = :t"
            values.update({":b": {"NS": [str(b) for b in sorted(bodies)]}, ":cap": {"N": str(scan.MAX_BODIES)}})
            kwargs["ConditionExpression"] = "attribute_not_exists(b) OR size(b) < :cap"
        try:
            old = ddb.update_item(TableName=self.state_table, Key=_slot_key(recipient_id, slot),
                                  UpdateExpression=update, ExpressionAttributeValues=values,
                                  ReturnValues="ALL_OLD", **kwargs).get("Attributes")
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
            values = {k: v for k, v in values.items() if k in (":n", ":nf", ":t")}
            old = ddb.update_item(TableName=self.state_table, Key=_slot_key(recipient_id, slot),
                                  UpdateExpression="ADD n :n, nf :nf SET expires_at = :t",
                                  ExpressionAttributeValues=values, ReturnValues="ALL_OLD").get("Attributes")
        current = _slot(old)
        signal = scan.judge(codes, seen=previous.bodies | current.bodies if remember else frozenset(),
                            earlier_near=previous.near + current.near,
                            answers=previous.answers + current.answers + answers,
                            not_found=previous.not_found + current.not_found + not_found)
        if signal.near:
            ddb.update_item(TableName=self.state_table, Key=_slot_key(recipient_id, slot),
                            UpdateExpression="ADD near :k", ExpressionAttributeValues={":k": {"N": str(signal.near)}})
        return signal

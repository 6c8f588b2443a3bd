"""The municipality tier's card table: cards, their signed events, challenges, the residents'
register state as this tier's CSs sent it, call records and statistics.

==============================  =====================  ==============================================
pk                              sk                     what
==============================  =====================  ==============================================
``CARD#<serial>``               ``CARD``               the card record (``domain.card.Card``); ``seq``
                                                       is its version: every change is conditional on it
``CARD#<serial>``               ``EV#<seq:08d>``       one signed event (never overwritten)
``KEY#<sha256 of public key>``  ``KEY``                the card that holds this public key (a cloned
                                                       key cannot be registered twice)
``RESIDENT#<code>``             ``CARD``               the resident's one valid card (serial)
``RESIDENT#<code>``             ``REGISTER``           the resident's latest state as this tier's CSs
                                                       sent it: municipality, reason, status, order key
                                                       (written by the CS, ``ResidentRegister``)
``CHALLENGE#<id>``              ``CHALLENGE``          a one-time challenge; expires (TTL) a day later
``REMOTE-CHALLENGE#<id>``       ``CHALLENGE``          the same, issued to a counter of another tier
``CALL#<municipality>#<month>`` ``<instant>#<req id>`` one counter call: who, what, which resident/card
``STAT#<municipality>``         ``<YYYY-MM>``          the month's counters (``issued``, ``refused_<CODE>`` …)
==============================  =====================  ==============================================

Why here and not in the prefecture's identity table: ``docs/decisions/0025-*``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..clock import month_jst
from ..domain.card import (
    Card,
    CardEvent,
    CardRefusal,
    CardRefusalCode,
    CardStatus,
    CardType,
    Challenge,
    EventKind,
    parse_instant,
)
from ..domain.facts import ChangeReason, ChangeKind
from ..domain.notice import UpdateNotice
from . import aws
from .dynamo_items import number as _n, string as _s

CARD_SK, REGISTER_SK, CHALLENGE_SK, KEY_SK = "CARD", "REGISTER", "CHALLENGE", "KEY"
CHALLENGE_KEEP = dt.timedelta(days=1)
CALL_RETENTION = dt.timedelta(days=7 * 366)  # kept like the provision records: 7 years


class Conflict(RuntimeError):
    """Someone else changed the card first (its ``seq`` moved): read it again and retry."""


def card_key(serial: str) -> dict:
    return {"pk": _s(f"CARD#{serial}"), "sk": _s(CARD_SK)}


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def card_item(card: Card) -> dict:
    return {**card_key(card.serial), "resident_code": _s(card.resident_code), "issuer": _s(card.issuer),
            "home": _s(card.home), "card_type": _s(card.card_type.value), "issued_at": _s(_iso(card.issued_at)),
            "valid_until": _s(card.valid_until.isoformat()), "public_key": _s(card.public_key),
            "status": _s(card.status.value), "pin_locked": {"BOOL": card.pin_locked},
            "pin_failures": _n(card.pin_failures), "seq": _n(card.seq), "head": _s(card.head)}


def card_from(item: Mapping) -> Card:
    return Card(serial=item["pk"]["S"].removeprefix("CARD#"), resident_code=item["resident_code"]["S"],
                issuer=item["issuer"]["S"], home=item["home"]["S"], card_type=CardType(item["card_type"]["S"]),
                issued_at=parse_instant(item["issued_at"]["S"]),
                valid_until=dt.date.fromisoformat(item["valid_until"]["S"]), public_key=item["public_key"]["S"],
                status=CardStatus(item["status"]["S"]), pin_locked=item["pin_locked"]["BOOL"],
                pin_failures=int(item["pin_failures"]["N"]), seq=int(item["seq"]["N"]), head=item["head"]["S"])


def event_item(event: CardEvent) -> dict:
    return {"pk": _s(f"CARD#{event.serial}"), "sk": _s(f"EV#{event.seq:08d}"), "kind": _s(event.kind.value),
            "at": _s(_iso(event.at)), "municipality": _s(event.municipality), "actor": _s(event.actor),
            "previous": _s(event.previous), "details": _s(_json(event.details)), "signer": _s(event.signer),
            "signature": {"B": event.signature}, "digest": _s(event.digest_hex)}


def event_from(item: Mapping) -> CardEvent:
    return CardEvent(serial=item["pk"]["S"].removeprefix("CARD#"), seq=int(item["sk"]["S"].removeprefix("EV#")),
                     kind=EventKind(item["kind"]["S"]), at=parse_instant(item["at"]["S"]),
                     municipality=item["municipality"]["S"], actor=item["actor"]["S"],
                     previous=item["previous"]["S"], details=json.loads(item["details"]["S"]),
                     signer=item["signer"]["S"], signature=bytes(item["signature"]["B"]))


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Notices that end a card: the resident died, was deleted by the mayor's authority, or now has
# another resident code (the card carries the old one).
ENDING_REASONS = {ChangeReason.DEATH: "death", ChangeReason.DELETION_BY_AUTHORITY: "deleted_by_authority"}


class ResidentRegister:
    """Written by each CS as it sends its notices: the resident's latest state in this tier,
    kept by the ordering rule (``order_key`` only ever grows), so the card service checks
    issuance against the tier's own register and not against what the caller says."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def record(self, notices: Iterable[UpdateNotice]) -> int:
        """Record each resident's newest notice (older ones change nothing); returns how many
        notices moved a resident's state. A code change also marks the old code as ended.

        Batched (issue 13): the touched residents' register items are read (``BatchGetItem``, 100
        keys a request), each resident's notices are applied in the ordering rule's order to
        what was read (``registered``), and the changed items are put ``TRANSACTION_ITEMS`` to a
        ``TransactWriteItems``, each conditional on the item being as it was read. Another
        CS that moved a resident in between (a move within the prefecture) fails that item's
        condition: it is read again and recomputed. About 2 requests per 100 residents instead
        of one per notice."""
        writes: dict[str, list[tuple[UpdateNotice, ChangeReason, str]]] = {}
        for notice in notices:
            writes.setdefault(notice.resident_code.value, []).append(
                (notice, notice.reason, ENDING_REASONS.get(notice.reason, "")))
            if notice.reason is ChangeReason.CODE_CHANGE and notice.previous_resident_code is not None:
                writes.setdefault(notice.previous_resident_code.value, []).append(
                    (notice, ChangeReason.CODE_CHANGE, "code_changed"))
        moved = 0
        pending = sorted(writes)
        for _attempt in range(_REGISTER_ATTEMPTS):
            if not pending:
                return moved
            stored = self._read(pending)
            ops = []
            for code in pending:
                state, applied = registered(stored.get(code), writes[code])
                if applied:
                    ops.append((code, applied, self._put(code, state, stored.get(code))))
            pending = []
            for start in range(0, len(ops), aws.TRANSACTION_ITEMS):
                chunk = ops[start:start + aws.TRANSACTION_ITEMS]
                for _conflict in range(_REGISTER_ATTEMPTS):
                    if not chunk:
                        break
                    failed = aws.transact_write([op for _, _, op in chunk])
                    if failed is None:
                        moved += sum(applied for _, applied, _ in chunk)
                        break
                    # Lost to another writer: read again. Cancelled because of another item: send again.
                    pending += [code for (code, _, _), (why, _) in zip(chunk, failed, strict=True)
                                if why == "ConditionalCheckFailed"]
                    chunk = [op for op, (why, _) in zip(chunk, failed, strict=True)
                             if why != "ConditionalCheckFailed"]
                    if any(why not in (None, "ConditionalCheckFailed") for why, _ in failed):
                        time.sleep(0.01 * (_conflict + 1))
                else:
                    raise RuntimeError(f"{self.table_name}: a register transaction kept being cancelled")
        if pending:
            raise RuntimeError(f"{self.table_name}: register items kept changing under this CS "
                               f"({_REGISTER_ATTEMPTS} reads): {pending[:5]}")
        return moved

    def _read(self, codes: list[str]) -> dict[str, dict]:
        items = aws.batch_get_all(self.table_name, [_register_key(code) for code in codes])
        return {item["pk"]["S"].removeprefix("RESIDENT#"): item for item in items}

    def _put(self, code: str, state: dict, before: dict | None) -> dict:
        """The whole item as ``registered`` computed it, conditional on the item being as it was
        read (a Put: the CS knows every attribute of the item; cheaper than an update to
        evaluate, on the embedded AWS several times so)."""
        item = {**_register_key(code), **{k: _s(v) for k, v in state.items()}}
        names, values = {}, {}
        if before is None:
            condition = "attribute_not_exists(pk)"
        else:
            checks = []
            for n in ("order_key", "ending_key"):
                names[f"#{n}"] = n
                if n in before:
                    checks.append(f"#{n} = :was_{n}")
                    values[f":was_{n}"] = before[n]
                else:
                    checks.append(f"attribute_not_exists(#{n})")
            condition = " AND ".join(checks)
        put = {"TableName": self.table_name, "Item": item, "ConditionExpression": condition}
        if names:
            put |= {"ExpressionAttributeNames": names, "ExpressionAttributeValues": values} if values else \
                {"ExpressionAttributeNames": names}
        return {"Put": put}


_REGISTER_ATTEMPTS = 20


def _register_key(code: str) -> dict:
    return {"pk": _s(f"RESIDENT#{code}"), "sk": _s(REGISTER_SK)}


def registered(item: Mapping | None, writes: Iterable[tuple[UpdateNotice, ChangeReason, str]]) -> tuple[dict, int]:
    """A resident's register state after ``writes`` (notice, reason to record, ending or "")
    on top of the stored ``item``. Two maxima, so the result is the same whatever order and
    whatever batches the notices come in:

    - ``municipality``, ``reason``, ``order_key``, ``notice_time``, ``ended``: those of the notice
      with the greatest order key (the ordering rule: the order key only ever grows);
    - ``ended_at``, ``last_ending``, ``ending_key``: those of the ending notice (death, deletion,
      the old code of a code change) with the greatest order key, whatever came after it — a
      card issued before it stays ended, even if the death notice arrives after a later one.

    Returns the state and how many writes changed it (0: nothing to write)."""
    state = {k: v["S"] for k, v in (item or {}).items() if k not in ("pk", "sk") and "S" in v}
    applied = 0
    for notice, reason, ended in writes:
        at = _iso(notice.notice_time)
        moved = False
        if notice.order_key > state.get("order_key", ""):
            state.update(municipality=notice.municipality.value, reason=reason.value, order_key=notice.order_key,
                         notice_time=at, ended=ended)
            moved = True
        if ended and notice.order_key > state.get("ending_key", ""):
            state.update(ended_at=at, last_ending=ended, ending_key=notice.order_key)
            moved = True
        applied += moved
    return state, applied


@dataclass(frozen=True)
class Register:
    municipality: str
    reason: ChangeReason
    ended: str  # "" or the revocation reason the latest notice gives
    notice_time: dt.datetime
    ended_at: dt.datetime | None = None  # the latest notice that ended a card, whatever came after
    last_ending: str = ""

    @property
    def active(self) -> bool:
        return self.reason.kind is not ChangeKind.DELETION and not self.ended

    def ends(self, card: Card) -> str | None:
        """The revocation reason if a notice recorded at or after the card's issue ends it."""
        if self.ended_at is not None and self.ended_at >= card.issued_at:
            return self.last_ending or "deleted_by_authority"
        return None


LOCAL_CHALLENGES = "CHALLENGE#"
REMOTE_CHALLENGES = "REMOTE-CHALLENGE#"
"""Challenges the home tier's channel function issues to counters of other tiers (decision 0050)
live in a partition of their own: the channel function may write those and only read
``CHALLENGE#`` — the authentications at this tier's own counters, which a special move-out's
certificate request names as its proof (decision 0049) — so it cannot forge one."""


class CardStore:
    def __init__(self, table_name: str, challenge_partition: str = LOCAL_CHALLENGES) -> None:
        self.table_name = table_name
        self.challenge_partition = challenge_partition

    def _challenge_key(self, challenge_id: str) -> dict:
        return {"pk": _s(f"{self.challenge_partition}{challenge_id}"), "sk": _s(CHALLENGE_SK)}

    # --- reads -----------------------------------------------------------------------------
    def card(self, serial: str) -> Card | None:
        item = aws.client("dynamodb").get_item(TableName=self.table_name, Key=card_key(serial),
                                               ConsistentRead=True).get("Item")
        return card_from(item) if item else None

    def register(self, resident_code: str) -> Register | None:
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key={"pk": _s(f"RESIDENT#{resident_code}"), "sk": _s(REGISTER_SK)},
            ConsistentRead=True).get("Item")
        if not item:
            return None
        return Register(municipality=item["municipality"]["S"], reason=ChangeReason(item["reason"]["S"]),
                        ended=item.get("ended", {}).get("S", ""), notice_time=parse_instant(item["notice_time"]["S"]),
                        ended_at=parse_instant(item["ended_at"]["S"]) if "ended_at" in item else None,
                        last_ending=item.get("last_ending", {}).get("S", ""))

    def valid_card_of(self, resident_code: str) -> str | None:
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key={"pk": _s(f"RESIDENT#{resident_code}"), "sk": _s(CARD_SK)},
            ConsistentRead=True).get("Item")
        return item["serial"]["S"] if item else None

    def events(self, serial: str) -> list[CardEvent]:
        ddb = aws.client("dynamodb")
        items, start = [], None
        while True:
            kwargs = {"ExclusiveStartKey": start} if start else {}
            page = ddb.query(TableName=self.table_name, KeyConditionExpression="pk = :p AND begins_with(sk, :e)",
                             ExpressionAttributeValues={":p": _s(f"CARD#{serial}"), ":e": _s("EV#")},
                             ConsistentRead=True, **kwargs)
            items += page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return [event_from(i) for i in items]

    def challenge(self, challenge_id: str) -> Challenge | None:
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key=self._challenge_key(challenge_id),
            ConsistentRead=True).get("Item")
        if not item:
            return None
        return Challenge(challenge_id=challenge_id, serial=item["serial"]["S"], nonce=item["nonce"]["S"],
                         municipality=item["municipality"]["S"], principal=item["principal"]["S"],
                         issued_at=parse_instant(item["issued_at"]["S"]),
                         expires_at=parse_instant(item["challenge_expires_at"]["S"]), used=item["used"]["BOOL"])

    # --- writes ----------------------------------------------------------------------------
    def issue(self, card: Card, event: CardEvent) -> None:
        """The card, its first event, its key's claim and the resident's one valid card, in one
        transaction: a cloned key or a second concurrent issue fails it as a whole."""
        ddb = aws.client("dynamodb")
        try:
            ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table_name, "Item": card_item(card),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self.table_name, "Item": event_item(event),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self.table_name,
                         "Item": {"pk": _s(f"KEY#{card.fingerprint}"), "sk": _s(KEY_SK), "serial": _s(card.serial)},
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self.table_name,
                         "Item": {"pk": _s(f"RESIDENT#{card.resident_code}"), "sk": _s(CARD_SK),
                                  "serial": _s(card.serial)},
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        except Exception as exc:
            if aws.error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
            if len(reasons) > 2 and reasons[2] == "ConditionalCheckFailed":
                raise CardRefusal(CardRefusalCode.PUBLIC_KEY_IN_USE, "this public key is registered to another card",
                                  field="public_key", rule="unique") from None
            raise Conflict(f"card {card.serial}: issued concurrently") from None

    def change(self, before: Card, after: Card, event: CardEvent, *, release_resident: bool = False) -> None:
        """Write ``event`` and the card it gives, only if nobody changed the card since ``before``
        (its ``seq``). ``release_resident``: the card ends, so the resident may get a new one."""
        items: list[dict] = [
            {"Put": {"TableName": self.table_name, "Item": card_item(after),
                     "ConditionExpression": "seq = :s", "ExpressionAttributeValues": {":s": _n(before.seq)}}},
            {"Put": {"TableName": self.table_name, "Item": event_item(event),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ]
        if release_resident:
            items.append({"Delete": {"TableName": self.table_name,
                                     "Key": {"pk": _s(f"RESIDENT#{after.resident_code}"), "sk": _s(CARD_SK)},
                                     "ConditionExpression": "serial = :c",
                                     "ExpressionAttributeValues": {":c": _s(after.serial)}}})
        try:
            aws.client("dynamodb").transact_write_items(TransactItems=items)
        except Exception as exc:
            if aws.error_code(exc) != "TransactionCanceledException":
                raise
            raise Conflict(f"card {after.serial} changed concurrently") from None

    def count_pin_failure(self, card: Card) -> int:
        """The network's own count of wrong PINs (reported by the counter), returned after adding."""
        out = aws.client("dynamodb").update_item(
            TableName=self.table_name, Key=card_key(card.serial), UpdateExpression="ADD pin_failures :one",
            ConditionExpression="attribute_exists(pk)", ExpressionAttributeValues={":one": _n(1)},
            ReturnValues="UPDATED_NEW")
        return int(out["Attributes"]["pin_failures"]["N"])

    def put_challenge(self, challenge: Challenge) -> None:
        aws.client("dynamodb").put_item(TableName=self.table_name, Item={
            **self._challenge_key(challenge.challenge_id), "serial": _s(challenge.serial),
            "nonce": _s(challenge.nonce), "municipality": _s(challenge.municipality),
            "principal": _s(challenge.principal), "issued_at": _s(_iso(challenge.issued_at)),
            "challenge_expires_at": _s(_iso(challenge.expires_at)), "used": {"BOOL": False},
            "expires_at": _n(int((challenge.expires_at + CHALLENGE_KEEP).timestamp()))},
            ConditionExpression="attribute_not_exists(pk)")

    def use_challenge(self, challenge_id: str) -> bool:
        """Mark the challenge answered; ``False`` if it already was (a replay, even a concurrent one)."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self.table_name, Key=self._challenge_key(challenge_id),
                UpdateExpression="SET used = :t", ConditionExpression="used = :f",
                ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}})
            return True
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False

    def record_authentication(self, challenge_id: str, resident_code: str, now: dt.datetime) -> None:
        """A successful authentication on this challenge: the server's own record, which a
        wide-area copy request names as its proof (``services/wide_area_copy.py``)."""
        aws.client("dynamodb").update_item(
            TableName=self.table_name, Key=self._challenge_key(challenge_id),
            UpdateExpression="SET authenticated_resident = :r, authenticated_at = :t",
            ConditionExpression="attribute_exists(pk) AND used = :u",
            ExpressionAttributeValues={":r": _s(resident_code), ":t": _s(_iso(now)), ":u": {"BOOL": True}})

    def challenge_item(self, challenge_id: str) -> dict | None:
        """The challenge as stored, with its authentication and copy claim if any (plain values)."""
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key=self._challenge_key(challenge_id),
            ConsistentRead=True).get("Item")
        return {k: next(iter(v.values())) for k, v in item.items()} if item else None

    def claim_challenge_for_copy(self, challenge_id: str, correlation: str) -> str:
        """Bind one wide-area copy request to this authentication; the correlation it is bound to
        (an earlier one if the request is a retry)."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self.table_name, Key=self._challenge_key(challenge_id),
                UpdateExpression="SET copy_correlation = :c",
                ConditionExpression="attribute_exists(authenticated_resident) AND attribute_not_exists(copy_correlation)",
                ExpressionAttributeValues={":c": _s(correlation)})
            return correlation
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
        item = self.challenge_item(challenge_id) or {}
        return str(item.get("copy_correlation", ""))

    # --- calls and statistics ------------------------------------------------------------------
    def record_call(self, *, now: dt.datetime, municipality: str, principal: str, action: str, outcome: str,
                    request_id: str, resident_code: str = "", serial: str = "") -> None:
        sk = f"{_iso(now)}#{request_id or base64.b32encode(now.isoformat().encode()).decode()[:16]}"
        aws.client("dynamodb").put_item(TableName=self.table_name, Item={
            "pk": _s(f"CALL#{municipality}#{month_jst(now)}"), "sk": _s(sk), "principal": _s(principal),
            "action": _s(action), "outcome": _s(outcome), "resident_code": _s(resident_code), "serial": _s(serial),
            "expires_at": _n(int((now + CALL_RETENTION).timestamp()))})

    def calls(self, municipality: str, month: str) -> list[dict]:
        page = aws.client("dynamodb").query(
            TableName=self.table_name, KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": _s(f"CALL#{municipality}#{month}")}, ConsistentRead=True)
        return [{k: next(iter(v.values())) for k, v in item.items()} for item in page.get("Items", [])]

    def count(self, municipality: str, month: str, counters: Mapping[str, int]) -> None:
        if not counters:
            return
        names = {f"#c{i}": k for i, k in enumerate(counters)}
        values = {f":c{i}": _n(v) for i, v in enumerate(counters.values())}
        aws.client("dynamodb").update_item(
            TableName=self.table_name, Key={"pk": _s(f"STAT#{municipality}"), "sk": _s(month)},
            UpdateExpression="ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(counters))),
            ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def statistics(self, municipality: str, month: str) -> dict[str, int]:
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key={"pk": _s(f"STAT#{municipality}"), "sk": _s(month)},
            ConsistentRead=True).get("Item") or {}
        return {k: int(v["N"]) for k, v in item.items() if "N" in v}

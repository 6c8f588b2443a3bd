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
``CALL#<municipality>#<month>`` ``<instant>#<req id>`` one counter call: who, what, which resident/card
``STAT#<municipality>``         ``<YYYY-MM>``          the month's counters (``issued``, ``refused_<CODE>`` …)
==============================  =====================  ==============================================

Why here and not in the prefecture's identity table: ``docs/decisions/0025-*``.
"""

from __future__ import annotations

import base64
import json
import datetime as dt
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
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

CARD_SK, REGISTER_SK, CHALLENGE_SK, KEY_SK = "CARD", "REGISTER", "CHALLENGE", "KEY"
CHALLENGE_KEEP = dt.timedelta(days=1)
CALL_RETENTION = dt.timedelta(days=7 * 366)  # kept like the provision records: 7 years


class Conflict(RuntimeError):
    """Someone else changed the card first (its ``seq`` moved): read it again and retry."""


def _s(value: str) -> dict:
    return {"S": value}


def _n(value: int) -> dict:
    return {"N": str(value)}


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
        items moved. A code change also marks the old code as ended. One conditional
        UpdateItem per resident touched, 16 at a time (a large first export must fit the CS's
        timeout)."""
        writes = []
        for notice in notices:
            writes.append((notice, notice.resident_code.value, notice.reason, ENDING_REASONS.get(notice.reason, "")))
            if notice.reason is ChangeReason.CODE_CHANGE and notice.previous_resident_code is not None:
                writes.append((notice, notice.previous_resident_code.value, ChangeReason.CODE_CHANGE, "code_changed"))
        if len(writes) <= 4:
            return sum(self._put(*w) for w in writes)
        with ThreadPoolExecutor(max_workers=16) as pool:
            return sum(pool.map(lambda w: self._put(*w), writes))

    def _put(self, notice: UpdateNotice, code: str, reason: ChangeReason, ended: str) -> int:
        values = {":m": _s(notice.municipality.value), ":r": _s(reason.value), ":k": _s(notice.order_key),
                  ":t": _s(_iso(notice.notice_time)), ":e": _s(ended)}
        update = "SET municipality = :m, reason = :r, order_key = :k, notice_time = :t, ended = :e"
        if ended:  # kept past a later re-entry: a card issued before it stays ended
            update += ", ended_at = :t, last_ending = :e"
        try:
            aws.client("dynamodb").update_item(
                TableName=self.table_name, Key={"pk": _s(f"RESIDENT#{code}"), "sk": _s(REGISTER_SK)},
                UpdateExpression=update, ConditionExpression="attribute_not_exists(order_key) OR order_key < :k",
                ExpressionAttributeValues=values)
            return 1
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
            return 0


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


class CardStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

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
            TableName=self.table_name, Key={"pk": _s(f"CHALLENGE#{challenge_id}"), "sk": _s(CHALLENGE_SK)},
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
            "pk": _s(f"CHALLENGE#{challenge.challenge_id}"), "sk": _s(CHALLENGE_SK), "serial": _s(challenge.serial),
            "nonce": _s(challenge.nonce), "municipality": _s(challenge.municipality),
            "principal": _s(challenge.principal), "issued_at": _s(_iso(challenge.issued_at)),
            "challenge_expires_at": _s(_iso(challenge.expires_at)), "used": {"BOOL": False},
            "expires_at": _n(int((challenge.expires_at + CHALLENGE_KEEP).timestamp()))},
            ConditionExpression="attribute_not_exists(pk)")

    def use_challenge(self, challenge_id: str) -> bool:
        """Mark the challenge answered; ``False`` if it already was (a replay, even a concurrent one)."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self.table_name, Key={"pk": _s(f"CHALLENGE#{challenge_id}"), "sk": _s(CHALLENGE_SK)},
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
            TableName=self.table_name, Key={"pk": _s(f"CHALLENGE#{challenge_id}"), "sk": _s(CHALLENGE_SK)},
            UpdateExpression="SET authenticated_resident = :r, authenticated_at = :t",
            ConditionExpression="attribute_exists(pk) AND used = :u",
            ExpressionAttributeValues={":r": _s(resident_code), ":t": _s(_iso(now)), ":u": {"BOOL": True}})

    def challenge_item(self, challenge_id: str) -> dict | None:
        """The challenge as stored, with its authentication and copy claim if any (plain values)."""
        item = aws.client("dynamodb").get_item(
            TableName=self.table_name, Key={"pk": _s(f"CHALLENGE#{challenge_id}"), "sk": _s(CHALLENGE_SK)},
            ConsistentRead=True).get("Item")
        return {k: next(iter(v.values())) for k, v in item.items()} if item else None

    def claim_challenge_for_copy(self, challenge_id: str, correlation: str) -> str:
        """Bind one wide-area copy request to this authentication; the correlation it is bound to
        (an earlier one if the request is a retry)."""
        try:
            aws.client("dynamodb").update_item(
                TableName=self.table_name, Key={"pk": _s(f"CHALLENGE#{challenge_id}"), "sk": _s(CHALLENGE_SK)},
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

"""DynamoDB items of the request/response channel (``services.channel``).

In the municipality tier's table (the card table, beside the register of residents)::

    pk                                 sk                    what
    CHANNEL#<requester>#<YYYY-MM>      OUT#<correlation>     a request this tier sent: to, deadline, the
                                                             signed request, status (pending → answered |
                                                             refused | timed_out), the answer's envelope
                                                             (bodies are ciphertext only)
    CHANNEL-IN#<recipient>#<YYYY-MM>   IN#<correlation>      a request this tier answered: the signed answer
                                                             it sent (re-sent verbatim to a redelivered or
                                                             replayed request: one effect)
    CHANNEL-DEAD#<YYYY-MM>             <reason>#<digest>     a channel message dead-lettered here, once per
                                                             content (also in each router's identity table)
    META                               sender-key#<code>     pinned signing keys (adapters.kms.TableKeyPins)

Every write is conditional: a request is recorded once, settled once (only while pending and
not past its deadline), an answer recorded once.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from ..domain.channel import Outcome, RequestRecord, correlation_owner
from . import aws
from .kms import TableKeyPins
from .dynamo_items import conditional as _conditional

_ISO = "%Y-%m-%dT%H:%M:%SZ"


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime(_ISO)


def _instant(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, _ISO).replace(tzinfo=dt.UTC)


def _out_key(correlation: str) -> dict:
    requester, month = correlation_owner(correlation)
    return {"pk": {"S": f"CHANNEL#{requester}#{month}"}, "sk": {"S": f"OUT#{correlation}"}}


def _in_key(recipient: str, correlation: str) -> dict:
    month = correlation_owner(correlation)[1]
    return {"pk": {"S": f"CHANNEL-IN#{recipient}#{month}"}, "sk": {"S": f"IN#{correlation}"}}


class ChannelDeadLetters:
    """Channel messages dead-lettered by one tier, counted once per content and month."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def record(self, month: str, reason: str, digest: str, sender: str) -> bool:
        return _conditional(aws.client("dynamodb").put_item, TableName=self.table_name, Item={
            "pk": {"S": f"CHANNEL-DEAD#{month}"}, "sk": {"S": f"{reason}#{digest}"},
            "reason": {"S": reason}, "sender": {"S": sender or "unknown"}},
            ConditionExpression="attribute_not_exists(pk)")

    def counts(self, month: str) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for item in _query(self.table_name, f"CHANNEL-DEAD#{month}"):
            counts[item["reason"]["S"]] += 1
        return dict(counts)


class ChannelStore(TableKeyPins):
    def __init__(self, table_name: str) -> None:
        super().__init__(table_name)
        self.dead_letters = ChannelDeadLetters(table_name)

    # --- the requester's side ----------------------------------------------------------
    def put_request(self, correlation: str, recipient: str, deadline: dt.datetime, sent: dt.datetime,
                    request: str) -> bool:
        """Record a request (``request``: the signed message, ciphertext body) once."""
        return _conditional(aws.client("dynamodb").put_item, TableName=self.table_name, Item={
            **_out_key(correlation), "to": {"S": recipient}, "deadline": {"S": _iso(deadline)},
            "sent": {"S": _iso(sent)}, "status": {"S": Outcome.PENDING.value}, "request": {"S": request}},
            ConditionExpression="attribute_not_exists(pk)")

    def request(self, correlation: str) -> dict | None:
        return aws.client("dynamodb").get_item(TableName=self.table_name, Key=_out_key(correlation),
                                               ConsistentRead=True).get("Item")

    def settle(self, correlation: str, outcome: Outcome, answer: bytes, now: dt.datetime) -> bool:
        """pending → ``outcome``, only while pending and not past the deadline (a late or
        redelivered answer changes nothing)."""
        return _conditional(
            aws.client("dynamodb").update_item, TableName=self.table_name, Key=_out_key(correlation),
            UpdateExpression="SET #s = :o, answer = :a, settled = :n",
            ConditionExpression="attribute_exists(pk) AND #s = :p AND deadline >= :n",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":o": {"S": outcome.value}, ":a": {"B": answer}, ":n": {"S": _iso(now)},
                                       ":p": {"S": Outcome.PENDING.value}})

    def time_out(self, correlation: str, now: dt.datetime) -> bool:
        return _conditional(
            aws.client("dynamodb").update_item, TableName=self.table_name, Key=_out_key(correlation),
            UpdateExpression="SET #s = :t, settled = :n",
            ConditionExpression="attribute_exists(pk) AND #s = :p AND deadline < :n",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":t": {"S": Outcome.TIMED_OUT.value}, ":n": {"S": _iso(now)},
                                       ":p": {"S": Outcome.PENDING.value}})

    def records(self, requester: str, month: str) -> list[RequestRecord]:
        return [RequestRecord(item["sk"]["S"].removeprefix("OUT#"), requester, item["to"]["S"],
                              _instant(item["deadline"]["S"]), item["status"]["S"])
                for item in _query(self.table_name, f"CHANNEL#{requester}#{month}")]

    # --- the answering side -------------------------------------------------------------
    def answer_given(self, recipient: str, correlation: str) -> dict | None:
        return aws.client("dynamodb").get_item(TableName=self.table_name, Key=_in_key(recipient, correlation),
                                               ConsistentRead=True).get("Item")

    def record_answer(self, recipient: str, correlation: str, requester: str, kind: str, body: str,
                      digest: str) -> bool:
        """Record the signed answer to a request (``digest``: of the request's payload)."""
        return _conditional(aws.client("dynamodb").put_item, TableName=self.table_name, Item={
            **_in_key(recipient, correlation), "from": {"S": requester}, "kind": {"S": kind},
            "body": {"S": body}, "request_digest": {"S": digest}},
            ConditionExpression="attribute_not_exists(pk)")

    def answers_given(self, recipient: str, month: str) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for item in _query(self.table_name, f"CHANNEL-IN#{recipient}#{month}"):
            counts[item["kind"]["S"]] += 1
        return dict(counts)


def _query(table_name: str, pk: str) -> list[dict]:
    items: list[dict] = []
    kwargs = {"TableName": table_name, "KeyConditionExpression": "pk = :p",
              "ExpressionAttributeValues": {":p": {"S": pk}}, "ConsistentRead": True}
    while True:
        page = aws.client("dynamodb").query(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

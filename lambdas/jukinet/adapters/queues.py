"""SQS sending: signed messages up to the next tier, and dead letters with their reason."""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..domain.message import SignedMessage
from . import aws

# SendMessageBatch: at most 10 entries and 256 KiB for the whole request.
_MAX_BATCH_ENTRIES = 10
_MAX_BATCH_BYTES = 250_000


class PartialSendError(RuntimeError):
    """Some entries of a SendMessageBatch were not accepted; the caller must retry."""


def send_signed(queue_url: str, messages: Iterable[SignedMessage]) -> int:
    """Send signed messages in as few SendMessageBatch requests as the limits allow."""
    sent = 0
    batch: list[str] = []
    size = 0
    for message in messages:
        body = message.to_body()
        if batch and (len(batch) >= _MAX_BATCH_ENTRIES or size + len(body) > _MAX_BATCH_BYTES):
            sent += _send_batch(queue_url, batch)
            batch, size = [], 0
        batch.append(body)
        size += len(body)
    if batch:
        sent += _send_batch(queue_url, batch)
    return sent


def _send_batch(queue_url: str, bodies: list[str]) -> int:
    response = aws.client("sqs").send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)],
    )
    if response.get("Failed"):
        failed = ", ".join(f"{f['Id']}:{f.get('Code')}" for f in response["Failed"])
        raise PartialSendError(f"SendMessageBatch to {queue_url} failed for entries {failed}")
    return len(bodies)


def send_dead_letter(queue_url: str, body: str | dict, *, tier: str, reason: str, field: str = "",
                     rule: str = "", detail: str = "", sender: str = "") -> None:
    """Keep what cannot be processed, with the reason as message attributes (and in the body)."""
    attributes = {
        "jukinet.tier": tier, "jukinet.reason": reason, "jukinet.field": field,
        "jukinet.rule": rule, "jukinet.detail": detail[:1000], "jukinet.sender": sender,
    }
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    aws.client("sqs").send_message(
        QueueUrl=queue_url, MessageBody=text,
        MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v},
    )

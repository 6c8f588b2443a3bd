"""The CS's inbox: S3 events of its drop zone, gathered by an SQS queue (decision 0051).

The drop zone notifies its municipality's inbox queue of each object created under
``incoming/``; Lambda's event source mapping hands the CS up to ``BATCH_SIZE`` of them at a
time, waiting up to ``BATCHING_WINDOW_S`` for a batch to fill, so files that arrive together are
taken in one invocation: one state transaction, their notices packed together, one signature
per message. The values are the infra's and the runtime's (``infra/stacks/municipality.py``
imports them): pure, no AWS.

A message names the files of one S3 event (``Records``); S3 also sends ``s3:TestEvent`` once
when the notification is configured, which names none. A record that fails is reported back
(``ReportBatchItemFailures``) and comes again; at its ``ATTEMPTS``-th receive the CS keeps it,
with why, in the tier's failed-event queue instead. The queue's ``maxReceiveCount`` is
``ATTEMPTS + 2``: the backstop for an invocation that dies on the last attempt (then SQS moves
the event there without a reason).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

# Files per invocation. At most 10 with a batching window of at most 300 s for a standard queue
# would allow up to 10,000; 100 keeps one invocation's work (100 files' reads, their reports)
# well inside the CS's 5-minute timeout on the measured ~0.2 s per small file, and the new
# files of a batch inside one TransactWriteItems (the counter and 99 files).
BATCH_SIZE = 100
# How long Lambda gathers events before it invokes: the files of one export run (arriving
# within seconds of each other) are taken together, and a lone file waits at most this long.
BATCHING_WINDOW_S = 20
# One invocation holds at most this many bytes of export files at once: the files of a batch are
# taken in chunks of this size (one file at least), each chunk its own transactions and messages,
# so a batch of initial-load files (100,000 rows, ~15 MB each) never needs more than one such file
# in memory. Before each further chunk the CS checks its remaining time; files it has no time for
# are reported back (``DEFER_BELOW_MS``) and come again after the visibility timeout.
MAX_CHUNK_BYTES = 16 * 1024 * 1024
DEFER_BELOW_MS = 150_000
# Receives of one event before the CS keeps it, with the reason, in the failed-event queue.
ATTEMPTS = 3
MAX_RECEIVE_COUNT = ATTEMPTS + 2
# The CS's timeout is 5 minutes; Lambda asks for a visibility timeout of at least six times
# the function's timeout (plus the batching window) so a message is not received again while
# a slow invocation still works on it.
VISIBILITY_TIMEOUT_S = 6 * 5 * 60 + BATCHING_WINDOW_S


@dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    key: str
    size: int = 0  # as the event gives it (0 if it does not)


class MalformedEvent(ValueError):
    """The message is not an S3 event notification."""


def objects_of(body: str | dict) -> list[ObjectEvent]:
    """The objects an S3 event notification (an SQS body, or a direct invocation's event)
    names; ``[]`` for S3's test event. Raises ``MalformedEvent`` for anything else."""
    try:
        event = json.loads(body) if isinstance(body, str) else body
    except ValueError as exc:
        raise MalformedEvent(f"body: not JSON ({exc})") from None
    if not isinstance(event, dict):
        raise MalformedEvent("body: not a JSON object")
    if event.get("Event") == "s3:TestEvent":
        return []
    records = event.get("Records")
    if not isinstance(records, list):
        raise MalformedEvent("Records: missing (not an S3 event notification)")
    out = []
    for i, record in enumerate(records):
        s3 = record.get("s3") if isinstance(record, dict) else None
        if not isinstance(s3, dict):
            raise MalformedEvent(f"Records[{i}].s3: missing")
        bucket = (s3.get("bucket") or {}).get("name")
        key = (s3.get("object") or {}).get("key")
        if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
            raise MalformedEvent(f"Records[{i}].s3: bucket name and object key are required")
        size = (s3.get("object") or {}).get("size")
        out.append(ObjectEvent(bucket, urllib.parse.unquote_plus(key), size if isinstance(size, int) else 0))
    return out


def chunks(sizes: list[int], limit: int = MAX_CHUNK_BYTES) -> list[range]:
    """Consecutive index ranges of ``sizes`` whose sum stays within ``limit`` (each at least one)."""
    out: list[range] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > limit:
            out.append(range(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        out.append(range(start, len(sizes)))
    return out

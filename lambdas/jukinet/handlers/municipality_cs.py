"""Municipality CS: the S3 events of the municipality's drop zone → signed notices up.

Two shapes of event: a batch of SQS records from the CS's inbox queue, each an S3 event
notification (decision 0051; a failed file is reported in ``batchItemFailures`` under its
message, and kept with the reason in the failed-event queue at its last attempt), or an S3
event itself (an operator's re-notification, ``jukinet restore``/``isolate`` undo: a failure is raised,
and Lambda retries the asynchronous invocation).
"""

from __future__ import annotations

import os
from functools import lru_cache

from ..adapters import queues
from ..adapters.card_store import ResidentRegister
from ..adapters.cs_state import CsState
from ..adapters.kms import Signer
from ..adapters.local_records import LocalRecords
from ..clock import system_clock
from ..domain.inbox import ATTEMPTS, DEFER_BELOW_MS, MalformedEvent, chunks, objects_of
from ..observability import flush, logger, use_tier
from ..services.communication_server import CommunicationServer, FileRef
from ..settings import MunicipalityCsSettings, load_settings


@lru_cache(maxsize=256)  # one per distinct environment: a cold start
def _runtime(settings: MunicipalityCsSettings, endpoint: str | None) -> CommunicationServer:
    return CommunicationServer(
        settings.MUNICIPALITY_CODE,
        CsState(settings.STATE_TABLE_NAME, settings.MUNICIPALITY_CODE),
        Signer(settings.SIGNING_KEY_ID, settings.MUNICIPALITY_CODE),
        settings.OUTBOUND_QUEUE_URL,
        settings.DROP_ZONE_BUCKET,
        settings.DROP_ZONE_PREFIX,
        clock=system_clock,
        register=ResidentRegister(settings.CARD_TABLE_NAME) if settings.CARD_TABLE_NAME else None,
        local_records=(LocalRecords(settings.LOCAL_RECORD_TABLE_NAME, settings.MUNICIPALITY_CODE)
                       if settings.LOCAL_RECORD_TABLE_NAME else None),
    )


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    settings = load_settings(MunicipalityCsSettings)
    server = _runtime(settings, os.environ.get("AWS_ENDPOINT_URL"))
    use_tier("municipality")
    try:
        records = event.get("Records", [])
        if not records:
            return {"files": []}
        if all(r.get("eventSource") == "aws:sqs" for r in records):
            return _from_inbox(server, settings, records, context)
        refs = [FileRef(o.bucket, o.key) for o in objects_of(event)]
        outcome = server.process_batch(refs)
        if outcome.failed:
            raise outcome.failed[0][1]  # Lambda retries the event; the files done are duplicates then
        return {"files": [f.__dict__ for f in outcome.files]}
    finally:
        flush()


def _from_inbox(server: CommunicationServer, settings: MunicipalityCsSettings, records: list[dict],
                context: object) -> dict:
    refs: list[FileRef] = []
    sizes: list[int] = []
    kept: list[tuple[dict, str, str]] = []  # (record, reason, detail): to the failed-event queue
    for record in records:
        try:
            for o in objects_of(record.get("body", "")):
                refs.append(FileRef(o.bucket, o.key, record["messageId"]))
                sizes.append(o.size)
        except MalformedEvent as exc:
            kept.append((record, "malformed_event", str(exc)))
    files: list[dict] = []
    errors: dict[str, str] = {}
    deferred: set[str] = set()
    for n, part in enumerate(chunks(sizes)):
        if n and _remaining_ms(context) < DEFER_BELOW_MS:  # no time for more: they come again
            deferred |= {refs[i].item for i in part}
            continue
        outcome = server.process_batch([refs[i] for i in part])
        files += [f.__dict__ for f in outcome.files]
        for ref, exc in outcome.failed:
            errors.setdefault(ref.item, f"{ref.key}: {type(exc).__name__}: {exc}")
    if deferred:
        logger.info("files left for the next invocation", extra={"events": len(deferred)})
    failures = [item for item in deferred if item not in errors]
    by_id = {r["messageId"]: r for r in records}
    for item, detail in errors.items():
        record = by_id[item]
        if _receives(record) >= ATTEMPTS and settings.FAILED_EVENTS_QUEUE_URL:
            kept.append((record, "file_failed", detail))
        else:
            failures.append(item)
    for record, reason, detail in kept:
        if not settings.FAILED_EVENTS_QUEUE_URL:
            failures.append(record["messageId"])
            continue
        try:
            queues.send_dead_letter(settings.FAILED_EVENTS_QUEUE_URL, record.get("body", ""), tier="municipality",
                                    reason=reason, detail=detail, sender=settings.MUNICIPALITY_CODE)
            logger.warning("event kept in the failed-event queue", extra={"reason": reason, "detail": detail})
        except Exception:  # noqa: BLE001 — not kept: it comes again, and the queue's redrive keeps it
            logger.exception("could not keep the event in the failed-event queue")
            failures.append(record["messageId"])
    return {"files": files, "batchItemFailures": [{"itemIdentifier": i} for i in dict.fromkeys(failures)]}


def _remaining_ms(context: object) -> int:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return int(remaining()) if callable(remaining) else 10 ** 9


def _receives(record: dict) -> int:
    try:
        return int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
    except ValueError:
        return 1

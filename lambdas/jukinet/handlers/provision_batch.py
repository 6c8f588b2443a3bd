"""Batch provision worker (一括提供): split and chunk tasks from the batch queue."""

from __future__ import annotations

import json

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ..domain.provision import Refusal, RefusalCode
from ..observability import MetricUnit, flush, logger, metrics, use_tier
from ..services.provision_observability import scan_metrics
from .provision_api import runtime

_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _task(record: SQSRecord) -> None:
    task = json.loads(record.body)
    _, batch = runtime()
    try:
        grant = batch.handle(task)
    except Refusal as refusal:  # the job is marked failed with the code; retrying cannot help
        logger.warning("batch job refused", extra={"job_id": task.get("job_id"), "code": refusal.code.name,
                                                   "rule": refusal.rule})
        metrics.add_metric(name="BatchJobsRefused", unit=MetricUnit.Count, value=1)
        if refusal.code is RefusalCode.RECIPIENT_ISOLATED:
            metrics.add_metric(name="IsolatedRecipientCalls", unit=MetricUnit.Count, value=1)
        return
    if task.get("kind") == "chunk":
        metrics.add_metric(name="BatchRowsProcessed", unit=MetricUnit.Count, value=len(task.get("rows", [])))
        if grant is not None and grant.scan is not None:
            scan_metrics(grant.scan, grant.recipient.recipient_id)


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    use_tier("national")
    try:
        return process_partial_response(event=event, record_handler=_task, processor=_processor, context=context)
    finally:
        flush()

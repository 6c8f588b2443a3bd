"""The shared SQS batch loop of the tier processors (partial batch responses)."""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ..domain.message import Origin
from ..observability import logger
from ..services.channel import ChannelRouter, is_channel_message
from ..services.tier_processor import REDRIVE_ATTRIBUTE, TierProcessor


def process_batch(event: dict, context: object, processor: TierProcessor,
                  forward: Callable[[list[Origin]], object] | None, channel: ChannelRouter | None = None) -> dict:
    """Process each SQS record on its own; then forward everything that succeeded in one go
    (fewer signatures). A channel message (services/channel.py) goes to ``channel`` instead:
    routed on at once, nothing to forward. If forwarding fails, the succeeded records are reported as failures
    too, so SQS redelivers them; storing is idempotent, so the retry only forwards again."""
    batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    to_forward: dict[str, list[Origin]] = {}

    def record_handler(record: SQSRecord) -> None:
        if channel is not None and is_channel_message(record.body):
            channel.route(record.body)
            return
        redriven = REDRIVE_ATTRIBUTE in (record.raw_event.get("messageAttributes") or {})
        to_forward[record.message_id] = processor.process(record.body, record.message_id, redriven=redriven).forward

    with batch(event.get("Records", []), record_handler, lambda_context=context):
        batch.process()
    response = batch.response()
    if forward is not None:
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        # Only records that carry notices: dead-lettered ones are done and must not come back.
        succeeded = [mid for mid, origins in to_forward.items() if origins and mid not in failed]
        try:
            forward([n for mid in succeeded for n in to_forward[mid]])
        except Exception:
            logger.exception("forwarding failed; the batch's stored records will be redelivered")
            response["batchItemFailures"].extend({"itemIdentifier": mid} for mid in succeeded)
    return response

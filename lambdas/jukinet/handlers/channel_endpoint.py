"""A municipality tier's end of the channel between municipalities: requests addressed to its
municipalities are answered, answers to its requests settled (``services/channel.py``).

Deployed per municipality tier by ``infra/components/channel.py`` (``<prefix>-muni-<code>-channel``,
event source the tier's channel queue; decisions 0041, 0042)."""

from __future__ import annotations

import os
from functools import lru_cache

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ..adapters.card_store import REMOTE_CHALLENGES, CardStore
from ..adapters.channel_store import ChannelStore
from ..adapters.kms import PublicKeys, Signer
from ..clock import system_clock
from ..observability import flush, logger, use_tier
from ..adapters.copy_store import CopyStore
from ..adapters.local_records import LocalRecords
from ..adapters.card_requests import CardRequests
from ..services.card import CardService, EventSigner
from ..services.card_across_tiers import card_responders, nudged_card_request, send_card_request
from ..services.channel import ChannelEndpoint, ChannelKeys, register_responder
from ..services.wide_area_copy import copy_responder, dispatch, nudged_correlation, send_queued
from ..adapters.special_move_store import SpecialMoveStore
from ..domain import special_move as sm
from ..services import special_move
from ..settings import ChannelSettings, load_settings


@lru_cache(maxsize=64)  # one per distinct environment: a cold start
def _runtime(settings: ChannelSettings, endpoint: str | None) -> ChannelEndpoint:
    store = ChannelStore(settings.TABLE_NAME)
    signers: dict[str, Signer] = {}

    def signer_for(municipality: str) -> Signer:
        if municipality not in signers:
            signers[municipality] = Signer(settings.SIGNING_KEY_ALIAS_PREFIX + municipality, municipality)
        return signers[municipality]

    cards = CardStore(settings.TABLE_NAME)
    responders = {"resident-status": register_responder(cards.register)}
    endpoint = ChannelEndpoint(
        settings.PREFECTURE_CODE, store, ChannelKeys(settings.CHANNEL_KEY_ID, settings.CHANNEL_KEY_ALIAS_PREFIX),
        PublicKeys(settings.SENDER_KEY_ALIAS_PREFIX, pins=store), signer_for, settings.OUTBOUND_QUEUE_URL,
        settings.DEAD_LETTER_QUEUE_URL, dispatch(responders), clock=system_clock,
    )
    moves = SpecialMoveStore(settings.TABLE_NAME)
    responders[sm.QUERY_NOTICE] = special_move.notice_responder(moves, lambda: endpoint.clock())
    if settings.LOCAL_RECORDS_TABLE_NAME:  # the wide-area copy, answered from the tier's local records
        responders["wide-area-copy"] = copy_responder(
            lambda municipality: LocalRecords(settings.LOCAL_RECORDS_TABLE_NAME, municipality), cards,
            CopyStore(settings.TABLE_NAME), lambda: endpoint.clock())
        # the special move-out's certificate information, from the same records (part 4)
        responders[sm.QUERY_CERTIFICATE] = special_move.certificate_responder(
            lambda municipality: LocalRecords(settings.LOCAL_RECORDS_TABLE_NAME, municipality), cards, moves,
            endpoint.serves, lambda: endpoint.clock())
    if settings.CARD_EVENT_KEY_ID:  # cards of this tier at counters of other tiers (decision 0050)
        # its challenges in their own partition: this function only reads the tier's own
        # counters' authentications (CHALLENGE#), which a special move-out's proof names
        responders.update(card_responders(CardService(
            CardStore(settings.TABLE_NAME, challenge_partition=REMOTE_CHALLENGES), EventSigner(settings.CARD_EVENT_KEY_ID), municipalities=(), counter_role_prefix="",
            clock=lambda: endpoint.clock(), prefecture=settings.PREFECTURE_CODE, writes_endings=False)))
    return endpoint


def runtime() -> ChannelEndpoint:
    return _runtime(load_settings(ChannelSettings), os.environ.get("AWS_ENDPOINT_URL"))


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    endpoint = runtime()
    use_tier("municipality")
    batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def record_handler(record: SQSRecord) -> None:
        correlation = nudged_correlation(record.body)
        moved = special_move.nudged(record.body) if correlation is None else None
        card_request = nudged_card_request(record.body) if correlation is None and moved is None else None
        if correlation is not None:  # the tier's counter asks to send a request it recorded
            send_queued(endpoint, CopyStore(endpoint.store.table_name), correlation)
        elif moved is not None:  # … a special move-in's certificate request or 転入通知 (part 4)
            special_move.send_queued(endpoint, SpecialMoveStore(endpoint.store.table_name), *moved)
        elif card_request is not None:  # a card request to another tier the counter recorded
            send_card_request(endpoint, CardRequests(endpoint.store.table_name), card_request)
        else:
            endpoint.receive(record.body)

    try:
        with batch(event.get("Records", []), record_handler, lambda_context=context):
            batch.process()
        return batch.response()
    finally:
        flush()

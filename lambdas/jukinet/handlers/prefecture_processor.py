"""Prefecture server (都道府県サーバ): municipality notices in, prefecture table, national out."""

from __future__ import annotations

import os
from functools import lru_cache

from ..adapters.channel_store import ChannelDeadLetters
from ..adapters.identity_store import IdentityStore
from ..adapters.kms import DataKeys, PublicKeys, Signer
from ..clock import system_clock
from ..observability import flush, logger, use_tier
from ..services.channel import ChannelRouter
from ..services.forwarder import Forwarder
from ..services.tier_processor import TierProcessor, prefecture_policy
from ..settings import PrefectureSettings, load_settings
from ._sqs import process_batch


@lru_cache(maxsize=64)  # one per distinct environment: a cold start
def _runtime(settings: PrefectureSettings, endpoint: str | None) -> tuple[TierProcessor, Forwarder, ChannelRouter]:
    data_keys = DataKeys(settings.DATA_KEY_ID, {"tier": "prefecture", "prefecture": settings.PREFECTURE_CODE})
    store = IdentityStore(settings.TABLE_NAME, data_keys)
    public_keys = PublicKeys(settings.SENDER_KEY_ALIAS_PREFIX, pins=store)
    processor = TierProcessor(
        prefecture_policy(settings.PREFECTURE_CODE),
        store,
        public_keys,
        settings.DEAD_LETTER_QUEUE_URL,
        clock=system_clock,
    )
    forwarder = Forwarder(Signer(settings.SIGNING_KEY_ID, settings.PREFECTURE_CODE), settings.FORWARD_QUEUE_URL,
                          clock=system_clock)
    routes = {"national": settings.FORWARD_QUEUE_URL, "municipalities": settings.CHANNEL_QUEUE_URL}
    router = ChannelRouter("prefecture", settings.PREFECTURE_CODE, public_keys, routes, settings.DEAD_LETTER_QUEUE_URL,
                           ChannelDeadLetters(settings.TABLE_NAME), clock=system_clock)
    return processor, forwarder, router


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    settings = load_settings(PrefectureSettings)
    processor, forwarder, router = _runtime(settings, os.environ.get("AWS_ENDPOINT_URL"))
    use_tier("prefecture")
    try:
        return process_batch(event, context, processor, forwarder.forward, router)
    finally:
        flush()

"""National server (全国サーバ): prefecture notices in, the nationwide table."""

from __future__ import annotations

import os
from functools import lru_cache

from ..adapters.channel_store import ChannelDeadLetters
from ..adapters.identity_store import IdentityStore
from ..adapters.kms import DataKeys, PublicKeys
from ..clock import system_clock
from ..observability import flush, logger, use_tier
from ..services.channel import ChannelRouter
from ..services.tier_processor import TierProcessor, national_policy
from ..settings import NationalSettings, load_settings
from ._sqs import process_batch


@lru_cache(maxsize=8)  # one per distinct environment: a cold start
def _runtime(settings: NationalSettings, endpoint: str | None) -> tuple[TierProcessor, ChannelRouter]:
    data_keys = DataKeys(settings.DATA_KEY_ID, {"tier": "national"})
    store = IdentityStore(settings.TABLE_NAME, data_keys)
    public_keys = PublicKeys(settings.SENDER_KEY_ALIAS_PREFIX, pins=store)
    processor = TierProcessor(
        national_policy(settings.ALLOWED_PREFECTURES),
        store,
        public_keys,
        settings.DEAD_LETTER_QUEUE_URL,
        clock=system_clock,
    )
    template = settings.PREFECTURE_INBOUND_URL_TEMPLATE
    routes = {p: template.format(prefecture=p) for p in settings.ALLOWED_PREFECTURES} if template else {}
    router = ChannelRouter("national", "national", public_keys, routes, settings.DEAD_LETTER_QUEUE_URL,
                           ChannelDeadLetters(settings.TABLE_NAME), clock=system_clock,
                           allowed_prefectures=settings.ALLOWED_PREFECTURES)
    return processor, router


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    processor, router = _runtime(load_settings(NationalSettings), os.environ.get("AWS_ENDPOINT_URL"))
    use_tier("national")
    try:
        return process_batch(event, context, processor, None, router)
    finally:
        flush()

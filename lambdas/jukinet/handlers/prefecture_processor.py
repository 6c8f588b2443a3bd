"""Prefecture server (都道府県サーバ): municipality notices in, prefecture table, national out."""

from __future__ import annotations

import os
from functools import lru_cache

from ..adapters.identity_store import IdentityStore
from ..adapters.kms import DataKeys, PublicKeys, Signer
from ..clock import system_clock
from ..observability import flush, logger, use_tier
from ..services.forwarder import Forwarder
from ..services.tier_processor import TierProcessor, prefecture_policy
from ..settings import PrefectureSettings, load_settings
from ._sqs import process_batch


@lru_cache(maxsize=64)  # one per distinct environment: a cold start
def _runtime(settings: PrefectureSettings, endpoint: str | None) -> tuple[TierProcessor, Forwarder]:
    data_keys = DataKeys(settings.DATA_KEY_ID, {"tier": "prefecture", "prefecture": settings.PREFECTURE_CODE})
    store = IdentityStore(settings.TABLE_NAME, data_keys)
    processor = TierProcessor(
        prefecture_policy(settings.PREFECTURE_CODE),
        store,
        PublicKeys(settings.SENDER_KEY_ALIAS_PREFIX, pins=store),
        settings.DEAD_LETTER_QUEUE_URL,
        clock=system_clock,
    )
    forwarder = Forwarder(Signer(settings.SIGNING_KEY_ID, settings.PREFECTURE_CODE), settings.FORWARD_QUEUE_URL,
                          clock=system_clock)
    return processor, forwarder


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    settings = load_settings(PrefectureSettings)
    processor, forwarder = _runtime(settings, os.environ.get("AWS_ENDPOINT_URL"))
    use_tier("prefecture")
    try:
        return process_batch(event, context, processor, forwarder.forward)
    finally:
        flush()

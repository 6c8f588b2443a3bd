"""Municipality CS: S3 ObjectCreated in the municipality's drop zone → signed notices up."""

from __future__ import annotations

import os
import urllib.parse
from functools import lru_cache

from ..adapters.card_store import ResidentRegister
from ..adapters.cs_state import CsState
from ..adapters.kms import Signer
from ..adapters.local_records import LocalRecords
from ..clock import system_clock
from ..observability import flush, logger, use_tier
from ..services.communication_server import CommunicationServer
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
    outcomes = []
    try:
        for record in event.get("Records", []):
            s3 = record.get("s3", {})
            key = urllib.parse.unquote_plus(s3.get("object", {}).get("key", ""))
            outcomes.append(server.process_object(s3.get("bucket", {}).get("name", ""), key).__dict__)
    finally:
        flush()
    return {"files": outcomes}

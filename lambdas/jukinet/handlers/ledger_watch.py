"""Ledger watch of a processing tier (EventBridge, every five minutes): aged sequence gaps and
notices overdue (``services.ledger_watch``). It evaluates at the scheduled event's ``time``
(the instant EventBridge, or the embedded AWS's scheduler, fired it: decision 0019), else now."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from ..adapters.identity_store import IdentityStore
from ..adapters.kms import DataKeys
from ..clock import system_clock
from ..observability import flush, logger, use_tier
from ..services.ledger_watch import LedgerWatch, WatchedSource
from ..settings import LedgerWatchSettings, load_settings
from ._schedule import scheduled_at


@lru_cache(maxsize=8)
def _runtime(settings: LedgerWatchSettings, endpoint: str | None) -> LedgerWatch:
    root = Path(os.environ.get("LAMBDA_TASK_ROOT", "."))
    document = json.loads((root / settings.WATCH_FILE).read_text(encoding="utf-8"))
    sources = [WatchedSource(s["cs_state_table"], tuple(s["municipalities"]), tuple(s.get("tiers_below", ())))
               for s in document["sources"]]
    # Counting reads no facts: the data-key object is never asked for a key.
    return LedgerWatch(IdentityStore(settings.TABLE_NAME, DataKeys("unused", {})), sources, clock=system_clock)


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    settings = load_settings(LedgerWatchSettings)
    use_tier(settings.TIER)
    watch = _runtime(settings, os.environ.get("AWS_ENDPOINT_URL"))
    try:
        result = watch.sweep(scheduled_at(event))
        return {"at": result.at.isoformat(), "municipalities": result.municipalities,
                "aged_missing": result.aged_missing, "overdue": result.overdue,
                "findings": [{"municipality": f.municipality, "aged_gaps": [list(g) for g in f.aged_gaps[:20]],
                              "overdue": f.overdue}
                             for f in result.findings]}
    finally:
        flush()

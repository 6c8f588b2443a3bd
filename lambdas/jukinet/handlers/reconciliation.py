"""Scheduled reconciliation of a processing tier (EventBridge, every night at 01:30 JST):
the previous day's month and the previous month, a metric and a report
(``services.reconciliation``). It evaluates at the scheduled event's ``time`` (decision 0019),
else now."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from ..adapters.reports import ReportStore
from ..clock import system_clock
from ..observability import flush, logger, use_tier
from ..services.reconciliation import CountSource, ScheduledReconciliation
from ..settings import ReconciliationSettings, load_settings
from ._schedule import scheduled_at


@lru_cache(maxsize=8)
def _runtime(settings: ReconciliationSettings, endpoint: str | None) -> ScheduledReconciliation:
    root = Path(os.environ.get("LAMBDA_TASK_ROOT", "."))
    document = json.loads((root / settings.SOURCES_FILE).read_text(encoding="utf-8"))
    sources = [CountSource(s["cs_state_table"], dict(s["municipalities"]), s.get("prefecture_table", ""),
                           s.get("channel_table", ""))
               for s in document["sources"]]
    return ScheduledReconciliation(tier=settings.TIER, table=settings.TABLE_NAME, sources=sources,
                                   reports=ReportStore(settings.REPORTS_BUCKET), clock=system_clock,
                                   tier_name=settings.TIER_NAME)


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    settings = load_settings(ReconciliationSettings)
    use_tier(settings.TIER)
    reconciliation = _runtime(settings, os.environ.get("AWS_ENDPOINT_URL"))
    try:
        run = reconciliation.run(scheduled_at(event))
        return {"at": run.at.isoformat(), "months": run.months, "rows": len(run.rows),
                "mismatches": [{"municipality": r.municipality, "month": r.month,
                                "problems": r.problems_at(run.tier)} for r in run.mismatches]
                + [{"municipality": c.municipality, "month": c.month, "problems": c.problems}
                   for c in run.channel_mismatches],
                "channel_rows": len(run.channel),
                "reports": run.keys}
    finally:
        flush()

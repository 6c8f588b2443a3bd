"""The monthly monitoring report of a processing tier (EventBridge, the 1st of each month at
09:30 JST): the previous month's report of the tier (and, at a prefecture, its municipality
tier) written as Markdown, HTML and CSV to the tier's security-reports bucket under
``monitoring-report/<YYYY-MM>/`` (``services.monitoring_report``, decision 0039). It evaluates at
the scheduled event's ``time`` (decision 0019), else now.

A report already in the bucket for that month is kept. An operator re-runs a month on purpose
by invoking the function with ``{"month": "YYYY-MM", "replace": true}`` (the bucket is
versioned: the earlier copy stays as a version).

Alarm history: CloudWatch's ``DescribeAlarmHistory``. The embedded AWS serves none; there the
local runner sets ``JUKINET_LOCAL_ALARM_HISTORY`` to its record of alarm transitions
(``.jukinet/notifications.log``, decision 0031) — a variable no deployed function has."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from ..adapters.provision_log import ProvisionLog
from ..adapters.reports import ReportStore
from ..clock import system_clock
from ..observability import flush, logger, use_tier
from ..services.monitoring_report import ReportScope, ScheduledMonitoringReport
from ..settings import MonitoringReportSettings, load_settings
from ._schedule import scheduled_at

LOCAL_ALARM_HISTORY = "JUKINET_LOCAL_ALARM_HISTORY"


@lru_cache(maxsize=8)
def _runtime(settings: MonitoringReportSettings, alarm_history: str | None,
             endpoint: str | None) -> ScheduledMonitoringReport:
    document = json.loads(settings.REPORT_SCOPE)
    scope = ReportScope(settings.DEPLOYMENT, settings.PREFIX, tuple(document["tiers"]), dict(document["services"]))
    log = (ProvisionLog(settings.PROVISION_LOG_TABLE, settings.PROVISION_STATE_TABLE)
           if settings.PROVISION_LOG_TABLE else None)
    return ScheduledMonitoringReport(scope=scope, reports=ReportStore(settings.REPORTS_BUCKET), clock=system_clock,
                                     notifications=Path(alarm_history) if alarm_history else None,
                                     provision_log=log)


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    settings = load_settings(MonitoringReportSettings)
    use_tier(settings.TIER)
    job = _runtime(settings, os.environ.get(LOCAL_ALARM_HISTORY) or None, os.environ.get("AWS_ENDPOINT_URL"))
    event = event or {}
    month = event.get("month")
    if month is not None and not isinstance(month, str):
        raise ValueError(f"month must be a string YYYY-MM, got {month!r}")
    try:
        run = job.run(scheduled_at(event), month=month, replace=event.get("replace") is True)
        report = run.report
        assert report is not None
        logger.info("monitoring report", extra={"month": run.month, "written": run.written, "kept": run.kept,
                                                "incidents": len(report.incidents), "at": run.at.isoformat()})
        return {"at": run.at.isoformat(), "month": run.month, "written": run.written, "kept": run.kept,
                "incidents": len(report.incidents), "finding": report.finding}
    finally:
        flush()

"""Hourly seal of the provision log (EventBridge, every hour at :10 JST): each period (hour)
that has ended and is not sealed yet, signed by KMS, chained, archived under Object Lock.

The event may name a day (``{"day": "YYYY-MM-DD"}``, an operator's catch-up: every period up
to that day's last hour); a scheduled event seals up to the last hour that has ended. Sealing
is idempotent. Every run emits ``ProvisionLogSealed`` (periods sealed, 0 when there was nothing
to do) and ``ProvisionLogSealLagHours`` (hours between the last seal and now): the
``provision-log-not-sealed`` alarm treats a missing datapoint as breaching, so a sealer that
is stopped, throttled or failing raises it. A run that seals the last hour of a month also
compares that month's statistics counters with the log (``check_statistics``) and emits
``ProvisionStatsMismatch`` (rows that differ, 0 when they agree): the
``provision-stats-mismatch`` alarm.
"""

from __future__ import annotations

import os
from functools import lru_cache

from ..adapters.provision_log import ProvisionLog, SealArchive
from ..clock import system_clock
from ..domain.provision import period_end
from ..observability import MetricUnit, flush, logger, metrics, use_tier
from ..services.provision_audit import Sealer, check_statistics, last_sealable_period
from ..settings import SealerSettings, load_settings


@lru_cache(maxsize=8)
def _runtime(settings: SealerSettings, endpoint: str | None) -> Sealer:
    return Sealer(ProvisionLog(settings.PROVISION_LOG_TABLE, settings.PROVISION_STATE_TABLE), settings.SEAL_KEY_ID,
                  system_clock, SealArchive(settings.SEAL_ARCHIVE_BUCKET))


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    use_tier("national")
    sealer = _runtime(load_settings(SealerSettings), os.environ.get("AWS_ENDPOINT_URL"))
    day = (event or {}).get("day")
    try:
        run = sealer.seal_day(day) if day else sealer.seal_through(last_sealable_period(sealer.clock()))
        seal = run.last
        lag = (sealer.clock() - period_end(seal.period)).total_seconds() / 3600
        logger.info("provision log sealed" if run.seals else "provision log already sealed",
                    extra={"period": seal.period, "seals": run.seals, "entries": run.entries, "seal_id": seal.id})
        metrics.add_metric(name="ProvisionLogSealed", unit=MetricUnit.Count, value=run.seals)
        metrics.add_metric(name="ProvisionLogSealLagHours", unit=MetricUnit.Count, value=round(max(lag, 0), 2))
        for month in run.closed_months:
            check = check_statistics(sealer.log, month, now=sealer.clock())
            for row in check.mismatches:
                logger.warning("provision statistics differ from the log", extra={
                    "month": month, "recipient": row.recipient, "what": row.what, "counted": row.counted,
                    "logged": row.logged})
            logger.info("provision statistics checked against the log", extra={
                "month": month, "entries": check.entries, "sealed": check.sealed, "missing": check.missing,
                "mismatches": len(check.mismatches)})
            metrics.add_metric(name="ProvisionStatsMismatch", unit=MetricUnit.Count, value=len(check.mismatches))
        return {"day": day or seal.day, "period": seal.period, "entries": run.entries, "digest": seal.digest,
                "seals": run.seals, "new": run.seals > 0}
    finally:
        flush()

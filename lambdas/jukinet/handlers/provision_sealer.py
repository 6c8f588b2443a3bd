"""Daily seal of the provision log (EventBridge, 01:00 JST): the day before, signed by KMS.

The event may name the day (``{"day": "YYYY-MM-DD"}``, for a catch-up run by an operator);
a scheduled event seals yesterday (JST). Sealing is idempotent.
"""

from __future__ import annotations

import os
from functools import lru_cache

from ..adapters.provision_log import ProvisionLog
from ..clock import system_clock
from ..observability import MetricUnit, flush, logger, metrics, use_tier
from ..services.provision_audit import Sealer, previous_day
from ..settings import SealerSettings, load_settings


@lru_cache(maxsize=8)
def _runtime(settings: SealerSettings, endpoint: str | None) -> Sealer:
    return Sealer(ProvisionLog(settings.PROVISION_LOG_TABLE, settings.PROVISION_STATE_TABLE), settings.SEAL_KEY_ID,
                  system_clock)


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    use_tier("national")
    sealer = _runtime(load_settings(SealerSettings), os.environ.get("AWS_ENDPOINT_URL"))
    day = (event or {}).get("day") or previous_day(sealer.clock())
    try:
        seal, new = sealer.seal_day(day)
        logger.info("provision log sealed" if new else "provision log already sealed",
                    extra={"day": day, "entries": seal.count, "digest": seal.digest})
        metrics.add_metric(name="ProvisionLogSealed", unit=MetricUnit.Count, value=1 if new else 0)
        return {"day": day, "entries": seal.count, "digest": seal.digest, "new": new}
    finally:
        flush()

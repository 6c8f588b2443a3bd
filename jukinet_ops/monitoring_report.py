"""``jukinet monitoring-report``: the monthly monitoring report of every tier of a deployment.

The report itself — collecting, the finding, the renderers — has one home,
``jukinet.services.monitoring_report`` (the Lambda runtime package: each processing tier's
scheduled function writes it to its security-reports bucket on the 1st, decision 0039). This
module only turns a deployment description into what that library reads: the ``ReportScope``
(every tier, the metric service names), the isolation records (``jukinet isolate``) and the
national provision log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jukinet.services import monitoring_report as _library
from jukinet.services.monitoring_report import MonitoringInputs, MonitoringReport, ReportScope, build_report


def scope_of(deployment: Any) -> ReportScope:
    """Every tier of ``deployment`` and the metric ``service`` dimension of each."""
    from infra.naming import Names, municipality_tier, prefecture_tier

    names = Names.of(deployment)
    tiers = ["national"]
    services = {names.provision_service(): "national", f"{deployment.prefix}-national": "national"}
    for p in deployment.prefectures:
        tiers += [prefecture_tier(p.code), municipality_tier(p.code)]
        services[f"{deployment.prefix}-{prefecture_tier(p.code)}"] = prefecture_tier(p.code)
        services[f"{deployment.prefix}-{municipality_tier(p.code)}"] = municipality_tier(p.code)
    return ReportScope(deployment.name, deployment.prefix, tuple(tiers), services)


def collect_inputs(deployment: Any, month: str, *, now: dt.datetime, notifications: Path | None = None,
                   client: Callable[[str], Any] | None = None, provision_log: Any = None) -> MonitoringInputs:
    """The library's ``collect_inputs`` over every tier of ``deployment`` (see there)."""
    from .emergency import Emergency
    from .provision import provision_tables

    if deployment.agencies and provision_log is None:
        provision_log = provision_tables(deployment).log()
    return _library.collect_inputs(scope_of(deployment), month, now=now, notifications=notifications, client=client,
                                   isolations=Emergency(deployment, invoke_event=None).store,
                                   provision_log=provision_log if deployment.agencies else None)


def monitoring_report(deployment: Any, month: str, *, now: dt.datetime, notifications: Path | None = None,
                      client: Callable[[str], Any] | None = None) -> MonitoringReport:
    """Collect over every tier of ``deployment``, then build."""
    return build_report(collect_inputs(deployment, month, now=now, notifications=notifications, client=client))

"""The one logger and metrics object of the runtime (Powertools, configured by POWERTOOLS_*)."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from .domain.metrics import METRICS_NAMESPACE

logger = Logger()
metrics = Metrics(namespace=METRICS_NAMESPACE)

__all__ = ["MetricUnit", "count_channel_dead_letter", "count_copy_refusal", "count_refused_by_code", "flush", "logger",
           "metrics", "use_tier"]


def use_tier(tier: str) -> None:
    """Bind this invocation's metrics and logs to its function: dimensions {service, tier}, the
    set the alarms match exactly (infra/naming.py). Read per invocation, not at import, because
    one process may host several functions (local mode) and the service name is per function."""
    service = os.environ.get("POWERTOOLS_SERVICE_NAME") or "jukinet"
    metrics.provider.service = service
    metrics.add_dimension(name="tier", value=tier)
    logger.append_keys(service=service, tier=tier)


def flush() -> None:
    """Publish this invocation's metrics (EMF) and reset them, dimensions included, even when
    the invocation recorded none (Powertools leaves the dimensions set in that case), and the
    timestamp a service set from its clock (``metrics.set_timestamp`` sticks to later flushes:
    in local mode one process hosts many functions)."""
    if metrics.metric_set:
        metrics.flush_metrics()
    metrics.clear_metrics()
    metrics.provider.timestamp = None


def count_refused_by_code(code: str) -> None:
    """One refused call under the dimensions {service, code}: ``RefusalsByCode``, which the
    monthly monitoring report sums per code (``jukinet_ops/monitoring_report.py``). Its own
    EMF line, beside the {service, tier} set the alarms read."""
    with single_metric(name="RefusalsByCode", unit=MetricUnit.Count, value=1, namespace=metrics.namespace,
                       default_dimensions={"service": metrics.service or "jukinet"}) as metric:
        metric.add_dimension(name="code", value=code)


def count_channel_dead_letter(reason: str) -> None:
    """One channel message dead-lettered (counted once per content and month, decision 0041):
    ``ChannelDeadLettered`` under the function's {service, tier} — the set the tier's
    ``channel-dead-letters`` alarm matches — and ``ChannelDeadLettersByReason`` under {service,
    tier, reason}, which the monthly monitoring report sums per reason (decision 0047). Another
    name, not the same name with one more dimension: the embedded CloudWatch matches a query's
    dimensions as a subset and would count the twin in the alarm's sum. The reason set is its
    own EMF line; the {service, tier} one goes with the invocation's other metrics."""
    metrics.add_metric(name="ChannelDeadLettered", unit=MetricUnit.Count, value=1)
    tier = metrics.dimension_set.get("tier", "")
    with single_metric(name="ChannelDeadLettersByReason", unit=MetricUnit.Count, value=1, namespace=metrics.namespace,
                       default_dimensions={"service": metrics.service or "jukinet"}) as metric:
        if tier:
            metric.add_dimension(name="tier", value=tier)
        metric.add_dimension(name="reason", value=reason)


def count_copy_refusal(code: str) -> None:
    """One wide-area copy refused (counted once per request, services/wide_area_copy.py):
    ``WideAreaCopiesRefused`` with the invocation's {service, tier} metrics, and
    ``WideAreaCopiesRefusedByCode`` under {service, tier, code} on its own EMF line, which the
    monthly monitoring report sums per code (another name, as for the channel's dead letters)."""
    metrics.add_metric(name="WideAreaCopiesRefused", unit=MetricUnit.Count, value=1)
    tier = metrics.dimension_set.get("tier", "")
    with single_metric(name="WideAreaCopiesRefusedByCode", unit=MetricUnit.Count, value=1,
                       namespace=metrics.namespace,
                       default_dimensions={"service": metrics.service or "jukinet"}) as metric:
        if tier:
            metric.add_dimension(name="tier", value=tier)
        metric.add_dimension(name="code", value=code)

"""The one logger and metrics object of the runtime (Powertools, configured by POWERTOOLS_*)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics(namespace="Jukinet")

__all__ = ["logger", "metrics", "MetricUnit", "use_tier"]


def use_tier(tier: str) -> None:
    """Set the ``tier`` dimension of this invocation's metrics (once per process, normally).
    Alarms match the dimension set {service, tier} exactly (infra/naming.py)."""
    if metrics.default_dimensions.get("tier") != tier:
        metrics.clear_default_dimensions()
        metrics.set_default_dimensions(tier=tier)

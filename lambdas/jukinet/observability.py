"""The one logger and metrics object of the runtime (Powertools, configured by POWERTOOLS_*)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics(namespace="Jukinet")

__all__ = ["logger", "metrics", "MetricUnit"]

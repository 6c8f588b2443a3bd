"""What every part of the local CloudWatch shares: its states, limits and errors, and how it
reaches the embedded AWS's clients (a split of the former ``monitoring.py``, decision 0052)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("embedded_aws.monitoring")

ClientFactory = Callable[..., Any]
"""``(service, region=None, account_id=None) -> boto3 client`` against the embedded AWS, e.g.
``DeployedEnvironment.client`` or ``MotoServer.client``. Functions that take one also accept
the ``DeployedEnvironment`` itself, and then cover every (region, account) of its stacks."""

UTC = dt.UTC
ALARM, OK, INSUFFICIENT_DATA = "ALARM", "OK", "INSUFFICIENT_DATA"
STATES = (ALARM, OK, INSUFFICIENT_DATA)

# CloudWatch accepts EMF/PutMetricData timestamps up to 14 days old and 2 hours ahead.
MAX_METRIC_AGE = dt.timedelta(days=14)
MAX_METRIC_FUTURE = dt.timedelta(hours=2)
_MAX_VALUES_PER_DATUM = 150  # PutMetricData: distinct values in one MetricDatum
_MAX_EMF_VALUES = 100  # EMF: values of one metric in one event
_LOG_BATCH_EVENTS = 10_000  # PutLogEvents limits
_LOG_BATCH_BYTES = 1_048_576

# The local anomaly band (see ``_anomaly_band``): history it needs before it can breach,
# and how far back it looks (CloudWatch trains on up to two weeks).
ANOMALY_MIN_HISTORY = dt.timedelta(days=1)
ANOMALY_MIN_DATAPOINTS = 12
ANOMALY_TRAINING_WINDOW = dt.timedelta(days=14)
NEEDS_HISTORY = "anomaly model needs history"


class MonitoringError(RuntimeError):
    """Local monitoring cannot do what was asked."""


class EmfError(MonitoringError):
    """A line claimed to be EMF (``_aws`` key) but is not valid EMF: CloudWatch would
    create no metric from it."""


class UnsupportedFilterPattern(MonitoringError):
    """A metric filter pattern uses syntax the local evaluator does not implement."""


class UnsupportedAlarm(MonitoringError):
    """An alarm uses something the local evaluator does not implement (or moto cannot answer)."""


# -- clients and locations -----------------------------------------------------------------------


def _factory_and_locations(scope: Any, locations: Iterable[tuple[str | None, str | None]] | None
                           ) -> tuple[ClientFactory, list[tuple[str | None, str | None]]]:
    """A client factory and the (region, account) pairs to cover: every stack location of a
    DeployedEnvironment (passed itself or as its bound ``client``), else the factory's default."""
    env = scope if hasattr(scope, "stacks") and hasattr(scope, "client") else getattr(scope, "__self__", None)
    factory: ClientFactory = scope.client if scope is env and env is not None else scope
    if locations is not None:
        return factory, list(locations)
    if env is not None and hasattr(env, "stacks"):
        return factory, sorted({(s.region, s.account) for s in env.stacks.values()})
    return factory, [(None, None)]


def _client(factory: ClientFactory, service: str, region: str | None, account: str | None) -> Any:
    if region is None and account is None:
        return factory(service)
    return factory(service, region, account)


def _paginate(call: Callable[..., dict[str, Any]], key: str, token: str = "NextToken",
              request_token: str | None = None, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    seen: set[str] = set()
    while True:
        page = call(**kwargs)
        items += page.get(key, [])
        next_token = page.get(token)
        if not next_token or next_token in seen:
            return items
        seen.add(next_token)
        kwargs[request_token or token] = next_token

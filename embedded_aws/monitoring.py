"""Alarms evaluated for real in local mode.

moto stores alarms, metric filters and metric data but never evaluates anything: an alarm
stays in the state it was created in, a metric filter never counts a log line, and the EMF
lines Powertools prints are just text. This module closes the loop, over whatever the
deployment put into the embedded AWS (no list of alarms or metrics is kept here):

* ``MetricSink`` - a text stream for ``LocalRunner(log_stream=...)``. It passes every line
  on to an optional underlying stream and turns Embedded Metric Format lines into
  ``PutMetricData`` calls, as CloudWatch Logs does for a Lambda function's output: each
  dimension set of each directive, values, unit, storage resolution and timestamp as
  printed, into the account and region of the function that printed it (the credentials
  and region of the invocation's environment). With ``forward_logs`` every line written
  during an invocation also goes to the function's log group, as Lambda's log agent would.
* ``apply_metric_filters`` / ``LogMetricFilters`` - reads the deployed metric filters
  (``DescribeMetricFilters``), evaluates their patterns on new events of their log groups
  (``FilterLogEvents``) and puts the resulting metric data (metric value, dimensions, unit,
  default value). Unsupported pattern syntax raises ``UnsupportedFilterPattern``.
* ``evaluate_alarms`` - computes every deployed alarm's state from the metric data in
  moto's CloudWatch (``GetMetricData``) with CloudWatch's rules: aligned periods,
  ``EvaluationPeriods``, ``DatapointsToAlarm``, the statistic, threshold, comparison and
  ``TreatMissingData``; metric math alarms with the expression subset below; anomaly
  detection bands with an explicit local approximation. The state is set in moto
  (``SetAlarmState``) so ``DescribeAlarms`` shows it, and a transition notifies the alarm's
  SNS actions as CloudWatch would — and, with a ``NotificationLog``, is written as one line
  (time, tier, alarm, old→new, reason) to ``.jukinet/notifications.log``: what would be sent.
* ``print_alarm_status`` - the verdicts as a rich table.

What is deliberately *not* reproduced (and said so in each verdict's reason): metrics AWS
services publish themselves (``AWS/Lambda``, ``AWS/SQS``, ``AWS/ApiGateway``...) have no
local source, so alarms on them see no data; CloudWatch's anomaly-detection model is
approximated (mean +/- k standard deviations of the preceding history, and only with at
least ``ANOMALY_MIN_HISTORY`` of it). ``docs/local-mode.md`` ("Alarms locally") has the
details and moto's limits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import itertools
import json
import logging
import math
import os
import re
import statistics
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from jukinet.clock import system_clock

from .code_image import INVOCATION_LOCK
from .flow_logs import not_the_function

__all__ = [
    "ANOMALY_MIN_HISTORY",
    "AlarmVerdict",
    "ClientFactory",
    "EmfError",
    "EvaluatedDatapoint",
    "FilterPattern",
    "LocalMonitoring",
    "LogMetricFilters",
    "MetricDatum",
    "MetricFilterReport",
    "MetricSink",
    "MonitoringError",
    "NotificationLog",
    "ServiceMetrics",
    "UnsupportedAlarm",
    "UnsupportedFilterPattern",
    "apply_metric_filters",
    "evaluate_alarms",
    "parse_emf",
    "parse_filter_pattern",
    "print_alarm_status",
    "put_metric_data",
]

log = logging.getLogger(__name__)

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


# -- metric data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricDatum:
    """One metric's values at one timestamp, as PutMetricData takes them."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]  # in declared order
    values: tuple[float, ...]
    timestamp: dt.datetime
    unit: str | None = None
    storage_resolution: int = 60

    def request_items(self) -> list[dict[str, Any]]:
        """MetricData entries (distinct values with counts, at most 150 per entry)."""
        counts: dict[float, int] = {}
        for value in self.values:
            counts[value] = counts.get(value, 0) + 1
        distinct = list(counts.items())
        items = []
        for i in range(0, len(distinct), _MAX_VALUES_PER_DATUM):
            chunk = distinct[i:i + _MAX_VALUES_PER_DATUM]
            item: dict[str, Any] = {
                "MetricName": self.name, "Timestamp": self.timestamp,
                "Dimensions": [{"Name": n, "Value": v} for n, v in self.dimensions],
                "Values": [v for v, _ in chunk], "Counts": [float(c) for _, c in chunk]}
            if self.unit:
                item["Unit"] = self.unit
            if self.storage_resolution == 1:
                item["StorageResolution"] = 1
            items.append(item)
        return items


def put_metric_data(cloudwatch: Any, data: Sequence[MetricDatum], batch_size: int = 500) -> int:
    """PutMetricData for ``data``, one call per namespace and ``batch_size`` entries; returns
    the number of entries put."""
    by_namespace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for datum in data:
        by_namespace[datum.namespace] += datum.request_items()
    put = 0
    for namespace, items in by_namespace.items():
        for i in range(0, len(items), batch_size):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=items[i:i + batch_size])
            put += len(items[i:i + batch_size])
    return put


def _timestamp_ms(value: Any) -> dt.datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EmfError(f"_aws.Timestamp {value!r} is not epoch milliseconds")
    return dt.datetime.fromtimestamp(value / 1000, UTC)


def parse_emf(event: str | Mapping[str, Any]) -> list[MetricDatum]:
    """The metric data CloudWatch extracts from one EMF log event (a JSON line with an
    ``_aws`` object). Raises ``EmfError`` if the event is not valid EMF."""
    if isinstance(event, str):
        try:
            event = json.loads(event)
        except ValueError as exc:
            raise EmfError(f"not JSON: {exc}") from None
    if not isinstance(event, Mapping) or not isinstance(event.get("_aws"), Mapping):
        raise EmfError("no _aws metadata object")
    meta = event["_aws"]
    timestamp = _timestamp_ms(meta.get("Timestamp"))
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        raise EmfError("_aws.CloudWatchMetrics is not an array")
    data: list[MetricDatum] = []
    for d, directive in enumerate(directives):
        if not isinstance(directive, Mapping):
            raise EmfError(f"CloudWatchMetrics[{d}] is not an object")
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str) or not namespace:
            raise EmfError(f"CloudWatchMetrics[{d}].Namespace missing")
        dimension_sets = directive.get("Dimensions", [])
        if not isinstance(dimension_sets, list) or not all(isinstance(s, list) for s in dimension_sets):
            raise EmfError(f"CloudWatchMetrics[{d}].Dimensions is not an array of arrays")
        resolved_sets: list[tuple[tuple[str, str], ...]] = []
        for dimension_set in dimension_sets or [[]]:
            dims = []
            for name in dimension_set:
                value = event.get(name) if isinstance(name, str) else None
                if not isinstance(value, str) or not value:
                    raise EmfError(f"dimension {name!r} has no string value in the event")
                dims.append((name, value))
            resolved_sets.append(tuple(dims))
        definitions = directive.get("Metrics")
        if not isinstance(definitions, list):
            raise EmfError(f"CloudWatchMetrics[{d}].Metrics is not an array")
        for definition in definitions:
            name = definition.get("Name") if isinstance(definition, Mapping) else None
            if not isinstance(name, str) or not name:
                raise EmfError(f"metric definition without Name in CloudWatchMetrics[{d}]")
            raw = event.get(name)
            values = raw if isinstance(raw, list) else [raw]
            if not values or len(values) > _MAX_EMF_VALUES or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise EmfError(f"metric {name!r} has no valid numeric value(s): {raw!r}")
            unit = definition.get("Unit") or None
            resolution = int(definition.get("StorageResolution", 60) or 60)
            for dims in resolved_sets:
                data.append(MetricDatum(namespace, name, dims, tuple(float(v) for v in values), timestamp, unit,
                                        resolution))
    return data


@dataclass(frozen=True)
class _Target:
    """Where data goes: an invocation's own identity (credentials and region of the
    function's environment, so its account) or the sink's default client factory."""

    endpoint_url: str | None = None
    region: str | None = None
    credentials: tuple[str, str, str | None] | None = None

    @classmethod
    def of_invocation(cls) -> _Target | None:
        env = os.environ
        if not env.get("AWS_LAMBDA_FUNCTION_NAME") or not env.get("AWS_ENDPOINT_URL") \
                or not env.get("AWS_ACCESS_KEY_ID") or not env.get("AWS_SECRET_ACCESS_KEY"):
            return None
        return cls(env["AWS_ENDPOINT_URL"], env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
                   (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN")))


_DEFAULT_TARGET = _Target()


@dataclass
class _PendingLog:
    events: list[tuple[int, str]] = field(default_factory=list)


class MetricSink(io.TextIOBase):
    """A text stream that publishes the EMF lines written to it into CloudWatch.

    ``LocalRunner(env, log_stream=MetricSink(env, stream=log_file))``: the runner redirects
    each function's stdout and stderr here. Every write is passed on to ``stream`` at once
    (if given). Complete lines are examined: a JSON object with an ``_aws`` key is EMF and
    becomes metric data; with ``forward_logs`` every line written during an invocation is
    also queued for the function's log group (``AWS_LAMBDA_LOG_GROUP_NAME``, stream
    ``AWS_LAMBDA_LOG_STREAM_NAME``; the group is created if missing, as Lambda would).

    Data written during an invocation goes to that function's account and region (the
    invocation's credentials); lines written outside an invocation, and ``publish_emf``
    calls, go through ``client_factory`` (``region``/``account_id`` select the location).

    Data is batched: it is sent when ``max_pending`` entries are queued, on ``flush()`` and
    on ``close()``. **Call ``flush()`` before evaluating alarms.** Thread-safe: partial
    lines are buffered per thread; sending holds the runner's invocation lock.

    Invalid EMF never raises from ``write`` (a function's print must not fail): it is
    counted in ``problems``, as CloudWatch would silently drop it."""

    def __init__(self, client_factory: ClientFactory | Any | None = None, stream: TextIO | None = None, *,
                 region: str | None = None, account_id: str | None = None, forward_logs: bool = True,
                 batch_size: int = 500, max_pending: int = 5_000) -> None:
        super().__init__()
        self._factory = _factory_and_locations(client_factory, [])[0] if client_factory is not None else None
        self.stream = stream
        self.region = region
        self.account_id = account_id
        self.forward_logs = forward_logs
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.lines = 0
        self.emf_lines = 0
        self.datums_published = 0
        self.log_events_forwarded = 0
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._partial: dict[int, str] = {}
        self._metrics: dict[_Target, list[MetricDatum]] = defaultdict(list)
        self._logs: dict[tuple[_Target, str, str], _PendingLog] = defaultdict(_PendingLog)
        self._pending = 0
        self._sessions: dict[_Target, Any] = {}
        self._clients: dict[tuple[_Target, str], Any] = {}

    # -- the stream interface --------------------------------------------------------------

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", None) or "utf-8"

    def write(self, s: str) -> int:
        if self.closed:
            raise ValueError("write to a closed MetricSink")
        if self.stream is not None:
            self.stream.write(s)
        thread = threading.get_ident()
        with self._lock:
            text = self._partial.pop(thread, "") + s
            *complete, rest = text.split("\n")
            if rest:
                self._partial[thread] = rest
        if complete:
            target = _Target.of_invocation()
            for line in complete:
                self._line(line, target)
            if self._pending >= self.max_pending:
                self.publish()
        return len(s)

    def flush(self) -> None:
        """Flush the underlying stream and send everything queued."""
        if self.stream is not None and not getattr(self.stream, "closed", False):
            self.stream.flush()
        self.publish()

    def __del__(self) -> None:
        # Garbage collection sends nothing (the embedded AWS may be gone): flush() explicitly.
        with self._lock:
            self._metrics.clear()
            self._logs.clear()
            self._partial.clear()
        with contextlib.suppress(Exception):
            super().close()

    def close(self) -> None:
        if self.closed:
            return
        with self._lock:
            rest = list(self._partial.values())
            self._partial.clear()
        for line in rest:
            self._line(line, None)
        try:
            self.flush()
        finally:
            super().close()

    # -- lines -----------------------------------------------------------------------------

    def _line(self, line: str, target: _Target | None) -> None:
        line = line.rstrip("\r")
        group = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME") if target is not None and self.forward_logs else None
        stream = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        with self._lock:
            self.lines += 1
            if group and stream and line:
                self._logs[(target, group, stream)].events.append((int(system_clock().timestamp() * 1000), line))  # type: ignore[index]
                self._pending += 1
        stripped = line.strip()
        if not (stripped.startswith("{") and '"_aws"' in stripped):
            return
        try:
            self._queue(parse_emf(stripped), target or _DEFAULT_TARGET)
        except EmfError as exc:
            with self._lock:
                self.problems.append(f"invalid EMF ({exc}): {stripped[:200]}")
            log.warning("invalid EMF line not published: %s", exc)

    def publish_emf(self, line: str | Mapping[str, Any]) -> int:
        """Queue the metric data of one EMF event (raises ``EmfError`` if invalid) for the
        current invocation's identity, or the sink's client factory; returns the number of
        metric data. Sent with the next batch (``flush()``)."""
        data = parse_emf(line)
        self._queue(data, _Target.of_invocation() or _DEFAULT_TARGET)
        return len(data)

    def _queue(self, data: list[MetricDatum], target: _Target) -> None:
        now = system_clock()
        accepted, problems = [], []
        for datum in data:
            if not now - MAX_METRIC_AGE <= datum.timestamp <= now + MAX_METRIC_FUTURE:
                problems.append(f"{datum.namespace}/{datum.name} at {datum.timestamp.isoformat()}: timestamp "
                                "more than 14 days old or 2 hours ahead, CloudWatch would skip it")
                continue
            accepted.append(datum)
        with self._lock:
            self.emf_lines += 1
            self.problems += problems
            self._metrics[target] += accepted
            self._pending += len(accepted)

    # -- sending ---------------------------------------------------------------------------

    def publish(self) -> int:
        """Send everything queued now; returns the number of metric data entries put."""
        # never while another thread's function runs; the calls are the log agent's, not the function's
        with INVOCATION_LOCK, self._publish_lock, not_the_function():
            with self._lock:
                metrics, self._metrics = self._metrics, defaultdict(list)
                logs, self._logs = self._logs, defaultdict(_PendingLog)
                self._pending = 0
            put = 0
            for target, data in metrics.items():
                if data:
                    put += put_metric_data(self._client_for(target, "cloudwatch"), data, self.batch_size)
            self.datums_published += put
            for (target, group, stream), pending in logs.items():
                self.log_events_forwarded += self._put_log_events(target, group, stream, pending.events)
            return put

    def _client_for(self, target: _Target, service: str) -> Any:
        key = (target, service)
        client = self._clients.get(key)
        if client is not None:
            return client
        if target.credentials is None:
            if self._factory is None:
                raise MonitoringError("MetricSink has no client_factory for data written outside an invocation")
            client = _client(self._factory, service, self.region, self.account_id)
        else:
            import boto3  # deferred: importing boto3 costs ~0.2 s and the sink may never send

            session = self._sessions.get(target)
            if session is None:
                key_id, secret, token = target.credentials
                session = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret,
                                                aws_session_token=token, region_name=target.region)
                self._sessions[target] = session
            client = session.client(service, endpoint_url=target.endpoint_url)
        self._clients[key] = client
        return client

    def _put_log_events(self, target: _Target, group: str, stream: str, events: list[tuple[int, str]]) -> int:
        logs = self._client_for(target, "logs")
        events = sorted(events, key=lambda e: e[0])
        sent = 0
        batch: list[dict[str, Any]] = []
        size = 0
        for timestamp, message in events + [(-1, "")]:
            event_size = len(message.encode()) + 26
            if batch and (timestamp < 0 or len(batch) >= _LOG_BATCH_EVENTS or size + event_size > _LOG_BATCH_BYTES):
                self._put_log_batch(logs, group, stream, batch)
                sent += len(batch)
                batch, size = [], 0
            if timestamp >= 0:
                batch.append({"timestamp": timestamp, "message": message})
                size += event_size
        return sent

    @staticmethod
    def _put_log_batch(logs: Any, group: str, stream: str, batch: list[dict[str, Any]]) -> None:
        try:
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
        except logs.exceptions.ResourceNotFoundException:
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_group(logGroupName=group)
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_stream(logGroupName=group, logStreamName=stream)
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)


# -- metric filter patterns ----------------------------------------------------------------------

_JSON_TOKEN = re.compile(r"""
    \s*(?:
      (?P<andop>&&) | (?P<orop>\|\|) | (?P<lparen>\() | (?P<rparen>\)) |
      (?P<op>!=|<=|>=|=|<|>) |
      (?P<string>"(?:[^"\\]|\\.)*") |
      (?P<regex>%[^%]*%) |
      (?P<selector>\$(?:\.[A-Za-z0-9_@:\-]+|\[\d+\]|\[\*\])*) |
      (?P<word>[^\s()&|=!<>"]+)
    )""", re.VERBOSE)
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_MISSING = object()


@dataclass(frozen=True)
class _Comparison:
    path: tuple[str | int, ...]
    op: str  # = != < > <= >= exists notexists null true false
    value: Any = None  # float, or str (may contain * wildcards)

    def matches(self, document: Any) -> bool:
        value = _select(document, self.path)
        if self.op == "exists":
            return value is not _MISSING
        if self.op == "notexists":
            return value is _MISSING
        if value is _MISSING:
            return False  # a condition on an absent field is false, for = and != alike
        if self.op == "null":
            return value is None
        if self.op in ("true", "false"):
            return value is (self.op == "true")
        if isinstance(self.value, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False  # a numeric comparison matches JSON numbers only
            return _compare(float(value), self.op, self.value)
        if not isinstance(value, str):
            return False  # a string comparison matches JSON strings only
        hit = _wildcard(self.value).fullmatch(value) is not None
        return hit if self.op == "=" else not hit


def _compare(left: float, op: str, right: float) -> bool:
    return {"=": left == right, "!=": left != right, "<": left < right, ">": left > right,
            "<=": left <= right, ">=": left >= right}[op]


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _select(document: Any, path: tuple[str | int, ...]) -> Any:
    current = document
    for step in path:
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return _MISSING
            current = current[step]
        else:
            if not isinstance(current, dict) or step not in current:
                return _MISSING
            current = current[step]
    return current


def _parse_selector(text: str, pattern: str) -> tuple[str | int, ...]:
    path: list[str | int] = []
    for part in re.findall(r"\.([^.\[]+)|\[(\d+|\*)\]", text[1:]):
        name, index = part
        if index == "*":
            raise UnsupportedFilterPattern(f"array wildcard selectors ([*]) are not evaluated locally: {pattern!r}")
        path.append(int(index) if index else name)
    return tuple(path)


@dataclass(frozen=True)
class FilterPattern:
    """A parsed CloudWatch Logs filter pattern; ``matches(message)``.

    Supported: the empty pattern (every event); term patterns - ``ERROR``, ``"exact
    phrase"``, ``A B`` (all), ``?A ?B`` (any), ``-A`` (none of), matched as case-sensitive
    substrings; JSON patterns ``{ ... }`` with selectors ``$.a.b[0]``, ``= != < > <= >=``,
    quoted or bare strings with ``*`` wildcards (whole-value match), numbers (compared with
    JSON numbers only), ``IS NULL``, ``IS TRUE``, ``IS FALSE``, ``EXISTS``, ``NOT EXISTS``,
    ``&&``, ``||`` and parentheses. Anything else (space-delimited ``[...]`` patterns,
    ``%regex%``, ``[*]``) raises ``UnsupportedFilterPattern`` when parsed."""

    text: str
    kind: str  # all | terms | json | delimited
    _json: Any = None
    _columns: tuple[tuple[tuple[str, str | float], ...], ...] = ()  # per column: (op, value) joined by &&
    _all: tuple[str, ...] = ()
    _any: tuple[str, ...] = ()
    _none: tuple[str, ...] = ()

    def matches(self, message: str, document: Any = _MISSING) -> bool:
        if self.kind == "all":
            return True
        if self.kind == "terms":
            if any(term in message for term in self._none):
                return False
            if self._any and not any(term in message for term in self._any):
                return False
            return all(term in message for term in self._all)
        if self.kind == "delimited":
            return _match_delimited(self._columns, message)
        if document is _MISSING:
            document = _json_document(message)
        if document is None:
            return False
        return _eval_json(self._json, document)

    @property
    def is_json(self) -> bool:
        return self.kind == "json"


def _json_document(message: str) -> Any:
    """The event as a JSON object, or None (a JSON pattern never matches a non-JSON event)."""
    stripped = message.strip()
    if not stripped.startswith("{"):
        return None
    try:
        document = json.loads(stripped)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _eval_json(node: Any, document: Any) -> bool:
    if isinstance(node, _Comparison):
        return node.matches(document)
    op, left, right = node
    if op == "&&":
        return _eval_json(left, document) and _eval_json(right, document)
    return _eval_json(left, document) or _eval_json(right, document)


def parse_filter_pattern(pattern: str) -> FilterPattern:
    """Parse a CloudWatch Logs filter pattern (see ``FilterPattern``)."""
    text = (pattern or "").strip()
    if not text or text == '""':
        return FilterPattern(pattern, "all")
    if text.startswith("{"):
        if not text.endswith("}"):
            raise UnsupportedFilterPattern(f"JSON pattern without closing brace: {pattern!r}")
        return FilterPattern(pattern, "json", _json=_JsonParser(text[1:-1], pattern).parse())
    if text.startswith("["):
        return _parse_delimited(text, pattern)
    if "%" in text:
        raise UnsupportedFilterPattern(f"regular expressions (%...%) are not evaluated locally: {pattern!r}")
    all_terms, any_terms, none_terms = [], [], []
    for match in re.finditer(r'\s*([?-]?)(?:"((?:[^"\\]|\\.)*)"|(\S+))', text):
        prefix, quoted, bare = match.groups()
        term = quoted.replace('\\"', '"') if quoted is not None else bare
        if not term:
            continue
        {"?": any_terms, "-": none_terms, "": all_terms}[prefix].append(term)
    if any_terms and all_terms:
        raise UnsupportedFilterPattern(f"mixing ?term (any) with plain terms is not evaluated locally: {pattern!r}")
    return FilterPattern(pattern, "terms", _all=tuple(all_terms), _any=tuple(any_terms), _none=tuple(none_terms))


_DELIMITED_CONDITION = re.compile(r"""^\s*(?P<op>!=|<=|>=|=|<|>)\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>\S+))\s*$""")


def _parse_delimited(text: str, pattern: str) -> FilterPattern:
    """``[a, b != "10.1.*" && b != "x", c = REJECT]``: one entry per space-separated field of
    the event, each a name with optional conditions joined by ``&&`` (``=``/``!=`` with ``*``
    wildcards, numeric ``< > <= >= = !=``). Not evaluated: ``...``, ``||``, regular expressions."""
    if not text.endswith("]"):
        raise UnsupportedFilterPattern(f"space-delimited pattern without closing bracket: {pattern!r}")
    columns: list[tuple[tuple[str, str | float], ...]] = []
    for entry in text[1:-1].split(","):
        entry = entry.strip()
        if entry == "..." or "||" in entry or "%" in entry:
            raise UnsupportedFilterPattern(f"space-delimited '...', '||' and regular expressions are not evaluated "
                                           f"locally: {pattern!r}")
        conditions: list[tuple[str, str | float]] = []
        for i, part in enumerate(entry.split("&&")):
            if i == 0:
                match = re.match(r"^\s*([A-Za-z_][\w]*)\s*(.*)$", part, re.DOTALL)
                if match is None:
                    raise UnsupportedFilterPattern(f"bad field {part!r}: {pattern!r}")
                part = match.group(2)
                if not part.strip():
                    continue
            else:  # "b != x && b != y": each later condition repeats the field name
                match = re.match(r"^\s*[A-Za-z_][\w]*\s*(.*)$", part, re.DOTALL)
                part = match.group(1) if match else part
            cond = _DELIMITED_CONDITION.match(part)
            if cond is None:
                raise UnsupportedFilterPattern(f"cannot parse condition {part!r}: {pattern!r}")
            op, quoted, bare = cond.group("op"), cond.group("quoted"), cond.group("bare")
            value: str | float = quoted if quoted is not None else bare
            if op in ("<", ">", "<=", ">=") or (quoted is None and _NUMBER.match(bare or "")):
                if not _NUMBER.match(str(value)):
                    raise UnsupportedFilterPattern(f"{op} needs a number: {pattern!r}")
                value = float(value)
            conditions.append((op, value))
        columns.append(tuple(conditions))
    return FilterPattern(pattern, "delimited", _columns=tuple(columns))


def _match_delimited(columns: tuple[tuple[tuple[str, str | float], ...], ...], message: str) -> bool:
    fields = message.split()
    if len(fields) != len(columns):
        return False
    for value, conditions in zip(fields, columns, strict=True):
        for op, expected in conditions:
            if isinstance(expected, float):
                if not _NUMBER.match(value) or not _compare(float(value), op, expected):
                    return False
            else:
                hit = _wildcard(expected).fullmatch(value) is not None
                if hit != (op == "="):
                    return False
    return True


class _JsonParser:
    def __init__(self, body: str, pattern: str) -> None:
        self.pattern = pattern
        self.tokens: list[tuple[str, str]] = []
        position = 0
        body = body.rstrip()
        while position < len(body):
            match = _JSON_TOKEN.match(body, position)
            if match is None or match.end() == position:
                raise UnsupportedFilterPattern(f"cannot parse JSON pattern at {body[position:]!r}: {pattern!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
            while position < len(body) and body[position].isspace():
                position += 1
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (kind is not None and token[0] != kind):
            raise UnsupportedFilterPattern(f"expected {kind or 'more'} at token {self.i}: {self.pattern!r}")
        self.i += 1
        return token

    def parse(self) -> Any:
        node = self.expression()
        if self.peek() is not None:
            raise UnsupportedFilterPattern(f"unexpected {self.peek()[1]!r}: {self.pattern!r}")  # type: ignore[index]
        return node

    def expression(self) -> Any:
        node = self.conjunction()
        while self.peek() and self.peek()[0] == "orop":  # type: ignore[index]
            self.take()
            node = ("||", node, self.conjunction())
        return node

    def conjunction(self) -> Any:
        node = self.term()
        while self.peek() and self.peek()[0] == "andop":  # type: ignore[index]
            self.take()
            node = ("&&", node, self.term())
        return node

    def term(self) -> Any:
        token = self.peek()
        if token is None:
            raise UnsupportedFilterPattern(f"empty condition: {self.pattern!r}")
        if token[0] == "lparen":
            self.take()
            node = self.expression()
            self.take("rparen")
            return node
        selector = self.take("selector")[1]
        path = _parse_selector(selector, self.pattern)
        token = self.take()
        if token[0] == "word":
            keyword = token[1].upper()
            following = self.peek()
            if keyword == "EXISTS":
                return _Comparison(path, "exists")
            if keyword == "NOT" and following and following[1].upper() == "EXISTS":
                self.take()
                return _Comparison(path, "notexists")
            if keyword == "IS" and following and following[1].upper() in ("NULL", "TRUE", "FALSE"):
                self.take()
                return _Comparison(path, following[1].lower())
            raise UnsupportedFilterPattern(f"unsupported condition {selector} {token[1]}: {self.pattern!r}")
        if token[0] != "op":
            raise UnsupportedFilterPattern(f"expected an operator after {selector}: {self.pattern!r}")
        op = token[1]
        kind, raw = self.take()
        if kind == "regex":
            raise UnsupportedFilterPattern(f"regular expressions (%...%) are not evaluated locally: {self.pattern!r}")
        value: Any
        if kind == "string":
            value = json.loads(raw) if "\\" in raw else raw[1:-1]
        elif kind == "word":
            value = float(raw) if _NUMBER.match(raw) else raw
        else:
            raise UnsupportedFilterPattern(f"expected a value after {selector} {op}: {self.pattern!r}")
        if op in ("<", ">", "<=", ">=") and not isinstance(value, float):
            raise UnsupportedFilterPattern(f"{op} needs a number ({selector} {op} {raw}): {self.pattern!r}")
        return _Comparison(path, op, value)


# -- applying metric filters ---------------------------------------------------------------------


@dataclass
class MetricFilterReport:
    """What one pass of ``apply_metric_filters`` did."""

    since_ms: int
    until_ms: int
    events: int = 0  # log events read (of groups that have filters)
    matches: dict[str, int] = field(default_factory=dict)  # "<log group>:<filter name>" -> matching events
    datums: int = 0  # metric data put (defaults included)

    @property
    def next_since(self) -> int:
        return self.until_ms + 1


def _epoch_ms(value: dt.datetime | float | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    return int(value)


def _metric_value(expression: str, document: Any, filter_name: str) -> float | None:
    text = str(expression).strip()
    if text.startswith("$"):
        value = _select(document, _parse_selector(text, text)) if document is not None else _MISSING
        if isinstance(value, bool) or value is _MISSING or value is None:
            return None
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return float(value)
        return None
    if _NUMBER.match(text):
        return float(text)
    raise UnsupportedFilterPattern(f"metric filter {filter_name}: metricValue {expression!r} is not evaluated locally")


def apply_metric_filters(client_factory: ClientFactory | Any, since: dt.datetime | int,
                         until: dt.datetime | int | None = None, *,
                         locations: Iterable[tuple[str | None, str | None]] | None = None,
                         _seen: set[tuple[str, str, str]] | None = None) -> MetricFilterReport:
    """Evaluate every deployed metric filter on the events of its log group with a
    timestamp in [``since``, ``until``] (datetimes or epoch milliseconds; ``until`` defaults
    to now) and put the resulting metric data: for each matching event and transformation
    ``metricValue`` (a number or ``$.selector``) with its dimensions (``$.selector`` values;
    an event without one of them yields nothing) and unit at the event's timestamp; for each
    minute with events but no match, ``defaultValue`` if the transformation has one.

    Call it with consecutive, non-overlapping windows (``report.next_since``), or use
    ``LogMetricFilters``, which keeps track. Raises ``UnsupportedFilterPattern`` for a
    pattern (or metric value) the local evaluator does not implement."""
    factory, where = _factory_and_locations(client_factory, locations)
    since_ms = _epoch_ms(since, 0)
    until_ms = _epoch_ms(until, int(system_clock().timestamp() * 1000))
    report = MetricFilterReport(since_ms, until_ms)
    for region, account in where:
        logs = _client(factory, "logs", region, account)
        filters = _paginate(logs.describe_metric_filters, "metricFilters", "nextToken")
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for f in filters:  # moto appends on every put: the last one is the filter
            latest[(f["logGroupName"], f["filterName"])] = f
        by_group: dict[str, list[tuple[dict[str, Any], FilterPattern]]] = defaultdict(list)
        for (group, _name), f in sorted(latest.items()):
            by_group[group].append((f, parse_filter_pattern(f.get("filterPattern", ""))))
        data: list[MetricDatum] = []
        for group, group_filters in by_group.items():
            try:
                events = _paginate(logs.filter_log_events, "events", "nextToken", logGroupName=group,
                                   startTime=since_ms, endTime=until_ms, interleaved=True)
            except logs.exceptions.ResourceNotFoundException:
                continue
            if _seen is not None:
                fresh = []
                for e in events:
                    key = (group, e.get("logStreamName", ""), e.get("eventId", ""))
                    if key not in _seen:
                        _seen.add(key)
                        fresh.append(e)
                events = fresh
            report.events += len(events)
            documents = [_json_document(e.get("message", "")) for e in events]
            for f, pattern in group_filters:
                count, produced = _filter_events(f, pattern, events, documents)
                label = f"{group}:{f['filterName']}"
                report.matches[label] = report.matches.get(label, 0) + count
                data += produced
        if data:
            report.datums += put_metric_data(_client(factory, "cloudwatch", region, account), data)
    return report


def _filter_events(f: Mapping[str, Any], pattern: FilterPattern, events: Sequence[Mapping[str, Any]],
                   documents: Sequence[Any]) -> tuple[int, list[MetricDatum]]:
    """The matching events of one metric filter and the metric data they produce."""
    data: list[MetricDatum] = []
    matched_minutes: set[int] = set()
    count = 0
    transformations = f.get("metricTransformations") or []
    for event, document in zip(events, documents, strict=True):
        if not pattern.matches(event.get("message", ""), document if pattern.is_json else _MISSING):
            continue
        count += 1
        matched_minutes.add(event["timestamp"] // 60_000)
        when = dt.datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
        for t in transformations:
            value = _metric_value(t["metricValue"], document, f["filterName"])
            dims = _filter_dimensions(t.get("dimensions") or {}, document)
            if value is not None and dims is not None:
                data.append(MetricDatum(t["metricNamespace"], t["metricName"], dims, (value,), when,
                                        t.get("unit") or None))
    minutes = sorted({e["timestamp"] // 60_000 for e in events} - matched_minutes)
    for t in transformations:
        if t.get("defaultValue") is not None:
            data += [MetricDatum(t["metricNamespace"], t["metricName"], (), (float(t["defaultValue"]),),
                                 dt.datetime.fromtimestamp(minute * 60, UTC), t.get("unit") or None)
                     for minute in minutes]
    return count, data


def _filter_dimensions(selectors: Mapping[str, str], document: Any) -> tuple[tuple[str, str], ...] | None:
    """A transformation's dimensions from the event, or None if one is absent (no metric)."""
    dims = []
    for name, selector in sorted(selectors.items()):
        if document is None or not str(selector).startswith("$"):
            return None
        value = _select(document, _parse_selector(selector, selector))
        if value is _MISSING or value is None or value == "":
            return None
        dims.append((name, value if isinstance(value, str) else json.dumps(value)))
    return tuple(dims)


class LogMetricFilters:
    """``apply_metric_filters`` over consecutive windows: the first ``apply()`` reads from
    ``since`` (default: every event already in the log groups), each later one from where the
    last stopped minus ``overlap`` (to catch events put late with an earlier timestamp, as the
    access log's are: they carry the request time), never counting an event twice."""

    def __init__(self, client_factory: ClientFactory | Any, *, since: dt.datetime | int | None = None,
                 overlap: dt.timedelta = dt.timedelta(minutes=5),
                 locations: Iterable[tuple[str | None, str | None]] | None = None) -> None:
        self.client_factory = client_factory
        self.locations = list(locations) if locations is not None else None
        self.overlap_ms = int(overlap.total_seconds() * 1000)
        self._since = _epoch_ms(since, 0)  # default: every event already there
        self._seen: set[tuple[str, str, str]] = set()

    def apply(self, now: dt.datetime | int | None = None) -> MetricFilterReport:
        report = apply_metric_filters(self.client_factory, self._since, now, locations=self.locations,
                                      _seen=self._seen)
        self._since = max(self._since, report.until_ms - self.overlap_ms)
        return report


# -- alarm evaluation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluatedDatapoint:
    """One period of an alarm's evaluation range (oldest first)."""

    timestamp: dt.datetime  # start of the period
    value: float | None  # None: no data in that period
    breaching: bool | None  # None: missing and not treated as either
    lower: float | None = None  # anomaly band, if any
    upper: float | None = None


@dataclass(frozen=True)
class AlarmVerdict:
    """The state an alarm has after a local evaluation.

    ``old_state`` is the state before this evaluation; an alarm moto never had evaluated
    ("Unchecked: Initial alarm creation", stored as OK) counts as INSUFFICIENT_DATA, the
    state CloudWatch gives a new alarm. ``evaluated`` is False when the alarm uses
    something local mode cannot evaluate: its state is then left as it was and ``reason``
    says why. ``notified`` lists the SNS topics a transition was published to."""

    name: str
    region: str
    account: str
    old_state: str
    new_state: str
    reason: str
    datapoints: tuple[EvaluatedDatapoint, ...] = ()
    evaluated: bool = True
    notified: tuple[str, ...] = ()
    description: str = ""

    @property
    def changed(self) -> bool:
        return self.old_state != self.new_state


_COMPARISONS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "GreaterThanThreshold": ("greater than", lambda v, t: v > t),
    "GreaterThanOrEqualToThreshold": ("greater than or equal to", lambda v, t: v >= t),
    "LessThanThreshold": ("less than", lambda v, t: v < t),
    "LessThanOrEqualToThreshold": ("less than or equal to", lambda v, t: v <= t),
}
_BAND_COMPARISONS = {
    "LessThanLowerOrGreaterThanUpperThreshold": "outside the band",
    "GreaterThanUpperThreshold": "greater than the upper band",
    "LessThanLowerThreshold": "less than the lower band",
}
_MOTO_STATISTICS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")


@dataclass(frozen=True)
class _StatQuery:
    id: str
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    period: int
    stat: str
    unit: str | None
    label: str

    @property
    def series_key(self) -> tuple[str, str, frozenset[tuple[str, str]]]:
        return self.namespace, self.name, frozenset(self.dimensions)


@dataclass
class _Band:
    lower: dict[int, float]
    upper: dict[int, float]


class _NeedsHistory(Exception):
    pass


class _MetricIndex:
    """The series moto holds (ListMetrics): which exist, and whether moto's GetMetricData
    could mix another series into a query (it ignores the namespace when dimensions are
    given and ignores dimensions when none are)."""

    def __init__(self, cloudwatch: Any) -> None:
        self.series: set[tuple[str, str, frozenset[tuple[str, str]]]] = set()
        for metric in _paginate(cloudwatch.list_metrics, "Metrics"):
            dims = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
            self.series.add((metric["Namespace"], metric["MetricName"], dims))

    def has(self, query: _StatQuery) -> bool:
        return query.series_key in self.series

    def ambiguity(self, query: _StatQuery) -> str | None:
        namespace, name, dims = query.series_key
        for other_ns, other_name, other_dims in self.series:
            if other_name != name:
                continue
            if dims and other_dims == dims and other_ns != namespace:
                return (f"moto's GetMetricData ignores the namespace when dimensions are given, and "
                        f"{other_ns}/{name} has the same dimensions as {namespace}/{name}")
            if not dims and other_ns == namespace and other_dims:
                return (f"moto's GetMetricData ignores dimensions when none are given, and {namespace}/{name} "
                        f"also exists with dimensions {dict(other_dims)}")
        return None


@dataclass
class _Context:
    cloudwatch: Any
    index: _MetricIndex
    grid: list[int]  # period starts, epoch seconds, oldest first
    period: int
    stat_queries: dict[str, _StatQuery]
    labels: dict[str, str]
    fetched: dict[str, dict[int, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _fetch(ctx: _Context, queries: Sequence[_StatQuery], start: int, end: int) -> dict[str, dict[int, float]]:
    """Values per period start of each query over [start, end), from moto's GetMetricData."""
    result: dict[str, dict[int, float]] = {q.id: {} for q in queries}
    wanted = []
    present = [q for q in queries if ctx.index.has(q)]
    for q in present:
        if q.stat not in _MOTO_STATISTICS:
            raise UnsupportedAlarm(f"statistic {q.stat} (moto's GetMetricData computes only "
                                   f"{', '.join(_MOTO_STATISTICS)})")
        problem = ctx.index.ambiguity(q)
        if problem:
            raise UnsupportedAlarm(problem)
        stat: dict[str, Any] = {"Metric": {"Namespace": q.namespace, "MetricName": q.name,
                                           "Dimensions": [{"Name": n, "Value": v} for n, v in q.dimensions]},
                                "Period": q.period, "Stat": q.stat}
        if q.unit:
            stat["Unit"] = q.unit
        wanted.append({"Id": f"q{len(wanted)}", "MetricStat": stat, "ReturnData": True})
    if not wanted:
        return result
    ids = {w["Id"]: q.id for w, q in zip(wanted, present, strict=True)}
    answers = _paginate(ctx.cloudwatch.get_metric_data, "MetricDataResults",
                        MetricDataQueries=wanted, StartTime=dt.datetime.fromtimestamp(start, UTC),
                        EndTime=dt.datetime.fromtimestamp(end, UTC), ScanBy="TimestampAscending")
    for answer in answers:
        series = result[ids[answer["Id"]]]
        for timestamp, value in zip(answer.get("Timestamps", []), answer.get("Values", []), strict=False):
            if value is not None and start <= int(timestamp.timestamp()) < end:
                series[int(timestamp.timestamp())] = float(value)
    return result


# Metric math: tokens and evaluation over the alarm's grid. Values are floats (scalars),
# dicts period-start -> float (time series), lists of time series (arrays) or _Band.
_MATH_TOKEN = re.compile(r"""\s*(?:
    (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?) |
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*') |
    (?P<name>[A-Za-z_][A-Za-z0-9_]*) |
    (?P<op>&&|\|\||==|!=|<=|>=|[-+*/^(),<>])
    )""", re.VERBOSE)
_MATH_FUNCTIONS = ("ABS", "ANOMALY_DETECTION_BAND", "AVG", "CEIL", "FILL", "FLOOR", "IF", "MAX", "METRICS", "MIN",
                   "PERIOD", "STDDEV", "SUM")


class _MathParser:
    """Parses a metric math expression into nested tuples."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = expression.strip()
        while position < len(text):
            match = _MATH_TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise UnsupportedAlarm(f"cannot parse metric math at {text[position:]!r} in {expression!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
            while position < len(text) and text[position].isspace():
                position += 1
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise UnsupportedAlarm(f"metric math ends early: {self.expression!r}")
        token = self.tokens[self.i]
        if expected is not None and token[1] != expected:
            raise UnsupportedAlarm(f"expected {expected!r}, got {token[1]!r} in {self.expression!r}")
        self.i += 1
        return token

    def parse(self) -> Any:
        node = self.logical()
        if self.i != len(self.tokens):
            raise UnsupportedAlarm(f"unexpected {self.peek()!r} in metric math {self.expression!r}")
        return node

    def _binary(self, operators: tuple[str, ...], operand: Callable[[], Any]) -> Any:
        node = operand()
        while self.peek() is not None and self.peek().upper() in operators:  # type: ignore[union-attr]
            op = self.take()[1].upper()
            node = ("op", {"AND": "&&", "OR": "||"}.get(op, op), node, operand())
        return node

    def logical(self) -> Any:
        return self._binary(("||", "OR"), lambda: self._binary(("&&", "AND"), self.comparison))

    def comparison(self) -> Any:
        node = self.additive()
        if self.peek() in ("==", "!=", "<", ">", "<=", ">="):
            op = self.take()[1]
            node = ("op", op, node, self.additive())
        return node

    def additive(self) -> Any:
        return self._binary(("+", "-"), lambda: self._binary(("*", "/"), self.power))

    def power(self) -> Any:
        node = self.unary()
        if self.peek() == "^":
            self.take()
            node = ("op", "^", node, self.power())
        return node

    def unary(self) -> Any:
        if self.peek() == "-":
            self.take()
            return ("neg", self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "number":
            return ("num", float(text))
        if kind == "string":
            return ("str", text[1:-1])
        if text == "(":
            node = self.logical()
            self.take(")")
            return node
        if kind != "name":
            raise UnsupportedAlarm(f"unexpected {text!r} in metric math {self.expression!r}")
        if self.peek() == "(":
            self.take("(")
            args = []
            if self.peek() != ")":
                args.append(self.logical())
                while self.peek() == ",":
                    self.take(",")
                    args.append(self.logical())
            self.take(")")
            return ("call", text.upper(), args)
        if text.upper() in ("REPEAT", "LINEAR"):
            return ("keyword", text.upper())
        return ("id", text)


class _MathEvaluator:
    def __init__(self, ctx: _Context, queries: Mapping[str, Mapping[str, Any]]) -> None:
        self.ctx = ctx
        self.queries = queries
        self.cache: dict[str, Any] = {}
        self.active: set[str] = set()

    def value_of(self, query_id: str) -> Any:
        if query_id in self.cache:
            return self.cache[query_id]
        if query_id not in self.queries:
            raise UnsupportedAlarm(f"metric math refers to unknown id {query_id!r}")
        if query_id in self.active:
            raise UnsupportedAlarm(f"metric math id {query_id!r} refers to itself")
        self.active.add(query_id)
        query = self.queries[query_id]
        if query_id in self.ctx.stat_queries:
            value: Any = dict(self.ctx.fetched.get(query_id, {}))
        else:
            value = self.eval(_MathParser(query["Expression"]).parse())
        self.active.discard(query_id)
        self.cache[query_id] = value
        return value

    def eval(self, node: Any) -> Any:
        kind = node[0]
        if kind == "num":
            return node[1]
        if kind == "str":
            raise UnsupportedAlarm(f"string {node[1]!r} outside METRICS()")
        if kind == "keyword":
            raise UnsupportedAlarm(f"{node[1]} outside FILL()")
        if kind == "id":
            return self.value_of(node[1])
        if kind == "neg":
            return _apply(lambda a: -a, self.eval(node[1]))
        if kind == "op":
            return _binary(node[1], self.eval(node[2]), self.eval(node[3]))
        return self.call(node[1], node[2])

    def call(self, name: str, args: list[Any]) -> Any:
        grid = self.ctx.grid
        if name == "METRICS":
            wanted = args[0][1] if args and args[0][0] == "str" else None
            if args and wanted is None:
                raise UnsupportedAlarm("METRICS() takes a quoted label filter only")
            ids = [i for i in self.ctx.stat_queries if wanted is None or wanted in self.ctx.labels.get(i, "")]
            return [self.value_of(i) for i in ids]
        if name == "FILL":
            if len(args) != 2:
                raise UnsupportedAlarm("FILL takes two arguments")
            how = args[1][1] if args[1][0] == "keyword" else self.eval(args[1])
            return _map_series(lambda s: _fill(s, how, grid), self.eval(args[0]))
        if name == "IF":
            if len(args) not in (2, 3):
                raise UnsupportedAlarm("IF takes two or three arguments")
            return _if(self.eval(args[0]), self.eval(args[1]), self.eval(args[2]) if len(args) == 3 else None, grid)
        if name in ("SUM", "AVG", "MIN", "MAX", "STDDEV"):
            if len(args) != 1:
                raise UnsupportedAlarm(f"{name} takes one argument")
            return _aggregate(name, self.eval(args[0]))
        if name in ("ABS", "CEIL", "FLOOR"):
            fn = {"ABS": abs, "CEIL": math.ceil, "FLOOR": math.floor}[name]
            return _apply(lambda a: float(fn(a)), self.eval(args[0]))
        if name == "PERIOD":
            return _map_series(lambda s: {t: float(self.ctx.period) for t in s}, self.eval(args[0]))
        if name == "ANOMALY_DETECTION_BAND":
            if not args or args[0][0] != "id" or args[0][1] not in self.ctx.stat_queries:
                raise UnsupportedAlarm("ANOMALY_DETECTION_BAND is evaluated locally on a metric id only")
            width = float(self.eval(args[1])) if len(args) > 1 else 2.0
            return _anomaly_band(self.ctx, self.ctx.stat_queries[args[0][1]], width)
        raise UnsupportedAlarm(f"metric math function {name} is not evaluated locally "
                               f"(supported: {', '.join(_MATH_FUNCTIONS)})")


def _is_series(value: Any) -> bool:
    return isinstance(value, dict)


def _map_series(fn: Callable[[dict[int, float]], Any], value: Any) -> Any:
    if isinstance(value, list):
        return [fn(v) for v in value]
    if _is_series(value):
        return fn(value)
    raise UnsupportedAlarm("a time series was expected")


def _apply(fn: Callable[[float], float], value: Any) -> Any:
    if isinstance(value, float | int):
        return _finite(fn(float(value)))
    if isinstance(value, list):
        return [_apply(fn, v) for v in value]
    if _is_series(value):
        return {t: r for t, v in value.items() if (r := _finite(fn(v))) is not None}
    raise UnsupportedAlarm(f"cannot apply a function to {type(value).__name__}")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _scalar_op(op: str, a: float, b: float) -> float | None:
    try:
        result = {
            "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b, "^": lambda: a ** b,
            "==": lambda: float(a == b), "!=": lambda: float(a != b), "<": lambda: float(a < b),
            ">": lambda: float(a > b), "<=": lambda: float(a <= b), ">=": lambda: float(a >= b),
            "&&": lambda: float(bool(a) and bool(b)), "||": lambda: float(bool(a) or bool(b)),
        }[op]()
    except (ZeroDivisionError, OverflowError):
        return None  # CloudWatch drops such points
    return _finite(float(result))


def _binary(op: str, a: Any, b: Any) -> Any:
    if isinstance(a, _Band) or isinstance(b, _Band):
        raise UnsupportedAlarm("arithmetic on an anomaly band is not evaluated locally")
    if isinstance(a, list):
        if isinstance(b, list):
            raise UnsupportedAlarm("arithmetic between two arrays of time series")
        return [_binary(op, x, b) for x in a]
    if isinstance(b, list):
        return [_binary(op, a, x) for x in b]
    if _is_series(a) and _is_series(b):
        return {t: r for t in a if t in b and (r := _scalar_op(op, a[t], b[t])) is not None}
    if _is_series(a):
        return {t: r for t, v in a.items() if (r := _scalar_op(op, v, float(b))) is not None}
    if _is_series(b):
        return {t: r for t, v in b.items() if (r := _scalar_op(op, float(a), v)) is not None}
    return _scalar_op(op, float(a), float(b))


def _fill(series: dict[int, float], how: Any, grid: list[int]) -> dict[int, float]:
    if how == "REPEAT":
        filled, last = {}, None
        for t in grid:
            last = series.get(t, last)
            if last is not None:
                filled[t] = last
        return filled
    if how == "LINEAR":
        known = sorted(t for t in grid if t in series)
        filled = {t: series[t] for t in known}
        for left, right in itertools.pairwise(known):
            for t in grid:
                if left < t < right:
                    filled[t] = series[left] + (series[right] - series[left]) * (t - left) / (right - left)
        return filled
    if _is_series(how):
        return {t: series[t] if t in series else how[t] for t in grid if t in series or t in how}
    if isinstance(how, float | int):
        return {t: series.get(t, float(how)) for t in grid}
    raise UnsupportedAlarm(f"FILL with {how!r}")


def _if(condition: Any, then: Any, otherwise: Any, grid: list[int]) -> Any:
    if isinstance(condition, list):
        return [_if(c, then, otherwise, grid) for c in condition]
    if not _is_series(condition):
        chosen = then if condition else otherwise
        return chosen if chosen is not None else {}

    def at(value: Any, t: int) -> float | None:
        if value is None:
            return None
        if _is_series(value):
            return value.get(t)
        if isinstance(value, float | int):
            return float(value)
        raise UnsupportedAlarm("IF branches must be scalars or time series")

    result = {}
    for t, c in condition.items():
        picked = at(then, t) if c else at(otherwise, t)
        if picked is not None:
            result[t] = picked
    return result


def _aggregate(name: str, value: Any) -> Any:
    def reduce(values: list[float]) -> float | None:
        if not values:
            return None
        if name == "SUM":
            return sum(values)
        if name == "AVG":
            return sum(values) / len(values)
        if name == "MIN":
            return min(values)
        if name == "MAX":
            return max(values)
        return statistics.pstdev(values)

    if isinstance(value, list):  # an array of series -> one series, per timestamp
        timestamps = sorted({t for s in value for t in s})
        return {t: r for t in timestamps if (r := reduce([s[t] for s in value if t in s])) is not None}
    if _is_series(value):  # one series -> a scalar
        result = reduce(list(value.values()))
        if result is None:
            raise _NoData()
        return result
    raise UnsupportedAlarm(f"{name} of a scalar")


class _NoData(Exception):
    pass


def _anomaly_band(ctx: _Context, query: _StatQuery, width: float) -> _Band:
    """A local stand-in for CloudWatch's anomaly-detection model: mean +/- ``width`` standard
    deviations of the metric's values in the periods before the evaluation range (up to
    ``ANOMALY_TRAINING_WINDOW``). CloudWatch's model (trend, daily and weekly seasonality)
    is not reproduced; without at least ``ANOMALY_MIN_HISTORY`` of history and
    ``ANOMALY_MIN_DATAPOINTS`` values there is no band, and the alarm is INSUFFICIENT_DATA."""
    start = ctx.grid[0]
    history_start = start - int(ANOMALY_TRAINING_WINDOW.total_seconds())
    history = _fetch(ctx, [query], history_start, start)[query.id]
    if not history or len(history) < ANOMALY_MIN_DATAPOINTS \
            or start - min(history) < ANOMALY_MIN_HISTORY.total_seconds():
        raise _NeedsHistory(f"{len(history)} datapoint(s) of history before the evaluation range; the local band "
                            f"needs {ANOMALY_MIN_DATAPOINTS} over at least {ANOMALY_MIN_HISTORY}")
    mean = statistics.fmean(history.values())
    spread = statistics.pstdev(history.values())
    ctx.notes.append(f"local anomaly band: mean {mean:g} +/- {width:g} x stddev {spread:g} of {len(history)} "
                     "datapoints (an approximation of CloudWatch's model)")
    return _Band({t: mean - width * spread for t in ctx.grid}, {t: mean + width * spread for t in ctx.grid})


def _stat_query(query_id: str, namespace: str, name: str, dimensions: Any, period: Any, stat: str | None,
                unit: str | None, label: str | None) -> _StatQuery:
    if not stat:
        raise UnsupportedAlarm(f"{namespace}/{name}: no statistic")
    return _StatQuery(query_id, namespace, name,
                      tuple((d["Name"], d["Value"]) for d in dimensions or []),
                      int(period or 0), stat, unit or None, label or name)


def _format_time(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, UTC).strftime("%d/%m/%y %H:%M:%S")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _evaluate(alarm: Mapping[str, Any], cloudwatch: Any, index: _MetricIndex, now: dt.datetime,
              old_state: str) -> tuple[str, str, tuple[EvaluatedDatapoint, ...], dict[str, Any]]:
    """(state, reason, datapoints, reason data) of one metric alarm."""
    queries: dict[str, Mapping[str, Any]] = {}
    stat_queries: dict[str, _StatQuery] = {}
    labels: dict[str, str] = {}
    if alarm.get("Metrics"):
        for q in alarm["Metrics"]:
            queries[q["Id"]] = q
            if q.get("MetricStat"):
                ms = q["MetricStat"]
                metric = ms["Metric"]
                stat_queries[q["Id"]] = _stat_query(q["Id"], metric["Namespace"], metric["MetricName"],
                                                    metric.get("Dimensions"), ms.get("Period") or q.get("Period"),
                                                    ms.get("Stat"), ms.get("Unit"), q.get("Label"))
                labels[q["Id"]] = q.get("Label") or metric["MetricName"]
            elif not q.get("Expression"):
                raise UnsupportedAlarm(f"metric query {q['Id']} has neither MetricStat nor Expression")
        returned = [i for i, q in queries.items() if q.get("ReturnData", True) and i != alarm.get("ThresholdMetricId")]
        if len(returned) != 1:
            raise UnsupportedAlarm(f"{len(returned)} queries return data; an alarm needs exactly one")
        main = returned[0]
        periods = {q.period for q in stat_queries.values()} | {int(q["Period"]) for q in queries.values()
                                                                 if q.get("Period")}
    else:
        if not alarm.get("Namespace") or not alarm.get("MetricName"):
            raise UnsupportedAlarm("neither a metric nor metric queries")
        main = "m"
        stat_queries[main] = _stat_query(main, alarm["Namespace"], alarm["MetricName"], alarm.get("Dimensions"),
                                         alarm.get("Period"), alarm.get("Statistic") or alarm.get("ExtendedStatistic"),
                                         alarm.get("Unit"), None)
        queries[main] = {"Id": main}
        periods = {stat_queries[main].period}
    if len(periods) != 1 or not min(periods):
        raise UnsupportedAlarm(f"the metrics of one alarm need one period (got {sorted(periods)})")
    period = periods.pop()
    n = int(alarm.get("EvaluationPeriods") or 1)
    m = int(alarm.get("DatapointsToAlarm") or n)
    end = (int(now.timestamp()) // period + 1) * period  # the period containing now is included
    grid = [end - (n - i) * period for i in range(n)]
    ctx = _Context(cloudwatch, index, grid, period, stat_queries, labels)
    ctx.fetched = _fetch(ctx, list(stat_queries.values()), grid[0], end)
    evaluator = _MathEvaluator(ctx, queries)
    threshold_id = alarm.get("ThresholdMetricId")
    operator = alarm.get("ComparisonOperator", "")
    band: _Band | None = None
    try:
        series = evaluator.value_of(main)
        if threshold_id:
            band_value = evaluator.value_of(threshold_id)
            if not isinstance(band_value, _Band):
                raise UnsupportedAlarm(f"ThresholdMetricId {threshold_id} is not an ANOMALY_DETECTION_BAND")
            band = band_value
    except _NeedsHistory as exc:
        points = tuple(EvaluatedDatapoint(dt.datetime.fromtimestamp(t, UTC), ctx.fetched.get(main, {}).get(t), None)
                       for t in grid)
        return INSUFFICIENT_DATA, f"{INSUFFICIENT_DATA} ({NEEDS_HISTORY}): {exc}.", points, {"local": True}
    except _NoData:
        series = {}
    if not _is_series(series):
        raise UnsupportedAlarm(f"the alarm's expression returns {type(series).__name__}, not one time series")
    if band is None and operator not in _COMPARISONS:
        raise UnsupportedAlarm(f"comparison {operator!r} without an anomaly band")
    if band is not None and operator not in _BAND_COMPARISONS:
        raise UnsupportedAlarm(f"comparison {operator!r} with an anomaly band")
    threshold = float(alarm.get("Threshold") or 0.0)
    treat = alarm.get("TreatMissingData") or "missing"
    namespaces = {q.namespace for q in stat_queries.values()}
    if namespaces == {"AWS/DynamoDB"}:
        treat = "ignore"  # CloudWatch: alarms on AWS/DynamoDB metrics always ignore missing data

    def breaches(t: int, value: float) -> bool:
        if band is None:
            return _COMPARISONS[operator][1](value, threshold)
        low, high = band.lower.get(t), band.upper.get(t)
        if low is None or high is None:
            return False
        return {"LessThanLowerOrGreaterThanUpperThreshold": value < low or value > high,
                "GreaterThanUpperThreshold": value > high, "LessThanLowerThreshold": value < low}[operator]

    points = []
    for t in grid:
        value = series.get(t)
        breaching = breaches(t, value) if value is not None else {"breaching": True, "notBreaching": False}.get(treat)
        points.append(EvaluatedDatapoint(dt.datetime.fromtimestamp(t, UTC), value, breaching,
                                         band.lower.get(t) if band else None, band.upper.get(t) if band else None))
    present = [(t, v) for t, v in zip(grid, (p.value for p in points), strict=True) if v is not None]
    missing = n - len(present)
    breaching = sum(1 for p in points if p.breaching)
    relation = _COMPARISONS[operator][0] if band is None else _BAND_COMPARISONS[operator]
    against = f"the threshold ({threshold:g})" if band is None else "the anomaly band"
    shown = ", ".join(f"{v:g} ({_format_time(t)})" for t, v in present)
    missing_as = {"breaching": "Breaching", "notBreaching": "NonBreaching"}.get(treat)
    if breaching >= m:
        state = ALARM
        reason = (f"Threshold Crossed: {breaching} out of the last {n} datapoints [{shown}] "
                  f"{'was' if breaching == 1 else 'were'} {relation} {against} "
                  f"(minimum {_plural(m, 'datapoint')} for OK -> ALARM transition).")
        if missing and missing_as:
            reason = reason[:-1] + f"; {_plural(missing, 'missing datapoint')} treated as [{missing_as}]."
    elif not present and treat in ("missing", "ignore"):
        if treat == "ignore":
            state = old_state
            reason = f"No datapoints for {_plural(n, 'period')}; missing data is ignored: the state stays {state}."
        else:
            state = INSUFFICIENT_DATA
            reason = f"Insufficient Data: {_plural(n, 'datapoint')} {'was' if n == 1 else 'were'} unknown."
    else:
        state = OK
        if not present:
            reason = (f"Threshold Crossed: no datapoints were received for {_plural(n, 'period')} and "
                      f"{_plural(missing, 'missing datapoint')} {'was' if missing == 1 else 'were'} treated as "
                      f"[{missing_as}].")
        elif breaching == 0:
            reason = (f"Threshold Crossed: {_plural(len(present), 'datapoint')} [{shown}] "
                      f"{'was' if len(present) == 1 else 'were'} not {relation} {against}.")
        else:
            reason = (f"Threshold Crossed: {breaching} out of the last {n} datapoints [{shown}] "
                      f"{'was' if breaching == 1 else 'were'} {relation} {against}; {m} needed for ALARM.")
        if present and missing and missing_as:
            reason = reason[:-1] + f"; {_plural(missing, 'missing datapoint')} treated as [{missing_as}]."
    if not present:
        unsourced = sorted(q.namespace for q in stat_queries.values() if q.namespace.startswith("AWS/"))
        if unsourced:
            reason += (f" (no local source: {', '.join(sorted(set(unsourced)))} metrics are published by AWS "
                       "services, not in local mode)")
    if ctx.notes:
        reason += " " + "; ".join(ctx.notes) + "."
    data = {"version": "1.0", "local": True, "queryDate": now.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "startDate": dt.datetime.fromtimestamp(grid[0], UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "period": period, "recentDatapoints": [v for _, v in present],
            "evaluatedDatapoints": [{"timestamp": p.timestamp.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                                     **({"value": p.value} if p.value is not None else {})} for p in points]}
    if band is None:
        data["threshold"] = threshold
    if not alarm.get("Metrics"):
        data["statistic"] = stat_queries[main].stat
    if len(json.dumps(data)) > 4000:  # SetAlarmState's limit for StateReasonData
        del data["evaluatedDatapoints"]
    return state, reason, tuple(points), data


def _effective_state(alarm: Mapping[str, Any]) -> str:
    if str(alarm.get("StateReason", "")).startswith("Unchecked"):
        return INSUFFICIENT_DATA  # moto stores OK; CloudWatch starts a new alarm here
    return alarm.get("StateValue") or INSUFFICIENT_DATA


def _notify(factory: ClientFactory, alarm: Mapping[str, Any], old: str, new: str, reason: str,
            now: dt.datetime) -> tuple[str, ...]:
    if alarm.get("ActionsEnabled") is False:
        return ()
    actions = alarm.get({ALARM: "AlarmActions", OK: "OKActions"}.get(new, "InsufficientDataActions")) or []
    arn = alarm.get("AlarmArn", "")
    region, account = (arn.split(":")[3:5] + ["", ""])[:2]
    message = {
        "AlarmName": alarm["AlarmName"], "AlarmDescription": alarm.get("AlarmDescription"),
        "AWSAccountId": account, "NewStateValue": new, "NewStateReason": reason,
        "StateChangeTime": now.strftime("%Y-%m-%dT%H:%M:%S.000+0000"), "Region": region, "AlarmArn": arn,
        "OldStateValue": old, "OKActions": alarm.get("OKActions", []), "AlarmActions": alarm.get("AlarmActions", []),
        "InsufficientDataActions": alarm.get("InsufficientDataActions", []), "LocalMode": True}
    notified = []
    for action in actions:
        parts = action.split(":")
        if len(parts) < 6 or parts[2] != "sns":
            log.info("alarm %s: action %s is not executed locally", alarm["AlarmName"], action)
            continue
        try:
            _client(factory, "sns", parts[3], parts[4]).publish(
                TopicArn=action, Subject=f'{new}: "{alarm["AlarmName"]}" in {parts[3]}'[:100],
                Message=json.dumps(message, ensure_ascii=False))
            notified.append(action)
        except (ClientError, BotoCoreError) as exc:  # a notification failure must not hide the verdict
            log.warning("alarm %s: notifying %s failed: %s", alarm["AlarmName"], action, exc)
    return tuple(notified)


_TIER_IN_NAME = re.compile(r"-(national|pref-\d{6}|muni-\d{6})-")


class NotificationLog:
    """What the embedded AWS would have sent: one line per alarm state change that notifies an
    SNS topic (``.jukinet/notifications.log`` in the demo and ``jukinet up``)::

        2026-12-03T12:25:00Z  pref-200000  jukinet-pref-200000-signature-failures  OK→ALARM  Threshold Crossed: …

    Time (the evaluation's ``now``, UTC), tier (from the alarm's name, else its region and
    account), alarm, old→new state, reason (one line, at most ``REASON_CHARS``). Appended, never
    rewritten; ``lines()`` reads it back. Thread-safe within a process."""

    REASON_CHARS = 240

    def __init__(self, path: os.PathLike[str] | str, *, truncate: bool = False) -> None:
        from pathlib import Path

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate or not self.path.exists():
            self.path.write_text("", encoding="utf-8")
        self._lock = threading.Lock()

    def record(self, verdict: AlarmVerdict, now: dt.datetime) -> str:
        match = _TIER_IN_NAME.search(verdict.name)
        tier = match[1] if match else f"{verdict.region}/{verdict.account}"
        reason = " ".join(verdict.reason.split())
        if len(reason) > self.REASON_CHARS:
            reason = reason[:self.REASON_CHARS - 1] + "…"
        line = (f"{now.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}  {tier}  {verdict.name}  "
                f"{verdict.old_state}→{verdict.new_state}  {reason}")
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        return line

    def lines(self) -> list[str]:
        return [l for l in self.path.read_text(encoding="utf-8").splitlines() if l.strip()]


def evaluate_alarms(client_factory: ClientFactory | Any, now: dt.datetime | None = None, *,
                    locations: Iterable[tuple[str | None, str | None]] | None = None,
                    alarm_names: Iterable[str] | None = None, update_state: bool = True, notify: bool = True,
                    strict: bool = False, notifications: NotificationLog | None = None) -> list[AlarmVerdict]:
    """Evaluate every alarm in the embedded AWS (``DescribeAlarms``) at ``now`` (default:
    the current time) from the metric data moto holds, and set the states in moto.

    The evaluation range is the ``EvaluationPeriods`` periods ending with the one that
    contains ``now`` (periods aligned to multiples of ``Period`` since the epoch, as
    CloudWatch aligns them). A period's datapoint is the statistic of the data in it; ALARM
    when at least ``DatapointsToAlarm`` datapoints breach (missing ones counted as
    ``TreatMissingData`` says); with no datapoint at all, ``missing`` gives
    INSUFFICIENT_DATA, ``ignore`` keeps the state; otherwise OK.

    ``client_factory``: a ``DeployedEnvironment`` (all its stacks' regions and accounts), its
    ``client`` method, or any ``(service, region, account) -> client`` (``locations`` then
    lists the (region, account) pairs; default: the factory's own). ``update_state=False``
    leaves moto untouched; ``notify`` publishes a transition to the alarm's SNS actions.
    Alarms using something not evaluated locally get ``evaluated=False`` (or raise
    ``UnsupportedAlarm`` with ``strict``). ``notifications``: each notified transition is
    also written there (``NotificationLog``)."""
    factory, where = _factory_and_locations(client_factory, locations)
    now = now or system_clock()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    names = set(alarm_names) if alarm_names is not None else None
    verdicts: list[AlarmVerdict] = []
    for region, account in where:
        cloudwatch = _client(factory, "cloudwatch", region, account)
        alarms = _paginate(cloudwatch.describe_alarms, "MetricAlarms")
        composites = _paginate(cloudwatch.describe_alarms, "CompositeAlarms", AlarmTypes=["CompositeAlarm"])
        index = _MetricIndex(cloudwatch)
        for alarm in sorted(alarms, key=lambda a: a["AlarmName"]):
            if names is not None and alarm["AlarmName"] not in names:
                continue
            arn_parts = alarm.get("AlarmArn", "").split(":")
            alarm_region = region or (arn_parts[3] if len(arn_parts) > 4 else "")
            alarm_account = account or (arn_parts[4] if len(arn_parts) > 4 else "")
            old = _effective_state(alarm)
            try:
                new, reason, points, data = _evaluate(alarm, cloudwatch, index, now, old)
            except (UnsupportedAlarm, ClientError) as exc:  # ClientError: moto could not answer a query
                if strict:
                    raise UnsupportedAlarm(f"{alarm['AlarmName']}: {exc}") from exc
                verdicts.append(AlarmVerdict(alarm["AlarmName"], alarm_region, alarm_account, old, old,
                                             f"not evaluated locally: {exc}", evaluated=False,
                                             description=alarm.get("AlarmDescription", "")))
                continue
            notified: tuple[str, ...] = ()
            if update_state and (new != alarm.get("StateValue") or old != alarm.get("StateValue")):
                cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue=new, StateReason=reason[:1023],
                                           StateReasonData=json.dumps(data))
                if notify and new != old:
                    notified = _notify(factory, alarm, old, new, reason, now)
            verdict = AlarmVerdict(alarm["AlarmName"], alarm_region, alarm_account, old, new, reason, points,
                                   notified=notified, description=alarm.get("AlarmDescription", ""))
            if notifications is not None and notified:
                notifications.record(verdict, now)
            verdicts.append(verdict)
        for composite in composites:
            if names is not None and composite["AlarmName"] not in names:
                continue
            message = "composite alarms (AlarmRule) are not evaluated locally"
            if strict:
                raise UnsupportedAlarm(f"{composite['AlarmName']}: {message}")
            old = _effective_state(composite)
            verdicts.append(AlarmVerdict(composite["AlarmName"], region or "", account or "", old, old,
                                         f"not evaluated locally: {message}", evaluated=False))
    return verdicts


# -- presentation --------------------------------------------------------------------------------


def print_alarm_status(console: Any, verdicts: Sequence[AlarmVerdict], *, title: str | None = None) -> None:
    """A rich table of the alarm states (ALARM / OK / INSUFFICIENT_DATA / not evaluated)
    and, for every alarm in ALARM (and every one not evaluated), its reason."""
    from rich.table import Table

    counts = {state: sum(1 for v in verdicts if v.evaluated and v.new_state == state) for state in STATES}
    not_evaluated = [v for v in verdicts if not v.evaluated]
    styles = {ALARM: "bold red", OK: "green", INSUFFICIENT_DATA: "yellow"}
    summary = Table(title=title or f"CloudWatch alarms, evaluated locally ({len(verdicts)})")
    summary.add_column("state")
    summary.add_column("alarms", justify="right")
    summary.add_column("changed", justify="right")
    for state in STATES:
        changed = sum(1 for v in verdicts if v.evaluated and v.new_state == state and v.changed)
        summary.add_row(f"[{styles[state]}]{state}[/]", str(counts[state]), str(changed) if changed else "")
    if not_evaluated:
        summary.add_row("[magenta]not evaluated[/]", str(len(not_evaluated)), "")
    console.print(summary)
    firing = [v for v in verdicts if v.evaluated and v.new_state == ALARM]
    if firing:
        table = Table(title="In ALARM")
        table.add_column("alarm", style="bold red", no_wrap=True)
        table.add_column("reason")
        for v in sorted(firing, key=lambda v: v.name):
            table.add_row(v.name, v.reason)
        console.print(table)
    if not_evaluated:
        table = Table(title="Not evaluated locally")
        table.add_column("alarm", style="magenta", no_wrap=True)
        table.add_column("why")
        for v in sorted(not_evaluated, key=lambda v: v.name):
            table.add_row(v.name, v.reason)
        console.print(table)


# -- metrics of AWS services ---------------------------------------------------------------------


class ServiceMetrics:
    """Publishes, on demand, the metrics AWS services would publish themselves, from what local
    mode can observe (opt-in: without it, alarms on ``AWS/*`` metrics see no data):

    * ``AWS/SQS`` ``ApproximateNumberOfMessagesVisible``, ``...NotVisible``, ``...Delayed`` of
      every queue (dimension ``QueueName``), from ``GetQueueAttributes`` at ``now``. SQS
      publishes them every minute; here one sample per ``publish()``.
      ``ApproximateAgeOfOldestMessage`` is not published: moto does not report it, and
      receiving to find out would change the messages' receive counts.
    * ``AWS/Lambda`` ``Invocations`` and ``Errors`` per function (dimension ``FunctionName``),
      the runner's counts since the last ``publish()``, if a runner is given. ``Throttles``,
      ``Duration``, ``ConcurrentExecutions`` are not published (the runner neither throttles
      nor runs concurrently).
    """

    def __init__(self, env: Any, runner: Any | None = None) -> None:
        self.factory, self.locations = _factory_and_locations(env, None)
        self.runner = runner
        self._seen: dict[str, tuple[int, int]] = {}

    def publish(self, now: dt.datetime | None = None) -> int:
        now = now or system_clock()
        by_location: dict[tuple[str | None, str | None], list[MetricDatum]] = defaultdict(list)
        for region, account in self.locations:
            sqs = _client(self.factory, "sqs", region, account)
            for url in _paginate(sqs.list_queues, "QueueUrls"):
                attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed"]).get("Attributes", {})
                dims = (("QueueName", url.rsplit("/", 1)[-1]),)
                for attribute, metric in (("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesVisible"),
                                          ("ApproximateNumberOfMessagesNotVisible",
                                           "ApproximateNumberOfMessagesNotVisible"),
                                          ("ApproximateNumberOfMessagesDelayed",
                                           "ApproximateNumberOfMessagesDelayed")):
                    by_location[(region, account)].append(MetricDatum(
                        "AWS/SQS", metric, dims, (float(attributes.get(attribute, 0)),), now, "Count"))
        for name, stats in (self.runner.stats.items() if self.runner is not None else ()):
            invocations, errors = self._seen.get(name, (0, 0))
            if stats.invocations == invocations:
                continue
            self._seen[name] = (stats.invocations, stats.errors)
            fn = self.runner.functions[name]
            dims = (("FunctionName", name),)
            by_location[(fn.region, fn.account)] += [
                MetricDatum("AWS/Lambda", "Invocations", dims, (float(stats.invocations - invocations),), now, "Count"),
                MetricDatum("AWS/Lambda", "Errors", dims, (float(stats.errors - errors),), now, "Count")]
        put = 0
        for (region, account), data in by_location.items():
            put += put_metric_data(_client(self.factory, "cloudwatch", region, account), data)
        return put


# -- all together --------------------------------------------------------------------------------


class LocalMonitoring:
    """The parts wired for a deployed environment::

        monitoring = LocalMonitoring(env, stream=log_file)
        with LocalRunner(env, log_stream=monitoring.sink) as runner:
            ...
        verdicts = monitoring.evaluate()          # flush EMF, apply metric filters, evaluate
        print_alarm_status(console, verdicts)

    ``service_metrics=True`` also publishes the ``AWS/SQS`` and ``AWS/Lambda`` metrics local
    mode can observe before each evaluation (``ServiceMetrics``; pass the runner to
    ``evaluate`` for the Lambda ones), so alarms such as ``-dlq-not-empty`` or
    ``-processor-errors`` see data."""

    def __init__(self, env: Any, *, stream: TextIO | None = None, forward_logs: bool = True,
                 since: dt.datetime | int | None = None, service_metrics: bool = False,
                 notifications: NotificationLog | None = None) -> None:
        self.env = env
        self.notifications = notifications
        self.sink = MetricSink(env, stream, forward_logs=forward_logs)
        self.filters = LogMetricFilters(env, since=since)
        self.service_metrics = ServiceMetrics(env) if service_metrics else None
        self.last_filter_report: MetricFilterReport | None = None

    def evaluate(self, now: dt.datetime | None = None, *, runner: Any | None = None,
                 **kwargs: Any) -> list[AlarmVerdict]:
        """Flush the sink, apply the metric filters, publish service metrics (if enabled) and
        evaluate every alarm (``evaluate_alarms`` keyword arguments pass through)."""
        self.sink.flush()
        self.last_filter_report = self.filters.apply(now)
        if self.service_metrics is not None:
            if runner is not None:
                self.service_metrics.runner = runner
            self.service_metrics.publish(now)
        kwargs.setdefault("notifications", self.notifications)
        return evaluate_alarms(self.env, now, **kwargs)

    def close(self) -> None:
        self.sink.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

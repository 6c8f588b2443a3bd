"""Metric data: the Embedded Metric Format lines a function prints become ``PutMetricData``
calls, as CloudWatch Logs does (``MetricSink``, ``parse_emf``, ``put_metric_data``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import os
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from jukinet.clock import system_clock

from ..code_image import INVOCATION_LOCK
from ..flow_logs import not_the_function
from ._base import (
    _LOG_BATCH_BYTES,
    _LOG_BATCH_EVENTS,
    _MAX_EMF_VALUES,
    _MAX_VALUES_PER_DATUM,
    MAX_METRIC_AGE,
    MAX_METRIC_FUTURE,
    UTC,
    ClientFactory,
    EmfError,
    MonitoringError,
    _client,
    _factory_and_locations,
    log,
)

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

"""What an alarm's evaluation reads and yields: the verdict types, the statistic queries and
their values from moto's ``GetMetricData``, the local anomaly band."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._base import (
    ANOMALY_MIN_DATAPOINTS,
    ANOMALY_MIN_HISTORY,
    ANOMALY_TRAINING_WINDOW,
    UTC,
    UnsupportedAlarm,
    _paginate,
)

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

"""Alarm evaluation: every deployed alarm's state computed with CloudWatch's rules, set in moto
and notified (``evaluate_alarms``, ``NotificationLog``), and shown (``print_alarm_status``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jukinet.clock import system_clock

from ._base import (
    ALARM,
    INSUFFICIENT_DATA,
    NEEDS_HISTORY,
    OK,
    STATES,
    UTC,
    ClientFactory,
    UnsupportedAlarm,
    _client,
    _factory_and_locations,
    _paginate,
    log,
)
from .alarm_data import (
    _BAND_COMPARISONS,
    _COMPARISONS,
    AlarmVerdict,
    EvaluatedDatapoint,
    _Band,
    _Context,
    _fetch,
    _MetricIndex,
    _NeedsHistory,
    _NoData,
    _stat_query,
    _StatQuery,
)
from .metric_math import _is_series, _MathEvaluator


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

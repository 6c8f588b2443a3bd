"""EventBridge schedules in local mode: the deployed scheduled rules, fired as time passes.

moto stores rules and their targets but never fires a schedule (it has no clock of its own).
``LocalSchedules`` reads every enabled rule with a ``ScheduleExpression`` from the embedded
AWS (``ListRules``, ``ListTargetsByRule``), and ``due(now)`` returns the events whose
scheduled minute passed since the previous call — each as EventBridge delivers it to a
Lambda target (``source`` ``aws.events``, ``detail-type`` ``Scheduled Event``, ``time`` the
scheduled minute, ``resources`` the rule's ARN), or the target's constant ``Input`` when it
has one. The caller decides what a delivery is: ``jukinet up`` hands each to the runner as an
asynchronous invocation (``LocalRunner.invoke_async``), with the function's retries and
dead-letter target.

Time comes from the caller: ``LocalSchedules(env, now)`` starts counting at ``now``, and a
schedule never fires for minutes before that (a rule is not "caught up" from the past).

Not emulated: targets other than Lambda functions (listed in ``not_emulated``), input
transformers and input paths (the scheduled event is delivered as is), ``MaximumEventAgeInSeconds``,
and cron expressions with ``L``, ``W`` or ``#`` (a ``ScheduleError`` names the rule).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from .model import DeployedEnvironment

__all__ = [
    "CronSchedule",
    "LocalSchedules",
    "RateSchedule",
    "ScheduleError",
    "ScheduledTarget",
    "parse_schedule",
    "scheduled_event",
]

UTC = dt.UTC
_MINUTE = dt.timedelta(minutes=1)
# A process asleep for longer (a suspended laptop) fires each rule once for the gap, not per minute.
_MAX_CATCH_UP = dt.timedelta(days=1)
_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                                       "NOV", "DEC"), start=1)}
_DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}


class ScheduleError(ValueError):
    """A schedule expression the local scheduler cannot evaluate."""


@dataclass(frozen=True)
class CronSchedule:
    """EventBridge ``cron(minutes hours day-of-month month day-of-week year)``, in UTC.
    Day of week 1-7 is SUN-SAT; ``?`` stands for "any" in one of the two day fields."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int] | None  # None: any
    months: frozenset[int]
    days_of_week: frozenset[int] | None  # None: any (1 = Sunday)
    years: frozenset[int] | None

    def matches(self, minute: dt.datetime) -> bool:
        weekday = minute.isoweekday() % 7 + 1  # Monday=1 … Sunday=7 → Sunday=1 … Saturday=7
        return (minute.minute in self.minutes and minute.hour in self.hours and minute.month in self.months
                and (self.days_of_month is None or minute.day in self.days_of_month)
                and (self.days_of_week is None or weekday in self.days_of_week)
                and (self.years is None or minute.year in self.years))


@dataclass(frozen=True)
class RateSchedule:
    """EventBridge ``rate(N unit)``: every N units, counted from when the rule was created (here:
    from when the scheduler started, as for a rule created then)."""

    every: dt.timedelta

    def matches_since(self, origin: dt.datetime, minute: dt.datetime) -> bool:
        return minute > origin and (minute - origin) % self.every < _MINUTE


def _field(text: str, low: int, high: int, names: dict[str, int] | None, what: str) -> frozenset[int] | None:
    if text in ("*", "?"):
        return None
    values: set[int] = set()

    def number(token: str) -> int:
        token = token.upper()
        if names and token in names:
            return names[token]
        if any(c in token for c in "LW#"):
            raise ScheduleError(f"cron {what} {text!r}: L, W and # are not evaluated locally")
        if not token.isdigit():
            raise ScheduleError(f"cron {what} {text!r}: {token!r} is not a number{' or a name' if names else ''}")
        return int(token)

    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step_text and (not step_text.isdigit() or step < 1):
            raise ScheduleError(f"cron {what} {text!r}: step {step_text!r} must be a positive number")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = number(a), number(b)
        else:
            start = number(base)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high):
            raise ScheduleError(f"cron {what} {text!r}: values must lie in {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse_schedule(expression: str) -> CronSchedule | RateSchedule:
    """An EventBridge schedule expression; ``ScheduleError`` names what is not understood."""
    text = expression.strip()
    if match := _RATE.match(text):
        n, unit = int(match[1]), match[2].rstrip("s")
        if n < 1:
            raise ScheduleError(f"{expression!r}: the rate must be at least 1")
        return RateSchedule({"minute": dt.timedelta(minutes=n), "hour": dt.timedelta(hours=n),
                             "day": dt.timedelta(days=n)}[unit])
    match = _CRON.match(text)
    if match is None:
        raise ScheduleError(f"{expression!r}: neither cron(...) nor rate(...)")
    fields = match[1].split()
    if len(fields) != 6:
        raise ScheduleError(f"{expression!r}: cron needs 6 fields (minutes hours day-of-month month "
                            f"day-of-week year), got {len(fields)}")
    minutes = _field(fields[0], 0, 59, None, "minutes")
    hours = _field(fields[1], 0, 23, None, "hours")
    days_of_month = _field(fields[2], 1, 31, None, "day-of-month")
    months = _field(fields[3], 1, 12, _MONTHS, "month")
    days_of_week = _field(fields[4], 1, 7, _DAYS, "day-of-week")
    years = _field(fields[5], 1970, 2199, None, "year")
    if "?" not in (fields[2], fields[4]):
        raise ScheduleError(f"{expression!r}: one of day-of-month and day-of-week must be '?'")
    return CronSchedule(minutes=minutes if minutes is not None else frozenset(range(60)),
                        hours=hours if hours is not None else frozenset(range(24)),
                        days_of_month=days_of_month, months=months if months is not None else frozenset(range(1, 13)),
                        days_of_week=days_of_week, years=years)


@dataclass(frozen=True)
class ScheduledTarget:
    """One Lambda target of one scheduled rule."""

    rule_name: str
    rule_arn: str
    expression: str
    schedule: CronSchedule | RateSchedule
    function_arn: str
    region: str
    account: str
    constant_input: str | None  # the target's Input: delivered instead of the scheduled event


def scheduled_event(target: ScheduledTarget, minute: dt.datetime) -> dict[str, Any]:
    """The event EventBridge delivers to the target for the scheduled ``minute``."""
    if target.constant_input is not None:
        return json.loads(target.constant_input)
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": target.account, "time": minute.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": target.region, "resources": [target.rule_arn], "detail": {}}


class LocalSchedules:
    """The deployed scheduled rules of ``env``, fired by ``due(now)``; ``now`` at construction
    is where counting starts."""

    def __init__(self, env: DeployedEnvironment, now: dt.datetime) -> None:
        self.env = env
        self.targets: list[ScheduledTarget] = []
        self.not_emulated: list[str] = []
        self._origin = _floor(now)
        self._last = self._origin
        for region, account in sorted({(s.region, s.account) for s in env.stacks.values()}):
            events = env.client("events", region, account)
            for page in events.get_paginator("list_rules").paginate():
                for rule in page.get("Rules", []):
                    if rule.get("ScheduleExpression") and rule.get("State") == "ENABLED":
                        self._load(events, rule, region, account)

    def _load(self, events: Any, rule: dict[str, Any], region: str, account: str) -> None:
        try:
            schedule = parse_schedule(rule["ScheduleExpression"])
        except ScheduleError as exc:
            raise ScheduleError(f"rule {rule['Name']}: {exc}") from None
        for target in events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", []):
            arn = target["Arn"]
            if ":lambda:" not in arn or ":function:" not in arn:
                self.not_emulated.append(f"rule {rule['Name']}: target {arn} is not a Lambda function; not fired")
                continue
            if target.get("InputPath") or target.get("InputTransformer"):
                self.not_emulated.append(f"rule {rule['Name']}: the input path/transformer of {arn} is not "
                                         f"applied; the scheduled event is delivered as is")
            self.targets.append(ScheduledTarget(rule_name=rule["Name"], rule_arn=rule["Arn"],
                                                expression=rule["ScheduleExpression"], schedule=schedule,
                                                function_arn=arn, region=region, account=account,
                                                constant_input=target.get("Input")))

    def due(self, now: dt.datetime) -> list[tuple[ScheduledTarget, dict[str, Any]]]:
        """(target, event) for every scheduled minute in (last call, ``now``], at most one per
        target when more than a day passed. Minutes are whole UTC minutes."""
        end = _floor(now)
        start = self._last
        gap_too_long = end - start > _MAX_CATCH_UP
        if gap_too_long:
            start = end - _MAX_CATCH_UP
        fired: list[tuple[ScheduledTarget, dict[str, Any]]] = []
        for target in self.targets:
            minutes = []
            minute = start + _MINUTE
            while minute <= end:
                if self._matches(target, minute):
                    minutes.append(minute)
                minute += _MINUTE
            fired += [(target, scheduled_event(target, m)) for m in (minutes[-1:] if gap_too_long else minutes)]
        self._last = max(self._last, end)
        return fired

    def next_fire(self, target: ScheduledTarget, now: dt.datetime, *, horizon: dt.timedelta = dt.timedelta(days=8)
                  ) -> dt.datetime | None:
        """The first scheduled minute after ``now`` (within ``horizon``)."""
        minute = _floor(now) + _MINUTE
        end = minute + horizon
        while minute <= end:
            if self._matches(target, minute):
                return minute
            minute += _MINUTE
        return None

    def _matches(self, target: ScheduledTarget, minute: dt.datetime) -> bool:
        if isinstance(target.schedule, RateSchedule):
            return target.schedule.matches_since(self._origin, minute)
        return target.schedule.matches(minute)


def _floor(instant: dt.datetime) -> dt.datetime:
    if instant.tzinfo is None:
        raise ValueError("the scheduler needs timezone-aware instants")
    return instant.astimezone(UTC).replace(second=0, microsecond=0)

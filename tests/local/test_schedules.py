"""EventBridge schedules fired locally as time passes (embedded_aws/schedules.py), on fixed
instants: the deployed rules are read from a stand-in for the embedded AWS's EventBridge."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest

from embedded_aws.schedules import CronSchedule, LocalSchedules, ScheduleError, parse_schedule

UTC = dt.UTC
SEAL_RULE = {"Name": "jukinet-national-provision-seal", "State": "ENABLED", "ScheduleExpression": "cron(0 16 * * ? *)",
             "Arn": "arn:aws:events:ap-northeast-1:123456789012:rule/jukinet-national-provision-seal"}
SEALER = "arn:aws:lambda:ap-northeast-1:123456789012:function:jukinet-national-provision-sealer"


class _Events:
    def __init__(self, rules: list[dict], targets: dict[str, list[dict]]) -> None:
        self.rules, self.targets = rules, targets

    def get_paginator(self, name: str):
        assert name == "list_rules"
        return SimpleNamespace(paginate=lambda: [{"Rules": self.rules}])

    def list_targets_by_rule(self, Rule: str) -> dict:
        return {"Targets": self.targets.get(Rule, [])}


def _env(rules: list[dict], targets: dict[str, list[dict]]):
    events = _Events(rules, targets)
    stack = SimpleNamespace(region="ap-northeast-1", account="123456789012")
    return SimpleNamespace(stacks={"jukinet-national": stack}, client=lambda service, region, account: events)


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def _sealer(start: str) -> LocalSchedules:
    return LocalSchedules(_env([SEAL_RULE], {SEAL_RULE["Name"]: [{"Id": "Target0", "Arn": SEALER}]}), _at(start))


def test_the_daily_sealer_fires_once_when_the_clock_passes_0100_jst():
    schedules = _sealer("2003-01-31T15:58:10")
    assert schedules.due(_at("2003-01-31T15:59:59")) == []
    (fired,) = schedules.due(_at("2003-01-31T16:00:30"))
    target, event = fired
    assert target.function_arn == SEALER
    assert event["source"] == "aws.events" and event["detail-type"] == "Scheduled Event"
    assert event["time"] == "2003-01-31T16:00:00Z"  # 2003-02-01 01:00 JST: the sealer seals the 31st
    assert event["resources"] == [SEAL_RULE["Arn"]]
    assert schedules.due(_at("2003-01-31T16:05:00")) == []  # never twice for one scheduled minute
    assert schedules.next_fire(target, _at("2003-01-31T16:05:00")) == _at("2003-02-01T16:00:00")


def test_a_schedule_never_fires_for_minutes_before_the_environment_started():
    schedules = _sealer("2003-01-31T16:00:30")  # started just after the scheduled minute
    assert schedules.due(_at("2003-01-31T16:10:00")) == []


def test_a_day_long_gap_fires_each_rule_once_not_once_per_missed_minute():
    rule = {**SEAL_RULE, "Name": "every-minute", "ScheduleExpression": "rate(1 minute)"}
    schedules = LocalSchedules(_env([rule], {"every-minute": [{"Id": "t", "Arn": SEALER}]}), _at("2003-01-01T00:00:00"))
    assert len(schedules.due(_at("2003-01-01T00:03:00"))) == 3
    assert len(schedules.due(_at("2003-01-03T00:03:00"))) == 1  # a suspended laptop wakes up


def test_rate_counts_from_when_the_environment_started():
    rule = {**SEAL_RULE, "Name": "five", "ScheduleExpression": "rate(5 minutes)"}
    schedules = LocalSchedules(_env([rule], {"five": [{"Id": "t", "Arn": SEALER}]}), _at("2003-01-01T00:02:00"))
    times = [e["time"] for _, e in schedules.due(_at("2003-01-01T00:20:00"))]
    assert times == ["2003-01-01T00:07:00Z", "2003-01-01T00:12:00Z", "2003-01-01T00:17:00Z"]


def test_disabled_rules_and_targets_that_are_not_functions_are_not_fired():
    disabled = {**SEAL_RULE, "Name": "off", "State": "DISABLED"}
    to_queue = {**SEAL_RULE, "Name": "to-queue"}
    schedules = LocalSchedules(_env([disabled, to_queue], {
        "off": [{"Id": "t", "Arn": SEALER}],
        "to-queue": [{"Id": "q", "Arn": "arn:aws:sqs:ap-northeast-1:123456789012:some-queue"}]}),
        _at("2003-01-31T15:00:00"))
    assert schedules.due(_at("2003-01-31T17:00:00")) == []
    assert schedules.not_emulated == [("rule to-queue: target arn:aws:sqs:ap-northeast-1:123456789012:some-queue is "
                                       "not a Lambda function; not fired")]


def test_a_targets_constant_input_is_delivered_instead_of_the_scheduled_event():
    schedules = LocalSchedules(_env([SEAL_RULE], {SEAL_RULE["Name"]: [
        {"Id": "t", "Arn": SEALER, "Input": json.dumps({"day": "2003-01-31"})}]}), _at("2003-01-31T15:59:00"))
    ((_, event),) = schedules.due(_at("2003-01-31T16:00:00"))
    assert event == {"day": "2003-01-31"}


def test_cron_fields_follow_eventbridge():
    mondays = parse_schedule("cron(30 0 ? * MON *)")
    assert isinstance(mondays, CronSchedule)
    assert mondays.matches(_at("2003-01-06T00:30:00"))  # a Monday
    assert not mondays.matches(_at("2003-01-07T00:30:00"))
    weekdays = parse_schedule("cron(0/15 9-17 ? * 2-6 2003)")
    assert weekdays.matches(_at("2003-01-08T17:45:00"))  # Wednesday
    assert not weekdays.matches(_at("2003-01-11T10:00:00"))  # Saturday
    assert not weekdays.matches(_at("2004-01-07T10:00:00"))  # another year
    first = parse_schedule("cron(0 3 1 JAN,JUL ? *)")
    assert first.matches(_at("2003-07-01T03:00:00")) and not first.matches(_at("2003-08-01T03:00:00"))


@pytest.mark.parametrize(("expression", "says"), [
    ("cron(0 16 L * ? *)", "L, W and # are not evaluated locally"),
    ("cron(0 16 * * 2#1 *)", "L, W and # are not evaluated locally"),
    ("cron(0 16 * * * *)", "one of day-of-month and day-of-week must be '?'"),
    ("cron(0 16 * * ?)", "cron needs 6 fields"),
    ("cron(61 16 * * ? *)", "values must lie in 0-59"),
    ("rate(0 minutes)", "at least 1"),
    ("at(2003-01-01T00:00:00)", "neither cron(...) nor rate(...)"),
])
def test_expressions_the_local_scheduler_cannot_evaluate_are_refused_by_name(expression, says):
    with pytest.raises(ScheduleError, match=says.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_schedule(expression)


def test_an_unsupported_rule_is_named_when_the_environment_starts():
    rule = {**SEAL_RULE, "Name": "last-day", "ScheduleExpression": "cron(0 16 L * ? *)"}
    with pytest.raises(ScheduleError, match="rule last-day"):
        LocalSchedules(_env([rule], {"last-day": [{"Id": "t", "Arn": SEALER}]}), _at("2003-01-31T15:00:00"))

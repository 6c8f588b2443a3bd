"""The jukinet command's surface: help for every command, arguments checked before any AWS call."""

from __future__ import annotations

import datetime as dt

import pytest

from jukinet_ops.cli import build_parser, main


@pytest.mark.parametrize("command", ["demo", "reconcile", "synth", "redrive"])
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: jukinet " + command in capsys.readouterr().out


def test_reconcile_refuses_a_malformed_month_naming_the_rule(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reconcile", "--month", "2003-1x"])
    assert exit_info.value.code == 2
    assert "month must be YYYY-MM" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["reconcile", "provision-stats"])
def test_the_default_month_is_this_month_in_japan_time(command):
    # 15:00 UTC on the last day of a month is already the next month in Japan (UTC+9).
    assert build_parser(dt.datetime(2027, 3, 31, 15, 0, tzinfo=dt.UTC)).parse_args([command]).month == "2027-04"
    assert build_parser(dt.datetime(2027, 3, 31, 14, 59, tzinfo=dt.UTC)).parse_args([command]).month == "2027-03"
    # New Year: 2027-12-31 15:00 UTC is January 2028 in Japan.
    assert build_parser(dt.datetime(2027, 12, 31, 15, 0, tzinfo=dt.UTC)).parse_args([command]).month == "2028-01"


def test_reconcile_defaults_to_this_month_in_japan_time(monkeypatch, capsys):
    # The command as run, its clock frozen at 2027-01-31 15:30 UTC: still January in UTC, already
    # 2027-02-01 00:30 in Japan. A default taken in UTC (or from the machine's own clock) reconciles January.
    import jukinet_ops.reconcile

    asked: list[str] = []
    channel_asked: list[str] = []

    def reconcile_deployment(deployment, month, prefecture_code=None):
        asked.append(month)
        return []

    def reconcile_channel(deployment, month, now, prefecture_code=None):
        channel_asked.append(month)
        return []

    monkeypatch.setattr(jukinet_ops.reconcile, "reconcile_deployment", reconcile_deployment)
    monkeypatch.setattr(jukinet_ops.reconcile, "reconcile_channel", reconcile_channel)
    frozen = dt.datetime(2027, 1, 31, 15, 30, tzinfo=dt.UTC)
    assert main(["reconcile", "--json"], clock=lambda: frozen) == 0
    assert asked == channel_asked == ["2027-02"]
    assert '"month": "2027-02"' in capsys.readouterr().out
    # a minute before midnight in Japan it is still January there too
    assert main(["reconcile", "--json"], clock=lambda: frozen.replace(hour=14, minute=59)) == 0
    assert asked == channel_asked == ["2027-02", "2027-01"]


def test_redrive_refuses_an_unknown_tier_naming_the_known_ones_before_any_aws_call(capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: any AWS call would fail
    assert main(["redrive", "--tier", "pref-999999", "--apply"]) == 2
    err = capsys.readouterr().err
    assert "unknown tier 'pref-999999'" in err and "national" in err and "pref-200000" in err


def test_redrive_is_a_dry_run_unless_told_to_apply():
    assert build_parser().parse_args(["redrive"]).apply is False
    assert build_parser().parse_args(["redrive", "--apply"]).apply is True

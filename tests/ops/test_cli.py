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


def test_redrive_refuses_an_unknown_tier_naming_the_known_ones_before_any_aws_call(capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: any AWS call would fail
    assert main(["redrive", "--tier", "pref-999999", "--apply"]) == 2
    err = capsys.readouterr().err
    assert "unknown tier 'pref-999999'" in err and "national" in err and "pref-200000" in err


def test_redrive_is_a_dry_run_unless_told_to_apply():
    assert build_parser().parse_args(["redrive"]).apply is False
    assert build_parser().parse_args(["redrive", "--apply"]).apply is True

"""The jukinet command's surface: help for every command, arguments checked before any AWS call."""

from __future__ import annotations

import pytest

from jukinet_ops.cli import build_parser, main


@pytest.mark.parametrize("command", ["demo", "reconcile", "synth"])
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


def test_reconcile_defaults_to_this_month_in_japan_time():
    args = build_parser().parse_args(["reconcile"])
    assert len(args.month) == 7 and args.month[4] == "-"

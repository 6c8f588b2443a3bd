"""``jukinet demo --workers N``: the runner's worker processes (decision 0057), 2 unless told."""

from __future__ import annotations

import pytest

import jukinet_ops.demo
from jukinet_ops.cli import main


def test_the_demo_runs_two_workers_unless_told_and_refuses_a_negative_count(monkeypatch, capsys):
    seen: dict = {}
    monkeypatch.setattr(jukinet_ops.demo, "run_demo", lambda **kwargs: seen.update(kwargs) or 0)
    assert main(["demo"]) == 0 and seen["workers"] == 2
    assert main(["demo", "--workers", "0"]) == 0 and seen["workers"] == 0
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--workers", "-1"])
    assert exit_.value.code == 2
    assert "workers must be a whole number, 0 or more" in capsys.readouterr().err

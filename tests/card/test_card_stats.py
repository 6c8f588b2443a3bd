"""``jukinet card-stats``: the month's counters per municipality, from the tier's card table."""

from __future__ import annotations

import csv
import io

from infra.config import load_deployment
from jukinet.domain.card import VirtualCard
from jukinet_ops.card_stats import card_statistics, stats_csv
from jukinet_ops.cli import main

from .world import MATSUMOTO, NAGANO, OPERATOR

TARO, HANAKO = "24727059608", "50000000016"


def test_issued_suspended_and_authentications_by_reason_per_municipality_and_month(world, capsys):
    chips = []
    for code in (TARO, HANAKO):
        world.resident(code)
        chip = VirtualCard("1234")
        assert world.issue(code, chip)[0] == 201
        chips.append(chip)
    assert world.authenticate(chips[0], "1234", at=MATSUMOTO)[0] == 200
    world.call("POST", f"/v1/cards/{chips[1].serial}/suspension", {"reason": "lost"}, who=OPERATOR)
    assert world.authenticate(chips[1], "1234", at=MATSUMOTO)[0] == 403
    rows = {r.municipality: r for r in card_statistics(load_deployment("nagano-demo"), "2026-12")}
    assert rows[NAGANO].counts["issued"] == 2 and rows[NAGANO].counts["suspended"] == 1
    assert rows[MATSUMOTO].counts["auth_ok"] == 1 and rows[MATSUMOTO].refused == {"CARD_SUSPENDED": 1}
    assert not card_statistics(load_deployment("nagano-demo"), "2026-11")[0].counts
    table = list(csv.DictReader(io.StringIO(stats_csv(list(rows.values()), "2026-12"))))
    assert {r["municipality"]: r["issued"] for r in table}[NAGANO] == "2"

    with world.environment():
        assert main(["card-stats", "--month", "2026-12", "--format", "json", "--deployment", "nagano-demo"]) == 0
    out = capsys.readouterr().out
    assert '"CARD_SUSPENDED": 1' in out
    assert '"wide_area_copies": {' in out  # the copies' figures beside each municipality's cards
    with world.environment():
        assert main(["card-stats", "--month", "2026-12", "--deployment", "nagano-demo"]) == 0
    out = capsys.readouterr().out
    assert "Resident cards 2026-12" in out and "Wide-area copies 2026-12" in out

"""The wide-area copies in the statistics (issue 16 item 5): ``jukinet card-stats``'s second
table — requested, issued, refused by code and timed out at the issuing municipality (B), and
the residents' copies answered for issue elsewhere at the home municipality (A) — per
municipality and month, from a moto world where copies were issued, refused and timed out."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

from rich.console import Console

from jukinet_ops.card_stats import copies_table, stats_csv, stats_json, stats_table, tier_statistics

from ..channel.world import MATSUMOTO, NAGANO, NAGANO_PREF, UEDA, resident
from .test_flow import CHILD, HEAD, NEIGHBOUR, WIFE, family
from .world import NAMES, CopyWorld

TIER = [(code, NAMES[code]) for code in (NAGANO, MATSUMOTO, UEDA)]


def rows(month: str) -> dict:
    return {r.municipality: r for r in tier_statistics(f"jukinet-cards-{NAGANO_PREF}", TIER, month)}


def test_copies_issued_refused_by_code_and_timed_out_per_municipality_and_month(world: CopyWorld) -> None:
    family(world)
    assert world.copy(HEAD.code, NAGANO)["status"] == "issued"                                 # 松本市: issued
    assert world.copy(WIFE.code, NAGANO, members=[CHILD.code])["status"] == "issued"          # 松本市: issued
    assert world.copy(HEAD.code, NAGANO, members=[NEIGHBOUR.code])["refusal"] == "not_in_household"
    assert world.copy(resident(98), NAGANO)["refusal"] == "unknown_resident"
    assert world.copy(CHILD.code, NAGANO, at=UEDA)["status"] == "issued"                      # 上田市: issued
    # 松本市: a request lost between the tiers: pending, then timed out after its deadline.
    status, lost = world.ask(NEIGHBOUR.code, NAGANO)
    assert status == 202
    world.pump(drop={"pref-200000"})
    world.now += dt.timedelta(seconds=31)
    assert world.outcome(lost["correlation"])[1]["status"] == "timed_out"
    world.outcome(lost["correlation"])  # read again: counted once

    by = rows("2003-01")
    assert by[MATSUMOTO].copies == {"requested": 5, "issued": 2, "refused": 2, "timed_out": 1, "issued_elsewhere": 0}
    assert by[MATSUMOTO].copies_refused == {"not_in_household": 1, "unknown_resident": 1}
    assert by[UEDA].copies == {"requested": 1, "issued": 1, "refused": 0, "timed_out": 0, "issued_elsewhere": 0}
    # 長野市 (the home): three copies of its residents answered for issue elsewhere (the
    # refusals are not copies; the lost request never reached it); it issued none itself.
    assert by[NAGANO].copies == {"requested": 0, "issued": 0, "refused": 0, "timed_out": 0, "issued_elsewhere": 3}
    assert not by[NAGANO].has_cards and by[NAGANO].has_copies
    # Another month counts nothing.
    assert not any(r.has_copies for r in rows("2003-02").values())
    assert not any(r.has_copies for r in rows("2002-12").values())

    # The renderings: the table (cards table without the copies-only rows), CSV, JSON.
    console = Console(record=True, width=200)
    console.print(stats_table(list(by.values()), "2003-01"))
    console.print(copies_table(list(by.values()), "2003-01"))
    text = console.export_text()
    assert "Wide-area copies 2003-01" in text
    assert "not_in_household 1, unknown_resident 1" in text
    cards_part = text.split("Wide-area copies")[0]
    assert "202029" not in cards_part  # no card counted: not a row of the cards table
    table = {r["municipality"]: r for r in csv.DictReader(io.StringIO(stats_csv(list(by.values()), "2003-01")))}
    assert (table[MATSUMOTO]["copies_issued"], table[MATSUMOTO]["copies_timed_out"]) == ("2", "1")
    assert json.loads(table[MATSUMOTO]["copies_refused_by_reason"]) == {"not_in_household": 1, "unknown_resident": 1}
    assert table[NAGANO]["copies_issued_elsewhere"] == "3"
    data = {m["municipality"]: m for m in json.loads(stats_json(list(by.values()), "2003-01"))["municipalities"]}
    assert data[MATSUMOTO]["wide_area_copies"]["refused_by_reason"]["not_in_household"] == 1
    assert data[NAGANO]["wide_area_copies"]["issued_elsewhere"] == 3


def test_a_refusal_is_a_metric_under_its_code_for_the_monthly_report(capsys, monkeypatch) -> None:
    from jukinet import observability

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "jukinet-muni-200000")
    observability.use_tier("municipality")
    try:
        observability.count_copy_refusal("not_in_household")
        observability.flush()
    finally:
        observability.metrics.clear_metrics()
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    by_code = [b for b in blobs if "WideAreaCopiesRefusedByCode" in b]
    assert len(by_code) == 1
    assert (by_code[0]["code"], by_code[0]["tier"], by_code[0]["service"]) == (
        "not_in_household", "municipality", "jukinet-muni-200000")
    refused = [b["WideAreaCopiesRefused"] for b in blobs if "WideAreaCopiesRefused" in b]
    assert refused in ([1], [1.0], [[1]], [[1.0]])
    assert "code" not in next(b for b in blobs if "WideAreaCopiesRefused" in b)  # the {service, tier} set stays

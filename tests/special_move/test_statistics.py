"""The special moves in the statistics (issue 16 item 5): ``jukinet card-stats``'s third table —
A's special move-outs filed (by post), cancelled, completed, lapsed (expired, not moved in); B's
certificate requests, certificates, move-ins completed, refused by code, timed out — per
municipality and month, from a moto world."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

from rich.console import Console

from jukinet_ops.card_stats import moves_table, stats_csv, stats_json, tier_statistics

from ..channel.world import MATSUMOTO, NAGANO, NAGANO_PREF, UEDA, resident
from ..copy.world import NAMES, Person
from .world import MoveWorld

TIER = [(code, NAMES[code]) for code in (NAGANO, MATSUMOTO, UEDA)]
PEOPLE = [Person(resident(40 + i), f"上田{i}郎") for i in range(5)]


def rows(month: str, now: dt.datetime) -> dict:
    return {r.municipality: r for r in tier_statistics(f"jukinet-cards-{NAGANO_PREF}", TIER, month, now)}


def test_special_moves_per_municipality_and_month(world: MoveWorld) -> None:
    chips = [world.holder(p) for p in PEOPLE]
    assert world.file(PEOPLE[0].code, by_post=True)[0] == 201
    for p, chip in zip(PEOPLE[1:], chips[1:], strict=True):
        world.filed_at_counter(p, chip)
    assert world.special_move(PEOPLE[0], chips[0])["status"] == "completed"               # completed
    world.cancel(PEOPLE[1].code)                                                            # cancelled
    world.later(minutes=1)
    world.file(PEOPLE[1].code, by_post=True)                                                # filed again
    assert world.certified(PEOPLE[1], chips[1])["status"] == "certified"                   # never registered
    assert world.certified(PEOPLE[2], chips[2], at=NAGANO)["status"] == "certified"
    assert world.certified(PEOPLE[2], chips[2])["refusal"] == "certificate_given_elsewhere"  # 松本市 refused
    status, accepted = world.move_in_request(PEOPLE[3].code, chips[3])
    world.pump(drop={"pref-200000"})
    world.later(seconds=31)
    assert world.move_in_result(accepted["correlation"])[1]["status"] == "timed_out"       # 松本市 timed out
    jan = world.now
    by = rows("2003-01", jan)
    assert by[UEDA].moves_out == {"filed": 6, "by_post": 2, "cancelled": 1, "completed": 1, "expired": 0,
                                  "not_moved_in": 0}
    assert {k: v for k, v in by[MATSUMOTO].moves.items() if k.startswith("in_")} == {
        "in_requested": 4, "in_certified": 2, "in_completed": 1, "in_refused": 1, "in_timed_out": 1}
    assert by[MATSUMOTO].moves_refused == {"certificate_given_elsewhere": 1}
    assert by[NAGANO].moves["in_certified"] == 1
    # In February every open filing has lapsed: the certified ones not moved in, the others expired.
    march = dt.datetime(2003, 3, 1, tzinfo=dt.UTC)
    feb = rows("2003-02", march)
    assert feb[UEDA].moves_out == {"filed": 0, "by_post": 0, "cancelled": 0, "completed": 0, "expired": 2,
                                   "not_moved_in": 2}
    assert not any(r.has_moves for r in rows("2002-12", march).values())
    # the renderings
    console = Console(record=True, width=250)
    console.print(moves_table(list(by.values()), "2003-01"))
    text = console.export_text()
    assert "Special move-outs/move-ins 2003-01" in text and "certificate_given_elsewhere 1" in text
    table = {r["municipality"]: r for r in csv.DictReader(io.StringIO(stats_csv(list(by.values()), "2003-01")))}
    assert table[UEDA]["moves_out_filed"] == "6" and table[MATSUMOTO]["moves_in_completed"] == "1"
    assert json.loads(table[MATSUMOTO]["moves_refused_by_reason"]) == {"certificate_given_elsewhere": 1}
    doc = json.loads(stats_json(list(by.values()), "2003-01"))
    [m] = [x for x in doc["municipalities"] if x["municipality"] == MATSUMOTO]
    assert m["special_moves"]["in_timed_out"] == 1

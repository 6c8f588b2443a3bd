"""Benchmark: the domain core on one core, per stage, for synthetic update notices.

For N notices as dicts (what a tier receives in a message payload) it times, stage by stage:

    parse      UpdateNotice.from_dict (parsing and every validation rule)
    validate   UpdateNotice.validate alone (the consistency rules, re-run on parsed notices)
    seal       Sealer.seal_facts with one data key and AAD = resident code | notice id
    serialise  to_dict + compact JSON
    index      blind_index of name kana + birth date (what the store adds per current state)

and the end-to-end figure (parse + seal + serialise). Target: at least 10,000 notices/s.

    .venv/bin/python bench/bench_domain.py [-n 20000] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import datetime as dt
import json
import os
import pstats
import random
import time
from collections.abc import Callable
from pathlib import Path

from jukinet.domain.blind_index import blind_index
from jukinet.domain.codes import IndividualNumber, ResidentCode
from jukinet.domain.envelope import Sealer
from jukinet.domain.notice import UpdateNotice

ROOT = Path(__file__).resolve().parents[1]
TARGET_PER_S = 10_000

SURNAMES = [
    ("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"), ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"), ("山本", "ヤマモト"), ("中村", "ナカムラ"), ("小林", "コバヤシ"), ("加藤", "カトウ"),
    ("丸山", "マルヤマ"), ("小松", "コマツ"), ("宮澤", "ミヤザワ"), ("髙橋", "タカハシ"), ("山﨑", "ヤマザキ"),
    ("百瀬", "モモセ"), ("赤羽", "アカハネ"), ("滝沢", "タキザワ"), ("北原", "キタハラ"), ("柳沢", "ヤナギサワ"),
]
GIVEN = [
    ("太郎", "タロウ"), ("花子", "ハナコ"), ("健一", "ケンイチ"), ("由美子", "ユミコ"), ("翔太", "ショウタ"),
    ("結衣", "ユイ"), ("大輔", "ダイスケ"), ("美咲", "ミサキ"), ("直樹", "ナオキ"), ("恵", "メグミ"),
    ("蓮", "レン"), ("陽菜", "ヒナ"), ("勇", "イサム"), ("千鶴", "チヅル"), ("龍之介", "リュウノスケ"),
]
TOWNS = ["大字鶴賀緑町", "丸の内", "大手一丁目", "幸町", "大久保町", "高島一丁目", "中込", "大字長倉", "赤須町"]
# Roughly the mix of a month: moves dominate, then births, deaths and corrections.
REASONS = ["11"] * 30 + ["21"] * 30 + ["31"] * 15 + ["13"] * 6 + ["22"] * 12 + ["12"] * 2 + ["32"] * 2 + ["34"] * 2 + [
    "33", "14", "23"]
HALF_WIDTH = str.maketrans(dict(zip(
    "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワンー　",
    "ｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜﾝｰ ",
    strict=True,
)))


def _municipalities() -> list[tuple[str, str]]:
    with open(ROOT / "data" / "nagano_municipalities.csv", encoding="utf-8") as f:
        return [(row["local_government_code"], row["name"]) for row in csv.DictReader(f)]


def synthetic_notices(n: int, seed: int = 2003) -> list[dict]:
    """N notice dicts like those a CS sends; 1 in 5 with half-width kana, 1 in 4 with compact dates."""
    rng = random.Random(seed)
    municipalities = _municipalities()
    sequences: dict[str, int] = {}
    out = []
    for _ in range(n):
        code, city = rng.choice(municipalities)
        sequences[code] = sequences.get(code, 0) + 1
        reason = rng.choice(REASONS)
        resident = ResidentCode.generate(rng).value
        change = dt.date(2003, 1, 1) + dt.timedelta(days=rng.randrange(31))
        notice = {
            "municipality": code,
            "sequence": sequences[code],
            "resident_code": resident,
            "reason": reason,
            "change_date": change.isoformat() if rng.random() < 0.75 else change.strftime("%Y%m%d"),
            # notified on the day of the change or up to 3 days later (never before: validate() refuses it)
            "notice_time": (dt.datetime.combine(change, dt.time(), tzinfo=dt.UTC)
                            + dt.timedelta(seconds=rng.randrange(3 * 86400), microseconds=rng.randrange(10**6))
                            ).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "facts": None,
            "previous_resident_code": None,
        }
        if reason not in ("21", "22", "23"):
            (sk, skana), (gk, gkana) = rng.choice(SURNAMES), rng.choice(GIVEN)
            kana = f"{skana}　{gkana}"
            birth = change if reason == "13" else change - dt.timedelta(days=rng.randrange(1, 36500))
            facts = {
                "resident_code": resident,
                "name": {"kanji": f"{sk}　{gk}", "kana": kana.translate(HALF_WIDTH) if rng.random() < 0.2 else kana},
                "birth_date": birth.isoformat(),
                "sex": rng.choice("12"),
                "address": f"長野県{city}{rng.choice(TOWNS)}{rng.randrange(1, 3000)}番地{rng.randrange(1, 20)}",
            }
            if rng.random() < 0.3:
                facts["individual_number"] = IndividualNumber.generate(rng).value
            notice["facts"] = facts
        if reason == "33":
            notice["previous_resident_code"] = ResidentCode.generate(rng).value
        out.append(notice)
    return out


def _time(stage: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        stage()
        best = min(best, time.perf_counter() - start)
    return best


def measure(n: int = 20_000, repeat: int = 3) -> dict:
    """Time each stage and the end-to-end run on ``n`` synthetic notices (best of ``repeat``).

    Returns ``{"n", "with_facts", "stages": [(label, count, seconds)], "end_to_end_s",
    "end_to_end": callable}`` (the callable is what ``--profile`` profiles)."""
    raw = synthetic_notices(n)
    notices = [UpdateNotice.from_dict(r) for r in raw]
    sealer = Sealer(os.urandom(32))
    index_key = os.urandom(32)
    with_facts = [x for x in notices if x.facts is not None]

    def parse() -> None:
        for r in raw:
            UpdateNotice.from_dict(r)

    def validate() -> None:
        for x in notices:
            x.validate()

    def seal() -> None:
        for x in with_facts:
            sealer.seal_facts(x.facts, f"{x.resident_code.value}|{x.notice_id}".encode())

    def serialise() -> None:
        for x in notices:
            json.dumps(x.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def index() -> None:
        for x in with_facts:
            blind_index(index_key, x.facts.name.kana, x.facts.birth_date)

    def end_to_end() -> None:
        for r in raw:
            x = UpdateNotice.from_dict(r)
            if x.facts is not None:
                sealer.seal_facts(x.facts, f"{x.resident_code.value}|{x.notice_id}".encode())
            json.dumps(x.to_dict(), separators=(",", ":"), ensure_ascii=False)

    stages = [("parse (from_dict)", parse, n), ("validate (rules only)", validate, n),
              ("seal facts (AES-GCM)", seal, len(with_facts)), ("serialise (to_dict+json)", serialise, n),
              ("blind index (HMAC)", index, len(with_facts))]
    return {"n": n, "with_facts": len(with_facts),
            "stages": [(label, count, _time(stage, repeat)) for label, stage, count in stages],
            "end_to_end_s": _time(end_to_end, repeat), "end_to_end": end_to_end}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20_000, help="number of notices")
    parser.add_argument("--repeat", type=int, default=3, help="runs per stage; the best is reported")
    parser.add_argument("--profile", action="store_true", help="cProfile the end-to-end run and print the top 25")
    args = parser.parse_args()

    result = measure(args.n, args.repeat)
    print(f"domain core, one core, {args.n:,} notices ({result['with_facts']:,} with facts), best of {args.repeat}")
    for label, count, elapsed in result["stages"]:
        print(f"  {label:<26} {count / elapsed:>10,.0f} notices/s  {elapsed / count * 1e6:>7.1f} µs/notice")
    elapsed = result["end_to_end_s"]
    rate = args.n / elapsed
    verdict = "meets" if rate >= TARGET_PER_S else "BELOW"
    print(f"  {'end to end (parse+seal+ser.)':<26} {rate:>10,.0f} notices/s  {elapsed / args.n * 1e6:>7.1f} µs/notice"
          f"  ({verdict} the {TARGET_PER_S:,}/s target)")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(result["end_to_end"])
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()

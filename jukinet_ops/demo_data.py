"""A synthetic month of update notices for a prefecture, at a given volume.

Deterministic for a seed. Produces, per municipality, the export files its existing
resident-registry system would drop into the CS's drop zone: a mix of moves between the
prefecture's municipalities (転出 at the old one, 転入 at the new one), moves in from and
out to other prefectures, births, deaths, moves within a municipality, corrections, name
changes and resident-code changes — plus a few malformed rows, which the CS must reject.
Files come in the encodings municipal systems emit: UTF-8 CSV, CP932 CSV and JSON Lines.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field

from jukinet.domain.codes import IndividualNumber, ResidentCode

COLUMNS = ["resident_code", "reason", "change_date", "name_kanji", "name_kana", "former_surname",
           "former_surname_kana", "birth_date", "sex", "address", "individual_number", "previous_resident_code"]
DELETIONS = {"転出", "死亡", "職権消除"}

_SURNAMES = [("小林", "コバヤシ"), ("田中", "タナカ"), ("中村", "ナカムラ"), ("丸山", "マルヤマ"), ("伊藤", "イトウ"),
             ("宮沢", "ミヤザワ"), ("佐藤", "サトウ"), ("清水", "シミズ"), ("高橋", "タカハシ"), ("山崎", "ヤマザキ"),
             ("滝沢", "タキザワ"), ("北沢", "キタザワ"), ("柳沢", "ヤナギサワ"), ("矢島", "ヤジマ"), ("原", "ハラ")]
_GIVEN_M = [("太郎", "タロウ"), ("一郎", "イチロウ"), ("健", "ケン"), ("翔太", "ショウタ"), ("誠", "マコト"), ("大輔", "ダイスケ")]
_GIVEN_F = [("花子", "ハナコ"), ("美咲", "ミサキ"), ("陽子", "ヨウコ"), ("さくら", "サクラ"), ("恵", "メグミ"), ("彩", "アヤ")]
_PLACES = ["中央", "本町", "大字北", "大字南", "緑町", "若里", "城東", "新町"]

# Share of change events by kind, roughly shaped like a municipal month (the seed gives the
# total only; this mix is the demo's assumption).
_MIX = [("move_within_prefecture", 0.22), ("move_in_from_outside", 0.16), ("move_out_to_outside", 0.16),
        ("move_within_municipality", 0.20), ("birth", 0.07), ("death", 0.10), ("correction", 0.05),
        ("name_change", 0.03), ("code_change", 0.01)]


@dataclass
class Person:
    code: str
    kanji: str
    kana: str
    birth: dt.date
    sex: str
    address: str
    number: str


@dataclass
class DemoMonth:
    year: int
    month: int
    files: dict[str, list[tuple[str, bytes]]] = field(default_factory=lambda: defaultdict(list))  # code → files
    valid_rows: int = 0
    malformed_rows: int = 0
    by_reason: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    residents: list[str] = field(default_factory=list)
    # municipality code → every resident code its notices name (previous codes included): whom
    # the demo's later steps may look for there without scanning the tables (decision 0054)
    named_by: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    @property
    def file_count(self) -> int:
        return sum(len(v) for v in self.files.values())


def generate_month(municipalities: dict[str, str], *, notices: int = 18_692, year: int = 2003, month: int = 1,
                   malformed_every: int = 400, seed: int = 2003, exports: int = 3) -> DemoMonth:
    """``notices`` valid rows in all (the seed's January 2003 figure for Nagano by default), in
    ``exports`` files per municipality a month (fewer where a period has no change): 3 by
    default (1st–10th, 11th–20th, 21st–end), 31 for one file a day (``bench/run.py
    --exports-per-month``: many small files)."""
    rng = random.Random(seed)
    codes = list(municipalities)
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(codes))]  # the list starts with the cities
    days = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.date(year, month, 1)).days
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    out = DemoMonth(year, month)
    total = 0

    def day() -> dt.date:
        return dt.date(year, month, rng.randrange(1, days + 1))

    def person(muni: str) -> Person:
        sex = rng.choice("12")
        s = rng.choice(_SURNAMES)
        g = rng.choice(_GIVEN_M if sex == "1" else _GIVEN_F)
        birth = dt.date(rng.randrange(1925, 2002), rng.randrange(1, 13), rng.randrange(1, 29))
        return Person(ResidentCode.generate(rng).value, f"{s[0]}　{g[0]}", f"{s[1]}　{g[1]}", birth, sex,
                      address(muni), IndividualNumber.generate(rng).value)

    def address(muni: str) -> str:
        return f"長野県{municipalities[muni]}{rng.choice(_PLACES)}{rng.randrange(1, 3000)}番地"

    def emit(muni: str, p: Person, reason: str, when: dt.date, **extra: str) -> None:
        nonlocal total
        r = {"resident_code": p.code, "reason": reason, "change_date": when.isoformat(), "name_kanji": p.kanji,
             "name_kana": p.kana, "birth_date": p.birth.isoformat(), "sex": p.sex, "address": p.address,
             "individual_number": p.number, **extra}
        if reason in DELETIONS:
            r = {"resident_code": p.code, "reason": reason, "change_date": when.isoformat()}
        rows[muni].append(r)
        out.named_by[muni].add(p.code)
        if "previous_resident_code" in extra:
            out.named_by[muni].add(extra["previous_resident_code"])
        out.by_reason[reason] += 1
        total += 1

    kinds, kind_weights = zip(*_MIX, strict=True)
    while total < notices:
        kind = rng.choices(kinds, kind_weights)[0]
        muni = rng.choices(codes, weights)[0]
        p = person(muni)
        when = day()
        if kind == "move_within_prefecture" and total + 2 <= notices:
            new = rng.choices(codes, weights)[0]
            while new == muni:
                new = rng.choices(codes, weights)[0]
            # Moved out on `when`, registered at the new municipality a few days later.
            emit(muni, p, "転出", when)
            p.address = address(new)
            emit(new, p, "転入", min(when + dt.timedelta(days=rng.randrange(0, 5)), dt.date(year, month, days)))
        elif kind in ("move_within_prefecture", "move_in_from_outside"):
            emit(muni, p, "転入", when)
        elif kind == "move_out_to_outside":
            emit(muni, p, "転出", when)
        elif kind == "move_within_municipality":
            p.address = address(muni)
            emit(muni, p, "転居", when)
        elif kind == "birth":
            p.birth = when
            emit(muni, p, "出生", when)
        elif kind == "death":
            emit(muni, p, "死亡", when)
        elif kind == "correction":
            emit(muni, p, "職権修正", when)
        elif kind == "name_change":
            old_kanji, old_kana = p.kanji.split("　")[0], p.kana.split("　")[0]
            s = rng.choice(_SURNAMES)
            p.kanji, p.kana = f"{s[0]}　{p.kanji.split('　')[1]}", f"{s[1]}　{p.kana.split('　')[1]}"
            emit(muni, p, "氏名変更", when, former_surname=old_kanji, former_surname_kana=old_kana)
        elif kind == "code_change":
            old = p.code
            p.code = ResidentCode.generate(rng).value
            emit(muni, p, "住民票コード変更", when, previous_resident_code=old)
        out.residents.append(p.code)
    out.valid_rows = total

    for index, muni in enumerate(codes):
        muni_rows = sorted(rows[muni], key=lambda r: r["change_date"])
        # Three exports a month (1st–10th, 11th–20th, 21st–end), as a batch-sending system would.
        periods = ((1, 10), (11, 20), (21, 31)) if exports == 3 else tuple(
            (1 + 31 * i // exports, 31 * (i + 1) // exports) for i in range(exports))
        for part, (lo, hi) in enumerate(periods, start=1):
            part_rows = [r for r in muni_rows if lo <= int(r["change_date"][8:10]) <= hi]
            if not part_rows:
                continue
            bad = []
            for i in range(0, len(part_rows), malformed_every):
                if rng.random() < 0.8:
                    bad.append(_malformed(rng, part_rows[i]))
            out.malformed_rows += len(bad)
            rows_out = part_rows + bad
            rng.shuffle(rows_out)
            style = ("utf8", "cp932", "jsonl")[(index + part) % 3]
            name = f"{muni}-{year}{month:02d}-{part}.{'jsonl' if style == 'jsonl' else 'csv'}"
            out.files[muni].append((name, _encode(rows_out, style)))
    return out


def _malformed(rng: random.Random, template: dict[str, str]) -> dict[str, str]:
    r = dict(template)
    r.setdefault("name_kanji", "長野　誤記")
    r.setdefault("name_kana", "ナガノ　ゴキ")
    r.setdefault("birth_date", "1970-01-01")
    r.setdefault("sex", "1")
    r.setdefault("address", "長野県長野市")
    r["reason"] = "転居" if r["reason"] in DELETIONS else r["reason"]
    fault = rng.randrange(5)
    if fault == 0:
        r["resident_code"] = r["resident_code"][:-1] + str((int(r["resident_code"][-1]) + 1) % 10)
    elif fault == 1:
        r["change_date"] = r["change_date"][:8] + "32"
    elif fault == 2:
        r["reason"] = "引越"
    elif fault == 3:
        r["name_kana"] = "nagano taro"
    else:
        r["address"] = ""
    return r


def _encode(rows: list[dict[str, str]], style: str) -> bytes:
    if style == "jsonl":
        return "".join(json.dumps({k: v for k, v in r.items() if v != ""}, ensure_ascii=False) + "\n"
                       for r in rows).encode("utf-8")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in COLUMNS})
    return buffer.getvalue().encode("cp932" if style == "cp932" else "utf-8")

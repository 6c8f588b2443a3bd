"""Builders of existing-system export files for the pipeline tests."""

from __future__ import annotations

import csv
import io
import random

from jukinet.domain.codes import ResidentCode
from jukinet.domain.local_record import LOCAL_COLUMNS

COLUMNS = ["resident_code", "reason", "change_date", "name_kanji", "name_kana", "birth_date", "sex", "address",
           "previous_resident_code"]
WITH_LOCAL_COLUMNS = [*COLUMNS, *LOCAL_COLUMNS]

SURNAMES = [("山田", "ヤマダ"), ("佐藤", "サトウ"), ("小林", "コバヤシ"), ("丸山", "マルヤマ"), ("中村", "ナカムラ")]
GIVEN = [("太郎", "タロウ"), ("花子", "ハナコ"), ("一郎", "イチロウ"), ("美咲", "ミサキ"), ("健", "ケン")]


def person(rng: random.Random, code: ResidentCode | None = None) -> dict[str, str]:
    s, g = rng.choice(SURNAMES), rng.choice(GIVEN)
    return {
        "resident_code": (code or ResidentCode.generate(rng)).value,
        "name_kanji": f"{s[0]}　{g[0]}", "name_kana": f"{s[1]}　{g[1]}",
        "birth_date": f"19{rng.randrange(30, 99)}-0{rng.randrange(1, 10)}-1{rng.randrange(0, 10)}",
        "sex": rng.choice("12"), "address": f"長野県長野市大字鶴賀{rng.randrange(1, 3000)}番地",
    }


def row(p: dict[str, str], reason: str, date: str, **extra: str) -> dict[str, str]:
    out = {**p, "reason": reason, "change_date": date, **extra}
    if reason in ("転出", "死亡", "職権消除"):
        for k in ("name_kanji", "name_kana", "birth_date", "sex", "address"):
            out[k] = ""
    return out


def csv_bytes(rows: list[dict[str, str]], encoding: str = "utf-8", columns: list[str] = COLUMNS) -> bytes:
    """The export as the existing system writes it (CRLF, a header row, empty cells for missing
    values); ``columns=WITH_LOCAL_COLUMNS`` adds the municipality-only record fields."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in columns})
    return buffer.getvalue().encode(encoding)


def move_ins(n: int, seed: int = 1, date: str = "2003-01-06") -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    rng = random.Random(seed)
    people = [person(rng) for _ in range(n)]
    return people, [row(p, "転入", date) for p in people]

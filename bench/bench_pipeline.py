"""Benchmark: the update pipeline end to end (CS → prefecture → national) on moto.

Prints notices per second through all three tiers (in-process moto, so it measures our
code plus moto's emulation, not AWS) and the AWS requests per 1,000 notices by service
and operation — the cost drivers. The KMS budget is 30 per 1,000 notices.

    .venv/bin/python bench/bench_pipeline.py [--per-file 400] [--files 2]
    .venv/bin/python bench/bench_pipeline.py --one-file-a-day 5 --per-file 10

``--one-file-a-day D``: the bound for a municipality that sends one small file a day — D days,
each one file of ``--per-file`` rows from one municipality, every function cold (a Lambda
instance does not live a day: the handlers' cached runtimes are dropped before each file), and
the KMS requests of each day printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # the handlers log every file; not the figures
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.pop("AWS_ENDPOINT_URL", None)

from moto import mock_aws

from embedded_aws import moto_patches

from tests.pipeline.exports import csv_bytes, move_ins
from tests.pipeline.harness import MUNICIPALITIES, Pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-file", type=int, default=400, help="rows per export file")
    parser.add_argument("--files", type=int, default=2, help="files per municipality")
    parser.add_argument("--one-file-a-day", type=int, default=0, metavar="D",
                        help="instead: D days of one file of --per-file rows from one municipality, all cold")
    args = parser.parse_args()
    if args.one_file_a_day:
        one_file_a_day(args.one_file_a_day, args.per_file)
        return
    moto_patches.apply()
    with mock_aws():
        p = Pipeline()
        total = 0
        start = time.perf_counter()
        for i, muni in enumerate(MUNICIPALITIES):
            for f in range(args.files):
                _, rows = move_ins(args.per_file, seed=1000 * i + f)
                p.drop(muni, f"bench-{f}.csv", csv_bytes(rows))
                total += args.per_file
        cs_done = time.perf_counter()
        p.drain("prefecture")
        pref_done = time.perf_counter()
        p.drain("national")
        end = time.perf_counter()
        p.stop_counting()
    print(f"notices end to end        {total:>10,}")
    print(f"elapsed                   {end - start:>10.2f} s  (CS {cs_done - start:.2f}, prefecture "
          f"{pref_done - cs_done:.2f}, national {end - pref_done:.2f})")
    print(f"throughput                {total / (end - start):>10.0f} notices/s (in-process moto)")
    print("AWS requests per 1,000 notices:")
    by_service: dict[str, int] = {}
    for call, n in sorted(p.calls.items()):
        by_service[call.split(":")[0]] = by_service.get(call.split(":")[0], 0) + n
        print(f"  {call:<36} {n * 1000 / total:>8.1f}")
    for service, n in sorted(by_service.items()):
        print(f"  total {service:<30} {n * 1000 / total:>8.1f}")
    kms = by_service.get("kms", 0) * 1000 / total
    print(f"KMS budget check          {kms:.1f} per 1,000 (limit 30): {'OK' if kms <= 30 else 'OVER'}")


def one_file_a_day(days: int, rows: int) -> None:
    import datetime as dt

    from jukinet.handlers import municipality_cs, national_processor, prefecture_processor

    moto_patches.apply()
    with mock_aws():
        p = Pipeline()
        per_day = []
        for day in range(days):
            for module in (municipality_cs, prefecture_processor, national_processor):
                module._runtime.cache_clear()  # cold: nothing cached from yesterday
            before = {k: v for k, v in p.calls.items() if k.startswith("kms:")}
            _, file_rows = move_ins(rows, seed=5000 + day)
            p.drop(MUNICIPALITIES[0], f"day-{day}.csv", csv_bytes(file_rows),
                   now=p.now + dt.timedelta(days=day))
            p.drain("prefecture")
            p.drain("national")
            per_day.append({k: v - before.get(k, 0) for k, v in p.calls.items() if k.startswith("kms:")})
        p.stop_counting()
    for day, counts in enumerate(per_day):
        total = sum(counts.values())
        print(f"day {day + 1}: one file of {rows} rows: {total} KMS requests "
              f"({', '.join(f'{k[4:]} {v}' for k, v in sorted(counts.items()) if v)}) = "
              f"{total * 1000 / rows:,.0f} per 1,000 notices")


if __name__ == "__main__":
    main()

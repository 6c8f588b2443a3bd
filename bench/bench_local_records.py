"""Benchmark: appending a 1,000-row file to the local-record table (adapters/local_records.py) on the
embedded AWS (moto server in a child process, as ``jukinet up`` runs it) — one conditional PutItem per
row (the obvious way) against 100 conditional puts per TransactWriteItems (the adapter's way).

Prints requests and wall time of each, and the items' DynamoDB sizes (write units).

    .venv/bin/python bench/bench_local_records.py [--rows 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "lambdas")]

from jukinet.adapters import aws  # noqa: E402
from jukinet.adapters.local_records import BY_HOUSEHOLD, LocalRecords  # noqa: E402
from jukinet.domain.codes import LocalGovernmentCode  # noqa: E402
from jukinet.domain.export import parse_export  # noqa: E402
from jukinet.domain.local_record import LOCAL_COLUMNS  # noqa: E402
from embedded_aws.server import MotoServer  # noqa: E402
from tests.pipeline.exports import COLUMNS, person, row  # noqa: E402
from tests.pipeline.harness import utc  # noqa: E402

NAGANO = "202011"
NOW = utc(2003, 1, 20, 1, 0)


def synthetic_file(rows: int) -> bytes:
    rng = random.Random(1)
    people = [person(rng) for _ in range(rows)]
    columns = [*COLUMNS, *LOCAL_COLUMNS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for i, p in enumerate(people):
        head = people[i - i % 4]
        writer.writerow(row(p, "転入", "2003-01-06") | {
            "household_number": f"{i // 4 + 1:010d}", "householder_name": head["name_kanji"],
            "relationship": "世帯主" if i % 4 == 0 else "子", "resident_since": "2003-01-06",
            "address_since": "2003-01-06", "notification_date": "2003-01-10",
            "previous_address": "東京都千代田区霞が関一丁目1番1号", "registered_domicile": "長野県長野市大字鶴賀1234番地",
            "family_register_head": head["name_kanji"]})
    return buffer.getvalue().encode()


def item_bytes(item: dict) -> int:
    """DynamoDB's item size: attribute names plus values (strings as UTF-8)."""
    return sum(len(k.encode()) + len(next(iter(v.values())).encode()) for k, v in item.items())


def create_table(name: str) -> None:
    aws.client("dynamodb").create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "household")],
        GlobalSecondaryIndexes=[{"IndexName": BY_HOUSEHOLD, "Projection": {"ProjectionType": "KEYS_ONLY"},
                                 "KeySchema": [{"AttributeName": "household", "KeyType": "HASH"},
                                               {"AttributeName": "pk", "KeyType": "RANGE"}]}])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    result = parse_export(synthetic_file(args.rows), municipality=LocalGovernmentCode(NAGANO), notice_time=NOW,
                          filename="bench.csv")
    assert not result.rejections, result.rejections[:3]
    changes = [(n, result.local_fields.get(r)) for r, n in result.notices]
    sizes = [item_bytes(i) for i in LocalRecords("x", NAGANO).items_for(changes)]

    calls: Counter = Counter()
    with MotoServer() as server:
        os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_ACCESS_KEY_ID": "bench",
                           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "ap-northeast-1"})
        aws.reset_clients()
        stop = aws.observe_calls(lambda service, op: calls.update([f"{service}:{op}"]))
        timings: dict[str, list[float]] = {"one PutItem per row": [], "TransactWriteItems of 100": []}
        counts: dict[str, Counter] = {}
        for run in range(args.runs):
            for label in timings:
                table = f"bench-{run}-{len(counts)}-{label[:3]}"
                create_table(table)
                store = LocalRecords(table, NAGANO)
                calls.clear()
                start = time.perf_counter()
                if label.startswith("one"):
                    for item in store.items_for(changes):
                        aws.client("dynamodb").put_item(TableName=table, Item=item,
                                                        ConditionExpression="attribute_not_exists(pk)")
                else:
                    store.append(changes)
                timings[label].append(time.perf_counter() - start)
                counts[label] = Counter(calls)
                counts[f"{label}, the same file again"] = Counter()
                calls.clear()
                if not label.startswith("one"):
                    again = store.append(changes)
                    assert (again.written, again.already) == (0, len(sizes)), again
                    counts[f"{label}, the same file again"] = Counter(calls)
        stop()

    print(f"{args.rows:,} rows, {len(sizes):,} items: mean {statistics.mean(sizes):.0f} B, max {max(sizes)} B "
          f"(one write unit per KB; twice that inside a transaction)")
    for label, values in timings.items():
        print(f"{label:28s} {sum(counts[label].values()):5d} requests  "
              f"{statistics.median(values) * 1000:7.0f} ms median of {len(values)} "
              f"({statistics.median(values) * 1000 / max(1, sum(counts[label].values())):.1f} ms a request)  "
              f"{dict(counts[label])}")
    retried = counts["TransactWriteItems of 100, the same file again"]
    print(f"{'a retry of the same file':28s} {sum(retried.values()):5d} requests  {dict(retried)}")


if __name__ == "__main__":
    main()

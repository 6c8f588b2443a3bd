"""Benchmark: a request/response round trip of the channel between municipalities through the
embedded AWS (a moto server process on 127.0.0.1, as in local mode).

For each round trip: 長野市 sends a request (its tier's endpoint, as the counter function
would), the queues are drained hop by hop into the handlers an event source mapping invokes
(prefecture router → the home municipality's tier, which answers → back), and 長野市's tier
settles and opens the answer. Prints p50/p99/max in milliseconds, within one prefecture
(長野市 → 松本市: 4 hops) and across prefectures (長野市 → 千代田区: 8 hops), and the AWS
requests of one round trip by service and operation.

It measures our code and the emulation (HTTP to a local moto server), with no network latency
and no Lambda/SQS polling delay: docs/second-phase.md adds those for AWS.

    .venv/bin/python bench/bench_channel.py [--rounds 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-1")

from jukinet.adapters import aws
from jukinet.domain.channel import Outcome
from embedded_aws.server import MotoServer

from tests.channel.world import CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, World, resident


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(world: World, recipient: str, rounds: int, calls: Counter) -> tuple[list[float], list[float]]:
    """Round trips (ms), and of each the time spent inside the functions (the handlers and the
    requester's endpoint), the rest being the drain loop's SQS receives and deletes."""
    nagano = world.endpoint(NAGANO_PREF)
    code = resident(7)
    world.register(code, recipient)
    timings, inside = [], []
    spent = [0.0]
    invoke = world._invoke

    def timed(queue, messages):
        begin = time.perf_counter()
        try:
            return invoke(queue, messages)
        finally:
            spent[0] += time.perf_counter() - begin

    world._invoke = timed
    for i in range(rounds + 2):
        calls.clear()
        spent[0] = 0.0
        start = time.perf_counter()
        begin = start
        correlation = nagano.request(NAGANO, recipient, {"query": "resident-status", "resident_code": code})
        spent[0] += time.perf_counter() - begin
        world.pump()
        begin = time.perf_counter()
        result = nagano.result(correlation)
        spent[0] += time.perf_counter() - begin
        elapsed = time.perf_counter() - start
        assert result.outcome is Outcome.ANSWERED, result
        world.delivered.clear()
        if i >= 2:  # the first two warm the caches (public keys, clients), as a warm function would
            timings.append(elapsed * 1000)
            inside.append(spent[0] * 1000)
    world._invoke = invoke
    return timings, inside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with MotoServer(mode="process") as server:
        os.environ["AWS_ENDPOINT_URL"] = server.endpoint_url
        aws.reset_clients()
        world = World()
        calls: Counter = Counter()
        stop = aws.observe_calls(lambda service, op: calls.update([f"{service}:{op}"]))
        try:
            for label, recipient in (("within 長野県 (長野市 → 松本市)", MATSUMOTO),
                                     ("across prefectures (長野市 → 千代田区)", CHIYODA)):
                timings, inside = run(world, recipient, args.rounds, calls)
                print(f"{label}: {len(timings)} round trips, p50 {statistics.median(timings):.0f} ms, "
                      f"p99 {_percentile(timings, 99):.0f} ms, max {max(timings):.0f} ms; inside the functions "
                      f"p50 {statistics.median(inside):.0f} ms, p99 {_percentile(inside, 99):.0f} ms")
                requests = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
                print("  AWS requests of one warm round trip by the functions (SQS receives and deletes are "
                      f"the event source mapping's, not counted): {requests}")
        finally:
            stop()
            os.environ.pop("AWS_ENDPOINT_URL", None)


if __name__ == "__main__":
    main()

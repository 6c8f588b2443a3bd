"""One benchmark command: prints one table, each figure measured in this run with its baseline.

    .venv/bin/python bench/run.py [--notices N] [--seed S] [--deployment NAME] [--batch-rows N]
                                  [--workers N] [--profile-lookups]

1. domain core on one core (bench_domain.measure): notices/s and µs per notice;
2. the pipeline end to end through the three tiers on the embedded AWS (the synthesized
   assembly deployed into a moto server, the deployed functions run by LocalRunner, the queue
   batches in --workers worker processes, default 2: decision 0057), from the
   first export file dropped until every queue is idle, against a raw baseline in the same
   server: the CS's signed message bodies moved SQS → ReceiveMessage → DynamoDB
   BatchWriteItem → DeleteMessageBatch with no logic;
3. AWS requests per 1,000 notices by service and operation made during (2), counted at
   botocore's ``BaseClient._make_api_call`` (one class shared by the host and the deployed
   code's module copy), split into the deployed functions' own calls and the Lambda
   service's (the runner's) SQS polling;
4. cold-start proxies: ``python -X importtime`` of each handler module, and the Lambda code
   package size (zipped as the CDK CLI zips it, and unzipped);
5. the provision API (bench_provision.measure), in the same server after the pipeline has
   filled the national identity table: the deployed look-up handler against a minimal
   Powertools handler returning a constant, both invoked in process through the runner with
   the same proxy event (throughput, ratio, AWS requests per look-up); p50/p99 of single
   look-ups through the local API (LocalApi, SigV4); a batch provision of --batch-rows codes
   of existing residents end to end (rows/s, AWS requests per 1,000 rows).

See docs/performance.md for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_domain
import bench_provision
import botocore.client
from bench_provision import hold_check, runner_overhead_s

HANDLERS = ("municipality_cs", "prefecture_processor", "national_processor")
DEFAULT_NOTICES = 18_692  # Nagano, January 2003; the whole default run: about 2 minutes on a quiet 2-core machine (105 s measured on 2026-12-05), allow 5


# -- request counting ------------------------------------------------------------------------------

class RequestCounter:
    """Counts every botocore API call in this process by (source, service, operation).

    The deployed code is imported as its own module copy (embedded_aws/code_image.py)
    and builds clients from fresh boto3 sessions, so hooks on the host's ``jukinet`` or on
    a session's event system do not see its calls; botocore itself is the host's, so a
    wrapper on ``BaseClient._make_api_call`` sees them all. The source is the function
    being invoked (the runner sets AWS_LAMBDA_FUNCTION_NAME only during an invocation),
    else "API Gateway (LocalApi)" for API Gateway and CloudWatch Logs calls (the local API
    checking API keys and writing access logs), else "lambda service (runner)" (the runner
    playing Lambda's SQS poller / S3 notifications, and the benchmark's own calls).
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.seconds: Counter[tuple[str, str, str]] = Counter()  # wall time spent in each kind of call
        self.cs_bodies: list[str] = []
        self.active = False
        self._original = botocore.client.BaseClient._make_api_call

    def __enter__(self) -> Self:
        counter, original = self, self._original

        def counted(client, operation_name, api_params):
            if counter.active:
                function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
                service = client.meta.service_model.service_name
                source = _tier(function) if function else \
                    "API Gateway (LocalApi)" if service in ("apigateway", "logs") else "lambda service (runner)"
                counter.counts[(source, service, operation_name)] += 1
                if source == "municipality CS" and operation_name == "SendMessageBatch" \
                        and "-inbound" in api_params.get("QueueUrl", "") and "-dlq" not in api_params["QueueUrl"]:
                    counter.cs_bodies += [e["MessageBody"] for e in api_params.get("Entries", [])]
                started = time.perf_counter()
                try:
                    return original(client, operation_name, api_params)
                finally:
                    counter.seconds[(source, service, operation_name)] += time.perf_counter() - started
            return original(client, operation_name, api_params)

        botocore.client.BaseClient._make_api_call = counted
        return self

    def __exit__(self, *exc: object) -> None:
        botocore.client.BaseClient._make_api_call = self._original

    # The runner's workers (LocalRunner(workers=N), embedded_aws/runner_workers.py) are forks of this
    # process: each counts the calls of the batches it runs and sends them back with each result.
    def worker_state(self) -> bool:
        return self.active

    def worker_apply(self, state: bool) -> None:
        self.active = state

    def worker_take(self) -> tuple[Counter, Counter, list[str]]:
        taken = (self.counts, self.seconds, self.cs_bodies)
        self.counts, self.seconds, self.cs_bodies = Counter(), Counter(), []
        return taken

    def worker_merge(self, data: tuple[Counter, Counter, list[str]]) -> None:
        counts, seconds, bodies = data
        self.counts.update(counts)
        self.seconds.update(seconds)
        self.cs_bodies += bodies


def _tier(function: str) -> str:
    if "-provision-" in function:  # jukinet-national-provision-api: before "-national-"
        return "provision " + function.rsplit("-provision-", 1)[1]
    if "-cs-" in function:
        return "municipality CS"
    if "-national-" in function:
        return "national processor"
    if "-pref" in function:
        return "prefecture processor"
    return function


# -- 2 + 3: the pipeline and its raw baseline --------------------------------------------------------

def pipeline(notices: int, seed: int, deployment_name: str | None, work: Path, *,
             batch_rows: int = bench_provision.DEFAULT_BATCH_ROWS, profile_lookups: bool = False,
             exports: int = 3, workers: int = 2) -> dict:
    from infra.config import load_deployment
    from infra.naming import Names
    from jukinet.adapters import aws
    from jukinet_ops.demo_data import generate_month
    from embedded_aws.deploy import deploy_assembly
    from embedded_aws.runner import LocalRunner
    from embedded_aws.server import MotoServer, local_credentials
    from jukinet_ops.synth import synth

    deployment = load_deployment(deployment_name)
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    out: dict = {}
    with ExitStack() as stack:
        t = time.perf_counter()
        cdk_out = synth(deployment_name, work / "cdk.out")
        out["synth_s"] = time.perf_counter() - t
        out["cdk_out"] = cdk_out
        t = time.perf_counter()
        server = stack.enter_context(MotoServer(log_file=work / "moto.log"))
        env = deploy_assembly(cdk_out, server.endpoint_url, default_region=deployment.region)
        out["deploy_s"] = time.perf_counter() - t
        os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_DEFAULT_REGION": deployment.region,
                           **local_credentials(server.endpoint_url, deployment.region)})
        aws.reset_clients()

        municipalities = {m.code: m.name for m in prefecture.municipality_tier.municipalities}
        month = generate_month(municipalities, notices=notices, seed=seed, exports=exports)
        out.update(notices=month.valid_rows, malformed=month.malformed_rows, files=month.file_count)
        devnull = stack.enter_context(open(os.devnull, "w", encoding="utf-8"))
        runner = stack.enter_context(LocalRunner(env, log_stream=devnull, share_modules=True,
                                                 cache_dir=work / "code", workers=workers))
        out["workers"] = runner.workers
        s3 = aws.client("s3")
        muni_env = prefecture.municipality_tier.env
        counter = stack.enter_context(RequestCounter())
        runner.add_collector(counter)
        counter.active = True
        cpu_before = (process_cpu_s(os.getpid()), process_cpu_s(server.pid))
        t = time.perf_counter()
        for code, files in month.files.items():
            bucket = names.drop_zone_bucket(muni_env, code)
            for name, data in files:
                s3.put_object(Bucket=bucket, Key=f"incoming/{name}", Body=data)
        summary = runner.run_until_idle(timeout_s=1800)
        out["pipeline_s"] = time.perf_counter() - t
        # CPU seconds during the pipeline, per process: where the wall time can go on 2 cores
        out["cpu"] = _cpu_split(cpu_before, (process_cpu_s(os.getpid()), process_cpu_s(server.pid)),
                                [process_cpu_s(pid) for pid in runner.worker_pids()])
        counter.active = False
        out["invocations"] = summary.invocations
        out["cs_invocations"] = sum(s.invocations for name, s in runner.stats.items()
                                    if name.startswith(names.cs_function("")))
        out["counts"] = {k: v for k, v in counter.counts.items() if k[0] != "lambda service (runner)"
                         or (k[1] == "sqs" and not hold_check(k[1], k[2]))}
        out["host_counts"] = {k: v for k, v in counter.counts.items() if k not in out["counts"]}
        out["cs_messages"] = len(counter.cs_bodies)
        out["cs_bytes"] = sum(len(b.encode()) for b in counter.cs_bodies)
        # What only the emulation does: reading operator holds (reserved concurrency, mapping tags)
        # through the Lambda API (Lambda knows its own), and listing buckets that notify a
        # function directly (none of the drop zones since decision 0051: they notify the CS inboxes).
        out["listing_s"] = runner_overhead_s(counter)
        out["upload_s"] = sum(v for (s, sv, op), v in counter.seconds.items()
                              if s == "lambda service (runner)" and op == "PutObject")
        out["aws_s_by_source"] = {src: sum(v for (s, _sv, _op), v in counter.seconds.items() if s == src)
                                  for src in {k[0] for k in counter.seconds}}
        out["errors"] = sum(s.errors for s in runner.stats.values())
        out["failed_records"] = sum(s.failed_records for s in runner.stats.values())

        cpu_before = (process_cpu_s(os.getpid()), process_cpu_s(server.pid))
        out.update(raw_baseline(server.endpoint_url, deployment.region, counter.cs_bodies))
        out["raw_cpu"] = _cpu_split(cpu_before, (process_cpu_s(os.getpid()), process_cpu_s(server.pid)), [])
        # 5: the provision API, on the residents the pipeline stored nationally
        out["provision"] = bench_provision.measure(env, runner, counter, deployment, batch_rows=batch_rows,
                                                   seed=seed, profile=profile_lookups,
                                                   candidates=month.residents)
    return out


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a running process so far (Linux ``/proc``; None elsewhere)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_split(before: tuple[float | None, float | None], after: tuple[float | None, float | None],
               workers: list[float | None]) -> dict | None:
    """CPU seconds between two readings: this process (the runner, and the functions when it has
    no workers), the workers (forked during the run: all their CPU), the embedded AWS."""
    if None in before or None in after or None in workers:
        return None
    return {"host": after[0] - before[0], "workers": sum(workers), "server": after[1] - before[1]}


def raw_baseline(endpoint_url: str, region: str, bodies: list[str]) -> dict:
    """The CS's signed message bodies moved SQS → ReceiveMessage → DynamoDB BatchWriteItem →
    DeleteMessageBatch with no logic, two ways (each timed from the first send to an empty queue):

    * per message, one hop: one item per message body (the bytes moved, nothing split);
    * per notice, two hops: like the prefecture and the national tier, each hop writes one
      item per notice (a slice of the body; how many notices a body carries is read before
      the clock starts) and the first hop forwards the body to the second queue.
    """
    import base64

    from jukinet.domain.message import Payload
    from embedded_aws.server import local_client

    sqs = local_client(endpoint_url, "sqs", region)
    ddb = local_client(endpoint_url, "dynamodb", region)
    notices_in = {}
    for b in bodies:
        notices_in[b] = len(Payload.from_bytes(base64.b64decode(json.loads(b)["payload"])).notices)

    def queue(name: str) -> str:
        return sqs.create_queue(QueueName=name)["QueueUrl"]

    def table(name: str) -> str:
        ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        return name

    def send(url: str, batch: list[str]) -> None:
        for i in range(0, len(batch), 10):
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": b}
                                                          for j, b in enumerate(batch[i:i + 10])])

    def write(name: str, items: list[dict]) -> None:
        for i in range(0, len(items), 25):
            ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": it}} for it in items[i:i + 25]]})

    def drain(url: str, handle) -> int:
        moved = 0
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not got:
                attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
                if sum(int(v) for v in attributes.values()) == 0:
                    return moved
                continue
            moved += handle(got)
            sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]}
                                                            for j, m in enumerate(got)])

    out: dict = {}
    # per message, one hop
    url, name = queue("bench-raw-message"), table("bench-raw-message")
    t = time.perf_counter()
    send(url, bodies)

    def per_message(got: list[dict]) -> int:
        write(name, [{"pk": {"S": m["MessageId"]}, "body": {"S": m["Body"]}} for m in got])
        return len(got)

    out["raw_message_items"] = drain(url, per_message)
    out["raw_message_s"] = time.perf_counter() - t

    # per notice, two hops
    url1, url2 = queue("bench-raw-hop1"), queue("bench-raw-hop2")
    t1, t2 = table("bench-raw-hop1"), table("bench-raw-hop2")

    def per_notice(table_name: str, forward: str | None):
        def handle(got: list[dict]) -> int:
            items = []
            for m in got:
                body, k = m["Body"], notices_in.get(m["Body"], 1)
                step = -(-len(body) // k)
                items += [{"pk": {"S": f"{m['MessageId']}#{i}"}, "body": {"S": body[i * step:(i + 1) * step] or "-"}}
                          for i in range(k)]
            write(table_name, items)
            if forward:
                send(forward, [m["Body"] for m in got])
            return len(items)
        return handle

    t = time.perf_counter()
    send(url1, bodies)
    out["raw_notice_items"] = drain(url1, per_notice(t1, url2)) + drain(url2, per_notice(t2, None))
    out["raw_notice_s"] = time.perf_counter() - t
    out["raw_notices"] = sum(notices_in.values())
    return out


# -- 4: cold-start proxies ---------------------------------------------------------------------------

_IMPORT_LINE = re.compile(r"^import time:\s*(\d+) \|\s*(\d+) \| (\s*)(\S+)")


def import_time_us(module: str, runs: int = 3) -> tuple[float, float]:
    """Median and min over ``runs`` (after one warm-up run that writes .pyc files) of the
    summed cumulative µs of the top-level ``jukinet*`` import lines."""
    totals = []
    for i in range(runs + 1):
        result = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT,
                                capture_output=True, text=True, check=True)
        total = 0
        for line in result.stderr.splitlines():
            m = _IMPORT_LINE.match(line)
            if m and not m.group(3) and (m.group(4) == "jukinet" or m.group(4).startswith("jukinet.")):
                total += int(m.group(2))
        if i:
            totals.append(total)
    return statistics.median(totals), min(totals)


def code_packages(cdk_out: Path) -> list[dict]:
    """The Lambda code assets of the assembly: functions using each, zipped and unzipped size."""
    from embedded_aws.assembly import zip_directory

    uses: Counter[str] = Counter()
    for template in cdk_out.glob("*.template.json"):
        for resource in json.loads(template.read_text()).get("Resources", {}).values():
            if resource.get("Type") == "AWS::Lambda::Function":
                key = resource.get("Properties", {}).get("Code", {}).get("S3Key")
                if isinstance(key, str):
                    uses[key.removesuffix(".zip")] += 1
    packages = []
    for asset_hash, functions in sorted(uses.items()):
        directory = cdk_out / f"asset.{asset_hash}"
        if not directory.is_dir():
            continue
        files = [p for p in directory.rglob("*") if p.is_file()]
        packages.append({"asset": asset_hash[:12], "functions": functions, "files": len(files),
                         "unzipped": sum(p.stat().st_size for p in files),
                         "zipped": len(zip_directory(directory))})
    return packages


# -- the table ---------------------------------------------------------------------------------------

def provision_rows(v: dict) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    n = v["calls"]
    lookup_s, minimal_s = v["lookup_handler_s"] / n, v["minimal_handler_s"] / n
    aws_s = v["lookup_aws_s"] / n
    per_lookup = sum(v["lookup_requests"].values()) / n
    rows.append(("look-up handler, in process (1 code)", f"{1 / lookup_s:,.0f} calls/s · {lookup_s * 1e3:.1f} ms",
                 (f"{n} calls after {bench_provision.WARMUP_CALLS} warm-up, existing residents, as "
                  f"{bench_provision.LOOKUP_RECIPIENT}; time inside handler(); {per_lookup:.0f} AWS requests a call")))
    rows.append(("minimal handler (a constant, same stack)",
                 f"{1 / minimal_s:,.0f} calls/s · {minimal_s * 1e6:.0f} µs",
                 "Powertools resolver (validation on), same logger/metrics, image, environment and event"))
    rows.append(("ratio look-up / minimal", f"{minimal_s / lookup_s:.4f}", "aim ≥ 0.5"))
    rows.append(("ratio look-up / (minimal + its AWS requests alone)", f"{(minimal_s + aws_s) / lookup_s:.2f}",
                 f"{aws_s * 1e3:.1f} ms of each look-up is inside its {per_lookup:.0f} botocore calls"))
    lookup_wall, minimal_wall = v["lookup_wall_s"] / n, v["minimal_wall_s"] / n
    rows.append(("  through LocalRunner.invoke (emulation included)",
                 f"{1 / lookup_wall:,.0f} vs {1 / minimal_wall:,.0f} calls/s",
                 f"ratio {minimal_wall / lookup_wall:.3f}; the runner swaps os.environ and the module space per call"))
    rows.append(("  process CPU per call",
                 f"{v['lookup_cpu_s'] / n * 1e3:.1f} ms vs {v['minimal_cpu_s'] / n * 1e3:.1f} ms",
                 "look-up vs minimal, runner included; moto runs in its own process"))
    for (source, service, op), count in sorted(v["lookup_requests"].items(), key=lambda kv: (kv[0][1], kv[0][2])):
        rows.append((f"  per look-up: {service} {op}", f"{count / n:.1f}", source))
    if v.get("multi_calls"):
        m, codes = v["multi_calls"], v["multi_codes"]
        per_call = sum(c for (_s, sv, _op), c in v["multi_requests"].items() if sv == "dynamodb") / m
        rows.append((f"look-up of {codes} codes, in process", f"{per_call:.1f} DynamoDB requests a call",
                     f"{m} calls; {per_call / codes * 10:.2f} per 10 records (target ≤ 1); "
                     f"{v['multi_handler_s'] / m * 1e3:.0f} ms a call; "
                     + ", ".join(f"{op} {c / m:.1f}" for (_s, sv, op), c in sorted(v["multi_requests"].items())
                                 if sv == "dynamodb")))

    latencies, function_s = v["api_latencies"], v["api_function_s"]
    pct = bench_provision.percentile
    rest = [t - f for t, f in zip(latencies, function_s, strict=True)]
    rows.append(("single look-ups through the local API",
                 f"p50 {pct(latencies, 0.5) * 1e3:.1f} ms · p99 {pct(latencies, 0.99) * 1e3:.1f} ms",
                 (f"{len(latencies)} after {bench_provision.WARMUP_CALLS} warm-up, one at a time, as "
                  f"{bench_provision.LOOKUP_RECIPIENT}: botocore SigV4 + urllib → LocalApi → runner; "
                  f"max {max(latencies) * 1e3:.0f} ms")))
    rows.append(("  requests/s (one client, sequential)", f"{len(latencies) / v['api_s']:,.1f}", ""))
    rows.append(("  of which the function / the rest (p50)",
                 f"{pct(function_s, 0.5) * 1e3:.1f} ms / {pct(rest, 0.5) * 1e3:.1f} ms",
                 "the rest: signing, HTTP, SigV4 check, resource policy, API key, runner, access log"))
    api_requests = v["api_requests"]
    by_source: Counter[str] = Counter()
    for (source, service, op), count in api_requests.items():
        by_source[source] += count
    rows.append(("  AWS requests per API request",
                 " + ".join(f"{by_source[s] / len(latencies):.1f}" for s in sorted(by_source)),
                 "; ".join(f"{s}: " + ", ".join(f"{op} {c / len(latencies):.1f}"
                                                for (src, _sv, op), c in sorted(api_requests.items()) if src == s)
                           for s in sorted(by_source))))

    status = v["batch_status"]
    rows_n = v["batch_rows"]
    outcomes = ", ".join(f"{k} {c:,}" for k, c in status["outcomes"].items() if c)
    rows.append(("batch provision end to end", f"{rows_n / v['batch_s']:,.0f} rows/s ({v['batch_s']:.1f} s)",
                 (f"{rows_n:,} codes of existing residents ({v['batch_distinct']:,} distinct) as "
                  f"{bench_provision.BATCH_RECIPIENT}, POST → complete; {status['chunks']} chunks; {outcomes}")))
    rows.append(("  of which the runner's listing and hold checks", f"{v['batch_listing_s']:.1f} s",
                 "emulation only: drop-zone listing, Lambda concurrency/tag reads"))
    per_k = 1000 / rows_n
    requests = v["batch_requests"]
    by_op: dict[tuple[str, str], Counter[str]] = {}
    for (source, service, op), count in requests.items():
        if source.startswith("provision "):
            by_op.setdefault((service, op), Counter())[source.removeprefix("provision ")] += count
    by_service: Counter[str] = Counter()
    for (service, op), sources in sorted(by_op.items()):
        by_service[service] += sum(sources.values())
        rows.append((f"  per 1,000 rows: {service} {op}", f"{sum(sources.values()) * per_k:,.1f}",
                     ", ".join(f"{src} {c * per_k:,.1f}" for src, c in sorted(sources.items()))))
    poll = sum(c for (s, sv, op), c in requests.items()
               if s == "lambda service (runner)" and sv == "sqs" and not hold_check(sv, op))
    for service in ("dynamodb", "kms", "s3", "sqs"):
        note = "functions' own calls (api + batch)"
        if service == "sqs":
            note += f"; + {poll * per_k:,.1f} by the Lambda SQS poller (runner)"
        rows.append((f"  total {service} per 1,000 rows", f"{by_service.get(service, 0) * per_k:,.1f}", note))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notices", type=int, default=DEFAULT_NOTICES,
                        help=f"valid notices in the synthetic month (default {DEFAULT_NOTICES:,})")
    parser.add_argument("--seed", type=int, default=2003)
    parser.add_argument("--deployment", default=None, help="deployment configuration (default: nagano-demo)")
    parser.add_argument("--batch-rows", type=int, default=bench_provision.DEFAULT_BATCH_ROWS,
                        help=f"resident codes in the batch provision file (default "
                             f"{bench_provision.DEFAULT_BATCH_ROWS:,}; codes of existing residents, sampled)")
    parser.add_argument("--exports-per-month", type=int, default=3,
                        help="export files per municipality a month (default 3; 31: one a day, many small files)")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of the local runner (default 2; 0: every invocation in this "
                             "process, one at a time; decision 0057)")
    parser.add_argument("--profile-lookups", action="store_true",
                        help="after the table, cProfile of 200 more in-process look-ups (main thread only)")
    args = parser.parse_args()
    if args.batch_rows < 1:
        parser.error("--batch-rows must be at least 1")
    if args.workers < 0:
        parser.error("--workers must be 0 or more")
    if not 1 <= args.exports_per_month <= 31:
        parser.error("--exports-per-month must be 1..31")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    started = time.perf_counter()
    load_before = os.getloadavg()[0]  # 1-minute load average: other work on the machine skews every figure

    domain = bench_domain.measure(max(args.notices, 5_000), repeat=3)
    imports = {h: import_time_us(f"jukinet.handlers.{h}") for h in HANDLERS}
    with tempfile.TemporaryDirectory(prefix="jukinet-bench-") as tmp:
        p = pipeline(args.notices, args.seed, args.deployment, Path(tmp), batch_rows=args.batch_rows,
                     profile_lookups=args.profile_lookups, exports=args.exports_per_month, workers=args.workers)
        packages = code_packages(p["cdk_out"])

    rows: list[tuple[str, str, str]] = []

    def section(title: str) -> None:
        rows.append((f"**{title}**", "", ""))

    n = domain["n"]
    section("1. domain core, one core")
    e2e = domain["end_to_end_s"]
    rows.append(("end to end (parse + seal + serialise)", f"{n / e2e:,.0f} notices/s · {e2e / n * 1e6:.1f} µs/notice",
                 f"target {bench_domain.TARGET_PER_S:,}/s; {n:,} notices, best of 3"))
    for label, count, elapsed in domain["stages"]:
        rows.append((f"  {label}", f"{count / elapsed:,.0f}/s · {elapsed / count * 1e6:.1f} µs", f"{count:,} items"))

    notices = p["notices"]
    rate = notices / p["pipeline_s"]
    raw_rate, raw_message_rate = notices / p["raw_notice_s"], notices / p["raw_message_s"]
    section("2. pipeline, three tiers, embedded AWS")
    rows.append(("pipeline end to end (CS → prefecture → national)",
                 f"{rate:,.0f} notices/s ({p['pipeline_s']:.1f} s)",
                 (f"{notices:,} notices + {p['malformed']} malformed rows, {p['files']} files, "
                  f"{p['invocations']} invocations ({p['cs_invocations']} of the CSs), {p['errors']} errors; "
                  f"runner workers {p['workers']}")))
    rows.append(("  of which dropping the export files", f"{p['upload_s']:.1f} s", "PutObject into the drop zones"))
    rows.append(("  of which the runner's listing and hold checks", f"{p['listing_s']:.1f} s",
                 "emulation only: Lambda knows its holds (the drop zones notify the CS inboxes: no listing)"))
    aws_s = p["aws_s_by_source"]
    for source in ("municipality CS", "prefecture processor", "national processor"):
        rows.append((f"  of which {source} AWS calls", f"{aws_s.get(source, 0.0):.1f} s",
                     "wall time inside botocore calls (moto server's work included)"))
    if p.get("cpu"):
        c = p["cpu"]
        rows.append(("  CPU during the pipeline", f"{c['host'] + c['workers'] + c['server']:.1f} s",
                     (f"functions' workers {c['workers']:.1f} s, this process (runner{'' if p['workers'] else ' and functions'}) "
                      f"{c['host']:.1f} s, embedded AWS {c['server']:.1f} s; {os.cpu_count()} cores: "
                      f"the wall time cannot fall below the total / cores, nor below the embedded AWS's share")))
    rows.append(("raw baseline A: per notice, two hops", f"{raw_rate:,.0f} notices/s ({p['raw_notice_s']:.1f} s)",
                 (f"the CS's {p['cs_messages']} signed bodies ({p['cs_bytes'] / 1e6:.1f} MB, {p['raw_notices']:,} "
                  f"notices) → queue → {p['raw_notice_items']:,} items in 2 tables")))
    rows.append(("raw baseline B: per message, one hop",
                 f"{raw_message_rate:,.0f} notices/s ({p['raw_message_s']:.1f} s)",
                 f"the same bodies → queue → {p['raw_message_items']} items (one per body)"))
    if p.get("raw_cpu"):
        c = p["raw_cpu"]
        rows.append(("  CPU during raw baselines A and B", f"{c['host'] + c['server']:.1f} s",
                     f"this process {c['host']:.1f} s, embedded AWS {c['server']:.1f} s"))
    rows.append(("ratio pipeline / raw A", f"{rate / raw_rate:.2f}", "aim ≥ 0.5"))
    rows.append(("ratio pipeline / raw B", f"{rate / raw_message_rate:.3f}", "the brief's literal baseline"))

    section("3. AWS requests per 1,000 notices (during 2)")
    per_k = 1000 / notices
    by_service: Counter[str] = Counter()
    for (source, service, op), count in sorted(p["counts"].items()):
        if source == "lambda service (runner)":
            continue
        by_service[service] += count
    for (source, service, op), count in sorted(p["counts"].items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        rows.append((f"  {service} {op}", f"{count * per_k:,.1f}", source))
    for service in ("sqs", "dynamodb", "kms", "s3"):
        note = "functions' own calls"
        if service == "sqs":
            poll = sum(c for (s, sv, _), c in p["counts"].items() if s == "lambda service (runner)" and sv == "sqs")
            note += f"; + {poll * per_k:,.1f} by the Lambda SQS poller (runner)"
        if service == "kms":
            note += "; budget ≤ 30"
        if service == "dynamodb":
            note += "; aim ≤ 250 (CS and both tiers)"
        rows.append((f"total {service}", f"{by_service.get(service, 0) * per_k:,.1f}", note))
    by_tier: Counter[str] = Counter()
    for (source, service, _op), count in p["counts"].items():
        if service == "dynamodb" and source != "lambda service (runner)":
            by_tier[source] += count
    for source in ("municipality CS", "prefecture processor", "national processor"):
        aim = "" if source == "municipality CS" else "; aim ≤ 100 per tier"
        rows.append((f"  dynamodb, {source}", f"{by_tier.get(source, 0) * per_k:,.1f}",
                     f"{p['files']} files, {p['cs_messages']} CS messages{aim}"))

    section("4. cold-start proxies")
    for h, (median, best) in imports.items():
        rows.append((f"import jukinet.handlers.{h}", f"{median / 1000:,.0f} ms",
                     f"median of 3 (min {best / 1000:,.0f} ms), python -X importtime, host (x86-64) interpreter"))
    for pkg in packages:
        rows.append((f"Lambda code package asset.{pkg['asset']}…",
                     f"{pkg['zipped'] / 2**20:.1f} MiB zipped · {pkg['unzipped'] / 2**20:.1f} MiB unzipped",
                     f"{pkg['files']:,} files; used by {pkg['functions']} functions (limit 50 MiB / 250 MiB)"))

    section("5. provision API (embedded AWS, after 2)")
    rows += provision_rows(p["provision"])

    v = p["provision"]
    print(f"jukinet benchmark · {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC · Python {sys.version.split()[0]} · "
          f"{os.cpu_count()} CPUs · load {load_before:.1f} → {os.getloadavg()[0]:.1f} · synth {p['synth_s']:.0f} s, "
          f"deploy {p['deploy_s']:.0f} s, provision {v['section_s']:.0f} s (in process {v['in_process_s']:.0f}, "
          f"local API {v['api_total_s']:.0f}, batch {v['batch_s']:.0f}), "
          f"total {time.perf_counter() - started:.0f} s")
    print()
    widths = [max(len(r[i]) for r in rows + [("figure", "value", "baseline / notes")]) for i in range(3)]
    header = ("figure", "value", "baseline / notes")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    if p["provision"].get("profile"):
        print("\n" + p["provision"]["profile"])
    if p["host_counts"]:
        host = ", ".join(f"{s} {sv} {op} {c}" for (s, sv, op), c in sorted(p["host_counts"].items()))
        print(f"\nnot counted above (the benchmark's own uploads, the runner's bucket listing and hold checks): "
              f"{host}")


if __name__ == "__main__":
    main()

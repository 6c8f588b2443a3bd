"""One benchmark command: prints one table, each figure measured in this run with its baseline.

    .venv/bin/python bench/run.py [--notices N] [--seed S] [--deployment NAME]

1. domain core on one core (bench_domain.measure): notices/s and µs per notice;
2. the pipeline end to end through the three tiers on the embedded AWS (the synthesized
   assembly deployed into a moto server, the deployed functions run by LocalRunner), from the
   first export file dropped until every queue is idle, against a raw baseline in the same
   server: the CS's signed message bodies moved SQS → ReceiveMessage → DynamoDB
   BatchWriteItem → DeleteMessageBatch with no logic;
3. AWS requests per 1,000 notices by service and operation made during (2), counted at
   botocore's ``BaseClient._make_api_call`` (one class shared by the host and the deployed
   code's module copy), split into the deployed functions' own calls and the Lambda
   service's (the runner's) SQS polling;
4. cold-start proxies: ``python -X importtime`` of each handler module, and the Lambda code
   package size (zipped as the CDK CLI zips it, and unzipped);
5. agency look-ups and batch provision: n/a until issue 4's provision API exists.

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_domain
import botocore.client

HANDLERS = ("municipality_cs", "prefecture_processor", "national_processor")
DEFAULT_NOTICES = 18_692  # Nagano, January 2003: about 2.5 minutes on a 2-core machine (147 s measured)


# -- request counting ------------------------------------------------------------------------------

class RequestCounter:
    """Counts every botocore API call in this process by (source, service, operation).

    The deployed code is imported as its own module copy (jukinet_ops/local/code_image.py)
    and builds clients from fresh boto3 sessions, so hooks on the host's ``jukinet`` or on
    a session's event system do not see its calls; botocore itself is the host's, so a
    wrapper on ``BaseClient._make_api_call`` sees them all. The source is the function
    being invoked (the runner sets AWS_LAMBDA_FUNCTION_NAME only during an invocation),
    else "poller" (the runner playing Lambda's SQS poller / S3 notifications) or "host".
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.seconds: Counter[tuple[str, str, str]] = Counter()  # wall time spent in each kind of call
        self.cs_bodies: list[str] = []
        self.active = False
        self._original = botocore.client.BaseClient._make_api_call

    def __enter__(self) -> RequestCounter:
        counter, original = self, self._original

        def counted(client, operation_name, api_params):
            if counter.active:
                function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
                source = _tier(function) if function else "lambda service (runner)"
                service = client.meta.service_model.service_name
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


def _tier(function: str) -> str:
    if "-cs-" in function:
        return "municipality CS"
    if "-national-" in function:
        return "national processor"
    if "-pref" in function:
        return "prefecture processor"
    return function


# -- 2 + 3: the pipeline and its raw baseline --------------------------------------------------------

def pipeline(notices: int, seed: int, deployment_name: str | None, work: Path) -> dict:
    from infra.config import load_deployment
    from infra.naming import Names
    from jukinet.adapters import aws
    from jukinet_ops.demo_data import generate_month
    from jukinet_ops.local.deploy import deploy_assembly
    from jukinet_ops.local.runner import LocalRunner
    from jukinet_ops.local.server import MotoServer, local_credentials
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
        month = generate_month(municipalities, notices=notices, seed=seed)
        out.update(notices=month.valid_rows, malformed=month.malformed_rows, files=month.file_count)
        devnull = stack.enter_context(open(os.devnull, "w", encoding="utf-8"))
        runner = stack.enter_context(LocalRunner(env, log_stream=devnull, share_modules=True,
                                                 cache_dir=work / "code"))
        s3 = aws.client("s3")
        muni_env = prefecture.municipality_tier.env
        counter = stack.enter_context(RequestCounter())
        counter.active = True
        t = time.perf_counter()
        for code, files in month.files.items():
            bucket = names.drop_zone_bucket(muni_env, code)
            for name, data in files:
                s3.put_object(Bucket=bucket, Key=f"incoming/{name}", Body=data)
        summary = runner.run_until_idle(timeout_s=1800)
        out["pipeline_s"] = time.perf_counter() - t
        counter.active = False
        out["invocations"] = summary.invocations
        out["counts"] = {k: v for k, v in counter.counts.items() if k[0] != "lambda service (runner)"
                         or k[1] == "sqs"}
        out["host_counts"] = {k: v for k, v in counter.counts.items() if k not in out["counts"]}
        out["cs_messages"] = len(counter.cs_bodies)
        out["cs_bytes"] = sum(len(b.encode()) for b in counter.cs_bodies)
        # What only the emulation does: finding new objects by listing the 77 drop zones
        # (S3 delivers notifications to Lambda in AWS).
        out["listing_s"] = sum(v for (s, sv, op), v in counter.seconds.items()
                               if s == "lambda service (runner)" and sv == "s3" and op != "PutObject")
        out["upload_s"] = sum(v for (s, sv, op), v in counter.seconds.items()
                              if s == "lambda service (runner)" and op == "PutObject")
        out["errors"] = sum(s.errors for s in runner.stats.values())
        out["failed_records"] = sum(s.failed_records for s in runner.stats.values())

        out.update(raw_baseline(server.endpoint_url, deployment.region, counter.cs_bodies))
    return out


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
    from jukinet_ops.local.server import local_client

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
    from jukinet_ops.local.assembly import zip_directory

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

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notices", type=int, default=DEFAULT_NOTICES,
                        help=f"valid notices in the synthetic month (default {DEFAULT_NOTICES:,})")
    parser.add_argument("--seed", type=int, default=2003)
    parser.add_argument("--deployment", default=None, help="deployment configuration (default: nagano-demo)")
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    started = time.perf_counter()

    domain = bench_domain.measure(max(args.notices, 5_000), repeat=3)
    imports = {h: import_time_us(f"jukinet.handlers.{h}") for h in HANDLERS}
    with tempfile.TemporaryDirectory(prefix="jukinet-bench-") as tmp:
        p = pipeline(args.notices, args.seed, args.deployment, Path(tmp))
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
                 f"{notices:,} notices + {p['malformed']} malformed rows, {p['files']} files, "
                 f"{p['invocations']} invocations, {p['errors']} errors"))
    rows.append(("  of which dropping the export files", f"{p['upload_s']:.1f} s", "PutObject into the drop zones"))
    rows.append(("  of which the runner's drop-zone listing", f"{p['listing_s']:.1f} s",
                 "emulation only: S3 notifies Lambda in AWS"))
    rows.append(("raw baseline A: per notice, two hops", f"{raw_rate:,.0f} notices/s ({p['raw_notice_s']:.1f} s)",
                 f"the CS's {p['cs_messages']} signed bodies ({p['cs_bytes'] / 1e6:.1f} MB, {p['raw_notices']:,} "
                 f"notices) → queue → {p['raw_notice_items']:,} items in 2 tables"))
    rows.append(("raw baseline B: per message, one hop",
                 f"{raw_message_rate:,.0f} notices/s ({p['raw_message_s']:.1f} s)",
                 f"the same bodies → queue → {p['raw_message_items']} items (one per body)"))
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
        rows.append((f"total {service}", f"{by_service.get(service, 0) * per_k:,.1f}", note))

    section("4. cold-start proxies")
    for h, (median, best) in imports.items():
        rows.append((f"import jukinet.handlers.{h}", f"{median / 1000:,.0f} ms",
                     f"median of 3 (min {best / 1000:,.0f} ms), python -X importtime, host (x86-64) interpreter"))
    for pkg in packages:
        rows.append((f"Lambda code package asset.{pkg['asset']}…",
                     f"{pkg['zipped'] / 2**20:.1f} MiB zipped · {pkg['unzipped'] / 2**20:.1f} MiB unzipped",
                     f"{pkg['files']:,} files; used by {pkg['functions']} functions (limit 50 MiB / 250 MiB)"))

    section("5. provision API")
    rows.append(("agency look-ups: throughput ratio, p50/p99", "n/a (issue 4)", ""))
    rows.append(("batch provision: records/s", "n/a (issue 4)", ""))

    print(f"jukinet benchmark · {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC · Python {sys.version.split()[0]} · "
          f"{os.cpu_count()} CPUs · synth {p['synth_s']:.0f} s, deploy {p['deploy_s']:.0f} s, "
          f"total {time.perf_counter() - started:.0f} s")
    print()
    widths = [max(len(r[i]) for r in rows + [("figure", "value", "baseline / notes")]) for i in range(3)]
    header = ("figure", "value", "baseline / notes")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    if p["host_counts"]:
        host = ", ".join(f"{s} {sv} {op} {c}" for (s, sv, op), c in sorted(p["host_counts"].items()))
        print(f"\nnot counted above (the benchmark's own uploads and the runner's bucket listing): {host}")


if __name__ == "__main__":
    main()

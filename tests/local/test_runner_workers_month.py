"""A month of notices through the deployed pipeline (``nagano-compact`` in the embedded AWS) with
``LocalRunner(workers=2)`` ends where the sequential runner ends (decision 0057): the same items
in every table (but what differs from one deployment to another: times, keys' random ids, the
blind index's key, the signatures over the notice time), every notice stored once at each tier
and none lost, empty queues and dead-letter queues, the same records delivered to each function,
the same metric totals from the functions' EMF output (which reaches ``MetricSink`` in the
parent), and the same flow-log and DNS query-log records (addresses and ports, which count the
calls of one invocation, aside)."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import re
from collections import Counter
from typing import Any

import pytest

from embedded_aws import FlowLogRecorder
from infra.naming import Names
from jukinet.adapters import aws
from jukinet_ops.demo_data import generate_month

from ..e2e.embedded import deployed_nagano

pytestmark = pytest.mark.slow

NOTICES = 400
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# per deployment: the blind index's HMAC key; the digest signed covers the notice's time
_PER_DEPLOYMENT = {"bidx", "signed_digest"}


def _norm(value: str) -> str:
    return _UUID.sub("<uuid>", _TIME.sub("<t>", value))


def _tables() -> dict[str, Counter]:
    ddb = aws.client("dynamodb")
    out: dict[str, Counter] = {}
    for table in ddb.list_tables()["TableNames"]:
        projected: Counter = Counter()
        for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for item in page["Items"]:
                projected[tuple(sorted((k, _norm(v["S"]) if "S" in v else v["N"]) for k, v in item.items()
                                       if k not in _PER_DEPLOYMENT and ("S" in v or "N" in v)))] += 1
        out[table] = projected
    return out


def _ledgers(tables: dict[str, Counter]) -> dict[str, tuple[int, int, int]]:
    """Per identity table: (ledger items, notices stored, notices dead-lettered)."""
    out = {}
    for table, items in tables.items():
        if table.endswith("-identity"):
            ledgers = [dict(i) for i in items if dict(i).get("sk") == "LEDGER"]
            out[table] = (len(ledgers), sum(sum(json.loads(i["stored"]).values()) for i in ledgers),
                          sum(sum(json.loads(i["dead"]).values()) for i in ledgers))
    return out


def _queues() -> dict[str, int]:
    sqs = aws.client("sqs")
    out = {}
    for url in sqs.list_queues(MaxResults=1000).get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        out[url.rsplit("/", 1)[-1]] = sum(int(v) for v in attributes.values())
    return out


def _metric_totals(since: dt.datetime) -> dict[tuple, float]:
    """The Count metrics the functions' EMF lines published: sum per metric and dimensions."""
    cw = aws.client("cloudwatch")
    totals = {}
    for page in cw.get_paginator("list_metrics").paginate(Namespace="Jukinet"):
        for metric in page["Metrics"]:
            got = cw.get_metric_statistics(Namespace=metric["Namespace"], MetricName=metric["MetricName"],
                                           Dimensions=metric["Dimensions"], StartTime=since - dt.timedelta(hours=1),
                                           EndTime=since + dt.timedelta(hours=2), Period=86400,
                                           Statistics=["Sum"], Unit="Count")
            total = sum(p["Sum"] for p in got["Datapoints"])
            dims = tuple(sorted((d["Name"], d["Value"]) for d in metric["Dimensions"]))
            totals[(metric["MetricName"], dims)] = total
    return totals


def _flow(lines: list[str]) -> set[tuple]:
    """A flow-log record without its source port and its public address's last octet (both count the
    calls an invocation made before)."""
    out = set()
    for line in lines:
        f = line.split()
        dst = f[4] if f[15] == "-" else f[4].rsplit(".", 1)[0]
        out.add((f[2], f[3], dst, f[6], f[12], f[14], f[15]))
    return out


def _queries(lines: list[str]) -> set[tuple]:
    return {(q["query_name"], q["srcaddr"], q["srcids"]["instance"], q["vpc_id"] != "")
            for q in map(json.loads, lines)}


def _month_through(tmp_path_factory: Any, workers: int) -> dict[str, Any]:
    holder: dict[str, Any] = {}
    recorder = FlowLogRecorder(lambda *a: holder["env"].client(*a), now=lambda: 1_000_000_000.0)
    with recorder.installed(), deployed_nagano(tmp_path_factory, monitoring=True, flow_logs=recorder,
                                               workers=workers) as (deployment, env, runner):
        holder["env"] = env
        names = Names.of(deployment)
        prefecture = deployment.prefectures[0]
        municipalities = {m.code: m.name for m in prefecture.municipality_tier.municipalities}
        month = generate_month(municipalities, notices=NOTICES, seed=57, exports=3)
        s3 = aws.client("s3")
        started = dt.datetime.now(dt.UTC)
        for code, files in month.files.items():
            for name, data in files:
                s3.put_object(Bucket=names.drop_zone_bucket(prefecture.municipality_tier.env, code),
                              Key=f"incoming/{name}", Body=data)
        summary = runner.run_until_idle(timeout_s=900)
        runner.monitoring.sink.flush()
        tables = _tables()
        result = {
            "idle": summary.idle, "valid": month.valid_rows, "workers": runner.workers,
            "pids": runner.worker_pids(), "tables": tables, "ledgers": _ledgers(tables), "queues": _queues(),
            "records": {f: (s.records, s.failed_records, s.errors) for f, s in runner.stats.items() if s.invocations},
            "metrics": _metric_totals(started), "emf_lines": runner.monitoring.sink.emf_lines,
            "problems": list(runner.monitoring.sink.problems),
            "flow": _flow(recorder.records), "queries": _queries(recorder.queries),
            "flow_lines": len(recorder.records)}
    result["children_after"] = multiprocessing.active_children()
    return result


@pytest.fixture(scope="module")
def months(tmp_path_factory) -> dict[int, dict[str, Any]]:
    return {workers: _month_through(tmp_path_factory, workers) for workers in (0, 2)}


def test_the_runs_are_what_they_claim(months):
    assert months[0]["workers"] == 0 and months[2]["workers"] == 2
    assert len(months[2]["pids"]) == 2 and months[0]["pids"] == []
    assert months[2]["children_after"] == []
    assert months[0]["idle"] and months[2]["idle"]


def test_the_same_items_are_stored_in_every_table(months):
    sequential, concurrent = months[0]["tables"], months[2]["tables"]
    assert set(sequential) == set(concurrent)
    for table in sequential:
        assert concurrent[table] == sequential[table], (
            table, list((sequential[table] - concurrent[table]).items())[:2],
            list((concurrent[table] - sequential[table]).items())[:2])


def test_every_notice_is_stored_once_at_each_tier_and_nothing_waits_or_is_dead_lettered(months):
    for run in months.values():
        assert run["ledgers"] and all(stored == run["valid"] and dead == 0
                                      for _ledgers, stored, dead in run["ledgers"].values()), run["ledgers"]
        assert {q: n for q, n in run["queues"].items() if n} == {}
    assert months[2]["ledgers"] == months[0]["ledgers"]


def test_each_function_gets_the_same_records_and_fails_none(months):
    assert months[2]["records"].keys() == months[0]["records"].keys()
    for function, (records, failed, errors) in months[2]["records"].items():
        assert (failed, errors) == (0, 0), function
        if "-cs-" in function:  # the CSs' records are the export files' events: exactly the same
            assert records == months[0]["records"][function][0], function
    assert sum(r for r, _, _ in months[2]["records"].values()) >= sum(r for r, _, _ in months[0]["records"].values())


def test_the_functions_output_reaches_the_metric_sink_in_the_parent(months):
    concurrent, sequential = months[2]["metrics"], months[0]["metrics"]
    assert months[2]["emf_lines"] > 0 and months[2]["problems"] == []
    assert concurrent.keys() == sequential.keys()
    stored = {k: v for k, v in concurrent.items() if k[0] == "NoticesStored"}
    assert stored and all(v > 0 for v in stored.values())
    assert {k: v for k, v in concurrent.items() if v != sequential[k]} == {}


def test_flow_log_and_dns_query_log_records_are_those_of_the_sequential_run(months):
    assert months[2]["flow_lines"] > 0
    assert months[2]["flow"] == months[0]["flow"]
    assert months[2]["queries"] == months[0]["queries"]

"""Section 5 of ``bench/run.py``: the provision API on the embedded AWS, measured after the
pipeline has filled the national identity table (so look-ups and batch rows meet real
residents). Three measurements, each on the deployed assembly and run by the same
``LocalRunner`` as the pipeline (``share_modules=True``):

1. **Look-up handler vs. a minimal handler, in process.** Both are invoked through
   ``LocalRunner.invoke`` with the same kind of API Gateway proxy event (``proxy_event``:
   ``POST /v1/lookups``, one code of an existing resident, as mhlw-engo through its
   endpoint): the deployed ``jukinet-national-provision-api`` function, and
   ``minimal_handler`` below registered in the runner as a copy of that function (same code
   image activated, same environment, same module space — so the same
   ``jukinet.observability`` logger and metrics objects) with only its Handler changed.
   ``minimal_handler`` is "a minimal handler that returns a constant through the same
   stack": Powertools ``APIGatewayRestResolver(enable_validation=True)`` with one route
   returning a constant, under the same ``@logger.inject_lambda_context``,
   ``use_tier``/``flush`` as the look-up handler. Reported: handler-only throughput
   (``InvocationResult.duration_s``, the time inside ``handler(event, context)``) for both
   and their ratio; the look-up against the minimal handler plus the time of the look-up's
   own AWS requests (how much of it is waiting); the same calls timed around the runner's
   whole ``invoke`` (environment and module-space swap included); the process CPU per call;
   the look-up's AWS requests by operation; then ``MULTI_CALLS`` look-ups of ``MULTI_CODES``
   codes each (the API's maximum) and their AWS requests per call.
   ``profile_lookup``: cProfile of more look-ups.
2. **Latency through the local API.** ``LocalApi`` over the deployed API, callers from
   ``local_principals`` for the demo recipients with their deployed API keys; single-code
   look-ups as mhlw-engo signed with botocore's ``SigV4Auth`` and sent with urllib
   (``LocalApi.request``: ``sign_request`` + ``send``), one at a time: p50/p99/max, the
   function's share (``runner.invoke`` wrapped to keep each ``duration_s``), and the AWS
   requests per API request (the function's and LocalApi's own).
3. **Batch provision end to end.** A file of N codes of existing residents (sampled without
   replacement from the national table's current items while there are enough) uploaded
   to ``in/chikyosai/`` of the batch bucket, ``POST /v1/batches`` as chikyosai, the runner
   run until idle (split task, then one chunk task per 1,000 rows on the batch queue),
   ``GET /v1/batches/{job_id}`` until complete: rows/s from the POST to the complete status,
   and the AWS requests per 1,000 rows by operation.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

LOOKUP_CALLS = 300
MULTI_CALLS = 10  # look-ups of MULTI_CODES codes each
MULTI_CODES = 100
WARMUP_CALLS = 20
DEFAULT_BATCH_ROWS = 10_000
LOOKUP_RECIPIENT = "mhlw-engo"
BATCH_RECIPIENT = "chikyosai"
API_FUNCTION = "provision-api"
BATCH_FUNCTION = "provision-batch"
MINIMAL_FUNCTION_SUFFIX = "-bench-minimal"  # the runner's name for the minimal handler: <api function>-bench-minimal
CONSTANT = {"ok": True}


# -- the minimal handler ----------------------------------------------------------------------------

_minimal: Callable[[dict, Any], dict] | None = None


def _build_minimal() -> Callable[[dict, Any], dict]:
    """Built on its first invocation, i.e. inside the activated code image: ``jukinet`` here
    is the deployed copy in the runner's module space, the one the look-up handler uses."""
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

    from jukinet.observability import flush, logger, use_tier

    app = APIGatewayRestResolver(enable_validation=True)

    @app.post("/v1/lookups")
    def lookups() -> dict:
        return CONSTANT

    @logger.inject_lambda_context
    def handler(event: dict, context: object) -> dict:
        use_tier("national")
        try:
            return app.resolve(event, context)
        finally:
            flush()

    return handler


def minimal_handler(event: dict, context: Any) -> dict:
    """Handler ``bench_provision.minimal_handler``: one route, a constant answer."""
    global _minimal
    if _minimal is None:
        _minimal = _build_minimal()
    return _minimal(event, context)


# -- helpers -----------------------------------------------------------------------------------------

def _function(runner: Any, what: str) -> Any:
    [fn] = [f for f in runner.functions.values() if f.name.endswith(f"-{what}")]
    return fn


def proxy_event(path: str, body: dict | None, *, user_arn: str, vpce: str, method: str = "POST",
                account: str = "123456789012", api_id: str = "bench") -> dict:
    """A REST API (payload 1.0) Lambda proxy event as API Gateway builds it for a SigV4 call
    through a private endpoint (the fields the handlers read, and the usual others)."""
    data = json.dumps(body) if body is not None else None
    request_id = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "Host": f"{api_id}.execute-api.ap-northeast-1.amazonaws.com",
               "x-amzn-vpce-id": vpce, "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
    return {
        "resource": path, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "bench", "resourcePath": path, "httpMethod": method, "requestId": request_id,
            "extendedRequestId": request_id[:16], "path": f"/api{path}", "accountId": account, "stage": "api",
            "protocol": "HTTP/1.1", "requestTimeEpoch": int(time.time() * 1000), "apiId": api_id,
            "identity": {"userArn": user_arn, "vpceId": vpce, "sourceIp": "127.0.0.1", "accountId": account,
                         "caller": None, "user": None, "accessKey": None, "apiKey": None, "apiKeyId": None},
        },
        "body": data, "isBase64Encoded": False,
    }


def recipient_endpoints(env: Any, agreements: dict) -> dict[str, str | None]:
    """Role ARN -> the VPC endpoint its calls come through: the recipient's first configured
    endpoint, or for a prefecture without any, its tier's execute-api endpoint (stack output)."""
    out: dict[str, str | None] = {}
    for recipient in agreements.values():
        vpce = (recipient["vpc_endpoint_ids"] or [None])[0]
        if vpce is None and recipient.get("prefecture"):
            vpce = next((s.outputs.get("ExecuteApiEndpointId") for s in env.stacks.values()
                         if s.stack_name.endswith(f"-pref-{recipient['prefecture']}")), None)
        for role in [*recipient["principals"], *recipient.get("disclosure_principals", [])]:
            out[role] = vpce
    return out


def _session_arn(role_arn: str) -> str:
    account, name = role_arn.split(":")[4], role_arn.rsplit("/", 1)[-1]
    return f"arn:aws:sts::{account}:assumed-role/{name}/bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _diff(after: Counter, before: Counter) -> Counter:
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)})


def current_codes(table: str) -> list[str]:
    """Resident codes of the national table's current items with status active (a host scan,
    not counted; ``measure`` reads its candidates by key instead when it is given them)."""
    from jukinet.adapters import aws

    ddb = aws.client("dynamodb")
    codes: list[str] = []
    kwargs: dict[str, Any] = {"TableName": table, "FilterExpression": "sk = :c AND #s = :a",
                              "ExpressionAttributeNames": {"#s": "status"},
                              "ExpressionAttributeValues": {":c": {"S": "CURRENT"}, ":a": {"S": "active"}},
                              "ProjectionExpression": "pk"}
    while True:
        page = ddb.scan(**kwargs)
        codes += [item["pk"]["S"][2:] for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return sorted(codes)
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# -- 1: the look-up handler against the minimal handler, in process ------------------------------------

def in_process(runner: Any, counter: Any, codes: list[str], agreements: dict, *, calls: int = LOOKUP_CALLS,
               warmup: int = WARMUP_CALLS, rng: random.Random) -> dict:
    api = _function(runner, API_FUNCTION)
    recipient = agreements[LOOKUP_RECIPIENT]
    role, vpce = recipient["principals"][0], recipient["vpc_endpoint_ids"][0]
    affair = next(a["affair_code"] for a in recipient["agreements"] if "lookup" in a["functions"])
    chosen = rng.sample(codes, min(len(codes), 2 * (calls + warmup)))
    if len(chosen) < 2 * (calls + warmup):
        chosen += rng.choices(codes, k=2 * (calls + warmup) - len(chosen))

    def events(offset: int, n: int) -> list[dict]:
        return [proxy_event("/v1/lookups", {"affair_code": affair, "resident_codes": [c]},
                            user_arn=_session_arn(role), vpce=vpce) for c in chosen[offset:offset + n]]

    out: dict = {"calls": calls, "affair": affair}

    def run(function: str, batch: list[dict], check: Callable[[Any], None]) -> tuple[float, float, float, list]:
        handler_s = 0.0
        results = []
        cpu, wall = time.process_time(), time.perf_counter()
        for event in batch:
            result = runner.invoke(function, event)
            handler_s += result.duration_s
            results.append(result)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        for result in results:
            check(result)
        return handler_s, wall, cpu, results

    def lookup_ok(result: Any) -> None:
        if not result.ok or result.response["statusCode"] != 200:
            raise RuntimeError(f"look-up failed: {result.error or result.response}")
        answer = json.loads(result.response["body"])["results"][0]
        if answer["outcome"] != "provided":
            raise RuntimeError(f"look-up of an existing resident answered {answer['outcome']}")

    def minimal_ok(result: Any) -> None:
        if not result.ok or result.response["statusCode"] != 200 or json.loads(result.response["body"]) != CONSTANT:
            raise RuntimeError(f"minimal handler failed: {result.error or result.response}")

    run(api.name, events(0, warmup), lookup_ok)
    # Registered only now: the runner extracts a code image on a function's first invocation and
    # owns the top-level packages of every handler then sharing its CodeSha256; bench_provision is
    # the host's module, not the image's.
    from embedded_aws.runner import FunctionStats

    minimal = dataclasses.replace(api, name=api.name + MINIMAL_FUNCTION_SUFFIX,
                                  arn=api.arn + MINIMAL_FUNCTION_SUFFIX,
                                  handler="bench_provision.minimal_handler")
    runner.functions[minimal.name] = minimal
    runner.stats[minimal.name] = FunctionStats()
    run(minimal.name, events(warmup, warmup), minimal_ok)
    before, seconds_before = Counter(counter.counts), Counter(counter.seconds)
    out["lookup_handler_s"], out["lookup_wall_s"], out["lookup_cpu_s"], _ = run(
        api.name, events(2 * warmup, calls), lookup_ok)
    out["lookup_requests"] = _diff(Counter(counter.counts), before)
    out["lookup_aws_s"] = sum(_diff(Counter(counter.seconds), seconds_before).values())
    out["minimal_handler_s"], out["minimal_wall_s"], out["minimal_cpu_s"], _ = run(
        minimal.name, events(2 * warmup + calls, calls), minimal_ok)
    del runner.functions[minimal.name], runner.stats[minimal.name]

    # Look-ups of MULTI_CODES codes each (the API's maximum): AWS requests per call and per code.
    multi = [proxy_event("/v1/lookups", {"affair_code": affair, "resident_codes": rng.sample(codes, min(
        MULTI_CODES, len(codes)))}, user_arn=_session_arn(role), vpce=vpce) for _ in range(MULTI_CALLS)]
    before = Counter(counter.counts)
    out["multi_handler_s"], _, _, _ = run(api.name, multi, multi_ok)
    out["multi_requests"] = _diff(Counter(counter.counts), before)
    out["multi_calls"], out["multi_codes"] = MULTI_CALLS, min(MULTI_CODES, len(codes))
    return out


def multi_ok(result: Any) -> None:
    if not result.ok or result.response["statusCode"] != 200:
        raise RuntimeError(f"look-up of {MULTI_CODES} codes failed: {result.error or result.response}")


def profile_lookup(runner: Any, codes: list[str], agreements: dict, *, calls: int = 200, top: int = 25,
                   rng: random.Random) -> str:
    """cProfile of the in-process look-up loop (the runner's invoke included): by cumulative and
    by own time, then the deployed ``jukinet`` code alone. cProfile sees this thread only: the
    provision log's PutItem, which runs on a worker thread, shows as a lock wait."""
    import cProfile
    import io
    import pstats

    api = _function(runner, API_FUNCTION)
    recipient = agreements[LOOKUP_RECIPIENT]
    role, vpce = recipient["principals"][0], recipient["vpc_endpoint_ids"][0]
    affair = next(a["affair_code"] for a in recipient["agreements"] if "lookup" in a["functions"])
    batch = [proxy_event("/v1/lookups", {"affair_code": affair, "resident_codes": [c]}, user_arn=_session_arn(role),
                         vpce=vpce) for c in rng.sample(codes, min(calls, len(codes)))]
    profiler = cProfile.Profile()
    profiler.enable()
    for event in batch:
        runner.invoke(api.name, event)
    profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(r"/jukinet/", top)  # the deployed code's own functions
    return buffer.getvalue()


# -- 2 and 3: through the local API ----------------------------------------------------------------------

def through_api(env: Any, runner: Any, counter: Any, codes: list[str], agreements: dict, *,
                calls: int = LOOKUP_CALLS, warmup: int = WARMUP_CALLS, batch_rows: int = DEFAULT_BATCH_ROWS,
                rng: random.Random, batch_bucket: str, timeout_s: float = 1800) -> dict:
    from jukinet.adapters import aws
    from embedded_aws.api import LocalApi, local_principals

    principals = local_principals(recipient_endpoints(env, agreements))
    out: dict = {}
    opened = time.perf_counter()
    with LocalApi(env, runner, credentials=principals, api="jukinet-provision") as api:
        keys = api.api_keys

        def caller(recipient_id: str) -> Any:
            role = agreements[recipient_id]["principals"][0]
            return dataclasses.replace(principals[role], api_key=keys[f"jukinet-provision-{recipient_id}"])

        # 2: single-code look-ups, one at a time
        who = caller(LOOKUP_RECIPIENT)
        affair = next(a["affair_code"] for a in agreements[LOOKUP_RECIPIENT]["agreements"]
                      if "lookup" in a["functions"])
        chosen = rng.sample(codes, min(len(codes), calls + warmup))
        chosen += rng.choices(codes, k=calls + warmup - len(chosen))
        latencies: list[float] = []
        function_s: list[float] = []  # the time inside the handler, per request (the runner's duration_s)
        invoke = runner.invoke

        def timed_invoke(function: str, event: Any) -> Any:
            result = invoke(function, event)
            function_s.append(result.duration_s)
            return result

        runner.invoke = timed_invoke  # LocalApi calls runner.invoke: an instance attribute wins
        try:
            for i, code in enumerate(chosen):
                if i == warmup:
                    before = Counter(counter.counts)
                    function_s.clear()
                    started = time.perf_counter()
                t = time.perf_counter()
                response = api.request(who, "POST", "/v1/lookups",
                                       body=json.dumps({"affair_code": affair, "resident_codes": [code]}),
                                       headers={"Content-Type": "application/json"})
                elapsed = time.perf_counter() - t
                if response.status != 200 or response.json()["results"][0]["outcome"] != "provided":
                    raise RuntimeError(f"look-up through the local API: {response.status} {response.body[:300]!r}")
                if i >= warmup:
                    latencies.append(elapsed)
            out["api_s"] = time.perf_counter() - started
        finally:
            del runner.invoke
        out["api_latencies"] = latencies
        out["api_function_s"] = list(function_s)
        out["api_requests"] = _diff(Counter(counter.counts), before)

        out["api_total_s"] = time.perf_counter() - opened  # reading the deployed API back, warm-up included

        # 3: batch provision
        submitter = caller(BATCH_RECIPIENT)
        batch_affair = next(a["affair_code"] for a in agreements[BATCH_RECIPIENT]["agreements"]
                            if "batch" in a["functions"])
        if batch_rows <= len(codes):
            rows = rng.sample(codes, batch_rows)
        else:
            rows = codes + rng.choices(codes, k=batch_rows - len(codes))
            rng.shuffle(rows)
        key = f"in/{BATCH_RECIPIENT}/bench-{batch_rows}.txt"
        aws.client("s3").put_object(Bucket=batch_bucket, Key=key,
                                    Body=("resident_code\n" + "\n".join(rows) + "\n").encode())
        batch_fn = _function(runner, BATCH_FUNCTION).name
        before = Counter(counter.counts)
        listing_before = runner_overhead_s(counter)
        started = time.perf_counter()
        response = api.request(submitter, "POST", "/v1/batches",
                               body=json.dumps({"affair_code": batch_affair, "input_key": key}),
                               headers={"Content-Type": "application/json"})
        if response.status != 202:
            raise RuntimeError(f"POST /v1/batches: {response.status} {response.body[:300]!r}")
        job_id = response.json()["job_id"]
        status: dict = {}
        polls = 0
        while time.perf_counter() - started < timeout_s:
            summary = runner.run_until_idle(timeout_s=timeout_s)
            polls += 1
            got = api.request(submitter, "GET", f"/v1/batches/{job_id}")
            status = got.json()
            if got.status != 200 or status.get("status") in ("complete", "failed"):
                break
        out["batch_s"] = time.perf_counter() - started
        out["batch_requests"] = _diff(Counter(counter.counts), before)
        out["batch_listing_s"] = runner_overhead_s(counter) - listing_before
        out["batch_status"] = status
        out["batch_rows"] = batch_rows
        out["batch_distinct"] = len(set(rows))
        out["batch_invocations"] = runner.stats[batch_fn].invocations
        out["batch_polls"] = polls
        out["batch_summary"] = summary
        if status.get("status") != "complete":
            raise RuntimeError(f"batch job {job_id} did not complete: {status}")
    return out


def hold_check(service: str, operation: str) -> bool:
    """A call the runner makes to read operator holds (reserved concurrency, mapping and queue
    tags): Lambda knows these itself, its SQS poller makes no such call."""
    return service == "lambda" or (service == "sqs" and operation == "ListQueueTags")


def runner_overhead_s(counter: Any) -> float:
    """Seconds the runner spent in calls AWS does not make: S3 listing, hold checks."""
    return sum(v for (s, sv, op), v in counter.seconds.items()
               if s == "lambda service (runner)" and (hold_check(sv, op) or (sv == "s3" and op != "PutObject")))


# -- everything, for bench/run.py --------------------------------------------------------------------------

def measure(env: Any, runner: Any, counter: Any, deployment: Any, *, batch_rows: int = DEFAULT_BATCH_ROWS,
            seed: int = 2003, profile: bool = False, candidates: Sequence[str] | None = None) -> dict:
    """Sections 1-3 above on the deployed environment; ``counter`` is run.py's RequestCounter.
    ``candidates``: every resident code the month named (run.py's month): the active ones are
    read by key, 100 a ``BatchGetItem`` (not counted), instead of a scan of the national table,
    which cost the embedded AWS the whole table per page (~20 s of its CPU at the defaults).
    The same codes either way: the bench's national table holds only the month's residents."""
    from jukinet.domain.agreements import agreements_data
    from jukinet_ops.agency_traffic import active_among

    agreements = {r["id"]: r for r in agreements_data(deployment.agencies)["recipients"]}
    api = _function(runner, API_FUNCTION)
    started = time.perf_counter()
    if candidates is not None:
        codes = sorted(active_among(deployment, candidates, len(candidates)))
    else:
        codes = current_codes(api.environment["TABLE_NAME"])
    rng = random.Random(seed)
    out: dict = {"codes": len(codes), "scan_s": time.perf_counter() - started}
    was = counter.active
    counter.active = True
    try:
        t = time.perf_counter()
        out.update(in_process(runner, counter, codes, agreements, rng=rng))
        out["in_process_s"] = time.perf_counter() - t
        out.update(through_api(env, runner, counter, codes, agreements, rng=rng, batch_rows=batch_rows,
                               batch_bucket=api.environment["BATCH_BUCKET"]))
    finally:
        counter.active = was
    out["section_s"] = time.perf_counter() - started
    if profile:
        out["profile"] = profile_lookup(runner, codes, agreements, rng=rng)
    return out

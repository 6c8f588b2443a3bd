"""Running the deployed functions in this process, driven by their deployed triggers.

``LocalRunner`` plays the Lambda service for a ``DeployedEnvironment``:

* Each function is run *as deployed*: its Handler, environment, timeout and memory are
  read back from the embedded AWS (``GetFunction``), its code is the deployed zip
  (downloaded, checked against ``CodeSha256``, imported in isolation, see ``code_image.py``).
* Each function runs in its own module space (its own "container"): module-level state
  initialised at import is per function, as in Lambda. ``share_modules=True`` shares one
  space per code package instead; handlers that key their runtime by environment (as
  jukinet's do) work either way.
* For the duration of an invocation ``os.environ`` is replaced by the function's
  environment, Lambda's reserved variables, dummy credentials and ``AWS_ENDPOINT_URL``
  (the embedded AWS); it is restored afterwards. Only Python's mapping changes, never the C
  environment (``replace_environ``: a ``setenv`` under a thread reading it crashed a CI run).
* SQS event source mappings (held disabled in moto, see ``template.py``) are polled with
  their BatchSize; partial batch responses are honoured when the mapping reports
  ``ReportBatchItemFailures``: only the successful records are deleted. Failed records are
  made visible again at once (Lambda would wait for the visibility timeout) so the queue's
  redrive policy moves them to the DLQ after ``maxReceiveCount`` receives - moto applies
  redrive when a message is received. A handler that raises deletes nothing.
* S3 → SQS notifications (``QueueConfigurations``: the drop zones → the CSs' inboxes, decision
  0051) are the embedded AWS's own: moto's S3 sends each event to the queue when the object is
  stored, and the queue's mapping delivers it like any other. Only the queues that hold
  something are polled (one request for all queues' depths, ``moto_patches`` item 8).
* S3 → Lambda notifications (CloudFormation ``LambdaConfigurations``, recorded by the
  deployer) are driven by listing the bucket: each new object (version, or ETag and
  modification time) under the filtered prefix is delivered once, as an asynchronous
  invocation with Lambda's retries (MaximumRetryAttempts, default 2), then to the
  function's dead-letter queue or topic (DeadLetterConfig, recorded by the deployer).
* ``invoke_async`` is Lambda's ``Invoke`` with ``InvocationType=Event``: the event is queued
  and run by the next round, with the same retries and dead-letter target.
* Operator holds (``jukinet isolate``, ``jukinet_ops/emergency.py``) are read from the embedded
  AWS before work is taken: a function whose reserved concurrency is 0 is never invoked (its
  S3 and asynchronous events wait, its mappings are not polled) and a mapping whose queue is
  tagged ``jukinet:isolation`` is not polled (moto holds every mapping Disabled, see
  ``template.py``, so its State cannot say what an operator decided). Held work does not keep
  ``run_until_idle`` from returning; ``held()`` lists it.

Invocations are strictly sequential in this process (see the lock in ``code_image.py``). With
``workers=N`` the mappings' batches run in N forked processes instead, one batch per mapping at a
time (``runner_workers.py``, decision 0057).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TextIO

from botocore.exceptions import ClientError

from jukinet.domain.isolation import ISOLATION_TAG

from .code_image import INVOCATION_LOCK, CodeImage, handler_root
from .model import BucketNotification, DeployedEnvironment, EventSourceMappingSpec
from .moto_patches import GENERATIONS_PATH, QUEUE_DEPTHS_PATH
from .runner_workers import WorkerCollector, WorkerPool, error_from, fork_available
from .server import local_client, local_credentials

log = logging.getLogger(__name__)

# Host variables a function still sees (the interpreter and libraries need them); all else,
# AWS_PROFILE and friends included, is hidden so nothing of the host's AWS setup leaks in.
# libfaketime's settings pass through: a clock moved for the whole process (scripts/test-any-date)
# is read from FAKETIME (every few seconds), so hiding it would give the function the real clock.
# JUKINET_VALIDATE_AWS_REQUESTS: the test suite's request checking (jukinet.adapters.aws) reaches
# the functions it runs.
_HOST_VARIABLES = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT",
                   "PYTHONHASHSEED", "PYTHONUTF8", "SSL_CERT_FILE", "SSL_CERT_DIR", "TZ",
                   "LD_PRELOAD", "FAKETIME", "FAKETIME_NO_CACHE", "DONT_FAKE_MONOTONIC",
                   "FAKETIME_FORCE_MONOTONIC_FIX", "JUKINET_VALIDATE_AWS_REQUESTS")
_MAX_SQS_RECEIVE = 10  # SQS ReceiveMessage limit
_DEFAULT_ASYNC_RETRIES = 2  # Lambda's default for asynchronous invocations


def replace_environ(variables: Mapping[str, str]) -> None:
    """Make ``os.environ`` exactly ``variables``, in Python only: the C environment (``environ``,
    ``getenv``) stays as it is.

    What a function reads (boto3, Powertools, jukinet's own settings) reads ``os.environ``; what
    reads the C environment is C code, from any thread, at any time: libfaketime reads FAKETIME on
    clock calls (scripts/test-any-date), glibc reads TZ. A ``setenv`` that adds a variable may
    move glibc's array of variables while such a thread walks it, and the process dies of a
    segmentation fault: the CI run of stop 26 did, in this function (``tests/local/
    test_runner_environ.py`` reproduces it in a subprocess). So ``os.environ``'s own mapping is
    changed and ``putenv``/``unsetenv`` are never called. A process started meanwhile with
    ``env=None`` inherits the C environment, not the function's: pass ``env=`` explicitly."""
    data = getattr(os.environ, "_data", None)
    encode_key = getattr(os.environ, "encodekey", None)
    encode_value = getattr(os.environ, "encodevalue", None)
    if not isinstance(data, dict) or encode_key is None or encode_value is None:
        raise RuntimeError(f"os.environ of Python {sys.version.split()[0]} has no _data/encodekey/encodevalue; "
                           "the local runner needs them to swap a function's environment without setenv")
    wanted = {encode_key(name): encode_value(value) for name, value in variables.items()}
    for key in [k for k in data if k not in wanted]:
        del data[key]
    data.update(wanted)


class FunctionNotRunnable(RuntimeError):
    """The function's deployed code cannot be run locally (container image, inline code...)."""


@dataclass
class LambdaContext:
    """The context object Lambda's Python runtime passes to a handler."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: str  # a string in the real runtime too
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    timeout_s: float
    identity: Any = None
    client_context: Any = None
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


@dataclass
class DeployedFunction:
    """A function as read back from the embedded AWS."""

    name: str
    arn: str
    handler: str
    runtime: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]
    code_sha256: str
    code_location: str | None
    region: str
    account: str
    max_async_retries: int = _DEFAULT_ASYNC_RETRIES


@dataclass
class FunctionStats:
    invocations: int = 0
    errors: int = 0  # the handler raised
    records: int = 0  # SQS/S3 records delivered
    failed_records: int = 0  # reported in batchItemFailures, or in a batch whose handler raised
    timeouts: int = 0  # ran longer than the function's Timeout (not cut off)
    total_s: float = 0.0
    max_s: float = 0.0

    @property
    def mean_ms(self) -> float:
        return self.total_s / self.invocations * 1000 if self.invocations else 0.0


@dataclass(frozen=True)
class InvocationResult:
    function: str
    ok: bool
    response: Any
    error: BaseException | None
    duration_s: float


@dataclass(frozen=True)
class RunProgress:
    elapsed_s: float
    invocations: int
    last_function: str | None
    last_ok: bool | None
    pending_messages: int | None  # known only when the runner checks for idleness


@dataclass(frozen=True)
class RunSummary:
    idle: bool
    elapsed_s: float
    invocations: int
    rounds: int
    held: tuple[str, ...] = ()  # work left waiting by an operator hold (see LocalRunner.held)


class RunTimeout(TimeoutError):
    def __init__(self, message: str, summary: RunSummary) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class _SqsMapping:
    spec: EventSourceMappingSpec
    function: str
    queue_url: str
    region: str
    account: str
    batch_size: int
    report_failures: bool
    config: dict[str, Any]


class LocalRunner:
    """Runs a deployed environment's functions in this process. Use as a context manager
    (removes its code cache unless ``cache_dir`` was given).

    ``share_modules=True`` lets functions deployed from the same package share one copy of
    its modules (first invocations are ~30 ms cheaper per function, but module-level state
    initialised from the environment at import is then the first function's)."""

    def __init__(self, env: DeployedEnvironment, *, cache_dir: Path | None = None,
                 env_overrides: Mapping[str, str] | None = None, log_stream: TextIO | None = None,
                 share_modules: bool = False, flow_logs: Any | None = None, workers: int = 0) -> None:
        """``flow_logs``: a ``flow_logs.FlowLogRecorder`` (installed by the caller); each
        invocation is armed with the function's VPC, so its calls become flow-log records.

        ``workers``: 0 (the default) runs every invocation here, one at a time. N > 0 runs the SQS
        mappings' batches of ``run_until_idle`` in N forked worker processes, at most one batch
        per mapping at a time (``runner_workers.py``, decision 0057); S3 → Lambda notifications,
        asynchronous invocations and ``invoke`` still run here. Where ``fork`` is not available
        the runner warns and runs with 0. Fault injection (``faults.py``) needs 0."""
        self.env = env
        self.flow_logs = flow_logs
        self.share_modules = share_modules
        self.endpoint_url = env.endpoint_url
        self._own_cache = cache_dir is None
        self.cache_dir = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="jukinet-local-"))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.env_overrides = dict(env_overrides or {})
        self.log_stream = log_stream
        self.warnings: list[str] = []
        self.stats: dict[str, FunctionStats] = {}
        self.functions: dict[str, DeployedFunction] = {}
        self._images: dict[str, CodeImage] = {}
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._delivered: set[tuple[str, ...]] = set()
        self._invocations = 0
        self._last: InvocationResult | None = None
        self._load_functions()
        self._by_arn = {f.arn: f.name for f in self.functions.values()}
        self._mappings = self._load_mappings()
        self._notifications = [n for n in env.bucket_notifications if n.function_arn in self._by_arn]
        # Queues that carry S3 event notifications (moto's S3 sends them): their mappings deliver
        # new objects, so ``process_new_objects`` polls them.
        self._s3_queues = {n.queue_arn for n in env.bucket_notifications if n.queue_arn}
        self._versioned: dict[str, bool] = {}
        # (configuration id, bucket) -> the bucket's object generation when last listed with
        # nothing held back; unchanged since, its listing is skipped (moto_patches item 4).
        self._listed_generation: dict[tuple[str, str], int] = {}
        self._generations_served: bool | None = None  # None: not asked yet
        self._depths_served: bool | None = None  # the same for the queue depths (moto_patches item 8)
        self._async_events: list[tuple[str, dict[str, Any]]] = []
        self._holds: dict[tuple[str, str], str] = {}  # what waits because of an operator hold
        self.workers = 0
        self._pool: WorkerPool | None = None
        self._in_flight: dict[str, tuple[_SqsMapping, list[dict[str, Any]]]] = {}  # by mapping UUID
        self._collectors: list[WorkerCollector] = []
        if workers > 0:
            if fork_available():
                self.workers = workers
            else:
                self.warnings.append(f"workers={workers}: no fork on this platform, every invocation runs "
                                     f"in this process (workers=0)")
                log.warning("%s", self.warnings[-1])

    # -- setup ---------------------------------------------------------------------------------

    def _client(self, service: str, region: str, account: str) -> Any:
        key = (service, region, account)
        if key not in self._clients:
            self._clients[key] = local_client(self.endpoint_url, service, region, account)
        return self._clients[key]

    def _load_functions(self) -> None:
        for stack in self.env.stacks.values():
            lam = self._client("lambda", stack.region, stack.account)
            for resource in stack.resources_of_type("AWS::Lambda::Function"):
                if resource.state != "CREATED" or not resource.physical_id:
                    continue
                got = lam.get_function(FunctionName=resource.physical_id)
                config = got["Configuration"]
                fn = DeployedFunction(
                    name=config["FunctionName"], arn=config["FunctionArn"], handler=config.get("Handler", ""),
                    runtime=config.get("Runtime", ""), timeout_s=int(config.get("Timeout", 3)),
                    memory_mb=int(config.get("MemorySize", 128)),
                    environment=dict(config.get("Environment", {}).get("Variables", {})),
                    code_sha256=config.get("CodeSha256", ""), code_location=got.get("Code", {}).get("Location"),
                    region=stack.region, account=stack.account)
                with contextlib.suppress(ClientError):  # no EventInvokeConfig: Lambda's default
                    invoke_config = lam.get_function_event_invoke_config(FunctionName=fn.name)
                    fn.max_async_retries = int(invoke_config.get("MaximumRetryAttempts", _DEFAULT_ASYNC_RETRIES))
                self.functions[fn.name] = fn
                self.stats[fn.name] = FunctionStats()

    def _load_mappings(self) -> list[_SqsMapping]:
        arns = self._by_arn
        mappings = []
        for spec in self.env.event_source_mappings:
            if not spec.enabled:
                continue
            if spec.function_arn not in arns:
                self.warnings.append(f"mapping {spec.logical_id}: function {spec.function_arn} is not runnable")
                continue
            fn = self.functions[arns[spec.function_arn]]
            config = self._client("lambda", fn.region, fn.account).get_event_source_mapping(UUID=spec.uuid)
            _, _, _, region, account, queue_name = spec.event_source_arn.split(":", 5)
            sqs = self._client("sqs", region, account)
            url = sqs.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            if config.get("FilterCriteria"):
                self.warnings.append(f"mapping {spec.logical_id}: FilterCriteria are not applied locally "
                                     f"(every message is delivered)")
            mappings.append(_SqsMapping(
                spec=spec, function=fn.name, queue_url=url, region=region, account=account,
                batch_size=int(config.get("BatchSize") or 10),
                report_failures="ReportBatchItemFailures" in (config.get("FunctionResponseTypes") or []),
                config=config))
        return mappings

    def _image(self, fn: DeployedFunction) -> CodeImage:
        image = self._images.get(fn.code_sha256)
        if image is not None:
            return image
        zip_path = self.cache_dir / (hashlib.sha256(fn.code_sha256.encode()).hexdigest()[:32] + ".zip")
        if not zip_path.is_file():
            data = self._download_code(fn)
            tmp = zip_path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, zip_path)
        roots = {handler_root(f.handler) for f in self.functions.values() if f.code_sha256 == fn.code_sha256}
        image = CodeImage.extract(zip_path, fn.code_sha256, roots, self.cache_dir)
        self.warnings += [f"code of {fn.name}: {w}" for w in image.warnings]
        self._images[fn.code_sha256] = image
        return image

    def _download_code(self, fn: DeployedFunction) -> bytes:
        """The deployed zip. Moto's Code.Location is not downloadable; its path is the S3 key
        the function was created from, which the deployer published to the assets bucket.
        The bytes must hash to the function's CodeSha256, so this is the deployed code."""
        if not fn.code_location:
            raise FunctionNotRunnable(f"{fn.name}: no code location (container image or inline code)")
        key = urllib.parse.unquote(urllib.parse.urlparse(fn.code_location).path.lstrip("/"))
        candidates = [b for (account, _region), b in self.env.asset_buckets.items() if account == fn.account]
        for bucket in candidates:
            s3 = self._client("s3", fn.region, fn.account)
            try:
                data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError:
                continue
            if base64.b64encode(hashlib.sha256(data).digest()).decode() == fn.code_sha256:
                return bytes(data)
        raise FunctionNotRunnable(f"{fn.name}: deployed code {key} not found in the assets bucket(s) "
                                  f"{', '.join(candidates) or '(none)'}")

    # -- invoking ------------------------------------------------------------------------------

    def _environment(self, fn: DeployedFunction, image: CodeImage) -> dict[str, str]:
        variables = {k: v for k, v in os.environ.items() if k in _HOST_VARIABLES or k.startswith("MOTO_")}
        variables.update(fn.environment)
        variables.update({
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{fn.name}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.runtime}",
            "AWS_REGION": fn.region,
            "AWS_DEFAULT_REGION": fn.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            # No host AWS configuration may reach the code (profiles, SSO, endpoints).
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "LAMBDA_TASK_ROOT": str(image.task_root),
            "_HANDLER": fn.handler,
        })
        variables.update(local_credentials(self.endpoint_url, fn.region, fn.account))
        variables.update(self.env_overrides)
        return variables

    @contextlib.contextmanager
    def _process_environment(self, variables: Mapping[str, str]) -> Iterator[None]:
        saved = dict(os.environ)
        replace_environ(variables)
        try:
            yield
        finally:
            replace_environ(saved)

    def _function(self, function: str) -> DeployedFunction:
        fn = self.functions.get(function) or self.functions.get(self._by_arn.get(function, ""))
        if fn is None:
            raise KeyError(f"no deployed function {function!r}; known: {', '.join(sorted(self.functions))}")
        return fn

    def invoke(self, function: str, event: Any) -> InvocationResult:
        """Invoke one function synchronously with ``event``, as Lambda would (in this process,
        also when the runner has workers)."""
        fn = self._function(function)
        response, error, duration = self._execute(fn, event, self.log_stream)
        return self._account(fn, response, error, duration)

    def _execute(self, fn: DeployedFunction, event: Any, stream: TextIO | None
                 ) -> tuple[Any, BaseException | None, float]:
        """Run the handler once in this process: (response, error, seconds)."""
        image = self._image(fn)
        context = LambdaContext(
            function_name=fn.name, function_version="$LATEST", invoked_function_arn=fn.arn,
            memory_limit_in_mb=str(fn.memory_mb), aws_request_id=str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{fn.name}", log_stream_name=f"local/{fn.name}", timeout_s=fn.timeout_s)
        redirect: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if stream is not None:
            redirect = _redirect_output(stream)
        space = "" if self.share_modules else fn.name
        armed: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.flow_logs is not None:
            armed = self.flow_logs.armed(fn.name, self.flow_logs.view(fn.name, fn.region, fn.account))
        with image.active(space), self._process_environment(self._environment(fn, image)), redirect, armed:
            started = time.perf_counter()
            try:
                handler = image.load_handler(fn.handler)
                response, error = handler(event, context), None
            except Exception as exc:  # noqa: BLE001 - the function failed: Lambda reports, the caller decides
                response, error = None, exc
            duration = time.perf_counter() - started
        return response, error, duration

    def _account(self, fn: DeployedFunction, response: Any, error: BaseException | None,
                 duration: float) -> InvocationResult:
        """Count one finished invocation (here or in a worker) in the stats."""
        stats = self.stats[fn.name]
        self._invocations += 1
        stats.invocations += 1
        stats.total_s += duration
        stats.max_s = max(stats.max_s, duration)
        if error is not None:
            stats.errors += 1
            log.warning("%s failed: %s: %s", fn.name, type(error).__name__, error)
        if duration > fn.timeout_s:
            stats.timeouts += 1
            log.warning("%s ran %.1fs, longer than its %ss timeout (not enforced locally)",
                        fn.name, duration, fn.timeout_s)
        self._last = InvocationResult(fn.name, error is None, response, error, duration)
        return self._last

    # -- SQS -----------------------------------------------------------------------------------

    def poll_queues(self) -> int:
        """One batch per mapping not held by an operator; returns the number of messages delivered.
        A mapping whose queue holds nothing (the embedded AWS's depths, one request for all
        queues) is neither checked for a hold nor polled. With workers the batches run
        concurrently, and all are settled when this returns."""
        return sum(len(batch) for batch in self._poll_mappings(self._mappings))

    def _poll_mappings(self, mappings: list[_SqsMapping], settle: bool = True) -> list[list[dict[str, Any]]]:
        """One batch of each of ``mappings`` not held and not empty: the messages delivered.
        With workers and not ``settle`` (``run_until_idle``'s rounds), a mapping whose batch runs
        or that finds no idle worker is left for a later round, and nothing is waited for."""
        if self.workers and settle:
            self._wait_in_flight()
        batches = []
        depths = self._queue_depths()
        for mapping in mappings:
            if depths is not None and not depths.get(mapping.spec.event_source_arn):
                self._set_hold(("mapping", mapping.spec.uuid), None)  # nothing waits on it
                continue
            if self.workers:
                if mapping.spec.uuid in self._in_flight:
                    continue
                if not self._pool_for_dispatch().has_idle():
                    if not settle:
                        continue  # every worker is busy: taken in a later round
                    self._collect(None)
            hold = self._mapping_hold(mapping)
            self._set_hold(("mapping", mapping.spec.uuid), hold)
            if hold is None:
                batches.append(self._poll(mapping))
        if self.workers and settle:
            self._wait_in_flight()
        return batches

    # -- operator holds ------------------------------------------------------------------------

    def _throttled(self, function: str) -> bool:
        """Reserved concurrency 0: Lambda throttles every invocation of the function."""
        fn = self.functions[function]
        got = self._client("lambda", fn.region, fn.account).get_function_concurrency(FunctionName=fn.name)
        return got.get("ReservedConcurrentExecutions") == 0

    def _mapping_hold(self, mapping: _SqsMapping) -> str | None:
        """Why the mapping is not polled now, if it is held. An operator's disable cannot be read
        from the mapping (moto holds every mapping Disabled): ``jukinet isolate prefecture`` tags
        the mapped queue, which is what is read here."""
        fn = self.functions[mapping.function]
        sqs = self._client("sqs", mapping.region, mapping.account)
        tags = sqs.list_queue_tags(QueueUrl=mapping.queue_url).get("Tags", {})
        queue = mapping.queue_url.rsplit("/", 1)[-1]
        if ISOLATION_TAG in tags:
            return f"{queue}: mapping to {fn.name} disabled by an operator ({ISOLATION_TAG}={tags[ISOLATION_TAG]})"
        if self._throttled(fn.name):
            return f"{queue}: {fn.name} has reserved concurrency 0 (not polled)"
        return None

    def _set_hold(self, key: tuple[str, str], description: str | None) -> None:
        if description is None:
            self._holds.pop(key, None)
        else:
            self._holds[key] = description

    def held(self) -> tuple[str, ...]:
        """What waits because of an operator hold, as of the last round."""
        return tuple(self._holds[k] for k in sorted(self._holds))

    def _poll(self, mapping: _SqsMapping) -> list[dict[str, Any]]:
        if self.workers:
            return self._dispatch(mapping)
        messages = self._receive(mapping)
        if not messages:
            return []
        result = self.invoke(mapping.function, self._sqs_event(mapping, messages))
        self._settle(mapping, messages, result)
        return messages

    def _receive(self, mapping: _SqsMapping) -> list[dict[str, Any]]:
        sqs = self._client("sqs", mapping.region, mapping.account)
        messages: list[dict[str, Any]] = []
        while len(messages) < mapping.batch_size:
            wanted = min(_MAX_SQS_RECEIVE, mapping.batch_size - len(messages))
            got = sqs.receive_message(QueueUrl=mapping.queue_url, MaxNumberOfMessages=wanted, WaitTimeSeconds=0,
                                      AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
            messages += got
            if len(got) < wanted:
                break
        return messages

    @staticmethod
    def _sqs_event(mapping: _SqsMapping, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Records": [sqs_record(m, mapping.spec.event_source_arn, mapping.region) for m in messages]}

    def _settle(self, mapping: _SqsMapping, messages: list[dict[str, Any]], result: InvocationResult) -> None:
        """What Lambda's poller does with a batch once its invocation returned: delete the
        successful records, make the failed ones visible again, count them."""
        sqs = self._client("sqs", mapping.region, mapping.account)
        ids = {m["MessageId"] for m in messages}
        if not result.ok:
            failed = ids
        elif mapping.report_failures:
            failed = _batch_item_failures(result.response, ids)
        else:
            failed = set()
        stats = self.stats[mapping.function]
        stats.records += len(messages)
        stats.failed_records += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        retry = [m for m in messages if m["MessageId"] in failed]
        for chunk in _chunks(done, _MAX_SQS_RECEIVE):
            sqs.delete_message_batch(QueueUrl=mapping.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)])
        for chunk in _chunks(retry, _MAX_SQS_RECEIVE):
            # Lambda leaves them invisible until the visibility timeout; locally, retry now.
            sqs.change_message_visibility_batch(QueueUrl=mapping.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)])

    # -- workers (runner_workers.py) --------------------------------------------------------------

    def add_collector(self, collector: WorkerCollector) -> None:
        """Record in the workers what ``collector`` records here (see ``WorkerCollector``); workers
        already running are stopped (they are forked anew, with it, when next needed)."""
        if self._in_flight:
            raise RuntimeError("add_collector while batches run in workers")
        self._collectors.append(collector)
        self._stop_workers()

    def _pool_for_dispatch(self) -> WorkerPool:
        if self._pool is None:
            self._refuse_faults()
            # What every worker would otherwise do once for itself: extract the code (two workers
            # extracting into one cache directory would race), read the functions' VPCs.
            for mapping in self._mappings:
                fn = self.functions[mapping.function]
                self._image(fn)
                if self.flow_logs is not None:
                    self.flow_logs.view(fn.name, fn.region, fn.account)
            self._pool = WorkerPool(self, self.workers)
        return self._pool

    @staticmethod
    def _refuse_faults() -> None:
        from botocore import handlers

        from .faults import FaultInjector

        if any(isinstance(getattr(spec[1], "__self__", None), FaultInjector) for spec in handlers.BUILTIN_HANDLERS):
            raise RuntimeError("fault injection is installed: its rules count and fire in this process, so a "
                               "runner with workers cannot honour them; use workers=0")

    def _dispatch(self, mapping: _SqsMapping) -> list[dict[str, Any]]:
        """Take a batch of ``mapping`` and hand it to an idle worker (none in flight for it)."""
        key = mapping.spec.uuid
        pool = self._pool_for_dispatch()
        if key in self._in_flight or not pool.has_idle():
            return []
        messages = self._receive(mapping)
        if not messages:
            return []
        worker = pool.idle(mapping.function)
        assert worker is not None
        self._in_flight[key] = (mapping, messages)
        pool.submit(worker, key, mapping.function, self._sqs_event(mapping, messages),
                    [c.worker_state() for c in self._collectors])
        return messages

    def _collect(self, timeout: float | None) -> int:
        """Settle the batches the workers finished within ``timeout``; returns how many."""
        if self._pool is None or not self._in_flight:
            return 0
        settled = 0
        for key, payload in self._pool.results(timeout):
            mapping, messages = self._in_flight.pop(key)
            fn = self.functions[mapping.function]
            error = error_from(payload["error"])
            with INVOCATION_LOCK:
                self._write_output(fn, payload["output"])
                if self.flow_logs is not None:
                    self.flow_logs.records += payload["flow"][0]
                    self.flow_logs.queries += payload["flow"][1]
                for collector, data in zip(self._collectors, payload["collected"], strict=False):
                    collector.worker_merge(data)
                result = self._account(fn, payload["response"], error, payload["duration"])
            self._settle(mapping, messages, result)
            settled += 1
        return settled

    def _write_output(self, fn: DeployedFunction, text: str) -> None:
        """A worker's captured output of one invocation, written to the log stream at once, with
        the function's environment in place (``MetricSink`` reads the invocation's log group and
        identity from it)."""
        if not text or self.log_stream is None:
            return
        with self._process_environment(self._environment(fn, self._image(fn))):
            self.log_stream.write(text)

    def _wait_in_flight(self) -> None:
        while self._in_flight:
            self._collect(None)

    def _drain(self, timeout_s: float) -> None:
        """Settle the batches in flight; those not finished within ``timeout_s`` are abandoned
        with their workers (their messages come back after the visibility timeout)."""
        deadline = time.monotonic() + timeout_s
        while self._in_flight and time.monotonic() < deadline:
            self._collect(max(0.0, deadline - time.monotonic()))
        if self._in_flight:
            self._stop_workers(graceful=False)

    def _stop_workers(self, *, graceful: bool = True) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.stop(graceful=graceful and not self._in_flight)
        self._in_flight.clear()

    def worker_pids(self) -> list[int]:
        """The running workers' process ids."""
        return [w.process.pid for w in self._pool.workers] if self._pool is not None else []

    def pending_messages(self) -> int:
        """Messages visible, in flight or delayed in the mapped queues (but those of mappings
        held by an operator at the last poll, which wait on purpose)."""
        total = 0
        driven = [m for m in self._mappings if ("mapping", m.spec.uuid) not in self._holds]
        depths = self._queue_depths()
        if depths is not None:
            return sum(depths.get(arn, 0) for arn in {m.spec.event_source_arn for m in driven})
        for url, (region, account) in {m.queue_url: (m.region, m.account) for m in driven}.items():
            attributes = self._client("sqs", region, account).get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed"])["Attributes"]
            total += sum(int(v) for v in attributes.values())
        return total

    # -- S3 ------------------------------------------------------------------------------------

    def process_new_objects(self) -> int:
        """Deliver every object created since the last call to the functions notified for
        it; returns the number of objects delivered. Objects whose events go to a queue (S3 →
        SQS, sent by the embedded AWS itself) are delivered by one batch of each such queue's
        mapping (call again until 0); S3's test events name no object and count 0."""
        return self._process_new_objects()

    def _process_new_objects(self, settle: bool = True) -> int:
        delivered = 0
        s3_mappings = [m for m in self._mappings if m.spec.event_source_arn in self._s3_queues]
        for batch in self._poll_mappings(s3_mappings, settle) if s3_mappings else []:
            delivered += sum(_s3_objects(m.get("Body", "")) for m in batch)
        throttled: dict[str, bool] = {}
        generations = self._object_generations()
        for notification in self._notifications:
            if not notification.event.startswith("s3:ObjectCreated:"):
                continue
            listed = (notification.configuration_id, notification.bucket)
            generation = None
            if generations is not None:
                stack = self.env.stacks[notification.stack]
                generation = generations.get(f"{stack.account}/{notification.bucket}", 0)
                if self._listed_generation.get(listed) == generation:
                    continue  # no object stored in the bucket since it was last listed
            function = self._by_arn[notification.function_arn]
            held = 0
            for obj in self._list_objects(notification):
                identity = (notification.configuration_id, notification.bucket, obj["Key"],
                            obj.get("VersionId") or f"{obj['ETag']}@{obj['LastModified'].isoformat()}")
                if identity in self._delivered:
                    continue
                if function not in throttled:
                    throttled[function] = self._throttled(function)
                if throttled[function]:  # Lambda keeps the event and retries it (up to 6 hours in AWS)
                    held += 1
                    continue
                self._delivered.add(identity)
                self._invoke_async(function,
                                   {"Records": [s3_record(notification, obj, self._region_of(notification))]})
                delivered += 1
            self._set_hold(("s3", notification.configuration_id), f"{notification.bucket}: {held} object(s) wait, "
                           f"{function} has reserved concurrency 0" if held else None)
            if generation is not None and not held:
                self._listed_generation[listed] = generation
            else:
                self._listed_generation.pop(listed, None)
        return delivered

    def _object_generations(self) -> dict[str, int] | None:
        """Each bucket's count of stored objects, from the embedded AWS's extra route
        (``moto_patches``); ``None`` if the server does not offer it (every bucket is listed)."""
        if self._generations_served is False:
            return None
        try:
            with urllib.request.urlopen(self.endpoint_url + GENERATIONS_PATH, timeout=30) as answer:
                generations = json.loads(answer.read())
        except (urllib.error.HTTPError, ValueError):  # a plain moto: 404, or not JSON
            self._generations_served = False
            return None
        self._generations_served = True
        return generations

    def _queue_depths(self) -> dict[str, int] | None:
        """Messages held by each queue that holds any, by queue ARN, from the embedded AWS's extra
        route (``moto_patches`` item 8); ``None`` if the server does not offer it."""
        if self._depths_served is False:
            return None
        try:
            with urllib.request.urlopen(self.endpoint_url + QUEUE_DEPTHS_PATH, timeout=30) as answer:
                depths = json.loads(answer.read())
        except (urllib.error.HTTPError, ValueError):  # a plain moto: 404, or not JSON
            self._depths_served = False
            return None
        self._depths_served = True
        return depths

    def invoke_async(self, function: str, event: dict[str, Any]) -> None:
        """Lambda ``Invoke`` with ``InvocationType=Event``: the event is queued and run by the
        next ``process_async_events`` (every ``run_until_idle`` round), with the function's
        asynchronous retries and dead-letter target; held while its reserved concurrency is 0."""
        name = function if function in self.functions else self._by_arn.get(function)
        if name is None:
            raise KeyError(f"no deployed function {function!r}")
        self._async_events.append((name, event))

    def process_async_events(self) -> int:
        """Run the queued asynchronous invocations; returns how many ran."""
        queued, self._async_events = self._async_events, []
        throttled: dict[str, bool] = {}
        ran = 0
        for function, event in queued:
            if function not in throttled:
                throttled[function] = self._throttled(function)
            if throttled[function]:
                self._async_events.append((function, event))
                continue
            self._invoke_async(function, event)
            ran += 1
        waiting = sorted({f for f, _ in self._async_events})
        self._set_hold(("async", ""), f"{len(self._async_events)} asynchronous invocation(s) wait: "
                       f"{', '.join(waiting)} reserved concurrency 0" if waiting else None)
        return ran

    def _region_of(self, notification: BucketNotification) -> str:
        return self.env.stacks[notification.stack].region

    def _list_objects(self, n: BucketNotification) -> list[dict[str, Any]]:
        stack = self.env.stacks[n.stack]
        s3 = self._client("s3", stack.region, stack.account)
        if n.bucket not in self._versioned:
            self._versioned[n.bucket] = s3.get_bucket_versioning(Bucket=n.bucket).get("Status") == "Enabled"
        objects: list[dict[str, Any]] = []
        if self._versioned[n.bucket]:
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=n.bucket, Prefix=n.prefix):
                objects += [v for v in page.get("Versions", []) if v.get("IsLatest")]
        else:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=n.bucket, Prefix=n.prefix):
                objects += page.get("Contents", [])
        objects = [o for o in objects if o["Key"].endswith(n.suffix)]
        return sorted(objects, key=lambda o: (o["LastModified"], o["Key"]))

    def _invoke_async(self, function: str, event: dict[str, Any]) -> None:
        """Lambda's asynchronous invocation: retried MaximumRetryAttempts times (at once,
        not after Lambda's 1 and 2 minutes), then sent to the function's dead-letter queue
        or topic if it has one, else dropped."""
        fn = self.functions[function]
        records = len(event.get("Records", []))
        for _attempt in range(1 + fn.max_async_retries):
            result = self.invoke(function, event)
            self.stats[function].records += records
            if result.ok:
                return
        self.stats[function].failed_records += records
        target = self.env.dead_letter_targets.get(fn.arn)
        if target is None:
            log.warning("%s: event dropped after %d attempts (no dead-letter target)", function, _attempt + 1)
            return
        body = json.dumps(event)
        attributes = {"RequestID": {"DataType": "String", "StringValue": str(uuid.uuid4())},
                      "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                      "ErrorMessage": {"DataType": "String", "StringValue": f"{result.error!r}"[:1000]}}
        _, _, service, region, account, name = target.split(":", 5)
        client = self._client(service, region, account)
        if service == "sqs":
            url = client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            client.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
        else:
            client.publish(TopicArn=target, Message=body, MessageAttributes=attributes)

    # -- driving everything ----------------------------------------------------------------------

    def run_until_idle(self, timeout_s: float = 60.0,
                       on_progress: Callable[[RunProgress], None] | None = None) -> RunSummary:
        """Poll every mapped queue and notified bucket until all queues are empty (nothing
        visible, in flight or delayed), no new object and no queued asynchronous invocation
        remains — apart from work held by an operator (``held()``). Raises ``RunTimeout``
        if that takes longer than ``timeout_s`` (a message that always fails on a queue
        without a redrive policy never lets the environment become idle)."""
        try:
            return self._run_until_idle(timeout_s, on_progress)
        except RunTimeout:
            # a batch running in a worker is finished and settled (as a sequential runner is never
            # interrupted inside one), for at most its function's timeout
            self._drain(max([self.functions[m.function].timeout_s for m, _ in self._in_flight.values()],
                            default=0) + 5.0)
            raise
        except BaseException:
            self._stop_workers(graceful=False)
            raise

    def _run_until_idle(self, timeout_s: float, on_progress: Callable[[RunProgress], None] | None) -> RunSummary:
        started = time.monotonic()
        first = self._invocations
        rounds = 0
        while True:
            rounds += 1
            before = self._invocations
            work = (sum(len(batch) for batch in self._poll_mappings(self._mappings, settle=False))
                    + self._process_new_objects(settle=False) + self.process_async_events())
            if self._in_flight:  # wait for a worker's result when nothing else was to be done
                work += self._collect(0 if work else 0.5)
            elapsed = time.monotonic() - started
            if work == 0 and not self._in_flight:
                pending = self.pending_messages()
                if on_progress:
                    on_progress(RunProgress(elapsed, self._invocations - first, None, None, pending))
                if pending == 0 and self._process_new_objects(settle=False) == 0 and self.process_async_events() == 0:
                    return RunSummary(True, elapsed, self._invocations - first, rounds, self.held())
                if pending:
                    time.sleep(0.02)  # in flight elsewhere, or delayed: wait, do not spin
            elif on_progress and self._invocations > before and self._last is not None:
                on_progress(RunProgress(elapsed, self._invocations - first, self._last.function, self._last.ok, None))
            if time.monotonic() - started > timeout_s:
                summary = RunSummary(False, time.monotonic() - started, self._invocations - first, rounds,
                                     self.held())
                raise RunTimeout(f"not idle after {timeout_s:.0f}s ({self.pending_messages()} messages pending)",
                                 summary)

    def format_stats(self) -> str:
        lines = [f"{'function':<48} {'inv':>5} {'err':>4} {'rec':>6} {'fail':>5} {'mean ms':>8} {'max ms':>8}"]
        for name, s in sorted(self.stats.items()):
            if s.invocations:
                lines.append(f"{name[:48]:<48} {s.invocations:>5} {s.errors:>4} {s.records:>6} "
                             f"{s.failed_records:>5} {s.mean_ms:>8.1f} {s.max_s * 1000:>8.1f}")
        return "\n".join(lines)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._stop_workers()
        self._images.clear()
        if self._own_cache:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- events --------------------------------------------------------------------------------------


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the event Lambda's SQS poller passes to a function."""
    attributes = dict(message.get("Attributes", {}))
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": attributes,
        "messageAttributes": {name: _message_attribute(value)
                              for name, value in message.get("MessageAttributes", {}).items()},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    # Lambda's spelling: camelCase keys, binary values base64-encoded, empty list fields.
    out: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType", "")}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return out


def s3_record(n: BucketNotification, obj: Mapping[str, Any], region: str) -> dict[str, Any]:
    """One record of an S3 event notification (ObjectCreated:Put; a listing cannot tell
    Put from Post, Copy or CompleteMultipartUpload)."""
    modified = obj["LastModified"]
    s3_object: dict[str, Any] = {
        "key": urllib.parse.quote_plus(obj["Key"], safe="/"),
        "size": int(obj.get("Size", 0)),
        "eTag": str(obj.get("ETag", "")).strip('"'),
        "sequencer": f"{int(modified.timestamp() * 1000):016X}",
    }
    if obj.get("VersionId") and obj["VersionId"] != "null":
        s3_object["versionId"] = obj["VersionId"]
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": modified.strftime("%Y-%m-%dT%H:%M:%S.") + f"{modified.microsecond // 1000:03d}Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:LOCALMODE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": "local-mode"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": n.configuration_id,
            "bucket": {"name": n.bucket, "ownerIdentity": {"principalId": "LOCALMODE"},
                       "arn": f"arn:aws:s3:::{n.bucket}"},
            "object": s3_object,
        },
    }


def _s3_objects(body: str) -> int:
    """How many objects an S3 event notification (an SQS body) names."""
    try:
        records = json.loads(body).get("Records")
    except (ValueError, AttributeError):
        return 0
    return len(records) if isinstance(records, list) else 0


def _batch_item_failures(response: Any, ids: set[str]) -> set[str]:
    """The failed message ids of a partial batch response. Like Lambda, a malformed
    response (not a dict, an empty or unknown itemIdentifier) fails the whole batch."""
    if response is None:
        return set()
    if not isinstance(response, dict):
        return set(ids)
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return set(ids)
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in ids:
            return set(ids)
        failed.add(identifier)
    return failed


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


@contextlib.contextmanager
def _redirect_output(stream: TextIO) -> Iterator[None]:
    with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):  # type: ignore[type-var]
        yield

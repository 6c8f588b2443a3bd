"""Fault injection: make chosen AWS calls of the functions fail, seedably, through botocore's
own event hooks — no proxy, no product code changed.

How it works: ``FaultInjector.installed()`` adds two handlers to botocore's built-in handler
list (as moto adds its own), so every client created afterwards carries them; it forgets the
product's cached clients (``jukinet.adapters.aws.reset_clients``) so the functions' next
clients have them too. The handlers act only in a thread that is ``armed(function)``: the
harness arms the functions it invokes, never its own set-up or checking calls.

* ``before-call.<service>.<Operation>``: a fault decided here replaces the call — an error
  response (the product sees the ``ClientError`` botocore raises after its own retries gave
  up), a connection timeout (the request never reached AWS), ``FunctionKilled`` (the
  function dies before this call: a *kill point*), or a *race* (the same request is sent
  once more just before, as a concurrent twin invocation would: conditional writes then fail
  for real).
* ``after-call.<service>.<Operation>``: the request took effect, then the caller never
  learns it — a read timeout (``lost_response``) or the function killed right after it
  (``kill_after``); ReceiveMessage answered with every message twice (``duplicate``: the
  harness hands each copy to a different invocation, at once).

A kill point is the *next* AWS call after the point: "after the history write and before the
ledger update" is ``kill`` on the ledger's call, "after storing and before forwarding" is
``kill`` on the prefecture's ``kms:Sign``; "after the provision-log entry and before the
answer" is ``kill_after`` on the log's ``TransactWriteItems``.

Usage::

    from embedded_aws.faults import FaultInjector, Rule

    faults = FaultInjector(seed=7)
    faults.add(Rule("dynamodb", "TransactWriteItems", "throttle", rate=0.2))      # 20% of calls
    faults.add(Rule("sqs", "SendMessageBatch", "kill", function="prefecture", at=(1,)))  # 1st call
    faults.add(Rule("kms", "Sign", "server_error", function="cs", times=2))       # twice, then fine
    with faults.installed():
        with faults.armed("prefecture"):
            handler(event, context)          # FunctionKilled propagates (a BaseException)
    print(faults.fired)                      # Counter of (function, service:Operation, kind)

Kinds: ``throttle``, ``server_error``, ``conditional`` (ConditionalCheckFailedException),
``timeout`` (before the request), ``lost_response`` (after it), ``kill``, ``kill_after``,
``race``, ``duplicate`` (sqs ReceiveMessage only). The same seed and the same sequence of
calls fire the same faults.
"""

from __future__ import annotations

import contextlib
import copy
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from botocore import handlers, xform_name
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from jukinet.adapters import aws

KINDS = ("throttle", "server_error", "conditional", "timeout", "lost_response", "kill", "kill_after", "race",
         "duplicate")

# The error each service answers for a kind (code, HTTP status).
_THROTTLE = {"dynamodb": ("ThrottlingException", 400), "kms": ("ThrottlingException", 400),
             "sqs": ("RequestThrottled", 403), "s3": ("SlowDown", 503)}
_SERVER = {"dynamodb": ("InternalServerError", 500), "kms": ("KMSInternalException", 500),
           "sqs": ("InternalError", 500), "s3": ("InternalError", 500)}


class FunctionKilled(BaseException):  # noqa: N818 — a death, not an error the product may catch
    """The function died here (timeout, out of memory, runtime crash): nothing after this
    point runs. A BaseException, so the product's ``except Exception`` cannot catch it, as it
    cannot catch a Lambda runtime's death."""


@dataclass
class Rule:
    """Fail calls of ``service``/``operation`` (``*`` for any) made by ``function`` (a label the
    harness arms with, matched as a prefix; ``""`` for any): at the calls numbered in ``at``
    (1 = the first matching call), or each with probability ``rate``, or (neither) every
    matching call; at most ``times`` times in all (0: unbounded)."""

    service: str
    operation: str
    kind: str
    function: str = ""
    rate: float = 0.0
    at: tuple[int, ...] = ()
    times: int = 0
    seen: int = field(default=0, init=False)
    hits: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "duplicate" and (self.service, self.operation) != ("sqs", "ReceiveMessage"):
            raise ValueError("duplicate applies to sqs ReceiveMessage only")

    def matches(self, function: str, service: str, operation: str) -> bool:
        return (self.service in ("*", service) and self.operation in ("*", operation)
                and function.startswith(self.function))


class FaultInjector:
    def __init__(self, seed: int = 0) -> None:
        self.rules: list[Rule] = []
        self.random = random.Random(seed)
        self.fired: Counter = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._installed: list[tuple] = []

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    # --- arming -------------------------------------------------------------------------
    @contextlib.contextmanager
    def armed(self, function: str) -> Iterator[None]:
        """Faults apply to calls made in this thread, as ``function``, until the block ends."""
        previous = getattr(self._local, "function", None)
        self._local.function = function
        try:
            yield
        finally:
            self._local.function = previous

    @contextlib.contextmanager
    def installed(self) -> Iterator[FaultInjector]:
        specs = [("before-parameter-build", self._remember_params), ("before-call", self._before_call),
                 ("after-call", self._after_call)]
        handlers.BUILTIN_HANDLERS.extend(specs)
        aws.reset_clients()
        try:
            yield self
        finally:
            for spec in specs:
                handlers.BUILTIN_HANDLERS.remove(spec)
            aws.reset_clients()

    # --- deciding -----------------------------------------------------------------------
    def _decide(self, service: str, operation: str, when: str) -> Rule | None:
        function = getattr(self._local, "function", None)
        if function is None:
            return None
        with self._lock:
            for rule in self.rules:
                if not rule.matches(function, service, operation):
                    continue
                after = rule.kind in ("lost_response", "kill_after", "duplicate")
                if after != (when == "after"):
                    continue
                rule.seen += 1
                if rule.times and rule.hits >= rule.times:
                    continue
                if rule.at:
                    hit = rule.seen in rule.at
                elif rule.rate:
                    hit = self.random.random() < rule.rate
                else:
                    hit = True
                if hit:
                    rule.hits += 1
                    self.fired[(function, f"{service}:{operation}", rule.kind)] += 1
                    return rule
        return None

    # --- botocore handlers --------------------------------------------------------------
    @staticmethod
    def _remember_params(params, context, **_):
        context["jukinet_fault_params"] = copy.deepcopy(params)

    def _before_call(self, model, params, context, **_):
        service, operation = model.service_model.service_name, model.name
        rule = self._decide(service, operation, "before")
        if rule is None:
            return None
        if rule.kind == "kill":
            raise FunctionKilled(f"killed before {service}:{operation}")
        if rule.kind == "timeout":
            raise ConnectTimeoutError(endpoint_url=params.get("url", service))
        if rule.kind == "race":
            self._twin(service, operation, context.get("jukinet_fault_params", {}))
            return None
        code, status = {"throttle": _THROTTLE, "server_error": _SERVER}.get(rule.kind, {}).get(
            service, ("ConditionalCheckFailedException", 400))
        body = {"Error": {"Code": code, "Message": f"injected {rule.kind}"},
                "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0}}
        return _Response(status), body

    def _after_call(self, model, parsed, **_):
        service, operation = model.service_model.service_name, model.name
        rule = self._decide(service, operation, "after")
        if rule is None:
            return
        if rule.kind == "kill_after":
            raise FunctionKilled(f"killed after {service}:{operation}")
        if rule.kind == "lost_response":
            raise ReadTimeoutError(endpoint_url=service)
        if rule.kind == "duplicate" and parsed.get("Messages"):
            parsed["Messages"] = [m for m in parsed["Messages"] for m in (m, copy.deepcopy(m))]

    def _twin(self, service: str, operation: str, params: dict) -> None:
        """Send the same request once, unarmed, from another client: a concurrent invocation
        doing the same work a moment earlier. Its own failure is its business."""
        previous, self._local.function = getattr(self._local, "function", None), None
        try:
            client = aws.new_session().client(service, region_name=aws.client(service).meta.region_name)
            twin = copy.deepcopy(params)
            twin.pop("ClientRequestToken", None)  # another invocation: its own idempotency token
            with contextlib.suppress(Exception):
                getattr(client, xform_name(operation))(**twin)
        finally:
            self._local.function = previous


class _Response(AWSResponse):
    """An HTTP response that never went over the wire."""

    def __init__(self, status: int) -> None:
        super().__init__("https://fault.invalid/", status, {}, _Raw())


class _Raw:
    def stream(self, **_):
        yield b""

    def read(self, *_):
        return b""

"""``LocalRunner(workers=N)`` (decision 0057) on the toy CDK app of ``test_toy_app.py``, with
handlers that also record when, where (process id) and as what each invocation ran.

Each test is written as the way the feature would be wrong: batches that never overlap (the
workers serialised), two batches of one mapping at once (a queue's order lost), a message lost
or run twice, a failing record that never reaches the DLQ, an error that does not come back
because it does not pickle, output that stays in the worker, a worker left running."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import textwrap
import uuid
from pathlib import Path

import pytest

from embedded_aws.deploy import DeployedEnvironment, deploy_assembly
from embedded_aws.faults import FaultInjector, Rule
from embedded_aws.runner import LocalRunner, RunTimeout
from embedded_aws.runner_workers import WorkerInvocationError
from embedded_aws.server import MotoServer
from jukinet.domain.isolation import ISOLATION_TAG

from .test_toy_app import build_toy_app

pytestmark = pytest.mark.slow

HANDLER_CODE = textwrap.dedent('''
    """Toy handlers that record each invocation's span (start, end, process)."""
    import json
    import os
    import time

    import boto3

    _clients = {}


    class NotPicklable(Exception):
        """Raised from the deployed code's module copy: pickle finds another class by its name."""

        def __init__(self, what, lock):
            super().__init__(what)
            self.lock = lock


    def _client(service):
        key = (service, os.environ["AWS_REGION"])
        if key not in _clients:
            _clients[key] = boto3.client(service, region_name=os.environ["AWS_REGION"])
        return _clients[key]


    def _put(pk, **values):
        item = {"pk": {"S": pk}}
        item.update({k: {"S": str(v)} for k, v in values.items()})
        _client("dynamodb").put_item(TableName=os.environ["TABLE_NAME"], Item=item)


    def _add(pk, receives):
        _client("dynamodb").update_item(
            TableName=os.environ["TABLE_NAME"], Key={"pk": {"S": pk}}, UpdateExpression="ADD seen :one SET receives = :r",
            ExpressionAttributeValues={":one": {"N": "1"}, ":r": {"S": receives}})


    def _run(event, context, prefix):
        started = time.time()
        failures = []
        for record in event["Records"]:
            body = json.loads(record["body"])
            if body.get("raise"):
                import threading
                raise NotPicklable("cannot handle " + body["id"], threading.Lock())
            _add(prefix + "attempt#" + body["id"], record["attributes"]["ApproximateReceiveCount"])
            print(json.dumps({"level": "INFO", "message": "handled", "id": body["id"], "fn": context.function_name}))
            print("second line of " + body["id"])
            if body.get("fail"):
                failures.append({"itemIdentifier": record["messageId"]})
                continue
            time.sleep(float(body.get("sleep", 0)))
            _add(prefix + "ok#" + body["id"], "1")
        _put("span#" + context.aws_request_id, fn=context.function_name, start=started, end=time.time(),
             pid=os.getpid(), records=len(event["Records"]))
        return {"batchItemFailures": failures}


    def sqs_handler(event, context):
        return _run(event, context, "")


    def audit_handler(event, context):
        return _run(event, context, "audit#")


    def s3_handler(event, context):
        for record in event["Records"]:
            _put("s3#" + record["s3"]["object"]["key"], fn=context.function_name, pid=os.getpid())
''')


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("toy-workers")
    package = root / "code" / "toy_handlers"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text(HANDLER_CODE)
    build_toy_app(root / "cdk.out", root / "code")
    with MotoServer() as server:
        yield deploy_assembly(root / "cdk.out", server.endpoint_url)


class RecordingSink(io.TextIOBase):
    """A log stream that records each write with the function whose environment is in place."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str | None, str]] = []

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.writes.append((os.environ.get("AWS_LAMBDA_FUNCTION_NAME"), s))
        return len(s)


def _physical(env: DeployedEnvironment, stack: str, prefix: str, resource_type: str) -> str:
    [found] = [r.physical_id for r in env.stacks[stack].resources_of_type(resource_type)
               if r.logical_id.startswith(prefix) and r.physical_id]
    return found


def _table(env: DeployedEnvironment) -> str:
    return _physical(env, "Toy", "Table", "AWS::DynamoDB::Table")


def _send(env: DeployedEnvironment, queue: str, bodies: list[dict], stack: str = "Toy") -> None:
    url = _physical(env, stack, queue, "AWS::SQS::Queue")
    for i in range(0, len(bodies), 10):
        env.client("sqs").send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "MessageBody": json.dumps(b)} for n, b in enumerate(bodies[i:i + 10])])


def _items(env: DeployedEnvironment, prefix: str) -> dict[str, dict]:
    ddb = env.client("dynamodb")
    items: dict[str, dict] = {}
    for page in ddb.get_paginator("scan").paginate(TableName=_table(env), ConsistentRead=True):
        items.update({i["pk"]["S"]: i for i in page["Items"] if i["pk"]["S"].startswith(prefix)})
    return items


def _spans(env: DeployedEnvironment, function: str) -> list[tuple[float, float, int, int]]:
    return sorted((float(i["start"]["S"]), float(i["end"]["S"]), int(i["pid"]["S"]), int(i["records"]["S"]))
                  for i in _items(env, "span#").values() if i["fn"]["S"] == function)


def _dead(env: DeployedEnvironment) -> list[str]:
    url = _physical(env, "Toy", "Dlq", "AWS::SQS::Queue")
    got = env.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for m in got:
        env.client("sqs").delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return [m["Body"] for m in got]


def _children() -> list[int]:
    return [p.pid for p in multiprocessing.active_children()]


def test_batches_of_two_functions_overlap_and_one_mapping_never_runs_two(deployed: DeployedEnvironment):
    processor = _physical(deployed, "Toy", "Processor", "AWS::Lambda::Function")
    auditor = _physical(deployed, "ToyAudit", "Auditor", "AWS::Lambda::Function")
    tag = uuid.uuid4().hex[:6]
    _send(deployed, "Inbox", [{"id": f"{tag}-p{i}", "sleep": 0.1} for i in range(15)])  # 3 batches of 5
    _send(deployed, "AuditQueue", [{"id": f"{tag}-a{i}", "sleep": 0.15} for i in range(10)], stack="Toy")
    with LocalRunner(deployed, workers=2) as runner:
        summary = runner.run_until_idle(timeout_s=120)
        assert summary.idle
        workers = set(runner.worker_pids())
    p, a = _spans(deployed, processor), _spans(deployed, auditor)
    assert p and a
    assert {pid for *_, pid, _ in p + a} <= workers and os.getpid() not in {pid for *_, pid, _ in p + a}
    overlapping = [(x, y) for x in p for y in a if x[0] < y[1] and y[0] < x[1]]
    assert overlapping, f"no processor batch overlapped an auditor batch: {p} {a}"
    for spans in (p, a):  # at most one batch of a mapping in flight
        for earlier, later in zip(spans, spans[1:]):
            assert earlier[1] <= later[0], (earlier, later)
    assert runner.stats[processor].records == 15 and runner.stats[auditor].records == 10
    assert runner.stats[processor].invocations == len(p) and summary.invocations == len(p) + len(a)


def test_every_message_is_handled_once_and_deleted(deployed: DeployedEnvironment):
    processor = _physical(deployed, "Toy", "Processor", "AWS::Lambda::Function")
    tag = uuid.uuid4().hex[:6]
    ids = [f"{tag}-{i}" for i in range(47)]
    _send(deployed, "Inbox", [{"id": i} for i in ids])
    _send(deployed, "AuditQueue", [{"id": i} for i in ids])
    with LocalRunner(deployed, workers=2) as runner:
        assert runner.run_until_idle(timeout_s=120).idle
        assert runner.pending_messages() == 0
        assert runner.stats[processor].records == 47 and runner.stats[processor].failed_records == 0
    ok = _items(deployed, "ok#" + tag)
    audited = _items(deployed, "audit#ok#" + tag)
    assert {k.split("#", 1)[1] for k in ok} == set(ids)
    assert {k.split("#", 2)[2] for k in audited} == set(ids)
    assert {i["seen"]["N"] for i in list(ok.values()) + list(audited.values())} == {"1"}


def test_a_record_that_always_fails_reaches_the_dlq_after_max_receive_count(deployed: DeployedEnvironment):
    processor = _physical(deployed, "Toy", "Processor", "AWS::Lambda::Function")
    _dead(deployed)
    tag = uuid.uuid4().hex[:6]
    bad, good = f"{tag}-bad", f"{tag}-good"
    _send(deployed, "Inbox", [{"id": bad, "fail": True}, {"id": good}])
    with LocalRunner(deployed, workers=2) as runner:
        assert runner.run_until_idle(timeout_s=120).idle
        assert runner.stats[processor].failed_records == 2  # reported twice, then redriven
    attempts = _items(deployed, f"attempt#{bad}")[f"attempt#{bad}"]
    assert (attempts["seen"]["N"], attempts["receives"]["S"]) == ("2", "2")  # maxReceiveCount 2
    assert _items(deployed, f"attempt#{good}")[f"attempt#{good}"]["seen"]["N"] == "1"
    assert [json.loads(b)["id"] for b in _dead(deployed)] == [bad]


def test_an_error_that_does_not_pickle_comes_back_with_its_traceback(deployed: DeployedEnvironment):
    processor = _physical(deployed, "Toy", "Processor", "AWS::Lambda::Function")
    _dead(deployed)
    tag = uuid.uuid4().hex[:6]
    _send(deployed, "Inbox", [{"id": f"{tag}-raise", "raise": True}])
    with LocalRunner(deployed, workers=2) as runner:
        assert runner.run_until_idle(timeout_s=120).idle
        assert runner.stats[processor].errors == 2  # received twice, then redriven
        error = runner._last.error
    assert isinstance(error, WorkerInvocationError)
    assert error.type_name == "toy_handlers.app.NotPicklable"
    assert error.message == f"cannot handle {tag}-raise"
    assert 'raise NotPicklable("cannot handle "' in error.worker_traceback
    assert [json.loads(b)["id"] for b in _dead(deployed)] == [f"{tag}-raise"]


def test_output_reaches_the_parent_s_log_stream_one_invocation_at_a_time(deployed: DeployedEnvironment):
    processor = _physical(deployed, "Toy", "Processor", "AWS::Lambda::Function")
    auditor = _physical(deployed, "ToyAudit", "Auditor", "AWS::Lambda::Function")
    tag = uuid.uuid4().hex[:6]
    _send(deployed, "Inbox", [{"id": f"{tag}-p{i}"} for i in range(12)])
    _send(deployed, "AuditQueue", [{"id": f"{tag}-a{i}"} for i in range(12)])
    sink = RecordingSink()
    with LocalRunner(deployed, workers=2, log_stream=sink) as runner:
        assert runner.run_until_idle(timeout_s=120).idle
        invocations = runner.stats[processor].invocations + runner.stats[auditor].invocations
    ours = [(fn, text) for fn, text in sink.writes if tag in text]
    assert len(ours) == invocations  # each invocation's output in one write
    for fn, text in ours:
        lines = text.splitlines()
        handled = [json.loads(line) for line in lines if line.startswith("{")]
        assert handled and {h["fn"] for h in handled} == {fn}  # written under the function's environment
        assert [f"second line of {h['id']}" for h in handled] == [line for line in lines if line.startswith("second")]
    seen = {json.loads(line)["id"] for _, text in ours for line in text.splitlines() if line.startswith("{")}
    assert seen == {f"{tag}-p{i}" for i in range(12)} | {f"{tag}-a{i}" for i in range(12)}


def test_workers_end_with_close_and_with_an_exception_inside_the_block(deployed: DeployedEnvironment):
    assert _children() == []
    tag = uuid.uuid4().hex[:6]
    _send(deployed, "Inbox", [{"id": f"{tag}-1"}])
    _send(deployed, "AuditQueue", [{"id": f"{tag}-2"}])
    with LocalRunner(deployed, workers=2) as runner:
        runner.run_until_idle(timeout_s=120)
        pids = runner.worker_pids()
        assert len(pids) == 2 and set(_children()) == set(pids)
    assert _children() == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)

    with pytest.raises(KeyError), LocalRunner(deployed, workers=2) as runner:
        runner.run_until_idle(timeout_s=120)
        pids = runner.worker_pids()
        raise KeyError("the caller fails after a run")
    assert _children() == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)

    # the caller's progress callback fails while the auditor's batch still runs
    audit, sqs = _physical(deployed, "Toy", "AuditQueue", "AWS::SQS::Queue"), deployed.client("sqs")
    timeout = sqs.get_queue_attributes(QueueUrl=audit, AttributeNames=["VisibilityTimeout"])["Attributes"]
    sqs.set_queue_attributes(QueueUrl=audit, Attributes={"VisibilityTimeout": "4"})  # comes back sooner
    try:
        _send(deployed, "Inbox", [{"id": f"{tag}-3"}])
        _send(deployed, "AuditQueue", [{"id": f"{tag}-4", "sleep": 3}])
        seen: list[int] = []

        def fail(progress) -> None:
            seen.extend(runner.worker_pids())
            if progress.last_function is not None:
                assert runner._in_flight  # the other batch is still running
                raise KeyError("progress display failed")

        with LocalRunner(deployed, workers=2) as runner:
            with pytest.raises(KeyError):
                runner.run_until_idle(timeout_s=120, on_progress=fail)
            assert runner.worker_pids() == [] and _children() == []
        assert seen and not any(Path(f"/proc/{pid}").exists() for pid in seen)
        with LocalRunner(deployed) as runner:  # the abandoned batch comes back (visibility timeout)
            assert runner.run_until_idle(timeout_s=120).idle
    finally:
        sqs.set_queue_attributes(QueueUrl=audit, Attributes=timeout)


def test_poll_queues_with_workers_settles_every_batch_it_took(deployed: DeployedEnvironment):
    processor = _physical(deployed, "Toy", "Processor", "AWS::Lambda::Function")
    tag = uuid.uuid4().hex[:6]
    _send(deployed, "Inbox", [{"id": f"{tag}-{i}"} for i in range(3)])
    _send(deployed, "AuditQueue", [{"id": f"{tag}-{i}"} for i in range(3)])
    with LocalRunner(deployed, workers=1) as runner:
        assert runner.poll_queues() == 6  # one batch per mapping, as without workers
        assert runner._in_flight == {} and runner.stats[processor].records == 3
        assert runner.pending_messages() == 0


def test_fault_injection_needs_workers_0(deployed: DeployedEnvironment):
    _send(deployed, "Inbox", [{"id": f"{uuid.uuid4().hex[:6]}-f"}])
    faults = FaultInjector(seed=1)
    faults.add(Rule("dynamodb", "UpdateItem", "throttle", rate=0.5))
    with faults.installed(), LocalRunner(deployed, workers=2) as runner:
        with pytest.raises(RuntimeError, match="workers=0"):
            runner.run_until_idle(timeout_s=30)
    assert _children() == []
    with LocalRunner(deployed) as runner:
        assert runner.run_until_idle(timeout_s=60).idle


def test_an_operator_hold_is_read_before_a_batch_is_taken(deployed: DeployedEnvironment):
    auditor = _physical(deployed, "ToyAudit", "Auditor", "AWS::Lambda::Function")
    audit_queue = _physical(deployed, "Toy", "AuditQueue", "AWS::SQS::Queue")
    tag = uuid.uuid4().hex[:6]
    sqs = deployed.client("sqs")
    sqs.tag_queue(QueueUrl=audit_queue, Tags={ISOLATION_TAG: "test"})
    try:
        _send(deployed, "AuditQueue", [{"id": f"{tag}-held"}])
        _send(deployed, "Inbox", [{"id": f"{tag}-free"}])
        with LocalRunner(deployed, workers=2) as runner:
            summary = runner.run_until_idle(timeout_s=60)
            assert summary.idle and any("disabled by an operator" in h for h in summary.held)
            assert runner.stats[auditor].invocations == 0
            assert _items(deployed, f"audit#ok#{tag}-held") == {} and _items(deployed, f"ok#{tag}-free")
            sqs.untag_queue(QueueUrl=audit_queue, TagKeys=[ISOLATION_TAG])
            assert runner.run_until_idle(timeout_s=60).held == ()
            assert runner.stats[auditor].invocations == 1
        assert _items(deployed, f"audit#ok#{tag}-held")
    finally:
        sqs.untag_queue(QueueUrl=audit_queue, TagKeys=[ISOLATION_TAG])


def test_a_run_timeout_settles_the_batches_in_flight_and_keeps_its_meaning(deployed: DeployedEnvironment):
    """A message that always fails on a queue without a redrive policy never lets the runner be idle."""
    auditor = _physical(deployed, "ToyAudit", "Auditor", "AWS::Lambda::Function")
    audit_queue = _physical(deployed, "Toy", "AuditQueue", "AWS::SQS::Queue")
    _send(deployed, "AuditQueue", [{"id": f"{uuid.uuid4().hex[:6]}-forever", "raise": True}])
    try:
        with LocalRunner(deployed, workers=2) as runner:
            with pytest.raises(RunTimeout) as timeout:
                runner.run_until_idle(timeout_s=3)
            assert not timeout.value.summary.idle and timeout.value.summary.invocations >= 1
            assert runner._in_flight == {}  # settled before RunTimeout left
            assert runner.stats[auditor].errors == runner.stats[auditor].invocations >= 1
            assert runner.pending_messages() == 1  # made visible again: nothing lost
    finally:
        deployed.client("sqs").purge_queue(QueueUrl=audit_queue)


def _pool_ports() -> set[int]:
    """The local ports of the connected sockets urllib3 holds in this process (botocore's pools)."""
    import gc

    import urllib3

    ports = set()
    for obj in gc.get_objects():
        if isinstance(obj, urllib3.connection.HTTPConnection) and getattr(obj, "sock", None) is not None:
            with contextlib.suppress(OSError):
                ports.add(obj.sock.getsockname()[1])
    return ports


class SocketProbe:
    """A collector that reports, from each worker before each batch, the sockets its pools hold."""

    def __init__(self) -> None:
        self.seen: list[set[int]] = []
        self._ports: set[int] | None = None

    def worker_state(self) -> None:
        return None

    def worker_apply(self, state: None) -> None:
        self._ports = _pool_ports()

    def worker_take(self) -> set[int] | None:
        taken, self._ports = self._ports, None
        return taken

    def worker_merge(self, data: set[int] | None) -> None:
        if data is not None:
            self.seen.append(data)


def test_a_worker_uses_no_connection_of_the_parent(deployed: DeployedEnvironment):
    """A keep-alive socket inherited by a fork and used by both processes would mix their requests
    and answers: the worker starts with none of the parent's connections."""
    tag = uuid.uuid4().hex[:6]
    _send(deployed, "Inbox", [{"id": f"{tag}-{i}"} for i in range(12)])
    _send(deployed, "AuditQueue", [{"id": f"{tag}-{i}"} for i in range(12)])
    probe = SocketProbe()
    with LocalRunner(deployed, workers=2) as runner:
        runner.add_collector(probe)
        # open connections of the runner's clients and of the caller's
        runner._client("sqs", "ap-northeast-1", "123456789012").list_queues()
        runner._client("dynamodb", "ap-northeast-1", "123456789012").list_tables()
        deployed.client("dynamodb").list_tables()
        parent = _pool_ports()
        assert len(parent) >= 2
        assert runner.run_until_idle(timeout_s=120).idle
    assert len(probe.seen) >= 4
    assert all(not (ports & parent) for ports in probe.seen), (parent, probe.seen)

"""``LocalRunner(workers=N)``: the SQS mappings' batches run in N forked worker processes, as
Lambda runs concurrent containers (decision 0057).

The parent (the runner) stays the Lambda service: it checks the operator holds, receives a
batch, hands it to an idle worker, and when the result comes back does what the sequential
runner does after an invocation (stats, the batch's deletes and retries). At most one batch of a
mapping is in flight, so each queue keeps its order; different mappings' batches overlap each
other and the embedded AWS's work.

A worker is a ``fork`` of the parent (Linux): it inherits the loaded code images, their module
spaces and whatever the parent installed (the flow-log recorder's hooks, a benchmark's request
counter). After the fork it forgets every AWS client and connection of the parent (a socket
shared by two processes would mix their requests), captures the function's output instead of
writing it, and sends back with each result: the response, the error (pickled if it survives a
round trip, else its type name, message and traceback text), the output text, the flow-log
lines written, and each registered collector's data (``WorkerCollector``).
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .runner import LocalRunner

log = logging.getLogger(__name__)

_STOP_GRACE_S = 5.0


class WorkerCollector(Protocol):
    """Something the parent records that the workers must record too (``LocalRunner.add_collector``):
    ``bench/run.py``'s request counter. The parent sends ``worker_state()`` with each batch, the
    worker applies it (``worker_apply``) before the invocation and afterwards sends
    ``worker_take()`` (what it recorded since the last take, then forgotten), which the parent
    adds with ``worker_merge``. A new worker takes once and drops it (what it inherited)."""

    def worker_state(self) -> Any: ...

    def worker_apply(self, state: Any) -> None: ...

    def worker_take(self) -> Any: ...

    def worker_merge(self, data: Any) -> None: ...


class WorkerInvocationError(RuntimeError):
    """A function's error in a worker that could not be sent as itself (it does not pickle)."""

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.worker_traceback = traceback_text


class WorkerDied(RuntimeError):  # noqa: N818 - what happened, as Lambda reports a crashed runtime
    """The worker process ended while running a batch (as a Lambda runtime that crashed)."""


def fork_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


@dataclass
class _Worker:
    process: Any
    conn: multiprocessing.connection.Connection
    key: str | None = None  # the mapping whose batch it runs
    last_function: str | None = None


class WorkerPool:
    """Up to ``size`` forked workers of ``runner``, started when first needed."""

    def __init__(self, runner: LocalRunner, size: int) -> None:
        self.runner = runner
        self.size = size
        self.workers: list[_Worker] = []
        self._context = multiprocessing.get_context("fork")

    @property
    def busy(self) -> list[_Worker]:
        return [w for w in self.workers if w.key is not None]

    def idle(self, function: str) -> _Worker | None:
        """An idle worker, the one that last ran ``function`` if any (its module space is warm);
        a new one while fewer than ``size`` run."""
        idle = [w for w in self.workers if w.key is None]
        for worker in idle:
            if worker.last_function == function:
                return worker
        if len(self.workers) < self.size:
            return self._start()
        return idle[0] if idle else None

    def has_idle(self) -> bool:
        return len(self.workers) < self.size or any(w.key is None for w in self.workers)

    def _start(self) -> _Worker:
        from .code_image import INVOCATION_LOCK

        parent_end, child_end = self._context.Pipe(duplex=True)
        others = [w.conn for w in self.workers]
        process = self._context.Process(target=_worker_main, args=(self.runner, child_end, others),
                                        name=f"jukinet-local-worker-{len(self.workers) + 1}", daemon=True)
        # No other thread of this process may be inside an invocation (sys.modules, os.environ
        # swapped) at the fork; the child re-initialises the lock.
        with INVOCATION_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork of a multi-threaded process
            process.start()
        child_end.close()
        worker = _Worker(process, parent_end)
        self.workers.append(worker)
        return worker

    def submit(self, worker: _Worker, key: str, function: str, event: Any, states: list[Any]) -> None:
        worker.key = key
        worker.last_function = function
        worker.conn.send((function, event, states))

    def results(self, timeout: float | None) -> list[tuple[str, dict[str, Any]]]:
        """The batches finished within ``timeout`` (None: wait for one): (key, payload). A worker
        that died gives a payload with a ``WorkerDied`` error and is replaced when next needed."""
        busy = {w.conn: w for w in self.busy}
        if not busy:
            return []
        done = []
        for conn in multiprocessing.connection.wait(list(busy), timeout):
            worker = busy[conn]  # type: ignore[index]
            key, worker.key = worker.key, None
            try:
                payload = conn.recv()
            except (EOFError, OSError):
                worker.process.join(1)
                payload = {"error": WorkerDied(f"worker {worker.process.name} (pid {worker.process.pid}) ended "
                                               f"with exit code {worker.process.exitcode} while running a batch"),
                           "response": None, "duration": 0.0, "output": "", "flow": ([], []), "collected": []}
                self._forget(worker)
            assert key is not None
            done.append((key, payload))
        return done

    def _forget(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(1)
        self.workers.remove(worker)

    def stop(self, *, graceful: bool = True) -> None:
        """End every worker: asked to stop (``graceful``), then terminated, then killed."""
        workers, self.workers = self.workers, []
        if graceful:
            for worker in workers:
                if worker.key is None:
                    with contextlib.suppress(OSError, ValueError):
                        worker.conn.send(None)
            deadline = time.monotonic() + _STOP_GRACE_S
            for worker in workers:
                if worker.key is None:
                    worker.process.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(_STOP_GRACE_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(_STOP_GRACE_S)
            with contextlib.suppress(OSError):
                worker.conn.close()
            with contextlib.suppress(ValueError):
                worker.process.close()


# -- in the worker -------------------------------------------------------------------------------


def _worker_main(runner: LocalRunner, conn: multiprocessing.connection.Connection,
                 others: list[multiprocessing.connection.Connection]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's to handle
    for other in others:  # the parent's ends of its other workers' pipes
        with contextlib.suppress(OSError):
            other.close()
    capture = _become_worker(runner)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        function, event, states = task
        conn.send(_run(runner, capture, function, event, states))


def _become_worker(runner: LocalRunner) -> io.StringIO | None:
    """Make the fork a container of its own: no AWS client or connection of the parent, the
    function's output captured, the collectors' inherited records dropped."""
    from jukinet.adapters import aws

    from .code_image import INVOCATION_LOCK

    INVOCATION_LOCK._at_fork_reinit()  # type: ignore[attr-defined]
    aws.reset_clients()
    runner._clients = {}
    runner.env.__dict__.pop("_clients", None)
    for image in runner._images.values():
        for space in image._spaces.values():
            module = space.get("jukinet.adapters.aws")
            if module is not None and hasattr(module, "reset_clients"):
                module.reset_clients()
    # Whatever else holds a client (a module-level cache of the deployed code, a sink, a
    # recorder's factory): its connection pools are emptied, so it opens its own connections.
    import urllib3

    for obj in gc.get_objects():
        if isinstance(obj, urllib3.PoolManager):
            with contextlib.suppress(Exception):
                obj.clear()
    capture = None
    if runner.log_stream is not None:
        capture = io.StringIO()
        _retarget_logging(runner.log_stream, capture)
        runner.log_stream = capture
    if runner.flow_logs is not None:
        del runner.flow_logs.records[:]
        del runner.flow_logs.queries[:]
    for collector in runner._collectors:
        collector.worker_take()
    return capture


def _retarget_logging(old: Any, new: Any) -> None:
    """Loggers configured during an invocation in the parent (Powertools' handler keeps the
    stream it was created with, and a logger of the same service is configured once) write to
    the parent's log stream: in the worker they write to the capture."""
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                        if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


def _run(runner: LocalRunner, capture: io.StringIO | None, function: str, event: Any,
         states: list[Any]) -> dict[str, Any]:
    for collector, state in zip(runner._collectors, states, strict=True):
        collector.worker_apply(state)
    fn = runner._function(function)
    try:
        response, error, duration = runner._execute(fn, event, capture)
    except BaseException as exc:  # noqa: BLE001 - the runner's own failure (the code image...): reported
        response, error, duration = None, exc, 0.0
    output = ""
    if capture is not None:
        output = capture.getvalue()
        capture.seek(0)
        capture.truncate()
    flow: tuple[list[str], list[str]] = ([], [])
    if runner.flow_logs is not None:
        flow = (list(runner.flow_logs.records), list(runner.flow_logs.queries))
        del runner.flow_logs.records[:]
        del runner.flow_logs.queries[:]
    return {"response": _picklable_response(response), "error": _portable_error(error), "duration": duration,
            "output": output, "flow": flow, "collected": [c.worker_take() for c in runner._collectors]}


def _picklable_response(response: Any) -> Any:
    try:
        pickle.dumps(response)
    except Exception:  # noqa: BLE001 - anything unpicklable goes back as its repr
        return repr(response)
    return response


def _portable_error(error: BaseException | None) -> dict[str, Any] | None:
    if error is None:
        return None
    text = "".join(traceback.format_exception(error))
    blob: bytes | None
    try:
        blob = pickle.dumps(error)
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - a class of the deployed code's module copy, a botocore modeled error...
        blob = None
    return {"type": f"{type(error).__module__}.{type(error).__qualname__}", "message": str(error),
            "traceback": text, "pickled": blob}


def error_from(portable: dict[str, Any] | BaseException | None) -> BaseException | None:
    """In the parent: the worker's error as itself if it unpickles, else a ``WorkerInvocationError``."""
    if portable is None or isinstance(portable, BaseException):
        return portable
    if portable.get("pickled") is not None:
        try:
            error = pickle.loads(portable["pickled"])
        except Exception:  # noqa: BLE001
            pass
        else:
            with contextlib.suppress(Exception):
                error.worker_traceback = portable["traceback"]
            return error
    return WorkerInvocationError(portable["type"], portable["message"], portable["traceback"])

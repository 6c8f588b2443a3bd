"""The local runner swaps ``os.environ`` for each invocation. A variable both sides have
(libfaketime's FAKETIME, read on every clock call from any thread) must never be absent
meanwhile, or a function or a concurrent thread reads the real clock."""

from __future__ import annotations

import os

import pytest

from jukinet_ops.local.runner import _HOST_VARIABLES, replace_environ


def test_a_variable_on_both_sides_is_never_deleted(monkeypatch):
    moved = os.environ.get("FAKETIME", "+0s")  # under scripts/test-any-date: keep the moved clock
    monkeypatch.setenv("FAKETIME", moved)
    monkeypatch.setenv("JUKINET_TEST_GONE", "1")
    deleted: list[str] = []
    real_unsetenv = os.unsetenv
    monkeypatch.setattr(os, "unsetenv", lambda name: (deleted.append(os.fsdecode(name)), real_unsetenv(name)))
    saved = dict(os.environ)
    # libfaketime's settings stay as they are (a moved run keeps its clock meanwhile).
    wanted = {k: v for k, v in saved.items() if k in ("FAKETIME_NO_CACHE", "DONT_FAKE_MONOTONIC",
                                                               "FAKETIME_FORCE_MONOTONIC_FIX", "LD_PRELOAD")}
    wanted |= {"FAKETIME": moved, "JUKINET_TEST_NEW": "2"}
    try:
        replace_environ(wanted)
        assert dict(os.environ) == wanted
        assert "FAKETIME" not in deleted and "JUKINET_TEST_GONE" in deleted
    finally:
        replace_environ(saved)
    assert dict(os.environ) == saved


@pytest.mark.parametrize("name", ["FAKETIME", "FAKETIME_NO_CACHE", "DONT_FAKE_MONOTONIC",
                                  "FAKETIME_FORCE_MONOTONIC_FIX", "LD_PRELOAD"])
def test_a_moved_clock_reaches_the_functions(name):
    assert name in _HOST_VARIABLES


def test_threads_waiting_for_the_gil_do_not_spin():
    """Under a moved clock (scripts/test-any-date) with libfaketime's default monotonic "fix",
    every timed wait for the GIL returned at once: waiting threads spun and threaded code ran
    2-4x slower. Measured in CPU time, not wall time, so a busy machine does not change it:
    the same work in two threads costs about what it costs in one."""
    import threading
    import time

    def work():
        total = 0
        for i in range(1_000_000):
            total += i

    started = time.process_time()
    work()
    work()
    alone = time.process_time() - started
    started = time.process_time()
    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    together = time.process_time() - started
    assert together < 2 * alone, f"two threads took {together:.2f} s of CPU for work one thread does in {alone:.2f} s"

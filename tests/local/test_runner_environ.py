"""The local runner swaps ``os.environ`` for each invocation, in Python only. The C environment
is read from any thread (libfaketime's FAKETIME on every clock call, glibc's TZ): a ``setenv``
meanwhile can free the array such a thread is walking, and a CI run died of it (stop 26)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from embedded_aws.runner import _HOST_VARIABLES, replace_environ

REPO = Path(__file__).resolve().parents[2]


def _c_getenv(name: str) -> str | None:
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    value = libc.getenv(name.encode())
    return None if value is None else value.decode()


def test_the_swap_changes_python_s_mapping_and_never_the_c_environment(monkeypatch):
    monkeypatch.setenv("JUKINET_TEST_GONE", "1")
    calls: list[str] = []
    real_putenv, real_unsetenv = os.putenv, os.unsetenv
    monkeypatch.setattr(os, "putenv", lambda name, value: (calls.append(f"putenv {os.fsdecode(name)}"),
                                                           real_putenv(name, value)))
    monkeypatch.setattr(os, "unsetenv", lambda name: (calls.append(f"unsetenv {os.fsdecode(name)}"),
                                                      real_unsetenv(name)))
    saved = dict(os.environ)
    wanted = {k: v for k, v in saved.items() if k in _HOST_VARIABLES} | {"JUKINET_TEST_NEW": "2"}
    try:
        replace_environ(wanted)
        assert dict(os.environ) == wanted
        assert os.getenv("JUKINET_TEST_NEW") == "2" and os.getenv("JUKINET_TEST_GONE") is None
        assert _c_getenv("JUKINET_TEST_NEW") is None and _c_getenv("JUKINET_TEST_GONE") == "1"
    finally:
        replace_environ(saved)
    assert dict(os.environ) == saved
    assert calls == []


def test_swapping_while_threads_read_the_c_environment_does_not_crash_the_process():
    """The attack is a race, so it is run for a while, in a subprocess (a crash kills only it).
    With the swap done by ``os.environ[...] = ...`` (setenv) this died of SIGSEGV within a
    second here."""
    script = textwrap.dedent("""
        import ctypes, os, sys, threading, time
        from embedded_aws.runner import replace_environ
        libc = ctypes.CDLL(None)
        libc.getenv.restype = ctypes.c_char_p
        stop = False
        def read():
            while not stop:
                libc.getenv(b"FAKETIME")
                libc.getenv(b"JUKINET_NOT_THERE")
        readers = [threading.Thread(target=read) for _ in range(2)]
        for reader in readers:
            reader.start()
        saved = dict(os.environ)
        deadline = time.monotonic() + 3
        rounds = 0
        while time.monotonic() < deadline:
            wanted = {k: v for k, v in saved.items() if k in ("PATH", "HOME")}
            wanted.update({f"JUKINET_{i}_{rounds % 7}": "x" * 40 for i in range(60)})
            replace_environ(wanted)
            replace_environ(saved)
            rounds += 1
        stop = True
        for reader in readers:
            reader.join()
        print("rounds", rounds)
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, f"rc {done.returncode}: {done.stderr[-2000:]}"
    assert int(done.stdout.split()[-1]) > 100


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

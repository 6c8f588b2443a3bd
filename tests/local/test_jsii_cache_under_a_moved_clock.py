"""scripts/test-any-date fills jsii's package cache on the real clock before it moves the clock
(scripts/warm-jsii-cache says why): on an empty cache, jsii kernels that start together under a
moved clock break each other's lock files as stale and fail. The attack here is a fresh machine:
an empty cache (its own directory, so the user's cache is not touched) and three kernels at once
under the whole suite's moved clock (2027-01-01 00:59 JST), started through scripts/test-any-date
as CI starts them."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Started by scripts/test-any-date: three processes that each import the CDK (a jsii kernel
# each) at the same moment, as two xdist workers and a `cdk synth` do.
INNER = textwrap.dedent('''
    import subprocess
    import sys


    def test_three_kernels_start_together_on_the_moved_clock():
        started = [subprocess.Popen([sys.executable, "-c", "import aws_cdk, cdk_nag"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for _ in range(3)]
        outcomes = [(p.wait(timeout=300), p.stdout.read()) for p in started]
        failed = [out[-600:] for code, out in outcomes if code != 0]
        assert not failed, "\\n---\\n".join(failed)
''')


def test_kernels_starting_together_under_a_moved_clock_find_the_cache_whole(tmp_path):
    (tmp_path / "test_inner.py").write_text(INNER)
    cache = tmp_path / "jsii-package-cache"
    env = {k: v for k, v in os.environ.items()
           # this run's own moved clock (the whole suite runs under one) must not leak in:
           # test-any-date computes its offset from the real clock
           if k not in ("LD_PRELOAD", "FAKETIME", "JUKINET_CLOCK_MOVED") and not k.startswith("PYTEST_")}
    env["JSII_RUNTIME_PACKAGE_CACHE_ROOT"] = str(cache)
    env["PATH"] = f"{REPO / 'node_modules' / '.bin'}{os.pathsep}{env.get('PATH', '')}"
    run = subprocess.run([str(REPO / "scripts" / "test-any-date"), "--at", "2027-01-01 00:59", "--",
                          "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--rootdir", str(tmp_path),
                          str(tmp_path / "test_inner.py")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout
    assert any(cache.rglob(".jsii")), "the kernels did not use the cache under test"

"""The Node the repository installs for jsii and the CDK CLI (package.json) is one they still
support on the day: otherwise every synth prints a boxed end-of-life banner (jsii) to the user.

jsii 1.142 warns from a Node release's end of life (Node 22: 2027-04-30) and calls it
unsupported six months later; Node 24 is supported until 2028-04-30. The test runs on whatever
clock the run has: scripts/test-any-date moves it to 2027-01-01 and to 2028-02-29, where Node 22
failed this test. A later instant past Node 24's end of life fails it again: then upgrade the
`node` dev dependency (and jsii with aws-cdk-lib if their table has moved on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NODE_BIN = REPO / "node_modules" / ".bin"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{NODE_BIN}{os.pathsep}{env.get('PATH', '')}"
    # what would hide the banner from this test (a user has none of these set)
    for name in list(env):
        if name.startswith("JSII_SILENCE_WARNING"):
            del env[name]
    return env


def test_the_installed_node_is_the_one_package_json_pins():
    pinned = json.loads((REPO / "package.json").read_text())["devDependencies"]["node"]
    version = subprocess.run([str(NODE_BIN / "node"), "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert version == f"v{pinned}"


def test_a_jsii_kernel_and_the_cdk_cli_start_without_an_end_of_life_banner():
    env = _env()
    kernel = subprocess.run([sys.executable, "-c", "import constructs"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert kernel.returncode == 0, kernel.stderr[-2000:]
    cli = subprocess.run([str(NODE_BIN / "cdk"), "--version"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=False)
    assert cli.returncode == 0, cli.stderr[-2000:]
    for name, run in (("jsii (import constructs)", kernel), ("cdk --version", cli)):
        said = (run.stdout + run.stderr).lower()
        assert "end-of-life" not in said and "no longer be supported" not in said, \
            f"{name} printed a Node support warning:\n{run.stdout}{run.stderr}"

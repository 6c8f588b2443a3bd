"""Synthesize the CDK app (``app.py``) into a cloud assembly, offline, as ``cdk synth`` would.

The CDK CLI passes ``cdk.json``'s context to the app through ``CDK_CONTEXT_JSON`` and the
output directory through ``CDK_OUTDIR``; doing the same here lets tests and the demo synth
without the CLI. ``node_modules/.bin`` goes first on PATH so jsii runs on the Node 22 the
repo installs (Node 20 prints an end-of-life banner on every synth).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def synth_environment(deployment: str | None, out_dir: Path, today: dt.date | None = None) -> dict[str, str]:
    context = json.loads((REPO_ROOT / "cdk.json").read_text()).get("context", {})
    if deployment:
        context["deployment"] = deployment
    if today:
        context["today"] = today.isoformat()
    env = dict(os.environ)
    env["CDK_CONTEXT_JSON"] = json.dumps(context)
    env["CDK_OUTDIR"] = str(out_dir)
    node_bin = REPO_ROOT / "node_modules" / ".bin"
    if node_bin.is_dir():
        env["PATH"] = f"{node_bin}{os.pathsep}{env.get('PATH', '')}"
    # No credentials and no region lookups: synth must never call AWS.
    for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(var, None)
    return env


def synth(deployment: str | None = None, out: str | os.PathLike = "cdk.out", *, today: dt.date | None = None) -> Path:
    """Synthesize ``deployment`` into ``out``; ``today`` (JST) is the day of synthesis
    (default: today in Japan, read by ``app.py``)."""
    out_dir = Path(out).resolve()
    result = subprocess.run([sys.executable, str(REPO_ROOT / "app.py")], cwd=REPO_ROOT,
                            env=synth_environment(deployment, out_dir, today), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"cdk synth failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return out_dir

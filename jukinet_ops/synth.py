"""Synthesize the CDK app (``app.py``) into a cloud assembly, offline, as ``cdk synth`` would.

The CDK CLI passes ``cdk.json``'s context to the app through ``CDK_CONTEXT_JSON`` and the
output directory through ``CDK_OUTDIR``; doing the same here lets tests and the demo synth
without the CLI. ``node_modules/.bin`` goes first on PATH so jsii runs on the Node 24 the
repo installs (on a Node jsii no longer supports, every synth prints an end-of-life banner:
decision 0060).
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
    (default: today in Japan, read by ``app.py``). Whatever synthesizes into ``out`` makes a
    reused assembly's stamp there void (``synth_cached``: ``jukinet up`` synthesizes into the
    demo's ``.jukinet/cdk.out``)."""
    out_dir = Path(out).resolve()
    (out_dir / SYNTH_KEY_FILE).unlink(missing_ok=True)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "app.py")], cwd=REPO_ROOT,
                            env=synth_environment(deployment, out_dir, today), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"cdk synth failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return out_dir


# -- the demo's synth cache (decision 0054) ------------------------------------------------------

SYNTH_KEY_FILE = ".jukinet-synth-key"
# Everything in the checkout that synthesis reads: the app, its context, the CDK code, the
# functions' code (bundled into the assets), the configuration data, the pinned dependencies
# (pyproject.toml: the bundle's requirements), the node packages jsii runs on, and this module
# (how the app is run).
SYNTH_INPUTS = ("app.py", "cdk.json", "pyproject.toml", "package.json", "package-lock.json", "infra", "lambdas",
                "data", "jukinet_ops/synth.py")
# The caller's environment variables that reach the app (CDK's and jsii's, and ours).
_ENV_PREFIXES = ("CDK_", "JSII_", "JUKINET_", "NODE_")


def synth_inputs_key(deployment: str | None, today: dt.date | None, *, root: Path = REPO_ROOT) -> str:
    """A digest of everything a synthesis of ``deployment`` on ``today`` depends on: the files
    under ``SYNTH_INPUTS`` (path and bytes; ``__pycache__`` left out), the configuration data
    the app reads when it is not the checkout's, every installed Python distribution's name and
    version (aws-cdk-lib, constructs, cdk-nag, jsii, and the functions' pinned dependencies
    among them), the Python and Node versions synthesis runs on, and the caller's ``CDK_*``,
    ``JSII_*``, ``JUKINET_*`` and ``NODE_*`` environment variables."""
    import hashlib
    import importlib.metadata

    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("deployment", (deployment or "").encode())
    add("today", (today.isoformat() if today else "").encode())
    roots = [(name, root / name) for name in SYNTH_INPUTS]
    if root == REPO_ROOT:
        from infra.config import DATA_DIR

        if DATA_DIR.resolve() != (root / "data").resolve():  # installed: the data the app reads
            roots.append(("data (installed)", DATA_DIR))
    for name, path in roots:
        if path.is_file():
            add(f"file {name}", path.read_bytes())
        elif path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if "__pycache__" in file.parts or file.suffix in {".pyc", ".pyo"}:
                    continue
                add(f"file {name}/{file.relative_to(path).as_posix()}", file.read_bytes())
        else:
            add(f"absent {name}", b"")
    versions = sorted({f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                       if d.metadata["Name"]})
    add("python distributions", "\n".join(versions).encode())
    add("python", sys.version.encode())
    add("node", _node_version(root).encode())
    add("environment", "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                                 if k.startswith(_ENV_PREFIXES)).encode())
    return digest.hexdigest()


def _node_version(root: Path) -> str:
    """``node --version`` as synthesis finds it (``node_modules/.bin`` first on PATH)."""
    node_bin = root / "node_modules" / ".bin"
    path = f"{node_bin}{os.pathsep}{os.environ.get('PATH', '')}" if node_bin.is_dir() else os.environ.get("PATH", "")
    try:
        done = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "PATH": path})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: {exc}"
    return done.stdout.strip() or f"exit {done.returncode}"


def synth_cached(deployment: str | None = None, out: str | os.PathLike = "cdk.out", *,
                 today: dt.date | None = None, root: Path = REPO_ROOT) -> tuple[Path, bool]:
    """``synth``, unless ``out`` already holds the assembly of the same inputs: (the assembly,
    whether it was reused). The inputs' digest (``synth_inputs_key``) is written into the
    assembly after a successful synthesis and removed before one starts, so an interrupted or
    failed synthesis is never reused; the digest is taken before synthesis starts, so a file
    changed meanwhile makes the next run synthesize again. ``root``: the checkout (tests)."""
    out_dir = Path(out).resolve()
    key = synth_inputs_key(deployment, today, root=root)
    stamp = out_dir / SYNTH_KEY_FILE
    try:
        if (out_dir / "manifest.json").is_file() and stamp.read_text(encoding="utf-8").strip() == key:
            return out_dir, True
    except OSError:
        pass
    stamp.unlink(missing_ok=True)  # synth() does too; here it does not depend on that
    synth(deployment, out_dir, today=today)
    stamp.write_text(key + "\n", encoding="utf-8")
    return out_dir, False

"""The one Lambda code asset: ``lambdas/jukinet`` plus its runtime dependencies, built without Docker.

Dependencies are installed with pip for Lambda's platform (``manylinux2014_aarch64``,
CPython of the functions' runtime, binary wheels only), pinned to the versions installed
in this environment — the versions the tests ran against. boto3/botocore are left out:
the Lambda runtime provides them.

The build is cached under ``build/lambda/`` in two layers, each keyed by a hash:

* ``deps-<hash>``: the pip install, keyed by the pinned requirements, Python version and
  platform. Only this step needs the network (PyPI); it runs once per dependency change.
* ``bundle-<hash>``: dependencies + code, keyed by the deps key and every source file.
  A code change re-copies (about a second), never re-downloads.

Synth with a warm cache makes no network call at all. ``JUKINET_OFFLINE=1`` turns a cold
dependency cache into a clear error instead of a pip download. All functions share the
one asset (same hash), so ``cdk.out`` and the bootstrap bucket hold it once — except
functions that need generated data beside the code (the provision functions'
``agreements.json``): ``lambda_code(extra_files=...)`` gives them the bundle plus those files
as a third, content-addressed layer ``extra-<hash>`` (hard links into the bundle where the
file system allows, so it costs the extra files only).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path, PurePosixPath

from aws_cdk import AssetHashType
from aws_cdk import aws_lambda as lambda_

from .config import REPO_ROOT

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
PYTHON_VERSION = "3.14"  # must match RUNTIME
PLATFORM = "manylinux2014_aarch64"  # must match ARCHITECTURE

SOURCE_DIR = REPO_ROOT / "lambdas"
PACKAGE = "jukinet"
CACHE_DIR = REPO_ROOT / "build" / "lambda"
PROVIDED_BY_RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
_KEEP_BUNDLES = 3
_KEEP_EXTRAS = 6


class BundlingError(RuntimeError):
    """The Lambda bundle could not be built (typically: no cached dependencies and no network)."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> tuple[str, ...]:
    """``[project].dependencies`` minus what the runtime provides, pinned to installed versions."""
    with pyproject.open("rb") as fh:
        declared = tomllib.load(fh)["project"]["dependencies"]
    pinned = []
    for spec in declared:
        name = _canonical(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0])
        if name in PROVIDED_BY_RUNTIME:
            continue
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            raise BundlingError(f"{name} is a runtime dependency but is not installed here; "
                                "run `pip install -e .[dev]` first") from None
    return tuple(sorted(pinned))


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def _source_files() -> list[Path]:
    root = SOURCE_DIR / PACKAGE
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"})


def deps_key(requirements: tuple[str, ...]) -> str:
    return _digest([PYTHON_VERSION.encode(), PLATFORM.encode(), *(r.encode() for r in requirements)])


def bundle_key(requirements: tuple[str, ...]) -> str:
    parts = [deps_key(requirements).encode()]
    for path in _source_files():
        parts += [path.relative_to(SOURCE_DIR).as_posix().encode(), path.read_bytes()]
    return _digest(parts)


def _install_deps(requirements: tuple[str, ...], target: Path) -> None:
    if os.environ.get("JUKINET_OFFLINE") == "1":
        raise BundlingError(f"no cached Lambda dependencies at {target} and JUKINET_OFFLINE=1; "
                            "run one synth with network access to fill the cache")
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--platform", PLATFORM, "--implementation", "cp", "--python-version", PYTHON_VERSION,
        "--only-binary=:all:", "--target", str(tmp), *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundlingError(f"pip could not install the Lambda dependencies for {PLATFORM}/cp{PYTHON_VERSION}:\n"
                            f"{result.stderr.strip()[-2000:]}")
    shutil.rmtree(tmp / "bin", ignore_errors=True)  # console scripts are useless in Lambda
    try:
        tmp.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


def _prune(keep: Path) -> None:
    bundles = sorted(CACHE_DIR.glob("bundle-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in bundles[_KEEP_BUNDLES:]:
        if old != keep and ".tmp" not in old.name:  # another process's bundle-<key>.tmp<pid>, being built
            shutil.rmtree(old, ignore_errors=True)


@lru_cache(maxsize=1)
def build_bundle() -> tuple[Path, str]:
    """The bundle directory and its hash, built (or found in the cache) once per process."""
    requirements = runtime_requirements()
    key = bundle_key(requirements)
    bundle = CACHE_DIR / f"bundle-{key}"
    if bundle.is_dir():
        return bundle, key
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    deps = CACHE_DIR / f"deps-{deps_key(requirements)}"
    if not deps.is_dir():
        _install_deps(requirements, deps)
    tmp = bundle.with_name(bundle.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(deps, tmp)
    shutil.copytree(SOURCE_DIR / PACKAGE, tmp / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    try:
        tmp.rename(bundle)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(bundle)
    return bundle, key


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _checked_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(p in ("", ".", "..") for p in path.parts) or "\\" in name:
        raise BundlingError(f"extra file {name!r} must be a relative path inside the bundle")
    return path.as_posix()


def build_bundle_with(extra_files: Mapping[str, bytes]) -> tuple[Path, str]:
    """The shared bundle plus ``extra_files`` (relative path → bytes), in a directory keyed by
    the bundle's key and the files' names and contents. Extra files may not replace code."""
    bundle, key = build_bundle()
    files = {_checked_name(name): data for name, data in extra_files.items()}
    parts = [key.encode()]
    for name in sorted(files):
        parts += [name.encode(), files[name]]
    extra_key = _digest(parts)
    target = CACHE_DIR / f"extra-{extra_key}"
    if target.is_dir():
        return target, extra_key
    clashes = sorted(name for name in files if (bundle / name).exists())
    if clashes:
        raise BundlingError(f"extra files {clashes} would replace files of the Lambda bundle")
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(bundle, tmp, copy_function=_link_or_copy)
    for name, data in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    extras = sorted(CACHE_DIR.glob("extra-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in extras[_KEEP_EXTRAS:]:
        if old != target and ".tmp" not in old.name:
            shutil.rmtree(old, ignore_errors=True)
    return target, extra_key


def lambda_code(extra_files: Mapping[str, bytes] | None = None) -> lambda_.Code:
    """The shared code asset of every function (one hash, staged once); with ``extra_files``,
    an asset of its own: the same bundle plus those files."""
    bundle, key = build_bundle_with(extra_files) if extra_files else build_bundle()
    return lambda_.Code.from_asset(str(bundle), asset_hash=key, asset_hash_type=AssetHashType.CUSTOM)

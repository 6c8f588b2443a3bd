"""Importing a deployed function package in this process, isolated from the host's copy.

The deployed zip is what runs, not the host's installed ``jukinet``: the package is
extracted to a cache directory and its own code is imported from there, under its own
entry in ``sys.modules`` that exists only while one of its functions is being invoked.
Why not just check that the deployed code equals the installed one and use that? Because
then local mode would not test the bundling (a module missing from the zip, a stale copy,
a wrong handler path would all pass locally and fail in Lambda), and an image deployed
from another checkout could not run at all.

Which top-level names come from the zip ("owned"):

* the handler's top-level package, always;
* every other top-level module or package that no ``*.dist-info`` in the zip claims
  (the project's own code copied into the bundle);
* a bundled third-party distribution only if the host does not have it installed.

Bundled third-party distributions the host has are taken from the host: Lambda bundles
are built for arm64 (``pydantic_core``, ``cryptography`` ship native code), which the host
cannot load. Version differences between bundle and host are reported.

Each function gets its own module space (its own copy of the deployed modules, imported
on its first invocation, ~30 ms for ``jukinet``), like its own Lambda container.

Invocations are serialised (one process-wide lock): ``sys.modules``, ``sys.meta_path`` and
``os.environ`` are process globals.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

INVOCATION_LOCK = threading.RLock()

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NATIVE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\..*(so|pyd)$")
_MARKER = ".local-mode-image.json"


def _root(module_name: str) -> str:
    return module_name.partition(".")[0]


@dataclass(frozen=True)
class BundledDistribution:
    name: str
    version: str
    top_level: tuple[str, ...]
    host_version: str | None  # None: not installed on the host


@dataclass
class PackageLayout:
    """What a deployment package contains, from its file list alone."""

    modules: set[str] = field(default_factory=set)  # importable top-level names
    distributions: list[BundledDistribution] = field(default_factory=list)
    native: set[str] = field(default_factory=set)  # top-level names containing compiled extensions

    @property
    def claimed(self) -> dict[str, BundledDistribution]:
        return {name: d for d in self.distributions for name in d.top_level}


def read_layout(archive: zipfile.ZipFile) -> PackageLayout:
    layout = PackageLayout()
    names = archive.namelist()
    dist_dirs: dict[str, list[str]] = {}
    for name in names:
        first, _, rest = name.partition("/")
        if first.endswith((".dist-info", ".egg-info")):
            dist_dirs.setdefault(first, []).append(name)
            continue
        if not rest:  # a top-level file
            if first.endswith(".py") and _IDENTIFIER.match(first[:-3]):
                layout.modules.add(first[:-3])
            elif (m := _NATIVE.match(first)) is not None:
                layout.modules.add(m.group(1))
                layout.native.add(m.group(1))
        elif _IDENTIFIER.match(first) and rest.endswith((".py", ".so", ".pyd")):
            layout.modules.add(first)
            if rest.endswith((".so", ".pyd")):
                layout.native.add(first)
    for directory, files in dist_dirs.items():
        stem = directory.rsplit(".", 1)[0]
        dist_name, _, version = stem.partition("-")
        top_level: set[str] = set()
        if f"{directory}/top_level.txt" in files:
            top_level = {t.strip() for t in archive.read(f"{directory}/top_level.txt").decode().splitlines()
                         if t.strip()}
        elif f"{directory}/RECORD" in files:
            for line in archive.read(f"{directory}/RECORD").decode().splitlines():
                path = line.split(",", 1)[0]
                first = path.partition("/")[0]
                if first.endswith(".py"):
                    first = first[:-3]
                elif (m := _NATIVE.match(first)) is not None:
                    first = m.group(1)
                if _IDENTIFIER.match(first) and not first.endswith(("dist-info", "egg-info")):
                    top_level.add(first)
        try:
            host_version: str | None = importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            host_version = None
        layout.distributions.append(BundledDistribution(dist_name, version, tuple(sorted(top_level)), host_version))
    return layout


class _ImageFinder(importlib.abc.MetaPathFinder):
    """Resolves the image's owned top-level names (and their submodules) from its directory."""

    def __init__(self, image: CodeImage) -> None:
        self.image = image

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if _root(fullname) not in self.image.owned:
            return None
        if "." in fullname:
            return importlib.machinery.PathFinder.find_spec(fullname, path)
        return importlib.machinery.PathFinder.find_spec(fullname, [str(self.image.task_root)])


@dataclass
class CodeImage:
    """One deployed code package (by CodeSha256), extracted and importable in isolation."""

    code_sha256: str
    task_root: Path
    owned: frozenset[str]
    layout: PackageLayout
    warnings: list[str] = field(default_factory=list)
    _spaces: dict[str, dict[str, ModuleType]] = field(default_factory=dict)

    @classmethod
    def extract(cls, zip_path: Path, code_sha256: str, handler_roots: set[str], cache_dir: Path) -> CodeImage:
        with zipfile.ZipFile(zip_path) as archive:
            layout = read_layout(archive)
            claimed = layout.claimed
            owned = set(handler_roots)
            warnings = []
            for name in layout.modules:
                if name in owned:
                    continue
                dist = claimed.get(name)
                if dist is None:
                    owned.add(name)  # the project's own code, copied into the bundle
                elif not _host_has(name):
                    owned.add(name)
                    if name in layout.native:
                        warnings.append(f"bundled {dist.name} is not installed on the host; using the bundled "
                                        f"copy, whose compiled extensions may not load on this machine")
            for dist in layout.distributions:
                if set(dist.top_level) & owned - set(handler_roots):
                    continue
                if dist.host_version is not None and dist.host_version != dist.version:
                    warnings.append(f"bundle has {dist.name} {dist.version}, the host runs {dist.host_version}")
            # Data files at the root of the package (e.g. the provision functions' agreements.json):
            # the function reads them from $LAMBDA_TASK_ROOT, so they belong to the task root too.
            owned |= {m.filename for m in archive.infolist()
                      if "/" not in m.filename and not m.filename.endswith((".py", ".pyc", ".so", ".pth"))}
            missing = sorted(r for r in handler_roots if r not in layout.modules)
            if missing:
                warnings.append(f"handler package(s) {', '.join(missing)} not in the deployed code")
            safe = re.sub(r"[^A-Za-z0-9]", "_", code_sha256)
            task_root = cache_dir / safe
            if not _is_extracted(task_root, owned):
                cache_dir.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".{safe}-", dir=cache_dir))
                members = [m for m in archive.infolist()
                           if _member_root(m.filename) in owned and not m.filename.endswith("/")]
                for member in members:
                    archive.extract(member, tmp)
                (tmp / _MARKER).write_text(json.dumps({"code_sha256": code_sha256, "owned": sorted(owned)}))
                if task_root.exists():
                    shutil.rmtree(task_root)
                os.replace(tmp, task_root)
        return cls(code_sha256=code_sha256, task_root=task_root, owned=frozenset(owned), layout=layout,
                   warnings=warnings)

    @contextlib.contextmanager
    def active(self, space: str = "") -> Iterator[None]:
        """Within this block, importing an owned name yields the deployed code, as loaded in
        module space ``space``. Each space keeps its own module objects between activations
        (a warm container); the runner gives each function its own space, so module-level
        state read from the environment at import (Powertools' service name, say) is per
        function, as in Lambda."""
        with INVOCATION_LOCK:
            stashed = {n: m for n, m in sys.modules.items() if _root(n) in self.owned}
            for name in stashed:
                del sys.modules[name]
            sys.modules.update(self._spaces.get(space, {}))
            finder = _ImageFinder(self)
            sys.meta_path.insert(0, finder)
            try:
                yield
            finally:
                sys.meta_path.remove(finder)
                modules = {n: m for n, m in sys.modules.items() if _root(n) in self.owned}
                self._spaces[space] = modules
                for name in modules:
                    del sys.modules[name]
                sys.modules.update(stashed)

    def load_handler(self, handler: str) -> Any:
        """The callable named by a Lambda ``Handler`` setting (``pkg/mod.fn`` or ``pkg.mod.fn``).
        Call inside ``active()``."""
        module_name, _, function = handler.rpartition(".")
        if not module_name:
            raise ImportError(f"malformed handler {handler!r}")
        module = importlib.import_module(module_name.replace("/", "."))
        origin = getattr(module, "__file__", None) or ""
        if _root(module.__name__) in self.owned and not Path(origin).resolve().is_relative_to(self.task_root.resolve()):
            raise ImportError(f"{module_name} did not load from the deployed code ({origin})")
        return getattr(module, function)


def handler_root(handler: str) -> str:
    return _root(handler.rpartition(".")[0].replace("/", "."))


def _host_has(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _member_root(filename: str) -> str:
    first = filename.partition("/")[0]
    if first.endswith(".py"):
        return first[:-3]
    m = _NATIVE.match(first)
    return m.group(1) if m else first


def _is_extracted(task_root: Path, owned: set[str]) -> bool:
    marker = task_root / _MARKER
    if not marker.is_file():
        return False
    try:
        return set(json.loads(marker.read_text())["owned"]) >= owned
    except (ValueError, KeyError):
        return False

"""The Lambda bundle: built without Docker, cached, and offline once cached."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infra import bundling


def test_runtime_requirements_leave_out_what_lambda_provides_and_pin_tested_versions() -> None:
    requirements = bundling.runtime_requirements()
    names = {r.split("==")[0] for r in requirements}
    assert "boto3" not in names and "botocore" not in names
    assert {"aws-lambda-powertools", "pydantic", "cryptography", "jaconv"} <= names
    assert all("==" in r for r in requirements)


def test_bundle_key_changes_with_the_code_but_not_the_dependency_key(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "lambdas"
    shutil.copytree(bundling.SOURCE_DIR / bundling.PACKAGE, src / bundling.PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(bundling, "SOURCE_DIR", src)
    reqs = bundling.runtime_requirements()
    before = bundling.bundle_key(reqs)
    (src / bundling.PACKAGE / "__init__.py").write_text("# changed\n", encoding="utf-8")
    assert bundling.bundle_key(reqs) != before
    assert bundling.deps_key(reqs) == bundling.deps_key(reqs)


def test_a_warm_dependency_cache_builds_the_bundle_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundling, "CACHE_DIR", tmp_path / "cache")
    reqs = bundling.runtime_requirements()
    deps = tmp_path / "cache" / f"deps-{bundling.deps_key(reqs)}"
    (deps / "pydantic").mkdir(parents=True)

    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip must not run when the dependencies are cached")

    monkeypatch.setattr(subprocess, "run", no_pip)
    bundling.build_bundle.cache_clear()
    try:
        bundle, key = bundling.build_bundle()
    finally:
        bundling.build_bundle.cache_clear()
    assert bundle.name == f"bundle-{key}"
    assert (bundle / "pydantic").is_dir()
    assert (bundle / "jukinet" / "handlers" / "municipality_cs.py").is_file()
    assert not list(bundle.rglob("__pycache__"))


def test_offline_with_a_cold_cache_fails_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundling, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setenv("JUKINET_OFFLINE", "1")
    bundling.build_bundle.cache_clear()
    try:
        with pytest.raises(bundling.BundlingError, match="JUKINET_OFFLINE=1"):
            bundling.build_bundle()
    finally:
        bundling.build_bundle.cache_clear()


def test_runtime_and_bundle_target_the_same_python_and_architecture() -> None:
    assert bundling.RUNTIME.name == f"python{bundling.PYTHON_VERSION}"
    assert bundling.ARCHITECTURE.name == "arm64" and bundling.PLATFORM.endswith("aarch64")


def test_extra_files_make_a_content_addressed_copy_of_the_bundle(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "bundle-k"
    (bundle / "jukinet").mkdir(parents=True)
    (bundle / "jukinet" / "__init__.py").write_text("", encoding="utf-8")
    monkeypatch.setattr(bundling, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(bundling, "build_bundle", lambda: (bundle, "k"))
    first, key = bundling.build_bundle_with({"agreements.json": b"{}"})
    assert first.name == f"extra-{key}" and (first / "agreements.json").read_bytes() == b"{}"
    assert (first / "jukinet" / "__init__.py").is_file() and not (bundle / "agreements.json").exists()
    assert bundling.build_bundle_with({"agreements.json": b"{}"}) == (first, key)  # cached
    changed, other = bundling.build_bundle_with({"agreements.json": b"{ }"})
    assert other != key and (changed / "agreements.json").read_bytes() == b"{ }"
    with pytest.raises(bundling.BundlingError, match="would replace files of the Lambda bundle"):
        bundling.build_bundle_with({"jukinet/__init__.py": b""})
    with pytest.raises(bundling.BundlingError, match="must be a relative path"):
        bundling.build_bundle_with({"../escape.json": b""})


def test_pruning_old_bundles_leaves_another_process_s_bundle_being_built(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process copying a bundle into ``bundle-<key>.tmp<pid>`` (a synth of another
    checkout state, started earlier) must find its directory there when it renames it: pruning
    removes only finished bundles beyond the newest three."""
    import os

    monkeypatch.setattr(bundling, "CACHE_DIR", tmp_path)
    building = tmp_path / "bundle-other.tmp4242"
    finished = [tmp_path / f"bundle-{n}" for n in ("a", "b", "c", "d", "e")]
    for age, path in enumerate([*reversed(finished), building]):  # the one being built is the oldest
        path.mkdir()
        os.utime(path, (1_000_000 - age * 100, 1_000_000 - age * 100))
    keep = finished[-1]
    bundling._prune(keep)
    assert building.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle-c", "bundle-d", "bundle-e", "bundle-other.tmp4242"]

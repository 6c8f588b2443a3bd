"""The deployed package runs, not the host's copy; bundled native dependencies come from the host."""

from __future__ import annotations

import importlib.metadata
import io
import sys
import zipfile
from pathlib import Path

import pytest

import jukinet
from embedded_aws.assembly import zip_directory
from embedded_aws.code_image import CodeImage, handler_root


def _package(tmp_path: Path) -> Path:
    """A deployment package shaped like a Lambda bundle: the project's ``jukinet`` (here a
    stand-in that says where it comes from) and an arm64 ``pydantic`` the host cannot load."""
    src = tmp_path / "bundle"
    (src / "jukinet" / "handlers").mkdir(parents=True)
    (src / "jukinet" / "__init__.py").write_text('ORIGIN = "deployed"\n')
    (src / "jukinet" / "handlers" / "__init__.py").write_text("")
    (src / "jukinet" / "handlers" / "probe.py").write_text(
        "import pydantic\nimport jukinet\n\n"
        "def handler(event, context):\n"
        "    return {'origin': jukinet.ORIGIN, 'file': __file__, 'pydantic': pydantic.VERSION}\n")
    (src / "pydantic").mkdir()
    (src / "pydantic" / "__init__.py").write_text("raise ImportError('built for arm64')\n")
    (src / "pydantic-0.0.1.dist-info").mkdir()
    (src / "pydantic-0.0.1.dist-info" / "top_level.txt").write_text("pydantic\n")
    (src / "helper.py").write_text("NAME = 'loose module'\n")
    zip_path = tmp_path / "code.zip"
    zip_path.write_bytes(zip_directory(src))
    return zip_path


def test_deployed_package_shadows_the_installed_one_only_while_active(tmp_path: Path):
    image = CodeImage.extract(_package(tmp_path), "sha-1", {"jukinet"}, tmp_path / "cache")
    host_jukinet = sys.modules["jukinet"]
    with image.active():
        response = image.load_handler("jukinet.handlers.probe.handler")({}, None)
    assert response["origin"] == "deployed"
    assert Path(response["file"]).is_relative_to(image.task_root)
    assert sys.modules["jukinet"] is host_jukinet is jukinet
    assert not hasattr(jukinet, "ORIGIN")


def test_bundled_third_party_package_comes_from_the_host(tmp_path: Path):
    image = CodeImage.extract(_package(tmp_path), "sha-2", {"jukinet"}, tmp_path / "cache")
    with image.active():
        response = image.load_handler("jukinet.handlers.probe.handler")({}, None)
    assert response["pydantic"] == importlib.metadata.version("pydantic")
    assert image.owned == {"jukinet", "helper"}
    assert not (image.task_root / "pydantic").exists()  # never extracted
    assert any("pydantic 0.0.1" in w for w in image.warnings)


def test_modules_persist_per_space_like_warm_containers(tmp_path: Path):
    image = CodeImage.extract(_package(tmp_path), "sha-3", {"jukinet"}, tmp_path / "cache")
    with image.active("fn-a"):
        first = image.load_handler("jukinet.handlers.probe.handler")
    with image.active("fn-a"):
        again = image.load_handler("jukinet.handlers.probe.handler")
    with image.active("fn-b"):
        other = image.load_handler("jukinet.handlers.probe.handler")
    assert first is again  # module state (caches, clients) survives between invocations
    assert other is not first  # but is not shared with another function


def test_handler_missing_from_the_package_fails_to_import(tmp_path: Path):
    image = CodeImage.extract(_package(tmp_path), "sha-4", {"jukinet"}, tmp_path / "cache")
    with image.active(), pytest.raises(ImportError):
        image.load_handler("jukinet.handlers.absent.handler")


def test_handler_root_accepts_both_lambda_spellings():
    assert handler_root("jukinet.handlers.probe.handler") == "jukinet"
    assert handler_root("src/app.handler") == "src"


def test_zip_matches_cdk_cli_conventions(tmp_path: Path):
    src = tmp_path / "d"
    (src / "sub").mkdir(parents=True)
    (src / "b.py").write_text("b")
    (src / ".hidden").write_text("h")
    (src / "sub" / "a.py").write_text("a")
    first = zip_directory(src)
    (src / "b.py").touch()  # a new mtime must not change the archive
    assert zip_directory(src) == first
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert archive.namelist() == [".hidden", "b.py", "sub/a.py"]
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_an_asset_is_zipped_once_for_every_process_and_again_when_its_files_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The archive of a directory asset is kept beside it in the assembly: the next process
    (an xdist worker, a moved-clock run, `jukinet up`) reads it instead of compressing again.
    A file changed under the same asset id is zipped anew, never served stale."""
    from embedded_aws import assembly

    src = tmp_path / "cdk.out" / "asset.abc"
    src.mkdir(parents=True)
    (src / "app.py").write_text("VERSION = 1\n")
    asset = assembly.FileAsset("abc", src, "zip", ())
    zipped: list[Path] = []
    real_zip = assembly.zip_directory

    def counting(directory: Path) -> bytes:
        zipped.append(directory)
        return real_zip(directory)

    monkeypatch.setattr(assembly, "zip_directory", counting)
    assembly._zipped.cache_clear()
    first = assembly.package_asset(asset)
    assembly._zipped.cache_clear()  # another process: nothing in memory
    assert assembly.package_asset(asset) == first
    assert zipped == [src]
    assert [p.name.startswith("abc-") for p in (tmp_path / "cdk.out" / assembly.ZIP_CACHE_DIR).iterdir()] == [True]
    (src / "app.py").write_text("VERSION = 22\n")
    assembly._zipped.cache_clear()
    changed = assembly.package_asset(asset)
    assert zipped == [src, src]
    with zipfile.ZipFile(io.BytesIO(changed)) as archive:
        assert archive.read("app.py") == b"VERSION = 22\n"
    assembly._zipped.cache_clear()

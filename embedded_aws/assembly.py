"""Reading a synthesized CDK cloud assembly (``cdk.out``) and packaging its file assets.

Only what deploying needs: the stacks (template, environment, dependencies, bootstrap
version parameter), their asset manifests, and nested assemblies (CDK Stages). The format
is the cloud-assembly schema that ``app.synth()`` writes; no CDK library is imported here.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNKNOWN_ACCOUNT = "unknown-account"
UNKNOWN_REGION = "unknown-region"


class AssemblyError(ValueError):
    """The cloud assembly is missing, malformed, or uses something local mode cannot deploy."""


@dataclass(frozen=True)
class FileAsset:
    asset_id: str
    source: Path  # absolute
    packaging: str  # "zip" (a directory, zipped at publish time) or "file"
    destinations: tuple[dict[str, str], ...]  # bucketName/objectKey/region, placeholders unresolved


@dataclass(frozen=True)
class StackArtifact:
    artifact_id: str  # unique within the (nested) assembly tree, e.g. "Stage/Stack"
    stack_name: str
    template_file: Path
    account: str | None  # None: environment-agnostic
    region: str | None
    dependencies: tuple[str, ...]  # artifact ids of other stacks
    bootstrap_version_parameter: str | None
    required_bootstrap_version: int
    file_assets: tuple[FileAsset, ...] = ()
    docker_image_assets: tuple[str, ...] = ()
    display_name: str = ""

    def template(self) -> dict[str, Any]:
        return json.loads(self.template_file.read_text(encoding="utf-8"))


@dataclass
class CloudAssembly:
    directory: Path
    stacks: list[StackArtifact] = field(default_factory=list)

    def in_dependency_order(self) -> list[StackArtifact]:
        by_id = {s.artifact_id: s for s in self.stacks}
        ordered: list[StackArtifact] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(stack: StackArtifact) -> None:
            mark = state.get(stack.artifact_id)
            if mark == 2:
                return
            if mark == 1:
                raise AssemblyError(f"dependency cycle through stack {stack.artifact_id}")
            state[stack.artifact_id] = 1
            for dep in stack.dependencies:
                if dep in by_id:
                    visit(by_id[dep])
            state[stack.artifact_id] = 2
            ordered.append(stack)

        for stack in self.stacks:
            visit(stack)
        return ordered


def read_assembly(directory: str | os.PathLike[str]) -> CloudAssembly:
    root = Path(directory).resolve()
    if not (root / "manifest.json").is_file():
        raise AssemblyError(f"{root} has no manifest.json: run `cdk synth` (or app.synth()) first")
    assembly = CloudAssembly(root)
    _read_manifest(root, "", assembly)
    if not assembly.stacks:
        raise AssemblyError(f"{root} contains no CloudFormation stacks")
    return assembly


def _read_manifest(directory: Path, prefix: str, assembly: CloudAssembly) -> None:
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    artifacts: dict[str, dict[str, Any]] = manifest.get("artifacts", {})
    asset_manifests = {
        artifact_id: directory / art["properties"]["file"]
        for artifact_id, art in artifacts.items() if art.get("type") == "cdk:asset-manifest"
    }
    for artifact_id, art in artifacts.items():
        kind = art.get("type")
        if kind == "cdk:cloud-assembly":  # a Stage: its own manifest in a sub-directory
            _read_manifest(directory / art["properties"]["directoryName"], f"{prefix}{artifact_id}/", assembly)
        elif kind == "aws:cloudformation:stack":
            props = art.get("properties", {})
            account, region = _parse_environment(art.get("environment", ""))
            deps = tuple(d for d in art.get("dependencies", []) if artifacts.get(d, {}).get("type") == kind)
            files: list[FileAsset] = []
            images: list[str] = []
            for dep in art.get("dependencies", []):
                if dep in asset_manifests:
                    f, i = _read_asset_manifest(asset_manifests[dep])
                    files += f
                    images += i
            assembly.stacks.append(StackArtifact(
                artifact_id=f"{prefix}{artifact_id}",
                stack_name=props.get("stackName", artifact_id),
                template_file=directory / props["templateFile"],
                account=account,
                region=region,
                dependencies=tuple(f"{prefix}{d}" for d in deps),
                bootstrap_version_parameter=props.get("bootstrapStackVersionSsmParameter"),
                required_bootstrap_version=int(props.get("requiresBootstrapStackVersion", 0) or 0),
                file_assets=tuple(files),
                docker_image_assets=tuple(images),
                display_name=art.get("displayName", artifact_id),
            ))


def _parse_environment(env: str) -> tuple[str | None, str | None]:
    # "aws://123456789012/ap-northeast-1" or "aws://unknown-account/unknown-region"
    if not env.startswith("aws://"):
        return None, None
    account, _, region = env[len("aws://"):].partition("/")
    return (None if account in ("", UNKNOWN_ACCOUNT) else account,
            None if region in ("", UNKNOWN_REGION) else region)


def _read_asset_manifest(path: Path) -> tuple[list[FileAsset], list[str]]:
    manifest = json.loads(path.read_text(encoding="utf-8"))
    files = []
    for asset_id, asset in manifest.get("files", {}).items():
        source = asset.get("source", {})
        if "path" not in source:
            # "executable" sources run a build command at publish time: not in the assembly.
            raise AssemblyError(f"asset {asset_id} has no source path (executable assets are not supported)")
        files.append(FileAsset(
            asset_id=asset_id,
            source=(path.parent / source["path"]).resolve(),
            packaging=source.get("packaging", "file"),
            destinations=tuple(asset.get("destinations", {}).values()),
        ))
    return files, list(manifest.get("dockerImages", {}))


def substitute_placeholders(text: str, account: str, region: str, partition: str = "aws") -> str:
    return (text.replace("${AWS::AccountId}", account).replace("${AWS::Region}", region)
            .replace("${AWS::Partition}", partition))


def package_asset(asset: FileAsset) -> bytes:
    """The bytes the CDK CLI would upload for this asset. A directory is zipped once: its
    asset id is the hash of its content (the CDK names the directory after it), so a second
    deployment of the same assembly — the next test module, the next tier, the next process —
    reuses the archive instead of compressing the Lambda bundle again (~8 s for the Nagano
    assembly). The archive is kept in memory for the process and in ``.jukinet-zips/`` beside
    the asset in the assembly for other processes (see ``_zipped``)."""
    if asset.packaging == "zip" and asset.source.is_dir():
        return _zipped(asset.asset_id, asset.source)
    if asset.packaging == "file":
        return asset.source.read_bytes()
    if asset.packaging == "zip":
        if asset.source.is_file():  # already an archive (Code.from_asset("x.zip"))
            return asset.source.read_bytes()
        return zip_directory(asset.source)
    raise AssemblyError(f"asset {asset.asset_id}: unsupported packaging {asset.packaging!r}")


ZIP_CACHE_DIR = ".jukinet-zips"


@functools.lru_cache(maxsize=8)
def _zipped(asset_id: str, directory: Path) -> bytes:
    """The directory's archive, from the assembly's zip cache when an archive of the same
    asset id and the same files (names, sizes, modification times) is there; written there
    otherwise (atomically: concurrent deployments of one assembly share it). An assembly
    that cannot be written to is zipped each time."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    listing = hashlib.sha256()
    for path in files:
        info = path.stat()
        listing.update(f"{path.relative_to(directory).as_posix()}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    cached = directory.parent / ZIP_CACHE_DIR / f"{asset_id}-{listing.hexdigest()[:16]}.zip"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    data = zip_directory(directory)
    try:
        cached.parent.mkdir(exist_ok=True)
        partial = cached.with_name(f".{cached.name}.{os.getpid()}")
        partial.write_bytes(data)
        partial.replace(cached)
    except OSError:
        pass
    return data


def zip_directory(directory: Path) -> bytes:
    """Zip a directory the way the CDK CLI does (``zipDirectory`` in aws-cdk): every file,
    dot-files included, symlinks followed, no directory entries, each entry dated
    1980-01-01 00:00 (so the archive depends on content only) with the file's mode, deflated.
    We also sort the entries (the CLI uses glob order) so the bytes are reproducible, and
    deflate at level 1: the archive only travels to the embedded AWS on this machine, and a
    deployment zips each distinct code asset (seven of ~54 MB in the Nagano assembly): level 1
    takes a third of the default level's time for an archive ~10 % larger."""
    buffer = io.BytesIO()
    files = sorted(
        (Path(root) / name for root, _dirs, names in os.walk(directory, followlinks=True) for name in names
         if (Path(root) / name).is_file()),
        key=lambda p: p.relative_to(directory).as_posix(),
    )
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(directory).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr carries the mode
            info.external_attr = (stat.S_IMODE(path.stat().st_mode) | stat.S_IFREG) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=1)
    return buffer.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

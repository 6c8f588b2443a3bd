"""The Nagano assembly synthesized, deployed into a fresh embedded AWS (a moto server on
127.0.0.1) and its functions made runnable — what every end-to-end test starts from.

The tests deploy ``nagano-compact`` (``E2E_DEPLOYMENT``): nagano-demo's stacks, settings,
agencies and people with 8 of its 77 municipalities, deployed in half the time (each module
deploys once, at each of the test run's two clock instants). ``tests/e2e/test_checklist.py``
deploys the full ``nagano-demo`` and checks every one of its 77 municipalities."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from embedded_aws import (
    LocalApi,
    LocalMonitoring,
    LocalRunner,
    MotoServer,
    deploy_assembly,
    local_credentials,
    local_principals,
    replace_environ,
)
from infra.config import load_deployment
from infra.naming import Names, municipality_tier
from jukinet.adapters import aws
from jukinet_ops.synth import synth

from ..dates import SYNTH_DAY

_ASSEMBLIES: dict[str, Path] = {}
REPO = Path(__file__).resolve().parents[2]
# What the synthesized assembly is made from: a change to any of these synthesizes it anew.
_SYNTH_INPUTS = ("app.py", "cdk.json", "pyproject.toml", "package-lock.json", "infra", "lambdas", "data",
                 "jukinet_ops/synth.py")
CACHE = REPO / "build" / "test-assemblies"


def _inputs_digest(deployment: str) -> str:
    digest = hashlib.sha256(f"{deployment}\n{SYNTH_DAY.isoformat()}\n".encode())
    for name in _SYNTH_INPUTS:
        root = REPO / name
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


E2E_DEPLOYMENT = "nagano-compact"


def nagano_assembly(tmp_path_factory: Any, deployment: str = E2E_DEPLOYMENT) -> Path:
    """The deployment's cloud assembly as of ``SYNTH_DAY`` (every e2e module deploys the same
    templates into its own embedded AWS). Synthesized once for all test processes and runs
    (xdist workers, the moved-clock runs of scripts/test-any-date): cached under
    ``build/test-assemblies/`` by a digest of everything synthesis reads, built by one process
    while the others wait on a lock. The assembly depends on ``SYNTH_DAY``, not on the clock."""
    del tmp_path_factory  # kept in the signature: callers pass it
    if deployment not in _ASSEMBLIES:
        _ASSEMBLIES[deployment] = _cached_synth(deployment)
    return _ASSEMBLIES[deployment]


def _cached_synth(deployment: str) -> Path:
    target = CACHE / f"{deployment}-{_inputs_digest(deployment)}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{deployment}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one synthesizes, the others wait and reuse it
        if not (target / "manifest.json").is_file():
            for old in CACHE.glob(f"{deployment}-*"):
                shutil.rmtree(old, ignore_errors=True)
            building = CACHE / f".{deployment}-building"
            shutil.rmtree(building, ignore_errors=True)
            synth(deployment, building, today=SYNTH_DAY)
            building.rename(target)
    return target


@contextlib.contextmanager
def deployed_nagano(tmp_path_factory: Any, *, monitoring: bool = False, notifications: Any = None,
                    service_metrics: bool = False, deployment_name: str = E2E_DEPLOYMENT,
                    **runner_options: Any) -> Iterator[tuple[Any, Any, LocalRunner]]:
    """(deployment, deployed environment, runner); this process talks to the embedded AWS
    meanwhile (AWS_ENDPOINT_URL and local credentials), and is restored afterwards.
    ``monitoring``: the functions' metrics go to the embedded CloudWatch and
    ``runner.monitoring`` (a ``LocalMonitoring``) evaluates the alarms, recording each
    notifying transition in ``notifications`` (a ``NotificationLog``) if given; ``service_metrics``:
    it also publishes the AWS/SQS and AWS/Lambda metrics local mode can observe; ``deployment_name``: another
    registered deployment (``two-prefectures-compact`` for the channel across prefectures)."""
    deployment = load_deployment(deployment_name)
    out = nagano_assembly(tmp_path_factory, deployment_name)
    saved = dict(os.environ)
    try:
        with MotoServer() as server:
            env = deploy_assembly(out, server.endpoint_url, default_region=deployment.region)
            os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_DEFAULT_REGION": deployment.region,
                               **local_credentials(server.endpoint_url, deployment.region)})
            aws.reset_clients()
            with open(os.devnull, "w", encoding="utf-8") as devnull, \
                    contextlib.ExitStack() as stack:
                watch = stack.enter_context(LocalMonitoring(env, stream=devnull, notifications=notifications,
                                                              service_metrics=service_metrics)) \
                    if monitoring else None
                runner = stack.enter_context(LocalRunner(env, log_stream=watch.sink if watch else devnull,
                                                         share_modules=True, **runner_options))
                runner.monitoring = watch  # type: ignore[attr-defined]
                yield deployment, env, runner
    finally:
        replace_environ(saved)
        aws.reset_clients()


def drop_export(deployment: Any, municipality: str, key: str, body: bytes) -> None:
    """Put an export file into ``incoming/`` of the municipality's drop zone, as its existing
    system would (the runner's next round invokes its CS)."""
    names = Names.of(deployment)
    tier = next(p.municipality_tier for p in deployment.prefectures
                if any(m.code == municipality for m in p.municipality_tier.municipalities))
    aws.client("s3").put_object(Bucket=names.drop_zone_bucket(tier.env, municipality), Key=f"incoming/{key}",
                                Body=body)


@contextlib.contextmanager
def counter_api(deployment: Any, env: Any, runner: LocalRunner, municipalities: Sequence[str], *,
                operator: bool = False, prefecture_code: str | None = None
                ) -> Iterator[tuple[LocalApi, dict[str, Any]]]:
    """A prefecture's deployed counter API (the first prefecture's unless ``prefecture_code``)
    served locally, and a signed-in principal for each municipality's counter-staff role (and the
    tier's operator, as ``"operator"``), each calling through the tier's execute-api endpoint."""
    names = Names.of(deployment)
    prefecture = deployment.prefecture(prefecture_code) if prefecture_code else deployment.prefectures[0]
    tier_env = prefecture.municipality_tier.env
    endpoint = runner.functions[names.card_api(prefecture.code)].environment["API_ENDPOINT_IDS"]
    roles = {code: names.counter_role_arn(tier_env, prefecture.code, code) for code in municipalities}
    if operator:
        roles["operator"] = names.people_role_arn(tier_env, municipality_tier(prefecture.code), "operator")
    principals = local_principals({arn: endpoint for arn in roles.values()})
    with LocalApi(env, runner, credentials=principals, api=names.card_api(prefecture.code)) as api:
        yield api, {who: principals[arn] for who, arn in roles.items()}


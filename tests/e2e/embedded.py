"""The Nagano assembly synthesized, deployed into a fresh embedded AWS (a moto server on
127.0.0.1) and its functions made runnable — what every end-to-end test starts from."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from infra.config import load_deployment
from jukinet.adapters import aws
from jukinet_ops.local.deploy import deploy_assembly
from jukinet_ops.local.monitoring import LocalMonitoring
from jukinet_ops.local.runner import LocalRunner
from jukinet_ops.local.server import MotoServer, local_credentials
from jukinet_ops.synth import synth

from ..dates import SYNTH_DAY

_ASSEMBLIES: dict[str, Path] = {}


def nagano_assembly(tmp_path_factory: Any) -> Path:
    """The Nagano cloud assembly, synthesized once per test process (every e2e module
    deploys the same templates into its own embedded AWS)."""
    if "nagano-demo" not in _ASSEMBLIES:
        _ASSEMBLIES["nagano-demo"] = synth("nagano-demo", tmp_path_factory.mktemp("assembly") / "cdk.out",
                                            today=SYNTH_DAY)
    return _ASSEMBLIES["nagano-demo"]


@contextlib.contextmanager
def deployed_nagano(tmp_path_factory: Any, *, monitoring: bool = False,
                    **runner_options: Any) -> Iterator[tuple[Any, Any, LocalRunner]]:
    """(deployment, deployed environment, runner); this process talks to the embedded AWS
    meanwhile (AWS_ENDPOINT_URL and local credentials), and is restored afterwards.
    ``monitoring``: the functions' metrics go to the embedded CloudWatch and
    ``runner.monitoring`` (a ``LocalMonitoring``) evaluates the alarms."""
    deployment = load_deployment("nagano-demo")
    out = nagano_assembly(tmp_path_factory)
    saved = dict(os.environ)
    try:
        with MotoServer() as server:
            env = deploy_assembly(out, server.endpoint_url, default_region=deployment.region)
            os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_DEFAULT_REGION": deployment.region,
                               **local_credentials(server.endpoint_url, deployment.region)})
            aws.reset_clients()
            with open(os.devnull, "w", encoding="utf-8") as devnull, \
                    contextlib.ExitStack() as stack:
                watch = stack.enter_context(LocalMonitoring(env, stream=devnull)) if monitoring else None
                runner = stack.enter_context(LocalRunner(env, log_stream=watch.sink if watch else devnull,
                                                         share_modules=True, **runner_options))
                runner.monitoring = watch  # type: ignore[attr-defined]
                yield deployment, env, runner
    finally:
        os.environ.clear()
        os.environ.update(saved)
        aws.reset_clients()

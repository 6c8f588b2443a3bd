"""Synthesize each deployment once per session, offline, and hand the templates to the tests.

Assertions are made on the synthesized CloudFormation by resource type and property, never
by logical id. The synth runs with every Python socket connect refused and without AWS
credentials in the environment: if anything in the app (or the Lambda bundle, whose cache
``tests`` warm first) reached for the network, the fixture would fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_BIN = REPO / "node_modules" / ".bin"
# jsii starts its Node process on the first CDK import: put the repo's Node (package.json) first before that.
if NODE_BIN.is_dir() and not os.environ.get("PATH", "").startswith(str(NODE_BIN)):
    os.environ["PATH"] = f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"

import aws_cdk as cdk
from aws_cdk import assertions

from infra.bundling import build_bundle
from infra.composition import Built, build
from infra.config import Deployment, load_deployment
from embedded_aws.iam_policy import as_list

from ..dates import SYNTH_DAY

AWS_ENV = ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
           "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")


def cdk_context(deployment: str) -> dict[str, Any]:
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    return {**context, "deployment": deployment}


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """No AWS credentials, no outbound IP connection from this process, no pip download."""
    saved = {k: os.environ.pop(k) for k in AWS_ENV if k in os.environ}
    saved_offline = os.environ.get("JUKINET_OFFLINE")
    os.environ["JUKINET_OFFLINE"] = "1"
    real_connect = socket.socket.connect

    def refuse(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"synth tried to connect to {address}")
        real_connect(self, address)

    socket.socket.connect = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        os.environ.update(saved)
        if saved_offline is None:
            os.environ.pop("JUKINET_OFFLINE", None)
        else:
            os.environ["JUKINET_OFFLINE"] = saved_offline


@dataclass
class Synth:
    name: str
    deployment: Deployment
    built: Built
    outdir: Path
    templates: dict[str, dict[str, Any]]
    manifest: dict[str, Any]

    def template(self, stack_name: str) -> assertions.Template:
        return assertions.Template.from_json(self.templates[stack_name])

    def resources(self, resource_type: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(stack name, logical id, resource) of every resource of a type, across stacks."""
        return [(stack, lid, res) for stack, t in self.templates.items()
                for lid, res in t.get("Resources", {}).items() if res["Type"] == resource_type]

    def props(self, resource_type: str) -> list[dict[str, Any]]:
        return [res.get("Properties", {}) for _, _, res in self.resources(resource_type)]

    def stack_of_tier(self, tier: str) -> list[str]:
        return [s.stack_name for s in self.built.stacks if getattr(s, "tier", None) == tier]


def synthesize(name: str, outdir: Path, *, checks: bool = True) -> Synth:
    build_bundle()  # may need PyPI once per dependency change; everything after is offline
    with offline():
        app = cdk.App(outdir=str(outdir), context=cdk_context(name), analytics_reporting=False)
        deployment = load_deployment(name)
        built = build(app, deployment, today=SYNTH_DAY, checks=checks)
        assembly = app.synth()
    templates = {s.stack_name: s.template for s in assembly.stacks}
    manifest = json.loads((outdir / "manifest.json").read_text())
    return Synth(name, deployment, built, outdir, templates, manifest)


@pytest.fixture(scope="session")
def nagano(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize("nagano-demo", tmp_path_factory.mktemp("cdk-nagano"))


@pytest.fixture(scope="session")
def large(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize("large-prefecture-test", tmp_path_factory.mktemp("cdk-large"))


@pytest.fixture(scope="session")
def multi_account(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize("multi-account-example", tmp_path_factory.mktemp("cdk-multi"))


@pytest.fixture(scope="session", params=["nagano-demo", "large-prefecture-test", "multi-account-example"])
def every(request: pytest.FixtureRequest) -> Synth:
    """Each deployment in turn (session-cached through the fixtures above)."""
    return request.getfixturevalue({"nagano-demo": "nagano", "large-prefecture-test": "large",
                                    "multi-account-example": "multi_account"}[request.param])


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return as_list(document.get("Statement"))



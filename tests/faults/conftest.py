from __future__ import annotations

import os

import pytest
from moto import mock_aws

from jukinet.handlers import municipality_cs, national_processor, prefecture_processor
from embedded_aws.faults import FaultInjector

from .world import FaultyPipeline


@pytest.fixture
def faults():
    return FaultInjector(seed=17)


@pytest.fixture
def tiers(faults):
    """The three tiers in moto, with ``faults`` installed (nothing fires until a rule is added)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-1")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    for module in (municipality_cs, prefecture_processor, national_processor):
        module._runtime.cache_clear()
    with mock_aws(), faults.installed():
        p = FaultyPipeline(faults)
        try:
            yield p
        finally:
            p.stop_counting()


@pytest.fixture
def national(tmp_path, monkeypatch, faults):
    """The national tier's provision side (``tests/provision/world.World``), ``faults`` installed."""
    from jukinet.adapters import aws
    from jukinet.handlers import provision_api, provision_sealer

    from ..provision.world import World

    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    with mock_aws(), faults.installed():
        provision_api._runtime.cache_clear()
        provision_sealer._runtime.cache_clear()
        w = World(tmp_path)
        try:
            yield w
        finally:
            w._stop()
            aws.reset_clients()
            provision_api._runtime.cache_clear()
            provision_sealer._runtime.cache_clear()

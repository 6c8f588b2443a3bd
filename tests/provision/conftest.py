from __future__ import annotations

import pytest
from moto import mock_aws

from jukinet.adapters import aws
from jukinet.handlers import provision_api, provision_sealer

from .world import World


@pytest.fixture
def world(tmp_path, monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    with mock_aws():
        aws.reset_clients()
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

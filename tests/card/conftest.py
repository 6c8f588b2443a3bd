from __future__ import annotations

import pytest
from moto import mock_aws

from .world import World, reset_runtime


@pytest.fixture
def world(monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    with mock_aws():
        reset_runtime()
        try:
            yield World()
        finally:
            reset_runtime()

"""Fixtures shared by the operator-command tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def in_process_aws(monkeypatch):
    """An in-process moto (``mock_aws``) with the product's clients pointed at it and nothing
    of the host's AWS configuration in reach; yields ``jukinet.adapters.aws``."""
    from moto import mock_aws

    from jukinet.adapters import aws

    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    aws.reset_clients()
    with mock_aws():
        yield aws
    aws.reset_clients()

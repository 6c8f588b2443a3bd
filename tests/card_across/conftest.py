from __future__ import annotations

import os

import pytest
from moto import mock_aws

from .world import CrossWorld


@pytest.fixture
def world():
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-1")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws():
        yield CrossWorld()

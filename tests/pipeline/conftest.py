from __future__ import annotations

import os

import pytest
from moto import mock_aws

from jukinet.handlers import municipality_cs, national_processor, prefecture_processor

from .harness import Pipeline


@pytest.fixture
def pipeline():
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-1")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    for module in (municipality_cs, prefecture_processor, national_processor):
        module._runtime.cache_clear()
    with mock_aws():
        p = Pipeline()
        yield p
        p.stop_counting()

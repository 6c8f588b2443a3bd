"""An in-process test world in moto: local credentials, no endpoint (moto intercepts boto3)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

from moto import mock_aws

W = TypeVar("W")


@contextlib.contextmanager
def moto_world(make: Callable[[], W]) -> Iterator[W]:
    """``make()`` inside ``mock_aws``: the world creates its tables, queues and keys there."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-1")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws():
        yield make()

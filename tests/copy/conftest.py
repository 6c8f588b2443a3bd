from __future__ import annotations

import pytest

from ..moto_world import moto_world
from .world import CopyWorld


@pytest.fixture
def world():
    with moto_world(CopyWorld) as made:
        yield made

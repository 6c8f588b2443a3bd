from __future__ import annotations

import pytest

from ..moto_world import moto_world
from .world import CrossWorld


@pytest.fixture
def world():
    with moto_world(CrossWorld) as made:
        yield made

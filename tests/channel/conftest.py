from __future__ import annotations

import pytest

from ..moto_world import moto_world
from .world import World


@pytest.fixture
def world():
    with moto_world(World) as made:
        yield made

from __future__ import annotations

import pytest

from ..moto_world import moto_world
from .world import MoveWorld


@pytest.fixture
def world():
    with moto_world(MoveWorld) as made:
        yield made

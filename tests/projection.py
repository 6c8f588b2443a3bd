"""bench/projection.py loaded as a module (it is a script, not a package): one copy per process,
shared by the tests of its arithmetic (tests/ops) and of its counts against a synth (tests/infra)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "projection.py"


def load_projection() -> ModuleType:
    if "projection" in sys.modules:
        return sys.modules["projection"]
    spec = importlib.util.spec_from_file_location("projection", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["projection"] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module

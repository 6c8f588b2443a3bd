"""The embedded AWS's public interface (``embedded_aws/__init__.py``, decision 0052): the names it
re-exports are the modules' own objects, and importing the package is cheap — neither moto nor
boto3 nor any of its modules is loaded until a name is used, so the ``jukinet`` command of a plain
install (no ``ops`` extra, no moto) may import it."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import embedded_aws

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", embedded_aws.__all__)
def test_each_public_name_is_the_modules_own_object(name):
    value = getattr(embedded_aws, name)
    if name in embedded_aws._SUBMODULES:
        assert value is importlib.import_module(f"embedded_aws.{name}")
    else:
        assert value is getattr(importlib.import_module(f"embedded_aws.{embedded_aws._EXPORTS[name]}"), name)


def test_the_interface_covers_what_the_demo_and_the_end_to_end_tests_do():
    """Deploy an assembly, run until idle, serve an API, evaluate alarms, inject faults."""
    assert callable(embedded_aws.deploy_assembly)
    assert hasattr(embedded_aws.LocalRunner, "run_until_idle")
    assert hasattr(embedded_aws.LocalApi, "request")
    assert hasattr(embedded_aws.LocalMonitoring, "evaluate")
    assert hasattr(embedded_aws.FaultInjector, "installed") and hasattr(embedded_aws.Rule, "matches")
    assert hasattr(embedded_aws.MotoServer, "endpoint_url")


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        embedded_aws.no_such_thing  # noqa: B018


def test_importing_the_package_loads_no_module_of_it_nor_moto_nor_boto3():
    script = ("import sys, embedded_aws\n"
              "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('moto', 'boto3', 'botocore')"
              " or m.startswith('embedded_aws.'))\n"
              "print(loaded)\n"
              "embedded_aws.NotificationLog\n"
              "print('embedded_aws.monitoring' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "True"]


def test_all_lists_exactly_what_is_exported():
    assert sorted(embedded_aws.__all__) == sorted([*embedded_aws._EXPORTS, *embedded_aws._SUBMODULES])

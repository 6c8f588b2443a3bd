"""Settings shared by every test.

Hypothesis: these machines are shared and noisy (CI too), so no test may fail because
generating or running an example was slow — time limits belong in the benchmarks. Each test
still sets its own ``max_examples`` where it matters.
"""

from __future__ import annotations

import datetime as dt
import functools
import os

import botocore.session
import pytest
from hypothesis import HealthCheck, settings

from jukinet.adapters import aws
from jukinet.clock import JST
from embedded_aws import moto_patches

# The functions skip botocore's check of each request against its models (the service checks
# again; docs/decisions/0055); the tests keep it, so a request botocore would refuse fails a test
# even where the embedded AWS is lax. The local runner passes the variable on to the functions.
os.environ[aws.VALIDATE_REQUESTS_VARIABLE] = "1"

# Every in-process mock_aws gets the embedded AWS's corrections (atomic conditional writes,
# TransactWriteItems in time proportional to the transaction): embedded_aws/moto_patches.py
moto_patches.apply()

# Every botocore session of the test process reads the JSON models through one loader. Each
# mock_aws() starts with a fresh boto3 default session, and each test that resets the
# product's clients makes new ones: without this, every test parsed the DynamoDB, S3, KMS and
# SQS models again (~0.4 s a test in tests/provision). The product shares its loader the same
# way (jukinet.adapters.aws.new_session); this covers the sessions tests and moto make.
botocore.session.create_loader = functools.lru_cache(maxsize=None)(botocore.session.create_loader)

settings.register_profile("jukinet", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The date-sensitive set run again at other instants (scripts/test-any-date) asks whether an
# outcome depends on the clock, not whether a property holds for yet more inputs: the whole
# suite already ran every property at full strength, so there 20 examples each suffice.
settings.register_profile("jukinet-dates", parent=settings.get_profile("jukinet"), max_examples=20)
settings.load_profile("jukinet")


# --- the clock ----------------------------------------------------------------------------
# scripts/test-any-date moves the whole process tree's clock (libfaketime) and names the
# instant in JUKINET_CLOCK_MOVED. Refuse to run if the clock did not move: the run would prove
# nothing about that date.


def _moved_to() -> dt.datetime | None:
    moved = os.environ.get("JUKINET_CLOCK_MOVED")
    if not moved:
        return None
    return dt.datetime.strptime(moved.removesuffix(" JST"), "%Y-%m-%d %H:%M").replace(tzinfo=JST)


def pytest_configure(config) -> None:
    target = _moved_to()
    if target is not None and abs(dt.datetime.now(dt.UTC) - target) > dt.timedelta(hours=6):
        raise pytest.UsageError(f"JUKINET_CLOCK_MOVED={target:%Y-%m-%d %H:%M} JST but the clock says "
                                f"{dt.datetime.now(JST):%Y-%m-%d %H:%M} JST: libfaketime is not in effect")


def pytest_report_header(config) -> str | None:
    if _moved_to() is None:
        return None
    return f"clock moved: {dt.datetime.now(JST):%Y-%m-%d %H:%M:%S} JST (libfaketime)"


# --- which worker runs what ---------------------------------------------------------------
# Under xdist (`-n 2 --dist loadgroup`, pyproject's addopts) tests that share an expensive
# fixture run on one worker, so it is built once rather than once per worker: all of
# tests/infra shares the session's synths (30-70 s each), and each module of tests/e2e and
# tests/local that deploys into an embedded AWS shares its module's deployment (~45 s).
_ONE_WORKER_PER_MODULE = ("tests/e2e/", "tests/local/test_monitoring.py", "tests/local/test_api.py",
                          "tests/local/test_toy_app.py", "tests/local/test_runner_workers_month.py")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks into the node ids
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path.startswith("tests/infra/"):
            item.add_marker(pytest.mark.xdist_group("infra-synth"))
        elif path.startswith(_ONE_WORKER_PER_MODULE):
            item.add_marker(pytest.mark.xdist_group(path))


@pytest.fixture
def metrics_at_one_instant(monkeypatch) -> dt.datetime:
    """One instant for every metric the in-process functions print through ``jukinet.observability``
    (Powertools stamps each flush with the wall clock): the start of the current 5-minute period,
    plus a second. Evaluate the alarms at the instant this returns: then a burst of refusals cannot
    straddle a period boundary, nor the evaluation fall a period after the burst. On a slow
    machine either happened (a CI run found the stolen-card burst split over two periods: OK, not
    ALARM). Tests of how alarms follow time stamp their own data instead (tests/local/test_monitoring.py)."""
    from jukinet import observability
    from jukinet.clock import system_clock

    now = system_clock()
    instant = now - dt.timedelta(seconds=now.timestamp() % 300) + dt.timedelta(seconds=1)
    monkeypatch.setattr(observability.metrics.provider, "timestamp", int(instant.timestamp() * 1000))
    return instant

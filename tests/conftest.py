"""Settings shared by every test.

Hypothesis: these machines are shared and noisy (CI too), so no test may fail because
generating or running an example was slow — time limits belong in the benchmarks. Each test
still sets its own ``max_examples`` where it matters.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("jukinet", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("jukinet")

"""Project-wide test settings.

Hypothesis: these machines are shared and noisy (2 cores), so its timing-based checks
(per-example deadline, slow-generation health check) would fail tests for reasons that
have nothing to do with the code. The properties and example counts are unchanged.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "device-direct",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("device-direct")

"""Hypothesis runs derandomized and bounded here, so CI sees the same examples every run."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "tokenwire",
    derandomize=True,  # a fixed seed per test: failures reproduce, CI never flakes
    database=None,  # nothing written to .hypothesis/
    deadline=None,  # timings on a shared 2-core machine are noise
    max_examples=int(os.environ.get("TOKENWIRE_HYPOTHESIS_EXAMPLES", "200")),
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("tokenwire")

"""Hypothesis profiles for the property tests (tests/test_fuzz_*.py).

`default`: random examples, few enough to keep the fast suite fast. `ci`: the same number, derandomized
(a fixed example sequence), so CI is never flaky; select it with `HYPOTHESIS_PROFILE=ci`.
`thorough`: many more random examples, for a local bug hunt.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("default", max_examples=60, **_COMMON)
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

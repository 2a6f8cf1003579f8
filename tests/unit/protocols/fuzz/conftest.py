"""Hypothesis profiles for the adapter fuzz tests: "ci" (default, short) and "long" (20x).

Choose with ``HYPOTHESIS_PROFILE=long python3 -m pytest -q tests/unit/protocols/fuzz``. The
profile is loaded here, before the test modules are imported, so that their per-test example
counts (``examples(n)`` in ``mutate.py``) scale with it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

CI_EXAMPLES = 100
LONG_FACTOR = 20

settings.register_profile(
    "ci",
    max_examples=CI_EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the working tree; failures print a reproducer blob
    print_blob=True,
    phases=[p for p in Phase if p is not Phase.explain],  # explaining a failure takes minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    parent=settings.get_profile("ci"),
    max_examples=CI_EXAMPLES * LONG_FACTOR,
    database=settings().database,  # .hypothesis/: a failure found once is replayed first
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

"""Hypothesis profiles for the adapter fuzz tests: "ci" (default, short) and "long" (20x).

Choose with ``HYPOTHESIS_PROFILE=long python3 -m pytest -q tests/unit/protocols/fuzz``. The
profile is loaded here, before the test modules are imported, so that their per-test example
counts (``examples(n)`` in ``mutate.py``) scale with it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from hypothesis import HealthCheck, Phase, settings
from hypothesis.configuration import set_hypothesis_home_dir

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
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)
if PROFILE == "ci" and not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    # Without a database hypothesis still caches (source constants, unicode tables) under
    # .hypothesis/: keep the working tree clean with a directory that is removed at exit.
    _home = tempfile.mkdtemp(prefix="hypothesis-ci-")
    atexit.register(shutil.rmtree, _home, True)
    set_hypothesis_home_dir(_home)

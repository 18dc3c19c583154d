"""Whether a missing openfhe is an error (CI, FHECTL_REQUIRE_OPENFHE=1) or a skip (a developer's machine).

A module of its own, not conftest.py: ``from conftest import`` picks whichever conftest was loaded last.
"""

import os


def openfhe_required() -> bool:
    """In CI (or with FHECTL_REQUIRE_OPENFHE=1) a missing openfhe fails instead of skipping."""
    return os.environ.get("CI") == "true" or os.environ.get("FHECTL_REQUIRE_OPENFHE") == "1"

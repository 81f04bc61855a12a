"""Test configuration: the `requires` marker.

A test that needs a host feature declares it with ``@pytest.mark.requires("root", "landlock")``
(markers on the test, its class and its module add up). A missing feature skips the test with the
observed fact. With NUCLEUS_TESTS_STRICT=1 (CI) a missing feature that the CI machine is known to
have (``features.EXPECTED``) fails the test instead, so a broken runner cannot go green by
skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests import features
from tests.helpers import readable_nucleus

STRICT = os.environ.get("NUCLEUS_TESTS_STRICT") == "1"


def _missing(item) -> tuple[str, str] | None:
    for marker in item.iter_markers("requires"):
        for feature in marker.args:
            ok, fact = features.probe(feature)
            if not ok:
                return feature, fact
    return None


def pytest_runtest_setup(item):
    missing = _missing(item)
    if missing is None:
        return
    feature, fact = missing
    reason = f"requires {features.label(feature)} ({fact})"
    if STRICT and feature in features.EXPECTED:
        pytest.fail(f"strict mode: {reason}; this runner is known to have it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def nobody_pythonpath():
    """A copy of nucleus and what it imports that uid 65534 (or any user) can import."""
    if shutil.which("setpriv") is None:
        pytest.skip("requires setpriv (util-linux) to run a command as another user")
    with readable_nucleus() as top:
        yield top

"""What the `--runtime gvisor` tests share: a Scope at whose end no container directory (a
bundle and runsc's state, in /run/nucleus-gvisor) of its runs is left, and a run in it.

Outputs are read through pipes: gVisor writes a regular file it is handed at its own offsets."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

from nucleus.plan.gvisor import BASE
from tests.helpers import Scope


def gvisor_entries() -> set[str]:
    """The containers' directories (and platform checks' scratch directories) there now."""
    return set(os.listdir(BASE)) if os.path.isdir(BASE) else set()


@contextlib.contextmanager
def gvisor_scope() -> Iterator[Scope]:
    """A Scope; at its end no directory may be left in /run/nucleus-gvisor that was not there
    at its start (one left is removed, and the test fails)."""
    before = gvisor_entries()
    with Scope() as scope:
        yield scope
        left = sorted(gvisor_entries() - before)
        for name in left:
            shutil.rmtree(os.path.join(BASE, name), ignore_errors=True)
        assert left == [], f"left behind in {BASE}: {left}"


def run_gvisor(scope: Scope, script: str, *options: str) -> subprocess.CompletedProcess:
    """`nucleus run --runtime gvisor OPTIONS -- /bin/sh -c SCRIPT` in the scope."""
    return scope.nucleus(*scope.run_args("--runtime", "gvisor", *options), "--", *scope.sh(script), timeout=120)

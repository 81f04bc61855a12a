"""What the tests of volumes, --changes and `nucleus cp` share: a scope of their own and a host
directory every user may traverse (pytest's tmp_path sits below root's 0700 directories), with
whatever a test mounted below it unmounted afterwards."""

from __future__ import annotations

import contextlib
import os
import secrets as token
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Scope


@pytest.fixture(name="scope")
def scope_fixture() -> Iterator[Scope]:
    with Scope() as s:
        yield s


@pytest.fixture(name="secret")
def secret_fixture(tmp_path: Path) -> tuple[str, str]:
    """A secret file of the caller's (0600) and the value it holds."""
    value = f"s3cret-{token.token_hex(16)}"
    path = tmp_path / "api-key"
    path.write_text(value)
    path.chmod(0o600)
    return str(path), value


@contextlib.contextmanager
def host_dir(prefix: str) -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(top, 0o755)
    try:
        yield top
    finally:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f if line.split()[4].startswith(f"{top}/")]
        for point in reversed(points):
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(top, ignore_errors=True)

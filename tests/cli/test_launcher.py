"""The `nucleus` command `make setup` writes (tools/launcher.py): an interpreter started with
`-IS` that imports nucleus from this source tree, and a run that goes past click, site and the
editable install's finder."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import describe, nucleus_env
from tools import launcher

pytestmark = pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="requires a virtualenv (the launcher names its site-packages)")


@pytest.fixture
def script(tmp_path) -> str:
    path = str(tmp_path / "nucleus")
    launcher.install(path)
    return path


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                          env=nucleus_env())


def test_the_launcher_answers_as_nucleus_does(script):
    with open(script) as f:
        assert f.readline() == f"#!{sys.executable} -IS\n"
    assert os.access(script, os.X_OK)
    for args in (["--version"], ["run", "--memory", "lots", "--", "true"], ["run", "--nope"]):
        ours = run([script, *args])
        theirs = run([sys.executable, "-c", "import sys; sys.argv[0] = 'nucleus'; "
                      "from nucleus.cli.main import main; main()", *args])
        assert (ours.returncode, ours.stdout, ours.stderr) == \
            (theirs.returncode, theirs.stdout, theirs.stderr), describe(ours)


def test_a_run_through_the_launcher_imports_neither_site_nor_click(script):
    # What the kernel runs for the shebang, with the interpreter's import log added.
    result = run([sys.executable, "-IS", "-X", "importtime", script, "run", "--memory", "lots",
                  "--", "true"])
    assert result.returncode == 125, describe(result)
    modules = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)\s*$", result.stderr, re.M))
    assert "nucleus.cli.run_args" in modules, describe(result)
    assert not {m for m in modules if m.split(".")[0] in ("site", "click") or "__editable__" in m}, \
        sorted(modules)

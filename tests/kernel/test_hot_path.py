"""The `run` path stays light: no heavy module is imported, and a warm seccomp cache means
libseccomp's bindings are not imported at all. Asserts the module set, never timings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# (threading is imported by click but no thread is ever started: the fork stays safe.)
HEAVY = ("pyroute2", "asyncio", "opentelemetry", "pydantic", "ctypes.util", "multiprocessing",
         "concurrent", "subprocess", "pyseccomp")

PROBE = """
import atexit, json, sys
OUT = sys.argv[1]
def dump():
    with open(OUT, "w") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(dump)
sys.argv = ["nucleus", "run", "--", "true"]
from nucleus.cli.main import main
main()
"""


@pytest.mark.requires("root", "userns", "seccomp", "landlock")
def test_run_imports_no_heavy_module(tmp_path):
    # Warm the seccomp program cache first (a cold cache compiles with pyseccomp, once).
    subprocess.run([sys.executable, "-m", "nucleus", "run", "--", "true"], check=True, timeout=60)
    out = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(out)], timeout=60,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    modules = set(json.loads(out.read_text()))
    assert "nucleus.runner" in modules  # the probe really ran the run path
    loaded = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert loaded == [], f"the run path imported {loaded}"

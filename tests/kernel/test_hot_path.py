"""The `run` path stays light: no heavy module is imported, and a warm seccomp cache means
libseccomp's bindings are not imported at all. Asserts the module set (from the interpreter's
own import log), never timings."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

# click: `run` parses its flags without it (nucleus.cli.run_args); hashlib loads OpenSSL where the
# built-in sha256 does; secrets, shutil and platform bring hmac, random, bz2 and lzma.
HEAVY = ("pyroute2", "asyncio", "opentelemetry", "pydantic", "ctypes.util", "multiprocessing",
         "concurrent", "subprocess", "pyseccomp", "click", "hashlib", "secrets", "shutil", "platform")


def imported_by_run() -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "nucleus", "run", "--", "true"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)\s*$", proc.stderr, re.M)}


@pytest.mark.requires("root", "userns", "seccomp", "landlock")
def test_run_imports_no_heavy_module():
    # Warm the seccomp program cache first (a cold cache compiles with pyseccomp, once).
    subprocess.run([sys.executable, "-m", "nucleus", "run", "--", "true"], check=True, timeout=60)
    modules = imported_by_run()
    assert {"nucleus.app.run", "nucleus.effects.executor"} <= modules  # the log covers the run path
    loaded = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert loaded == [], f"the run path imported {loaded}"

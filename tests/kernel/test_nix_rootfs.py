"""lib.mkRootfs end to end: its build script (nix/rootfs.nix, evaluated by nix-instantiate with
builders standing for store paths the test makes) run as Nix would run it, and the closure it
makes run in production mode with --verify-rootfs-attestation; one byte changed in a store path
of the closure is refused before start, naming the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Scope, describe, store_name, store_paths

ROOT = Path(__file__).resolve().parents[2]
NIX = shutil.which("nix-instantiate")
SANDBOX = pytest.mark.requires("root", "userns", "seccomp", "landlock")

HELLO = r"""
#include <unistd.h>
int main(void) { static const char m[] = "hello from the closure\n"; write(1, m, sizeof m - 1); return 0; }
"""


def store_path(name: str) -> Path:
    return Path(store_name(name))


@pytest.fixture
def made():
    """Store paths the test makes, removed afterwards."""
    with store_paths() as paths:
        yield paths


@SANDBOX
def test_mk_rootfs_builds_an_attested_closure_that_production_runs(made, tmp_path):
    if NIX is None or shutil.which("gcc") is None:
        if os.environ.get("NUCLEUS_TESTS_STRICT") == "1":
            pytest.fail("nix-instantiate and gcc are required (apt-get install nix-bin gcc)")
        pytest.skip("nix-instantiate or gcc is missing")
    # A package: one static program (no loader to bring along).
    package = store_path("hello")
    env = store_path("rootfs-env")
    cacert = store_path("cacert")
    info = store_path("closure-info")
    out = store_path("rootfs")
    made.extend([package, env, cacert, info, out])
    (package / "bin").mkdir(parents=True)
    (tmp_path / "hello.c").write_text(HELLO)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(package / "bin" / "hello"), str(tmp_path / "hello.c")],
                   check=True)
    (env / "bin").mkdir(parents=True)
    os.symlink(package / "bin" / "hello", env / "bin" / "hello")  # as buildEnv links each file
    (cacert / "etc/ssl/certs").mkdir(parents=True)
    (cacert / "etc/ssl/certs/ca-bundle.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    info.mkdir()
    (info / "store-paths").write_text("".join(f"{p}\n" for p in sorted(map(str, (package, env, cacert)))))

    proc = subprocess.run([NIX, "--eval", "--strict", "--json", "-E",
                           f'import ./tests/nix/eval-rootfs.nix {{ env = "{env}"; closure = "{info}"; '
                           f'cacert = "{cacert}"; name = "{out.name}"; }}'],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    build = json.loads(proc.stdout)
    environ = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "out": str(out),
               "passwd": build["passwd"], "group": build["group"], "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", build["script"]], env=environ,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for path in made:
        for directory, _dirs, _files in os.walk(path):
            os.chmod(directory, 0o755)

    manifest = (out / ".nucleus-rootfs-sha256").read_text()
    assert f"link\tbin\t{env}/bin\n" in manifest and f"link\t{env}/bin/hello\t{package}/bin/hello\n" in manifest
    assert f"  {package}/bin/hello\n" in manifest
    assert "  etc/passwd\n" in manifest and "  etc/ssl/certs/ca-certificates.crt\n" in manifest
    assert (out / ".nucleus-rootfs-store-paths").read_text() == (info / "store-paths").read_text()

    with Scope() as scope:
        args = scope.run_args("--service-mode", "production", "--rootfs", str(out), "--verify-rootfs-attestation",
                              "--memory", "64M", "--cpus", "1")
        result = scope.nucleus(*args, "--", "/bin/hello")
        assert (result.returncode, result.stdout) == (0, "hello from the closure\n"), describe(result)

        binary = package / "bin" / "hello"
        data = bytearray(binary.read_bytes())
        data[-1] ^= 1
        binary.write_bytes(bytes(data))
        result = scope.nucleus(*args, "--", "/bin/hello")
        assert result.returncode == 125, describe(result)
        assert f"1 changed ('{binary}')" in result.stderr, describe(result)
        scope.assert_clean()

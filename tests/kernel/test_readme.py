"""Every example in README.md runs, as written, and the first command shows what the README
says it shows. `make` and package installation lines are left to CI (they are what CI runs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.S)
SANDBOX = pytest.mark.requires("root", "userns", "seccomp", "landlock")


def _script(block: str) -> str:
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "make setup" in line and ".venv/bin/nucleus" in line:
            line = line[line.index(".venv/bin/nucleus") + len(".venv/bin/"):]
        if line.startswith(("make ", "apt-get ")) or line.startswith("nucleus run [OPTIONS]"):
            continue
        lines.append(line)
    return "\n".join(lines)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["NUCLEUS_STATE_DIR"] = str(tmp_path / "state")
    return env


def _run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = ["bash", "-euo", "pipefail", "-c", script]
    if "--network" in script or "[networks." in script:
        # A network example runs in a network namespace of its own: its bridge, rules and
        # packets never reach the machine's network, and go away with the namespace.
        argv = ["unshare", "--net", "bash", "-euo", "pipefail", "-c", "ip link set lo up\n" + script]
    return subprocess.run(argv, cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


@SANDBOX
def test_the_first_command_shows_an_isolated_sandbox(tmp_path):
    script = _script(BLOCKS[0])
    assert script.startswith("nucleus run --context . -- sh -c")
    proc = _run(script, ROOT, _env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "uid=0(root)" in out and re.search(r"^\s*0\s+100000\s+65536$", out, re.M)
    assert "\nnucleus\n" in out
    assert "/proc/1 /proc/2\n" in out
    for field in ("CapEff", "CapBnd"):
        assert f"{field}:\t0000000000000000" in out
    assert "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out
    assert "/usr is read-only" in out
    listed = out.split("nucleus\n", 1)[1].split("/proc/1")[0].split()
    assert listed == sorted(listed) and {"bin", "context", "dev", "etc", "proc", "tmp", "usr"} <= set(listed)


@SANDBOX
def test_every_example_runs(tmp_path):
    """Each sh block with nucleus commands runs to completion (exit 0), in README order; a block
    that needs a file an earlier block makes (the seccomp profile) runs after it."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("examples", "traces"):
        (work / name).symlink_to(ROOT / name)
    env = _env(tmp_path)
    pending = [_script(b) for b in BLOCKS[2:] if "nucleus " in _script(b)]
    assert len(pending) >= 4, "the README lost its examples"
    ran = 0
    for _ in range(2):
        later = []
        for script in pending:
            needs = re.findall(r"--seccomp-profile (\S+\.json)", script)
            made = re.findall(r"-o (\S+\.json)", script)
            if any(n not in made and not (work / n).exists() for n in needs):
                later.append(script)
                continue
            proc = _run(script, work, env)
            assert proc.returncode == 0, f"README example failed:\n{script}\n{proc.stdout}\n{proc.stderr}"
            ran += 1
        pending = later
    assert not pending, f"examples whose inputs never appeared: {pending}"
    assert ran >= 4
    # Nothing the examples started is left running.
    left = subprocess.run([sys.executable, "-m", "nucleus", "ps"], env=env, capture_output=True, text=True)
    assert left.stdout.strip().splitlines()[1:] == []

"""Escape attempts from inside a `--runtime gvisor` container (runsc, ptrace platform): the
host's files, processes, devices, kernel settings and network stay out of reach, and what the
workload writes to a volume is owned by the container's mapped ids, never by the host's root."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.gvisor_support import gvisor_scope
from tests.gvisor_support import run_gvisor as run
from tests.helpers import describe

pytestmark = pytest.mark.requires("root", "bin:runsc")


@pytest.fixture
def scope():
    with gvisor_scope() as s:
        yield s


def test_host_files_are_not_visible(scope, tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_text("do not read\n")
    result = run(scope, f"cat {secret} /etc/shadow /root/.bashrc 2>&1; cat /etc/hostname")
    assert result.returncode == 0, describe(result)
    assert "do not read" not in result.stdout and "root:" not in result.stdout, describe(result)
    assert result.stdout.count("No such file or directory") == 3, describe(result)


def test_kill_all_does_not_reach_the_host(scope):
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        result = run(scope, "kill -9 -1; echo done")
        assert sleeper.poll() is None, "a process of the host was killed from inside"
        assert result.returncode in (0, 137), describe(result)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_mounts_devices_and_kernel_settings_are_refused(scope):
    result = run(scope, "mount -t tmpfs none /mnt 2>/dev/null && echo mounted; "
                 "echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && echo sysrq; "
                 "echo c > /proc/sysrq-trigger 2>/dev/null && echo trigger; "
                 "echo 1 > /sys/kernel/profiling 2>/dev/null && echo sysfs; "
                 "cat /dev/sda /dev/mem 2>/dev/null | head -c1 | wc -c; echo end")
    assert result.returncode == 0, describe(result)
    assert result.stdout.split() == ["0", "end"], describe(result)


def test_only_loopback_network(scope):
    result = run(scope, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
    assert result.returncode == 0, describe(result)
    assert result.stdout.split() == ["lo"], describe(result)


def test_the_workload_s_root_is_not_the_host_s_root(scope):
    # runsc's gofer opens a volume as the container's mapped root: its path must let it pass
    # (the scope's state directory is 0755; pytest's tmp_path is 0700).
    out = Path(scope.state_dir) / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    result = run(scope, "id -u; echo x > /out/made-inside", "-v", f"{out}:/out")
    assert result.returncode == 0, describe(result)
    assert result.stdout.split() == ["0"], describe(result)
    owner = os.stat(out / "made-inside").st_uid
    assert owner >= 65536, f"a file the container's root made is owned by host uid {owner}"


def test_no_capability_and_no_ownership_change_for_a_user(scope):
    result = run(scope, "grep -E '^Cap(Eff|Prm|Bnd|Amb)' /proc/self/status; "
                 "chown 1:1 /tmp 2>/dev/null && echo chowned; id -u", "-u", "1000")
    assert result.returncode == 0, describe(result)
    # gVisor's status has no CapAmb line.
    assert result.stdout.split() == ["CapPrm:", "0000000000000000", "CapEff:", "0000000000000000",
                                     "CapBnd:", "0000000000000000", "1000"], describe(result)

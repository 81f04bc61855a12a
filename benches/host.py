"""Facts about the machine and the tools under test, the peers' installation, and the few
process-level calls the harness needs (child subreaper, setns) through ctypes."""

from __future__ import annotations

import ctypes
import datetime as _dt
import glob
import os
import platform
import shutil
import subprocess
import sys

# Debian packages that provide the peers and the helpers, by the command they install.
PACKAGES = {
    "runc": "runc",
    "crun": "crun",
    "bwrap": "bubblewrap",
    "runsc": "runsc",
    "unshare": "util-linux",
    "gcc": "gcc",
    "postgres": "postgresql",
}
# Compared when present, never installed by --install-peers: on Debian 12, systemd-container
# pulls an upgrade of systemd itself. NUCLEUS_BENCH_NSPAWN names a binary off PATH.
OPTIONAL = {
    "systemd-nspawn": "systemd-container",
}

PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def set_child_subreaper() -> None:
    """Orphans of the runtimes under test (a detached runc container, a runsc sandbox whose
    parent died) come back to this process instead of the machine's PID 1."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_CHILD_SUBREAPER, 1): {os.strerror(e)}")


def setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns({fd}, {nstype:#x}): {os.strerror(e)}")


def read_text(path: str) -> str:
    """The file's text, or "" when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def os_release() -> str:
    for line in read_text("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "unknown"


def mem_total_mib() -> int | None:
    for line in read_text("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def cgroup_layout() -> str:
    """"v1", "v2" or "hybrid" (v1 controllers with a cgroup2 mount under /sys/fs/cgroup)."""
    types = {}
    for line in read_text("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        mountpoint = left.split()[4]
        if mountpoint == "/sys/fs/cgroup" or mountpoint.startswith("/sys/fs/cgroup/"):
            types[mountpoint] = right.split()[0]
    if types.get("/sys/fs/cgroup") == "cgroup2":
        return "v2"
    if "cgroup2" in {t for p, t in types.items() if p != "/sys/fs/cgroup"}:
        return "hybrid"
    return "v1"


def machine() -> dict[str, object]:
    return {
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "mem_total_mib": mem_total_mib(),
        "os": os_release(),
        "python": platform.python_version(),
        "cgroups": cgroup_layout(),
        "hostname": platform.node(),
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def postgres_bindir() -> str | None:
    """The newest Debian PostgreSQL server's bin directory (initdb, pg_ctl, postgres, pgbench)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def shared_objects(files: list[str]) -> list[str]:
    """The shared objects `files` load, and the dynamic loader, as ldd names them."""
    found: dict[str, None] = {}
    for file in files:
        out = subprocess.run(["ldd", file], capture_output=True, text=True).stdout
        for line in out.splitlines():
            words = [w for w in line.split() if w.startswith("/")]
            if words:
                found[words[0]] = None
    return list(found)


def which(name: str) -> str | None:
    if name == "postgres":
        d = postgres_bindir()
        return os.path.join(d, "postgres") if d else None
    if name == "systemd-nspawn" and os.environ.get("NUCLEUS_BENCH_NSPAWN"):
        return os.environ["NUCLEUS_BENCH_NSPAWN"]
    return shutil.which(name)


def version_of(name: str) -> str | None:
    path = which(name)
    if path is None:
        return None
    argv = {
        "runsc": [path, "--version"],
        "unshare": [path, "--version"],
    }.get(name, [path, "--version"])
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    first = out.strip().splitlines()[:1]
    return first[0] if first else "unknown"


def tools() -> dict[str, dict[str, object]]:
    return {name: {"path": which(name), "version": version_of(name),
                   "package": package} for name, package in {**PACKAGES, **OPTIONAL}.items()}


def missing_packages() -> list[str]:
    return sorted({pkg for cmd, pkg in PACKAGES.items() if which(cmd) is None})


def install_peers(log=print) -> list[str]:
    """apt-get install the packages whose commands are missing (root, Debian). Returns what it
    could not install, with the reason."""
    missing = missing_packages()
    if not missing:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return [f"{p}: not installed (needs root and apt-get)" for p in missing]
    log(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:]
        return [f"{p}: apt-get failed: {tail[0] if tail else r.returncode}" for p in missing]
    return [f"{p}: still missing after apt-get" for p in missing_packages()]


def nucleus_command() -> list[str]:
    """The nucleus of this checkout: the entry point next to the running interpreter (the
    project's virtualenv), else the one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "nucleus")
    if os.access(here, os.X_OK):
        return [here]
    found = shutil.which("nucleus")
    return [found] if found else [sys.executable, "-m", "nucleus"]


def base_python() -> str:
    """The interpreter nucleus runs on, without the virtualenv's indirection."""
    return os.path.realpath(sys.executable)

"""What the peers run: OCI bundles for runc, crun and runsc, bubblewrap's arguments, and the
private mount namespace the OCI runtimes start in.

Equivalence with `nucleus run` (agent mode): a read-only root holding the host's /bin /sbin /usr
/lib /lib64 /nix (directories bound read-only, nosuid, nodev, recursively; symlinks kept as
symlinks), a minimal /etc, /proc, a tmpfs /dev, a noexec tmpfs /tmp; pid, net, ipc, uts, mount,
cgroup and user namespaces (container root mapped to 100000-165535, like nucleus run as root);
every capability dropped, no_new_privs, and nucleus's own seccomp allowlist (the same OCI
profile for runc and crun, the same compiled BPF program for bwrap). Landlock has no OCI
equivalent; runsc keeps its own defaults (its sentry is its seccomp) and no user namespace.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess

SYSTEM_DIRS = ("/bin", "/sbin", "/usr", "/lib", "/lib64", "/nix")
ID_BASE, ID_COUNT = 100000, 65536
HOSTNAME = "bench"
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=xterm"]


def system_layout() -> list[tuple[str, str]]:
    """(path, symlink target or "" for a directory) of the host's system directories."""
    out = []
    for path in SYSTEM_DIRS:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            out.append((path, os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            out.append((path, ""))
    return out


def seccomp_profile() -> dict:
    """nucleus's default allowlist as an OCI seccomp section (no network)."""
    from nucleus.config.seccomp_default import default_profile

    return default_profile(networked=False)


def seccomp_program() -> bytes:
    """The same allowlist compiled to a BPF program, as nucleus loads it (bwrap --seccomp)."""
    from nucleus.effects import seccomp

    return seccomp.cached_program(seccomp_profile())


def make_rootfs(path: str) -> str:
    """A root directory with mount points, the system symlinks and a minimal /etc."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    for d in ("dev", "proc", "tmp", "etc", "root"):
        os.makedirs(os.path.join(path, d), mode=0o755, exist_ok=True)
    for host, target in system_layout():
        rel = os.path.join(path, host.lstrip("/"))
        if target:
            if not os.path.lexists(rel):
                os.symlink(target, rel)
        else:
            os.makedirs(rel, mode=0o755, exist_ok=True)
    etc = {
        "hostname": f"{HOSTNAME}\n",
        "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n",
        "passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": "root:x:0:\nnogroup:x:65534:\n",
        "resolv.conf": "",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
    }
    for name, text in etc.items():
        with open(os.path.join(path, "etc", name), "w") as f:
            f.write(text)
    return path


def oci_config(rootfs: str, args: list[str], *, userns: bool = True, seccomp: bool = True,
               limits: dict | None = None) -> dict:
    """An OCI runtime config (runc's `runc spec` defaults, made equivalent to nucleus)."""
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=512m"]},
        {"destination": "/root", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "mode=700", "size=256m"]},
    ]
    for host, target in system_layout():
        if not target:
            mounts.append({"destination": host, "type": "bind", "source": host,
                           "options": ["rbind", "ro", "nosuid", "nodev"]})
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
    linux: dict = {
        "namespaces": namespaces,
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
            "/proc/kallsyms", "/proc/kmsg", "/proc/config.gz",
        ],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
    }
    if userns:
        namespaces.append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": ID_BASE, "size": ID_COUNT}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": ID_BASE, "size": ID_COUNT}]
    if seccomp:
        linux["seccomp"] = seccomp_profile()
    if limits:
        res = linux["resources"]
        if "pids" in limits:
            res["pids"] = {"limit": int(limits["pids"])}
        if "cpus" in limits:
            period = 100000
            res["cpu"] = {"period": period, "quota": int(float(limits["cpus"]) * period)}
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ENV,
            "cwd": "/",
            "capabilities": {"bounding": [], "effective": [], "permitted": [], "inheritable": [],
                             "ambient": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": HOSTNAME,
        "mounts": mounts,
        "linux": linux,
    }


def make_bundle(path: str, config: dict) -> str:
    os.makedirs(path, mode=0o755, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    return path


def bwrap_argv(args: list[str], seccomp_fd: int | None, etc: str | None = None) -> list[str]:
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--hostname", HOSTNAME]
    for host, target in system_layout():
        if target:
            argv += ["--symlink", target, host]
        else:
            argv += ["--ro-bind", host, host]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/root"]
    argv += ["--ro-bind", etc, "/etc"] if etc else ["--dir", "/etc"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return argv + ["--", *args]


# --- the OCI runtimes' mount namespace -------------------------------------------------------------


def _own_memory_cgroup() -> str:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if "memory" in controllers.split(","):
                    return path
    except OSError:
        pass
    return "/"


def hidden_cgroup_mounts() -> list[str]:
    """The cgroup mounts to hide from runc and crun in their namespace.

    - On a hybrid host (v1 controllers, plus a cgroup2 mount under /sys/fs/cgroup), crun 1.8
      refuses to start ("cgroups in hybrid mode not supported, drop all controllers from
      cgroupv2"): hide the cgroup2 mount.
    - When this process lives in a memory cgroup other than the root (a machine supervisor
      accounts its memory there), hide the v1 memory hierarchy, so the containers stay in that
      cgroup instead of runc/crun moving them to a new one at the hierarchy's root.
    """
    hide = []
    own_memory = _own_memory_cgroup()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            point = left.split()[4]
            fstype, _, superopts = right.split()[:3]
            if not point.startswith("/sys/fs/cgroup/"):
                continue
            if fstype == "cgroup2":
                hide.append(point)
            elif fstype == "cgroup" and own_memory != "/" and "memory" in superopts.split(","):
                hide.append(point)
    return hide


class MountNamespace:
    """A private mount namespace with some cgroup mounts hidden, kept alive by a holder process
    (`cat`, reading a pipe from us: it ends when we close the pipe, or when we die)."""

    def __init__(self, hide: list[str]) -> None:
        self.hide = list(hide)
        self.proc: subprocess.Popen | None = None
        self.fd: int | None = None

    def __enter__(self) -> MountNamespace:
        script = "".join(f'umount "{p}" || exit 1; ' for p in self.hide) + "echo ready; exec cat"
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
            self.close()
            raise OSError(f"private mount namespace: {err or 'holder exited'}")
        self.fd = os.open(f"/proc/{self.proc.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        return self

    def enter(self) -> None:
        """Join the namespace (in a child, before exec)."""
        from benches.host import CLONE_NEWNS, setns

        assert self.fd is not None
        setns(self.fd, CLONE_NEWNS)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.proc is not None:
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def __exit__(self, *exc) -> None:
        self.close()

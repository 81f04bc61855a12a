"""The runtimes under test, behind one interface: how to start a command in each, how to stop a
long-running one, and what each leaves to clean up.

Every spawn goes through the same path (subprocess with a pre-exec hook, so the same fork+exec
cost is paid by all); the OCI runtimes' hook joins their private mount namespace, the others'
does nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from benches import host, peers, procs


class UnavailableError(Exception):
    """A runtime cannot run here; the message is what the report prints after "n/a: "."""


@dataclass
class Context:
    workdir: str  # everything the harness creates on disk lives here (removed at the end)
    marker: str  # prefix of every container id and cgroup the harness makes
    mntns: peers.MountNamespace | None = None
    mntns_error: str | None = None
    limits: dict[str, str] = field(default_factory=dict)  # nucleus's limit flags, when it has them
    limit_flags: list[str] = field(default_factory=list)
    seccomp_file: str | None = None
    rootfs: str | None = None
    _n: int = 0

    def cid(self) -> str:
        self._n += 1
        return f"{self.marker}-{os.getpid()}-{self._n}"


def _noop() -> None:
    pass


def first_line(text: str | bytes | None, limit: int = 200) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:limit]


class Runtime:
    name = "?"
    label = "?"
    command = ""  # a human-readable form of what runs, for the report

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def check(self) -> None:
        """Raise UnavailableError if this runtime cannot run here."""

    def argv(self, args: list[str], cid: str) -> list[str]:
        raise NotImplementedError

    def preexec(self):
        return _noop

    def fds(self) -> list[int]:
        """Descriptors the child must inherit (opened per spawn, closed after it)."""
        return []

    def spawn(self, args: list[str], cid: str, stdout=subprocess.DEVNULL,
              stderr=subprocess.PIPE) -> subprocess.Popen:
        fds = self.fds()
        try:
            return subprocess.Popen(
                self.argv(args, cid, *fds) if fds else self.argv(args, cid),
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                preexec_fn=self.preexec(), pass_fds=fds,
            )
        finally:
            for fd in fds:
                os.close(fd)

    def run(self, args: list[str], cid: str) -> tuple[int, str | bytes | None]:
        """One run to its end, stdin and stdout on /dev/null: (exit status, what it wrote on
        stderr)."""
        proc = self.spawn(args, cid)
        _, err = proc.communicate()
        return proc.returncode, err

    def finish(self, cid: str) -> None:
        """After a run: remove whatever the runtime keeps for a container that has exited."""

    def stop(self, proc: subprocess.Popen, cid: str) -> None:
        """End a long-running container started with spawn() and wait for it."""
        _terminate(proc)

    def ready(self, proc: subprocess.Popen, cid: str) -> bool:
        """Whether the long-running workload (`sleep`) has started."""
        return any(procs.table().get(p, ("", 0))[0] == "sleep" for p in procs.descendants(proc.pid))

    def kept_root(self, proc: subprocess.Popen, cid: str) -> int | None:
        """The root of the process tree the runtime keeps alive for a running container."""
        return proc.pid


def _terminate(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# --- nucleus and the floors --------------------------------------------------------------------------


class Nucleus(Runtime):
    name = "nucleus"
    label = "nucleus run"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cmd = host.nucleus_command()
        self.command = " ".join(["nucleus", "run", *ctx.limit_flags, "--", "CMD"])

    def argv(self, args: list[str], cid: str, options: list[str] | None = None) -> list[str]:
        # the name carries the session's marker into nucleus's container record
        name = ["--name", cid] if cid else []
        return [*self.cmd, "run", *name, *self.ctx.limit_flags, *(options or []), "--", *args]

    def check(self) -> None:
        r = subprocess.run(self.argv(["/bin/true"], ""), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise UnavailableError(first_line(r.stderr) or f"exit {r.returncode}")


SERVERS: list[NucleusWarm] = []  # the running `nucleus serve`s: not leftovers until the bench ends
CREATED: list[str] = []  # host directories a runtime made on its first run: removed by stop_servers


def stop_servers() -> None:
    """End every `nucleus serve` the bench started, and remove the host directories a runtime
    made for itself (before the bench looks for leftovers)."""
    for warm in SERVERS:
        warm.shutdown()
    SERVERS.clear()
    for path in CREATED:
        shutil.rmtree(path, ignore_errors=True)
    CREATED.clear()


class NucleusWarm(Nucleus):
    """`nucleus run --server SOCK`: the same run forked by a `nucleus serve` of the bench's own,
    started at the check and ended (SIGTERM) when the bench exits."""

    name = "nucleus-warm"
    label = "nucleus run --server (warm)"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.command = " ".join(["nucleus", "run", "--server", "SOCK", *ctx.limit_flags, "--", "CMD"])
        self.socket = ""
        self.server: subprocess.Popen | None = None

    def argv(self, args: list[str], cid: str) -> list[str]:
        name = ["--name", cid] if cid else []
        return [*self.cmd, "run", "--server", self.socket, *name, *self.ctx.limit_flags, "--", *args]

    def check(self) -> None:
        if self.server is None:
            import atexit
            import tempfile

            self.socket = os.path.join(tempfile.mkdtemp(prefix="nucleus-bench-serve-"), "serve.sock")
            self.server = subprocess.Popen([*self.cmd, "serve", "--socket", self.socket],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = self.server.stdout.readline() if self.server.stdout else ""
            if not line.startswith("nucleus serve: listening"):
                raise UnavailableError(first_line(self.server.communicate()[1]) or "nucleus serve did not start")
            SERVERS.append(self)
            atexit.register(self.shutdown)
        super().check()

    def shutdown(self) -> None:
        if self.server is not None:
            _terminate(self.server)
            self.server.communicate()
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.socket))
            self.server = None


class NucleusServed(NucleusWarm):
    """The warm path as a program that stays resident uses it: this process (each throughput
    worker, forked from it) connects to the same kind of server and asks for each sandbox with
    nucleus.effects.serve_client.call, the protocol's client (README: The warm path), imported
    once; no client process per sandbox. /dev/null as stdin and stdout, a pipe as stderr."""

    name = "nucleus-served"
    label = "nucleus serve, resident caller (warm)"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.command = " ".join(["serve_client.call(SOCK, [", *ctx.limit_flags, "--", "CMD])"])
        self.call = None

    def check(self) -> None:
        if self.call is None:
            try:
                from nucleus.effects.serve_client import call
            except ImportError as e:
                raise UnavailableError(f"nucleus.effects.serve_client: {e}") from None
            self.call = call
        super().check()  # the server, and a run through `nucleus run --server`
        code, err = self.run(["/bin/true"], "")
        if code != 0:
            raise UnavailableError(first_line(err) or f"exit {code}")

    def run(self, args: list[str], cid: str) -> tuple[int, str | bytes | None]:
        assert self.call is not None
        name = ["--name", cid] if cid else []
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            status = self.call(self.socket, [*name, *self.ctx.limit_flags, "--", *args], (null, null, err_w))
        except Exception as e:  # noqa: BLE001 - the run's error, as a failed run's stderr
            return 125, str(e)
        finally:
            os.close(null)
            os.close(err_w)
        try:
            err = os.read(err_r, 65536)
        except BlockingIOError:  # nothing written
            err = b""
        finally:
            os.close(err_r)
        return status, err


class NucleusNetwork(Nucleus):
    """nucleus in a network namespace of the bench's own (`unshare --net`), so that a bridge,
    its rules and its forwarding settings never touch the machine's network: with
    `--network bridge`, and with `--network none` under the same wrapper, for the ratio."""

    name = "nucleus-none"
    label = "nucleus run --network none (in its own netns)"
    network = "none"
    options: tuple[str, ...] = ()  # beyond --network

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.command = " ".join(["unshare", "--net", "nucleus", "run", *ctx.limit_flags, "--network",
                                 self.network, *self.options, "--", "CMD"])

    def argv(self, args: list[str], cid: str) -> list[str]:
        name = ["--name", cid] if cid else []
        return ["unshare", "--net", *self.cmd, "run", *name, *self.ctx.limit_flags, "--network", self.network,
                *self.options, "--", *args]

    def check(self) -> None:
        if shutil.which("unshare") is None:
            raise UnavailableError("unshare not installed")
        super().check()


class NucleusBridge(NucleusNetwork):
    name = "nucleus-bridge"
    label = "nucleus run --network bridge (in its own netns)"
    network = "bridge"


class NucleusEgress(NucleusNetwork):
    """A bridge with an egress policy: its rules, and its proxy and resolver started (and
    ended) with each run."""

    name = "nucleus-egress"
    label = "nucleus run --network bridge --egress-domain (in its own netns)"
    network = "bridge"
    options = ("--egress-domain", "pkgs.example.org", "--dns", "192.0.2.53")


class Host(Runtime):
    """No sandbox: the command itself."""

    name = "host"
    label = "host (bare)"
    command = "CMD"

    def argv(self, args: list[str], cid: str) -> list[str]:
        return list(args)


class Unshare(Runtime):
    name = "unshare"
    label = "unshare -fmpinuUC (kernel floor)"
    command = "unshare -fmpinuUC CMD"

    def check(self) -> None:
        if shutil.which("unshare") is None:
            raise UnavailableError("unshare not installed")

    def argv(self, args: list[str], cid: str) -> list[str]:
        return ["unshare", "-fmpinuUC", *args]


class Python(Runtime):
    name = "python"
    label = "python3 -I -S -c pass (interpreter floor)"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.python = host.base_python()
        self.command = f"{self.python} -I -S -c pass"

    def argv(self, args: list[str], cid: str) -> list[str]:
        return [self.python, "-I", "-S", "-c", "pass"]


# --- bubblewrap ---------------------------------------------------------------------------------------


class Bwrap(Runtime):
    name = "bwrap"
    label = "bwrap --unshare-all"
    command = "bwrap --unshare-all --die-with-parent --cap-drop ALL --ro-bind /usr ... --seccomp FD CMD"

    def check(self) -> None:
        if shutil.which("bwrap") is None:
            raise UnavailableError("bwrap not installed (Debian package bubblewrap)")
        if self.ctx.seccomp_file is None:
            raise UnavailableError("no compiled seccomp program")

    def fds(self) -> list[int]:
        assert self.ctx.seccomp_file is not None
        return [os.open(self.ctx.seccomp_file, os.O_RDONLY)]

    def argv(self, args: list[str], cid: str, seccomp_fd: int | None = None) -> list[str]:
        etc = os.path.join(self.ctx.rootfs, "etc") if self.ctx.rootfs else None
        return peers.bwrap_argv(args, seccomp_fd, etc)

    def stop(self, proc: subprocess.Popen, cid: str) -> None:
        # bwrap forwards no signal; killing it takes the sandbox down (--die-with-parent).
        _terminate(proc, signal.SIGKILL)


class BwrapNoSeccomp(Bwrap):
    """bwrap without a seccomp filter: with Bwrap, it separates the filter's cost from the
    rest of a sandbox's overhead on a workload."""

    name = "bwrap-noseccomp"
    label = "bwrap --unshare-all (no seccomp)"
    command = "bwrap --unshare-all --die-with-parent --cap-drop ALL --ro-bind /usr ... CMD"

    def check(self) -> None:
        if shutil.which("bwrap") is None:
            raise UnavailableError("bwrap not installed (Debian package bubblewrap)")

    def fds(self) -> list[int]:
        return []


# --- OCI runtimes ---------------------------------------------------------------------------------------


class Oci(Runtime):
    binary = "?"
    userns = True
    seccomp = True
    in_mntns = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.root = os.path.join(ctx.workdir, f"{self.name}-state")
        self.bundles: dict[tuple[str, ...], str] = {}

    def check(self) -> None:
        if shutil.which(self.binary) is None:
            raise UnavailableError(f"{self.binary} not installed")
        if self.in_mntns and self.ctx.mntns is None:
            raise UnavailableError(self.ctx.mntns_error or "no private mount namespace")

    def bundle(self, args: list[str]) -> str:
        key = tuple(args)
        if key not in self.bundles:
            assert self.ctx.rootfs is not None
            path = os.path.join(self.ctx.workdir, "bundles", f"{self.name}-{len(self.bundles)}")
            cfg = peers.oci_config(self.ctx.rootfs, args, userns=self.userns, seccomp=self.seccomp,
                                   limits=self.ctx.limits)
            self.bundles[key] = peers.make_bundle(path, cfg)
        return self.bundles[key]

    def preexec(self):
        return self.ctx.mntns.enter if (self.in_mntns and self.ctx.mntns) else _noop

    def global_args(self) -> list[str]:
        return [self.binary, "--root", self.root]

    def argv(self, args: list[str], cid: str) -> list[str]:
        return [*self.global_args(), "run", "--bundle", self.bundle(args), cid]

    def tool(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([*self.global_args(), *args], capture_output=True, text=True,
                              timeout=timeout, preexec_fn=self.preexec(), stdin=subprocess.DEVNULL)

    def finish(self, cid: str) -> None:
        if os.path.isdir(self.root) and any(cid in n for n in os.listdir(self.root)):
            self.tool("delete", "--force", cid)

    def stop(self, proc: subprocess.Popen, cid: str) -> None:
        self.tool("kill", cid, "KILL")
        _terminate(proc, signal.SIGTERM)
        self.finish(cid)


class Runc(Oci):
    name = binary = "runc"
    label = "runc run"
    command = "runc --root DIR run --bundle DIR ID"


class RuncDetached(Runc):
    """runc run -d: runc exits once the container has started; nothing of it stays alive."""

    name = "runc-detached"
    label = "runc run -d (detached)"
    command = "runc --root DIR run -d --bundle DIR ID"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.root = os.path.join(ctx.workdir, "runc-state")

    def argv(self, args: list[str], cid: str) -> list[str]:
        return [*self.global_args(), "run", "-d", "--bundle", self.bundle(args), cid]

    def _pid(self, cid: str) -> int | None:
        r = self.tool("state", cid)
        if r.returncode != 0:
            return None
        state = json.loads(r.stdout)
        return int(state["pid"]) if state.get("status") == "running" else None

    def ready(self, proc: subprocess.Popen, cid: str) -> bool:
        if proc.poll() is None:
            return False
        pid = self._pid(cid)
        return pid is not None and procs.table().get(pid, ("", 0))[0] == "sleep"

    def kept_root(self, proc: subprocess.Popen, cid: str) -> int | None:
        return None  # runc has exited; only the workload is left

    def stop(self, proc: subprocess.Popen, cid: str) -> None:
        pid = self._pid(cid)
        self.tool("kill", cid, "KILL")
        if pid is not None:  # the container was re-parented to us (child subreaper)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        _terminate(proc)
        self.tool("delete", "--force", cid)


class Crun(Oci):
    name = binary = "crun"
    label = "crun run"
    command = "crun --root DIR run --bundle DIR ID (cgroup2 mount hidden)"


class Runsc(Oci):
    name = "runsc"
    binary = "runsc"
    label = "runsc run (ptrace)"
    command = "runsc --root DIR --platform=ptrace --network=none --ignore-cgroups run --bundle DIR ID"
    userns = False  # runsc of 2022 takes no user namespace in the spec: the sentry is the boundary
    seccomp = False  # nor applies an OCI seccomp profile without --oci-seccomp
    in_mntns = False

    def global_args(self) -> list[str]:
        return [self.binary, "--root", self.root, "--platform=ptrace", "--network=none",
                "--ignore-cgroups"]

    def check(self) -> None:
        super().check()
        cid = self.ctx.cid()
        try:
            r = subprocess.run(self.argv(["/bin/true"], cid), capture_output=True, text=True,
                               timeout=60, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            self.finish(cid)
            raise UnavailableError("runsc run did not finish within 60 s") from None
        self.finish(cid)
        if r.returncode != 0:
            raise UnavailableError(first_line(r.stderr) or f"runsc run: exit {r.returncode}")

    def ready(self, proc: subprocess.Popen, cid: str) -> bool:
        r = self.tool("state", cid)
        return r.returncode == 0 and json.loads(r.stdout).get("status") == "running"

    def finish(self, cid: str) -> None:
        if os.path.isdir(self.root) and any(cid in n for n in os.listdir(self.root)):
            self.tool("delete", "-force", cid)


# --- systemd-nspawn -------------------------------------------------------------------------------------

NSPAWN_STATE = "/run/systemd/nspawn"  # its own runtime directory: locks, mount propagation


class Nspawn(Runtime):
    """systemd-nspawn on a root directory like the OCI bundles' (the host's /usr bound
    read-only, a minimal /etc), with what nucleus and the bundles isolate: its own user
    namespace (a picked range; ownership left alone, never chowned), network, no capabilities,
    no_new_privs, its default seccomp filter; `--as-pid2` under its stub init, no machined
    registration, no scope unit (the caller's cgroup)."""

    name = "nspawn"
    label = "systemd-nspawn"
    command = ("systemd-nspawn --register=no --keep-unit -D DIR --bind-ro=/usr --read-only "
               "--private-users=pick --private-network --as-pid2 --no-new-privileges=yes "
               "--drop-capability=all CMD")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.binary = host.which("systemd-nspawn")
        self.root = os.path.join(ctx.workdir, "nspawn-rootfs")

    def check(self) -> None:
        if self.binary is None:
            raise UnavailableError("systemd-nspawn not installed (Debian package systemd-container, which "
                                   "`make bench` does not install: on Debian 12 it upgrades systemd)")
        if not os.path.isdir(self.root):
            peers.make_rootfs(self.root)
            for d in ("run", "sys", "var"):
                os.makedirs(os.path.join(self.root, d), mode=0o755, exist_ok=True)
            if not os.path.exists(NSPAWN_STATE):
                CREATED.append(NSPAWN_STATE)
        r = subprocess.run(self.argv(["/bin/true"], ""), capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise UnavailableError(first_line(r.stderr) or f"exit {r.returncode}")

    def argv(self, args: list[str], cid: str) -> list[str]:
        assert self.binary is not None
        binds = [f"--bind-ro={d}" for d in ("/usr", "/nix") if os.path.isdir(d)]
        machine = ["--machine", cid] if cid else []
        return [self.binary, "--quiet", "--register=no", "--keep-unit", *machine, "--directory", self.root,
                *binds, "--read-only", "--private-users=pick", "--private-users-ownership=off",
                "--private-network", "--as-pid2", "--no-new-privileges=yes", "--drop-capability=all",
                "--timezone=off", "--resolv-conf=off", "--link-journal=no", "--", *args]


ALL = {cls.name: cls for cls in (Host, Nucleus, NucleusWarm, NucleusServed, NucleusNetwork, NucleusBridge, NucleusEgress, Runc, RuncDetached, Crun, Nspawn, Bwrap,
                                   BwrapNoSeccomp, Runsc, Unshare, Python)}


def wait_ready(rt: Runtime, proc: subprocess.Popen, cid: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not rt.ready(proc, cid):
        if proc.poll() is not None and not isinstance(rt, RuncDetached):
            err = proc.stderr.read() if proc.stderr else b""
            raise UnavailableError(first_line(err) or f"exited with {proc.returncode} before the workload started")
        if time.monotonic() > deadline:
            raise UnavailableError(f"the workload did not start within {timeout:.0f} s")
        time.sleep(0.02)


def reap_orphans(ctx: Context | None = None, timeout: float = 10) -> list[str]:
    """Wait for every remaining descendant of this process (orphans re-parented to us as the
    child subreaper) to end, reaping them; returns those still alive after the timeout. The
    mount namespace's holder (and its own children, if any) is not waited for."""
    keep = {warm.server.pid for warm in SERVERS if warm.server is not None}
    if ctx is not None and ctx.mntns is not None and ctx.mntns.proc is not None:
        keep |= set(procs.descendants(ctx.mntns.proc.pid))
    deadline = time.monotonic() + timeout
    while True:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
        table = procs.table()
        alive = [p for p in procs.descendants(os.getpid(), table)[1:] if p not in keep]
        if not alive or time.monotonic() > deadline:
            return [f"{p} {table[p][0]}" for p in alive if p in table]
        time.sleep(0.05)

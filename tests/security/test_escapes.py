"""Escape attempts from inside a real `nucleus run` sandbox.

Every attempt must fail in a specific way: the seccomp filter refuses the call with the errno
of its rule (EPERM by default; recorded in the violation stream, which proves seccomp and not
a missing capability refused it), kills the process under --seccomp-default-action kill (exit
status 128 + SIGSYS), or the call fails with the errno of the control that stops it. Probes run
with Debian's /usr/bin/python3 inside the sandbox and make raw system calls through ctypes; a
probe prints a marker right before the attempt, so a kill is known to come from the attempt
itself.

The attempts run in agent mode (the default) and in production mode (the `mode` fixture): a
closure of this machine's own dash, coreutils and python3 (tests.closure_support), attested and
verified, with limits and a secret on /run/secrets. Production adds what agent mode lacks:
/proc with hidepid=2, the secrets' tmpfs, the audit of the mounts after setup.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass

import pytest

from benches.escape_probe import RAW, prelude
from tests.closure_support import APP_UID, python_closure
from tests.helpers import (
    SANDBOX,
    SANDBOX_WITH_PYTHON,
    SIGSYS_EXIT,
    SUBUID_BASE,
    Scope,
    describe,
    find_processes,
    popen_nucleus,
    run_json,
    run_nucleus,
    run_python,
    wait_for,
)

pytestmark = SANDBOX_WITH_PYTHON


@dataclass(frozen=True)
class Mode:
    """A service mode and the `nucleus run` options it needs."""

    name: str
    options: tuple[str, ...] = ()

    @property
    def production(self) -> bool:
        return self.name == "production"


SECRET_VALUE = "s3cret-escape-value"


@pytest.fixture(scope="module")
def closure():
    with python_closure() as made:
        yield made


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("secret") / "api-key"
    path.write_text(SECRET_VALUE)
    path.chmod(0o600)
    return str(path)


def production_options(closure, secret_file: str) -> tuple[str, ...]:
    return ("--service-mode", "production", "--rootfs", closure.rootfs, "--verify-rootfs-attestation",
            "--memory", "256M", "--cpus", "1", "--secret", f"{secret_file}:/run/secrets/api_key")


@pytest.fixture(params=["agent", "production"])
def mode(request) -> Mode:
    if request.param == "agent":
        return Mode("agent")
    return Mode("production", production_options(request.getfixturevalue("closure"),
                                                 request.getfixturevalue("secret_file")))


# The imports and sc(nr, *args) -> (return value, errno name or "0"), shared with the bench's probe.
PRELUDE = prelude()


def _attempt(setup: str, call: str) -> str:
    return PRELUDE + setup + "\nprint('reached', flush=True)\n" + call + "\nprint('survived', flush=True)\n"


def assert_killed(result: subprocess.CompletedProcess) -> None:
    """The attempt was reached and the seccomp filter killed the process for it."""
    assert result.returncode == SIGSYS_EXIT, describe(result)
    assert result.stdout.splitlines()[-1:] == ["reached"], describe(result)


KILL = ("--seccomp-default-action", "kill")

# --- system calls the filter refuses ----------------------------------------------------------------

MAP_PRIVATE_ANON = 0x02 | 0x20


def _raw(name: str) -> tuple[str, str]:
    """A call the bench's escape probe makes too, as (setup, call) source."""
    nr, args = RAW[name]
    return "", f"sc({nr}, {', '.join(map(repr, args))})"


KILLED = {
    # filesystem and namespaces
    "mount tmpfs": ("", "sc(165, b'none', b'/tmp', b'tmpfs', 0, None)"),
    "umount2 /proc": ("", "sc(166, b'/proc', 2)"),
    "pivot_root": ("", "sc(155, b'/tmp', b'/tmp')"),
    "unshare(CLONE_NEWUSER)": _raw("unshare(CLONE_NEWUSER)"),
    "unshare(CLONE_NEWNS)": ("", "sc(272, 0x00020000)"),
    "clone(CLONE_NEWUSER)": ("", "sc(56, 0x10000000 | 17, 0, 0, 0, 0)"),
    "chroot": ("", "sc(161, b'/tmp')"),
    "mknod /tmp/x c 1 3": ("", "sc(133, b'/tmp/x', 0o20644, (1 << 8) | 3)"),
    "mknodat /tmp/x c 1 3": ("", "sc(259, -100, b'/tmp/x', 0o20644, (1 << 8) | 3)"),
    "open_by_handle_at": ("", "sc(304, -100, 0, 0)"),
    "name_to_handle_at": ("", "sc(303, -100, b'/', 0, 0, 0)"),
    "fsopen": ("", "sc(430, b'tmpfs', 0)"),
    "open_tree": ("", "sc(428, -100, b'/', 1)"),
    # debugging, keys, BPF, modules
    "ptrace(PTRACE_TRACEME)": ("", "sc(101, 0, 0, 0, 0)"),
    "ptrace(PTRACE_ATTACH, 1)": ("", "sc(101, 16, 1, 0, 0)"),
    "ptrace(PTRACE_SEIZE, 1)": ("", "sc(101, 0x4206, 1, 0, 0)"),
    "process_vm_readv": ("", "sc(310, 1, 0, 0, 0, 0, 0)"),
    "keyctl": _raw("keyctl"),
    "add_key": ("", "sc(248, b'user', b'x', b'y', 1, -3)"),
    "request_key": ("", "sc(249, b'user', b'x', None, 0)"),
    "bpf(BPF_PROG_LOAD)": _raw("bpf(BPF_PROG_LOAD)"),
    "perf_event_open": _raw("perf_event_open"),
    "init_module": _raw("init_module"),
    "finit_module": _raw("finit_module"),
    "delete_module": ("", "sc(176, b'loop', 0)"),
    "kexec_load": ("", "sc(246, 0, 0, 0, 0)"),
    # kernel attack surface and privilege changes
    "userfaultfd": _raw("userfaultfd"),
    "io_uring_setup": _raw("io_uring_setup"),
    "memfd_create": ("", "sc(319, b'x', 0)"),
    "setuid(0)": ("", "sc(105, 0)"),
    "setresuid(1, 1, 1)": ("", "sc(117, 1, 1, 1)"),
    "setgroups": ("", "sc(116, 0, 0)"),
    "capset": ("", "sc(126, 0, 0)"),
    "seccomp (a second filter)": ("", "sc(317, 1, 0, 0)"),
    "sethostname": ("", "sc(170, b'evil', 4)"),
    "syslog": ("", "sc(103, 3, 0, 0)"),
    "reboot (bad magic)": _raw("reboot (bad magic)"),
    "swapon": ("", "sc(167, b'/tmp/x', 0)"),
    "iopl": ("", "sc(172, 3)"),
    "prctl(PR_SET_DUMPABLE, 1)": ("", "sc(157, 4, 1, 0, 0, 0)"),
    "ioctl(TIOCSTI)": ("", "sc(16, 0, 0x5412, b'x')"),
    # sockets: AF_UNIX, AF_INET and AF_INET6 only (the network namespace holds only loopback)
    "socket(AF_PACKET, SOCK_RAW)": _raw("socket(AF_PACKET, SOCK_RAW)"),
    "socket(AF_VSOCK)": ("", "sc(41, 40, 1, 0)"),
    "socket(AF_NETLINK, NETLINK_KOBJECT_UEVENT)": ("", "sc(41, 16, 3, 15)"),
}
# The syscall each attempt makes, as the violation stream names it, and the errno it gets.
SOCKET_REFUSAL = "EAFNOSUPPORT"


def _syscall_of(name: str) -> str:
    return name.split("(")[0].split(" ")[0]


def test_forbidden_syscalls_fail_with_the_errno_of_their_rule(tmp_path, mode):
    """One sandbox tries every call in turn (the default action answers with an error, so the
    probe lives on); each fails with EPERM (a refused socket family with EAFNOSUPPORT), and the
    violation stream names every one, so seccomp, not a missing capability, refused it."""
    calls = "\n".join(f"{setup}\nr[{name!r}] = {call}[1]" for name, (setup, call) in KILLED.items())
    stream = tmp_path / "violations.ndjson"
    out = run_json(PRELUDE + "r = {}\n" + calls + "\nprint(json.dumps(r))\n",
                   options=[*mode.options, "--violations", str(stream)])
    assert out == {name: SOCKET_REFUSAL if name.startswith("socket") else "EPERM" for name in KILLED}
    records = [json.loads(line) for line in stream.read_text().splitlines()]
    refused = {r["operation"] for r in records if r["layer"] == "seccomp"}
    assert {_syscall_of(name) for name in KILLED} - {"seccomp (a second filter)"} <= refused | {"seccomp"}
    assert {"seccomp"} <= refused


@pytest.mark.parametrize("setup,call", KILLED.values(), ids=list(KILLED))
def test_forbidden_syscall_kills_the_workload_under_kill(setup, call, mode):
    assert_killed(run_python(_attempt(setup, call), options=[*mode.options, *KILL]))


def test_writable_and_executable_memory_is_refused_in_strict_agent_and_production(closure, secret_file):
    # Agent mode lets JIT compilers (node, java) flip pages to W+X; strict-agent and production do not.
    setup = f"addr = sc(9, 0, 4096, 3, {MAP_PRIVATE_ANON}, -1, 0)[0]\nassert addr > 0\n"
    code = PRELUDE + setup + "print(json.dumps([sc(10, addr, 4096, 7)[1], sc(10, addr, 4096, 5)[1]]))"
    assert run_json(code, options=["--service-mode", "strict-agent"]) == ["EPERM", "0"]
    assert run_json(code, options=production_options(closure, secret_file)) == ["EPERM", "0"]
    assert run_json(code) == ["0", "0"]


NAMESPACES = ("user", "mnt", "net", "pid", "uts", "ipc", "cgroup", "time")


@pytest.mark.parametrize("ns", NAMESPACES)
def test_setns_is_refused(ns, mode):
    # The namespace file opens (it is the container's own); joining anything is refused.
    setup = f"fd = os.open('/proc/self/ns/{ns}', os.O_RDONLY)"
    assert run_json(PRELUDE + setup + "\nprint(json.dumps(sc(308, fd, 0)[1]))", options=mode.options) == "EPERM"
    assert_killed(run_python(_attempt(setup, "sc(308, fd, 0)"), options=[*mode.options, *KILL]))


@pytest.mark.parametrize("argv", [
    ["mount", "-t", "tmpfs", "none", "/tmp"],
    ["unshare", "-U", "true"],
    ["unshare", "-r", "true"],
    ["mknod", "/tmp/x", "c", "1", "3"],
    ["chroot", "/", "true"],
], ids=" ".join)
def test_privileged_tools_fail_or_are_killed(argv, tmp_path, mode):
    stream = tmp_path / "violations.ndjson"
    result = run_nucleus(["run", *mode.options, "--violations", str(stream), "--", *argv])
    assert result.returncode not in (0, SIGSYS_EXIT), describe(result)
    refused = {json.loads(line)["operation"] for line in stream.read_text().splitlines()}
    assert refused & {"mount", "unshare", "mknod", "mknodat", "chroot"}, (refused, describe(result))
    killed = run_nucleus(["run", *mode.options, *KILL, "--", *argv])
    assert killed.returncode == SIGSYS_EXIT, describe(killed)
    assert "blocked: " in killed.stderr and "is not allowed by the seccomp policy" in killed.stderr, describe(killed)


def test_loopback_tcp_and_raw_sockets(mode):
    # AF_INET is allowed: a loopback server and client talk; a raw socket still needs
    # CAP_NET_RAW, which the sandbox does not hold.
    out = run_json(PRELUDE + textwrap.dedent("""\
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.bind(("127.0.0.1", 0)); s.listen()
        c = socket.create_connection(s.getsockname()); p, _ = s.accept(); c.sendall(b"ping")
        r = {"tcp": p.recv(4).decode()}
        try:
            socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            r["raw"] = "0"
        except OSError as e:
            r["raw"] = errno.errorcode[e.errno]
        print(json.dumps(r))
    """), options=mode.options)
    assert out == {"tcp": "ping", "raw": "EPERM"}


def test_clone3_answers_enosys_and_unix_sockets_work(mode):
    # clone3 is refused softly (glibc falls back to clone); netlink fails with EAFNOSUPPORT.
    out = run_json(PRELUDE + textwrap.dedent("""\
        r = {"clone3": sc(435, 0, 0)[1]}
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        a.sendall(b"ping"); r["unix"] = b.recv(4).decode()
        try:
            socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
            r["netlink_route"] = "0"
        except OSError as e:
            r["netlink_route"] = errno.errorcode[e.errno]
        print(json.dumps(r))
    """), options=mode.options)
    assert out == {"clone3": "ENOSYS", "unix": "ping", "netlink_route": "EAFNOSUPPORT"}


def test_only_loopback_network(mode):
    out = run_json(textwrap.dedent("""\
        import json
        lines = open("/proc/net/dev").read().splitlines()[2:]
        print(json.dumps(sorted(line.split(":")[0].strip() for line in lines)))
    """), options=mode.options)
    assert out == ["lo"]


# --- the process's own credentials and controls --------------------------------------------------


def test_status_shows_no_privilege(mode):
    out = run_json(textwrap.dedent("""\
        import json, os
        status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
        keys = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
        print(json.dumps({
            "status": {k: status[k].strip() for k in keys},
            "uid_map": open("/proc/self/uid_map").read().split(),
            "gid_map": open("/proc/self/gid_map").read().split(),
            "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
            "groups": os.getgroups(),
        }))
    """), options=mode.options)
    zero = "0000000000000000"
    assert out["status"] == {
        "CapInh": zero, "CapPrm": zero, "CapEff": zero, "CapBnd": zero, "CapAmb": zero,
        "NoNewPrivs": "1", "Seccomp": "2",
    }
    # Root inside is an unprivileged range on the host.
    assert out["uid_map"] == ["0", str(SUBUID_BASE), "65536"]
    assert out["gid_map"] == ["0", str(SUBUID_BASE), "65536"]
    assert out["ids"] == [0, 0, 0, 0]
    assert out["groups"] in ([], [0])


@pytest.mark.requires("root", "userns", "seccomp", "landlock", "bin:gcc")
def test_setuid_binary_does_not_elevate(tmp_path):
    # A setuid binary owned by container uid 1 (host 100001), in a directory the sandbox binds
    # from the host (/usr) where Landlock allows execution. Outside the sandbox it does switch
    # to its owner; inside (nosuid, no_new_privs) it must stay uid 0 with no capabilities.
    src = tmp_path / "who.c"
    src.write_text(textwrap.dedent("""\
        #define _GNU_SOURCE
        #include <stdio.h>
        #include <string.h>
        #include <unistd.h>
        int main(void) {
            uid_t r, e, s;
            char line[256];
            FILE *f = fopen("/proc/self/status", "r");
            getresuid(&r, &e, &s);
            printf("uid %u %u %u\\n", r, e, s);
            while (f && fgets(line, sizeof line, f))
                if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "CapPrm:", 7))
                    fputs(line, stdout);
            return 0;
        }
    """))
    subprocess.run(["gcc", "-O", "-o", str(tmp_path / "who"), str(src)], check=True, timeout=60)
    where = tempfile.mkdtemp(prefix=".nucleus-test-", dir="/usr/local")
    try:
        os.chmod(where, 0o755)
        binary = os.path.join(where, "who")
        shutil.copy(tmp_path / "who", binary)
        os.chown(binary, SUBUID_BASE + 1, SUBUID_BASE + 1)
        os.chmod(binary, 0o4755)
        outside = subprocess.run([binary], capture_output=True, text=True, timeout=10)
        assert outside.stdout.splitlines()[0].split()[2] == str(SUBUID_BASE + 1), outside.stdout
        result = run_nucleus(["run", "--", binary])
        assert result.returncode == 0, describe(result)
        lines = result.stdout.splitlines()
        assert lines[0] == "uid 0 0 0", describe(result)
        assert sorted(line.split()[0] for line in lines[1:]) == ["CapEff:", "CapPrm:"]
        assert all(line.split()[1] == "0000000000000000" for line in lines[1:]), describe(result)
    finally:
        shutil.rmtree(where, ignore_errors=True)


# --- what the sandbox can see ---------------------------------------------------------------------


def test_only_the_containers_processes_are_visible(mode):
    host_pid = os.getpid()
    out = run_json(textwrap.dedent("""\
        import errno, json, os, sys
        host_pid = int(sys.argv[1])
        try:
            os.kill(host_pid, 0)
            kill = "0"
        except OSError as e:
            kill = errno.errorcode[e.errno]
        try:
            init = open("/proc/1/comm").read().strip()
        except OSError as e:
            init = errno.errorcode[e.errno]
        print(json.dumps({
            "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "me": os.getpid(), "parent": os.getppid(), "init": init, "kill_host_pid": kill,
        }))
    """), str(host_pid), options=mode.options)
    assert out["parent"] == 1
    if mode.production:
        # hidepid=2: PID 1 is not dumpable, so not even its own user's processes see it.
        assert (out["pids"], out["init"]) == ([out["me"]], "ENOENT")
    else:
        assert out["pids"] == sorted({1, out["me"]})
        assert out["init"] == "init"  # it shows nothing of the host
    if host_pid not in (1, out["me"]):
        assert out["kill_host_pid"] == "ESRCH"


def test_kill_all_does_not_reach_the_host(mode):
    # A host process running as the very uid container root maps to: only the PID namespace
    # keeps kill(-1) and kill(pid) from reaching it.
    victim = subprocess.Popen(["sleep", "60"], user=SUBUID_BASE, group=SUBUID_BASE,
                              stdin=subprocess.DEVNULL)
    try:
        out = run_json(textwrap.dedent("""\
            import errno, json, os, signal, sys
            r = {}
            for name, pid in (("all", -1), ("victim", int(sys.argv[1]))):
                try:
                    os.kill(pid, signal.SIGKILL)
                    r[name] = "0"
                except OSError as e:
                    r[name] = errno.errorcode[e.errno]
            print(json.dumps(r))
        """), str(victim.pid), options=mode.options)
        assert out == {"all": "ESRCH", "victim": "ESRCH"}
        assert victim.poll() is None, "a host process was killed from inside the sandbox"
    finally:
        victim.kill()
        victim.wait()


def test_host_files_are_not_visible(tmp_path, mode):
    marker = tempfile.NamedTemporaryFile(prefix="nucleus-host-marker-", dir="/tmp", delete=False)
    marker.close()
    try:
        out = run_json(textwrap.dedent("""\
            import json, os, sys
            def exists(p):
                return os.path.lexists(p)
            mounts = [line.split()[4] for line in open("/proc/self/mountinfo")]
            print(json.dumps({
                "root": sorted(os.listdir("/")),
                "etc": sorted(os.listdir("/etc")),
                "tmp": sorted(os.listdir("/tmp")),
                "absent": {p: exists(p) for p in sys.argv[1:]},
                "mounts": mounts,
                "passwd": open("/etc/passwd").read(),
            }))
        """), "/etc/shadow", "/root", "/work", "/run/nucleus", "/old_root", "/var", "/opt",
            "/home/root", marker.name, options=mode.options)
    finally:
        os.unlink(marker.name)
    assert set(out["root"]) <= {
        "bin", "sbin", "usr", "lib", "lib32", "lib64", "nix", "context", "dev", "etc", "home",
        "proc", "run", "tmp",
    }, out["root"]
    assert not {"shadow", "gshadow", "sudoers", "ssh"} & set(out["etc"])
    assert out["tmp"] == []
    assert out["absent"] == {p: False for p in out["absent"]}
    allowed = ("/", "/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/nix", "/context", "/dev",
               "/proc", "/tmp", "/home/agent", "/etc")
    if mode.production:
        # The closure's own /etc, nothing of the host's; the store paths it lists, its secrets.
        assert sorted(out["etc"]) == ["group", "hosts", "nsswitch.conf", "passwd"]
        assert out["passwd"].startswith("root:x:0:0:root:/root:/bin/sh\n")
        allowed += ("/run/secrets",)
    else:
        # The generated files, and the host's pieces the allowlist names
        # (tests/kernel/test_host_etc_visible.py holds the exact set); never its shadow file.
        assert {"group", "hostname", "hosts", "nsswitch.conf", "passwd", "resolv.conf"} <= set(out["etc"])
        assert "root:x:0:0:root:/home/agent:/bin/sh" in out["passwd"]
    strays = [m for m in out["mounts"]
              if not any(m == a or m.startswith(a.rstrip("/") + "/") for a in allowed)]
    assert strays == []


def test_sys_is_not_reachable(mode):
    out = run_json(textwrap.dedent("""\
        import json, os
        print(json.dumps({
            "sys": os.path.lexists("/sys"),
            "fstypes": sorted({line.split(" - ")[1].split()[0] for line in open("/proc/self/mountinfo")}),
        }))
    """), options=mode.options)
    assert out["sys"] is False
    assert "sysfs" not in out["fstypes"]
    assert "cgroup2" not in out["fstypes"] and "cgroup" not in out["fstypes"]


MASKED = ("kcore", "kallsyms", "sysrq-trigger", "keys", "key-users", "timer_list", "sched_debug",
          "kmsg", "kpagecount", "kpageflags", "kpagecgroup", "config.gz", "acpi", "scsi", "firmware")


def test_sensitive_proc_entries_are_masked(mode):
    out = run_json(textwrap.dedent("""\
        import json, os, stat, sys
        r = {}
        for name in sys.argv[1:]:
            path = "/proc/" + name
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                r[name] = "absent"
                continue
            if stat.S_ISDIR(st.st_mode):
                r[name] = "empty dir" if not os.listdir(path) else "dir: " + ",".join(os.listdir(path))
            elif stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3):
                with open(path, "rb") as f:
                    r[name] = "null" if f.read(64) == b"" else "null with data"
            else:
                r[name] = "visible"
        print(json.dumps(r))
    """), *MASKED, options=mode.options)
    for name in MASKED:
        on_host = os.path.lexists(f"/proc/{name}")
        if on_host:
            assert out[name] in ("null", "empty dir"), (name, out[name])
        else:
            assert out[name] in ("absent", "null", "empty dir"), (name, out[name])


def test_proc_sys_and_sysrq_are_not_writable(mode):
    with open("/proc/sys/kernel/core_pattern") as f:
        core_pattern = f.read()
    hostname = socket.gethostname()
    out = run_json(textwrap.dedent("""\
        import errno, json, os, stat
        r = {}
        for path, data in (("/proc/sys/kernel/hostname", b"evil"),
                           ("/proc/sys/kernel/core_pattern", b"|/tmp/x"),
                           ("/proc/sys/vm/drop_caches", b"3"),
                           ("/proc/sysrq-trigger", b"h")):
            try:
                fd = os.open(path, os.O_WRONLY)
            except OSError as e:
                r[path] = errno.errorcode[e.errno]
                continue
            st = os.fstat(fd)
            # Only the /dev/null that masks an entry may open for writing.
            null = stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
            try:
                os.write(fd, data)
                r[path] = "wrote to /dev/null" if null else "WROTE"
            except OSError as e:
                r[path] = errno.errorcode[e.errno]
            os.close(fd)
        r["hostname"] = open("/proc/sys/kernel/hostname").read().strip()
        print(json.dumps(r))
    """), options=mode.options)
    for path in ("/proc/sys/kernel/hostname", "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches"):
        assert out[path] in ("EACCES", "EROFS"), (path, out[path])
    if os.path.exists("/proc/sysrq-trigger"):
        assert out["/proc/sysrq-trigger"] in ("EACCES", "EROFS", "wrote to /dev/null")
    else:
        assert out["/proc/sysrq-trigger"] == "ENOENT"
    assert out["hostname"] == "nucleus"
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == core_pattern
    assert socket.gethostname() == hostname


def test_init_is_not_inspectable(mode):
    # PID 1 is a forked nucleus process: its memory holds the host environment and its
    # /proc links lead out of the sandbox. None of it may be read.
    out = run_json(textwrap.dedent("""\
        import errno, json, os
        r = {}
        for path in ("/proc/1/environ", "/proc/1/mem", "/proc/1/maps", "/proc/1/exe"):
            try:
                os.close(os.open(path, os.O_RDONLY))
                r[path] = "opened"
            except OSError as e:
                r[path] = errno.errorcode[e.errno]
        for path in ("/proc/1/exe", "/proc/1/root", "/proc/1/cwd"):
            try:
                r["readlink " + path] = os.readlink(path)
            except OSError as e:
                r["readlink " + path] = errno.errorcode[e.errno]
        try:
            r["/proc/1/fd"] = os.listdir("/proc/1/fd")
        except OSError as e:
            r["/proc/1/fd"] = errno.errorcode[e.errno]
        print(json.dumps(r))
    """), extra_env={"NUCLEUS_TEST_SECRET": "s3cr3t-host-value"}, options=mode.options)
    refused = "ENOENT" if mode.production else "EACCES"  # hidepid=2: PID 1 is not even listed
    assert out == {
        "/proc/1/environ": refused, "/proc/1/mem": refused, "/proc/1/maps": refused,
        "/proc/1/exe": refused, "readlink /proc/1/exe": refused,
        "readlink /proc/1/root": refused, "readlink /proc/1/cwd": refused, "/proc/1/fd": refused,
    }


def test_no_descriptor_leaks_into_the_workload(tmp_path, mode):
    # A descriptor the caller hands to nucleus (here: an open host file) must not reach the
    # workload; the workload starts with exactly stdin, stdout and stderr.
    secret = tmp_path / "host-secret"
    secret.write_text("host secret\n")
    fd = os.open(secret, os.O_RDONLY)
    try:
        result = run_python(textwrap.dedent("""\
            import json, os
            listed = sorted(int(n) for n in os.listdir("/proc/self/fd"))
            still_open = []
            for fd in range(3, 4096):
                try:
                    os.fstat(fd)
                    still_open.append(fd)
                except OSError:
                    pass
            print(json.dumps({"listed": listed, "open": still_open}))
        """), pass_fds=(fd,), options=mode.options)
    finally:
        os.close(fd)
    assert result.returncode == 0, describe(result)
    out = json.loads(result.stdout)
    assert out["open"] == []
    # The listing itself holds one descriptor while it reads the directory.
    assert out["listed"][:3] == [0, 1, 2] and len(out["listed"]) == 4, out["listed"]


def test_system_directories_are_read_only(mode):
    out = run_json(textwrap.dedent("""\
        import errno, json, os
        def attempt(f):
            try:
                f()
                return "0"
            except OSError as e:
                return errno.errorcode[e.errno]
        r = {}
        for d in ("/usr", "/usr/bin", "/bin", "/lib", "/etc", "/", "/dev", "/run", "/usr/local/bin"):
            r["create " + d] = attempt(lambda: os.close(os.open(d + "/nucleus-x", os.O_WRONLY | os.O_CREAT, 0o755)))
            r["mkdir " + d] = attempt(lambda: os.mkdir(d + "/nucleus-d"))
        r["write /usr/bin/true"] = attempt(lambda: os.close(os.open("/usr/bin/true", os.O_WRONLY)))
        r["unlink /usr/bin/true"] = attempt(lambda: os.unlink("/usr/bin/true"))
        r["chmod /usr/bin/true"] = attempt(lambda: os.chmod("/usr/bin/true", 0o4777))
        r["rename /etc/passwd"] = attempt(lambda: os.rename("/etc/passwd", "/etc/p"))
        r["write /etc/passwd"] = attempt(lambda: os.close(os.open("/etc/passwd", os.O_WRONLY)))
        flags = {d: os.statvfs(d).f_flag for d in ("/", "/usr", "/dev", "/proc")}
        r["flags"] = {d: [bool(f & os.ST_RDONLY), bool(f & os.ST_NOSUID), bool(f & os.ST_NODEV)]
                      for d, f in flags.items()}
        print(json.dumps(r))
    """), options=mode.options)
    flags = out.pop("flags")
    if mode.production:  # the closure has no /usr/local
        assert (out.pop("create /usr/local/bin"), out.pop("mkdir /usr/local/bin")) == ("ENOENT", "ENOENT")
    denied = {key: val for key, val in out.items() if val not in ("EROFS", "EACCES", "EPERM")}
    assert denied == {}, f"writes into read-only places did not fail: {denied}"
    assert flags["/"] == [True, True, True]
    assert flags["/usr"] == [True, True, True]
    assert flags["/dev"][0] and flags["/dev"][1]
    assert flags["/proc"][0]


EXEC_PROBE = textwrap.dedent("""\
    import errno, json, os, shutil, subprocess, sys
    r = {}
    for d in sys.argv[1:]:
        path = os.path.join(d, "nucleus-true")
        if d != "/context":
            shutil.copy("/usr/bin/true", path)
            os.chmod(path, 0o755)
        try:
            r[d] = "ran, status %d" % subprocess.run([path]).returncode
        except OSError as e:
            r[d] = errno.errorcode[e.errno]
    r["/usr/bin/true"] = "ran, status %d" % subprocess.run(["/usr/bin/true"]).returncode
    loader = subprocess.run(["/lib64/ld-linux-x86-64.so.2", "/tmp/nucleus-true"], capture_output=True, text=True)
    r["loader"] = [loader.returncode, loader.stderr]
    print(json.dumps(r))
""")


@pytest.mark.parametrize("service_mode", ["agent", "strict-agent", "production"])
@pytest.mark.parametrize("context_mode", ["copy", "bind"])
def test_only_the_workspace_runs_what_was_written_or_brought_in(tmp_path, context_mode, service_mode, request):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy("/usr/bin/true", ctx / "nucleus-true")
    os.chmod(ctx / "nucleus-true", 0o755)
    options = ["--service-mode", service_mode]
    if service_mode == "production":
        options = [*production_options(request.getfixturevalue("closure"), request.getfixturevalue("secret_file"))]
    out = run_json(EXEC_PROBE, "/tmp", "/home/agent", "/dev/shm", "/context",
                   options=["--context", str(ctx), "--context-mode", context_mode, *options])
    loader = out.pop("loader")
    # Agent mode runs what the workload builds in /context and home (nosuid, nodev, and only
    # there); /tmp and /dev/shm never; strict-agent nothing outside the system directories.
    workspace = "ran, status 0" if service_mode == "agent" else "EACCES"
    assert out == {
        "/tmp": "EACCES", "/home/agent": workspace, "/dev/shm": "EACCES", "/context": workspace,
        "/usr/bin/true": "ran, status 0",
    }
    # Running it through the dynamic loader maps it executable, which noexec refuses.
    assert loader[0] != 0 and "failed to map segment" in loader[1], loader


def test_dev_is_minimal_and_read_only(mode):
    out = run_json(textwrap.dedent("""\
        import errno, json, os, stat
        entries = {}
        for name in os.listdir("/dev"):
            st = os.lstat("/dev/" + name)
            kind = ("chr" if stat.S_ISCHR(st.st_mode) else "blk" if stat.S_ISBLK(st.st_mode)
                    else "dir" if stat.S_ISDIR(st.st_mode) else "lnk" if stat.S_ISLNK(st.st_mode) else "?")
            entries[name] = kind
        try:
            os.close(os.open("/dev/sda", os.O_WRONLY | os.O_CREAT, 0o600))
            create = "0"
        except OSError as e:
            create = errno.errorcode[e.errno]
        print(json.dumps({"entries": entries, "pts": sorted(os.listdir("/dev/pts")), "create": create}))
    """), options=mode.options)
    assert out["entries"] == {
        "null": "chr", "zero": "chr", "full": "chr", "random": "chr", "urandom": "chr", "tty": "chr",
        "pts": "dir", "shm": "dir", "ptmx": "lnk", "fd": "lnk", "stdin": "lnk", "stdout": "lnk",
        "stderr": "lnk",
    }
    assert out["pts"] == ["ptmx"]  # a private devpts instance: no host terminal is listed
    assert out["create"] in ("EROFS", "EACCES")


@SANDBOX
def test_root_in_the_sandbox_is_nobody_on_the_host(mode):
    # Seen from the host, the workload runs as the first id of the unprivileged range.
    argv = ["sleep", "31.4159"]
    proc = popen_nucleus(["run", *mode.options, "--", *argv])
    try:
        found = wait_for(lambda: find_processes(argv))
        assert found, "the workload never started"
        assert {p.uid for p in found} == {SUBUID_BASE}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM


# --- what production adds ------------------------------------------------------------------------

# The pids /proc lists to the probe, but its own.
PIDS = ("import json, os; print(json.dumps(sorted(int(p) for p in os.listdir('/proc') "
        "if p.isdigit() and int(p) != os.getpid())))")


def test_other_users_processes_are_not_listed_in_production(mode):
    # A command joined as nobody into a service running as `app`: agent mode lists every
    # process of the container in /proc (their files closed to it); production mounts /proc
    # with hidepid=2, where only what it may inspect is listed (itself), never PID 1.
    with Scope() as scope:
        cid = scope.detach(scope.sh("echo ready; exec sleep 300"), *mode.options, "--name", "svc",
                           "--user", "1000")
        scope.wait_log(cid, lambda text: text == "ready\n")
        seen = scope.nucleus("exec", "-u", "nobody", "svc", "/usr/bin/python3", "-c", PIDS)
        assert seen.returncode == 0, describe(seen)
        others = json.loads(seen.stdout)
        if mode.production:
            assert others == [], describe(seen)
        else:
            assert 1 in others and len(others) >= 2, describe(seen)
        mounts = scope.nucleus("exec", "svc", "grep", " /proc ", "/proc/self/mountinfo")
        assert ("hidepid=invisible" in mounts.stdout.split(" - ")[1]) is mode.production, describe(mounts)
        assert scope.nucleus("rm", "--force", "svc").returncode == 0
        scope.assert_clean()


def test_production_secret_is_closed_to_other_users(closure, secret_file):
    # The service runs as `app`; its secret (0400, app's) is closed to every other user,
    # container root included (it holds no capability).
    with Scope() as scope:
        cid = scope.detach(scope.sh("echo ready; exec sleep 300"), *production_options(closure, secret_file),
                           "--name", "svc", "--user", "app")
        scope.wait_log(cid, lambda text: text == "ready\n")
        for user in ("nobody", "0"):
            read = scope.nucleus("exec", "-u", user, "svc", "cat", "/run/secrets/api_key")
            assert read.returncode != 0 and SECRET_VALUE not in read.stdout, describe(read)
            assert "Permission denied" in read.stderr, describe(read)
        read = scope.nucleus("exec", "svc", "cat", "/run/secrets/api_key")
        assert (read.returncode, read.stdout) == (0, SECRET_VALUE), describe(read)
        assert scope.nucleus("rm", "--force", "svc").returncode == 0
        scope.assert_clean()


SECRETS = textwrap.dedent("""\
    import json, os, stat
    def flags(point):
        line = next(l for l in open("/proc/self/mountinfo") if l.split()[4] == point)
        return sorted(line.split()[5].split(",")), line.split(" - ")[1].split()[0]
    r = {}
    for path in ("/run/secrets", "/run/secrets/api_key"):
        st = os.stat(path)
        r[path] = [oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid]
    r["value"] = open("/run/secrets/api_key").read()
    r["mount"] = flags("/run/secrets")
    try:
        open("/run/secrets/api_key", "w")
        r["write"] = "0"
    except OSError as e:
        r["write"] = os.strerror(e.errno)
    print(json.dumps(r))
""")


def test_production_secrets_are_on_a_tmpfs_of_the_workload_user(closure, secret_file, tmp_path):
    audit = tmp_path / "audit.jsonl"
    out = run_json(SECRETS, options=[*production_options(closure, secret_file), "--user", "app",
                                     "--audit-log", str(audit)])
    assert out == {
        "/run/secrets": ["0o500", APP_UID, APP_UID],
        "/run/secrets/api_key": ["0o400", APP_UID, APP_UID],
        "value": SECRET_VALUE,
        "mount": [["nodev", "noexec", "nosuid", "relatime", "ro"], "tmpfs"],
        "write": "Read-only file system",
    }
    # The mounts were audited after setup (the secrets' among them) and passed, before the start.
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert "mount_audit_passed" in kinds and kinds.index("mount_audit_passed") < kinds.index("container_start")
    assert [e for e in events if e["error"]] == []
    assert SECRET_VALUE not in audit.read_text()


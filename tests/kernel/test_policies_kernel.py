"""Policy files enforced for real: Docker's default seccomp profile, hand-written profiles, a
capability policy and a Landlock policy, each showing the allowed and the denied side.

A filter or a restriction cannot be lifted and a denied call may kill the process, so every test
forks; the child applies the policy, tries things and reports each result over a pipe as it
goes; the parent asserts on the reports and on how the child ended.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import textwrap
from pathlib import Path

import pytest

from nucleus import linux
from nucleus.config import seccomp_default as sd
from nucleus.config.policy import caps_policy as cp
from nucleus.config.policy import landlock_policy as lp
from nucleus.config.policy import seccomp_profile as sp
from nucleus.effects import abi, caps, landlock, seccomp
from nucleus.effects import libc as nlibc
from tests.child import Child, in_child, say
from tests.helpers import DOCKER_PROFILE, NEEDS_DOCKER_PROFILE

SECCOMP = pytest.mark.requires("root", "seccomp", "pyseccomp")
CAPS = pytest.mark.requires("root", "netns")
LANDLOCK = pytest.mark.requires("root", "landlock")

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "policies"

libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.syscall.restype = ctypes.c_long

NR = {"getpid": 39, "getuid": 102, "getppid": 110, "socket": 41, "unshare": 272}
AF_UNIX, AF_INET, AF_INET6, AF_VSOCK = 1, 2, 10, 40
SOCK_STREAM, SOCK_DGRAM = 1, 2


def syscall(name: str, *args: int) -> list[int]:
    """A raw syscall: [return value, errno] (errno 0 on success)."""
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(NR[name]), *(ctypes.c_ulong(a & (2**64 - 1)) for a in args))
    err = ctypes.get_errno() if ret == -1 else 0
    if ret >= 0 and name == "socket":
        os.close(ret)
    return [ret, err]


def parse_file(name: str, **facts) -> dict:
    return sp.parse_seccomp_profile((DATA / name).read_bytes(), name, **facts)


# --- Docker's default profile ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_profile() -> dict:
    return sp.parse_seccomp_profile(DOCKER_PROFILE.read_bytes(), "docker.json", kernel=os.uname().release)


@pytest.fixture(scope="module")
def docker_program(docker_profile) -> bytes:
    return seccomp.compile_profile(docker_profile)


@SECCOMP
@NEEDS_DOCKER_PROFILE
def test_docker_profile_compiles_and_is_cached(docker_profile, docker_program, tmp_path, capfd):
    assert 0 < len(docker_program) // 8 <= abi.BPF_MAXINSNS
    assert seccomp.compile_profile(docker_profile) == docker_program  # deterministic
    first = seccomp.cached_program(docker_profile, str(tmp_path))
    assert first == docker_program
    assert (tmp_path / f"{seccomp.cache_key(docker_profile)}.bpf").read_bytes() == first
    first_warning = capfd.readouterr().err
    assert "unknown to libseccomp" in first_warning
    assert seccomp.cached_program(docker_profile, str(tmp_path)) == first
    # A cache hit compiles nothing, but repeats the compiler's warnings: every run is told which
    # names of the profile got the default action.
    assert capfd.readouterr().err == first_warning.splitlines(keepends=True)[-1]


@SECCOMP
@NEEDS_DOCKER_PROFILE
@pytest.mark.parametrize(
    "argv",
    [
        ["/bin/ls", "-la", "/"],
        ["/bin/sh", "-c", "echo start; x=$(echo sub); test \"$x\" = sub; ls / | wc -l; echo done"],
        [
            "/usr/bin/python3",
            "-c",
            textwrap.dedent(
                """
                import json, socket, subprocess, tempfile, threading
                subprocess.run(["/bin/true"], check=True)
                t = threading.Thread(target=lambda: None); t.start(); t.join()
                a, b = socket.socketpair(); a.send(b"x"); assert b.recv(1) == b"x"
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.close()
                with tempfile.TemporaryDirectory() as d:
                    open(d + "/f", "w").write("x")
                print(json.dumps("done"))
                """
            ),
        ],
    ],
    ids=["ls", "sh", "python3"],
)
def test_docker_profile_runs_ordinary_programs(docker_program, argv):
    def body():
        seccomp.load_program(docker_program)
        say("loaded")
        os.execv(argv[0], argv)

    child = in_child(body, capture=True)
    assert child.exit_code == 0, child
    assert child.reports == ["loaded"]
    assert b"done" in child.output or argv[0] == "/bin/ls", child
    if argv[0] == "/bin/ls":
        assert b"bin" in child.output, child


@SECCOMP
@NEEDS_DOCKER_PROFILE
def test_docker_profile_denies_with_eperm(docker_program):
    """Docker's defaultAction is SCMP_ACT_ERRNO (EPERM): denied calls fail, nothing is killed."""
    calls = [
        ("unshare", linux.CLONE_NEWUTS),  # needs CAP_SYS_ADMIN in Docker's includes
        ("socket", AF_VSOCK, SOCK_STREAM, 0),  # domain 40 is outside Docker's three socket rules
    ]

    def baseline():
        say([syscall(*c) for c in calls])

    def body():
        seccomp.load_program(docker_program)
        say([syscall(*c) for c in calls])
        say(syscall("getpid"))

    before = in_child(baseline)
    assert before.exit_code == 0 and before.reports[0][0] == [0, 0], before  # root may unshare
    child = in_child(body)
    assert child.exit_code == 0, child
    denied, getpid = child.reports
    assert denied == [[-1, errno.EPERM], [-1, errno.EPERM]]
    assert getpid[0] > 0 and getpid[1] == 0


@SECCOMP
@NEEDS_DOCKER_PROFILE
def test_docker_profile_includes_follow_the_kept_capabilities():
    profile = sp.parse_seccomp_profile(
        DOCKER_PROFILE.read_bytes(), "docker.json", caps=["CAP_SYS_ADMIN"], kernel=(6, 1)
    )
    program = seccomp.compile_profile(profile)

    def body():
        seccomp.load_program(program)
        say(syscall("unshare", linux.CLONE_NEWUTS))

    child = in_child(body)
    assert child.exit_code == 0 and child.reports == [[0, 0]], child


# --- hand-written profiles ------------------------------------------------------------------------------


@SECCOMP
def test_minimal_profile_allows_only_what_it_lists():
    profile = parse_file("minimal.seccomp.json")
    program = seccomp.compile_profile(profile)

    def body():
        seccomp.load_program(program)
        say(["getpid", syscall("getpid")])
        say(["getuid", syscall("getuid")])  # listed with SCMP_ACT_ERRNO / EACCES
        say(["getppid", syscall("getppid")])  # not listed: the process is killed here

    child = in_child(body)
    assert child.killed_by == signal.SIGSYS, child
    (name1, getpid), (name2, getuid) = child.reports
    assert (name1, name2) == ("getpid", "getuid")
    assert getpid[0] > 0 and getpid[1] == 0
    assert getuid == [-1, errno.EACCES]


@SECCOMP
def test_or_on_one_argument_and_across_arguments():
    """socket is allowed for (AF_UNIX or AF_INET) and SOCK_STREAM; everything else the profile
    does not list fails with EPERM (its defaultAction is SCMP_ACT_ERRNO)."""
    doc = json.loads((DATA / "socket-or.seccomp.json").read_bytes())
    # What a Python process needs to keep running and report, from the built-in allowlist.
    doc["syscalls"].append({"names": list(sd.unconditional_syscalls()), "action": "SCMP_ACT_ALLOW"})
    profile = sp.parse_seccomp_profile(json.dumps(doc).encode(), "socket-or.seccomp.json")
    program = seccomp.compile_profile(profile)
    cases = {
        "unix stream": (AF_UNIX, SOCK_STREAM),
        "inet stream": (AF_INET, SOCK_STREAM),
        "inet6 stream": (AF_INET6, SOCK_STREAM),
        "inet dgram": (AF_INET, SOCK_DGRAM),
        "unix dgram": (AF_UNIX, SOCK_DGRAM),
    }

    def body():
        seccomp.load_program(program)
        say({name: syscall("socket", d, t, 0)[1] for name, (d, t) in cases.items()})

    child = in_child(body)
    assert child.exit_code == 0, child
    assert child.reports == [
        {
            "unix stream": 0,
            "inet stream": 0,
            "inet6 stream": errno.EPERM,
            "inet dgram": errno.EPERM,
            "unix dgram": errno.EPERM,
        }
    ]


# --- capability policy ------------------------------------------------------------------------------------

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def bind_port_80(policy_file: str) -> Child:
    policy = cp.parse_caps_policy((DATA / policy_file).read_bytes(), policy_file)

    def body():
        # A fresh network namespace, so port 80 is free and nothing reaches the host's network.
        nlibc.unshare(linux.CLONE_NEWNET)
        _loopback_up()
        caps.drop_capabilities(policy.keep)
        say(caps.read_status_caps()["CapEff"])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", 80))
                s.listen(1)
                say("bound")
            except OSError as e:
                say(errno.errorcode[e.errno])

    return in_child(body)


@CAPS
def test_caps_policy_keeping_net_bind_service_binds_port_80():
    child = bind_port_80("net-bind.caps.toml")
    assert child.exit_code == 0, child
    assert child.reports == [1 << 10, "bound"]


@CAPS
def test_caps_policy_without_it_cannot_bind_port_80():
    child = bind_port_80("readme.caps.toml")
    assert child.exit_code == 0, child
    assert child.reports == [0, "EACCES"]


# --- Landlock policy ---------------------------------------------------------------------------------------


def _attempt(fn) -> str:
    try:
        fn()
    except OSError as e:
        return errno.errorcode[e.errno]
    return "ok"


@LANDLOCK
def test_landlock_policy_allows_one_directory_and_denies_its_sibling(tmp_path):
    allowed, denied = tmp_path / "allowed", tmp_path / "denied"
    for d in (allowed, denied):
        d.mkdir()
        (d / "file").write_text("x")
    shutil.copy("/bin/true", allowed / "true")
    text = textwrap.dedent(
        f"""
        min_abi = 1

        [[rules]]
        path = "/usr"
        access = ["read", "execute"]

        [[rules]]
        path = "/lib"
        access = ["read", "execute"]

        [[rules]]
        path = "/lib64"
        access = ["read", "execute"]

        [[rules]]
        path = "/bin"
        access = ["read", "execute"]

        [[rules]]
        path = "/etc"
        access = ["read"]

        [[rules]]
        path = "{allowed}/"
        access = ["read", "write", "create", "remove"]
        """
    )
    policy = lp.parse_landlock_policy(text.encode(), "one-dir.landlock.toml")
    assert policy.min_abi <= landlock.abi_version()

    def run(path):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the grandchild
            try:
                os.execv(path, [path])
            except OSError as e:
                os._exit(100 + e.errno)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    def body():
        landlock.restrict(policy.restrict_rules())
        say({
            "read allowed": _attempt(lambda: (allowed / "file").read_text()),
            "write allowed": _attempt(lambda: (allowed / "new").write_text("y")),
            "remove allowed": _attempt(lambda: (allowed / "new").unlink()),
            "list allowed": _attempt(lambda: os.listdir(allowed)),
            "read sibling": _attempt(lambda: (denied / "file").read_text()),
            "write sibling": _attempt(lambda: (denied / "new").write_text("y")),
            "list sibling": _attempt(lambda: os.listdir(denied)),
            "list parent": _attempt(lambda: os.listdir(tmp_path)),
        })
        # read does not imply execute: the copy of true in the allowed directory cannot run,
        # the one in /bin (read and execute) can.
        say({"exec allowed/true": run(str(allowed / "true")), "exec /bin/true": run("/bin/true")})

    child = in_child(body)
    assert child.exit_code == 0, child
    access, execs = child.reports
    assert access == {
        "read allowed": "ok",
        "write allowed": "ok",
        "remove allowed": "ok",
        "list allowed": "ok",
        "read sibling": "EACCES",
        "write sibling": "EACCES",
        "list sibling": "EACCES",
        "list parent": "EACCES",
    }
    assert execs == {"exec allowed/true": 100 + errno.EACCES, "exec /bin/true": 0}
    assert not (denied / "new").exists()


# --- compiling what libseccomp cannot ------------------------------------------------------------------

COMPILE = pytest.mark.requires("pyseccomp")


def _arg(index, op, value):
    return {"index": index, "value": value, "op": f"SCMP_CMP_{op}"}


def _bpf_ok(program: bytes) -> bool:
    return bool(program) and len(program) % 8 == 0 and program[-8] & 0x07 == 0x06


@COMPILE
def test_compiling_never_hangs():
    """libseccomp 2.5.4 loops forever adding these two rules; the compile is given up after the
    timeout with a message, instead of hanging nucleus. (A libseccomp without the bug compiles
    them.)"""
    import time

    doc = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW",
             "args": [_arg(0, "NE", 2), _arg(1, "GT", 3), _arg(2, "GT", 3)]},
            {"names": ["read"], "action": "SCMP_ACT_ALLOW",
             "args": [_arg(0, "NE", 2), _arg(2, "EQ", 1)]},
        ],
    }
    profile = sp.parse_seccomp_profile(json.dumps(doc).encode(), "loop.json")
    started = time.monotonic()
    try:
        program = seccomp.compile_profile(profile, timeout=2)
    except ValueError as e:
        assert str(e) == (
            f"seccomp profile: libseccomp {nlibc.libseccomp_version()} did not finish "
            "compiling it within 2 s (a libseccomp bug with some rules that have several argument "
            "conditions); simplify the argument conditions of its rules"
        )
    else:
        assert _bpf_ok(program)
    assert time.monotonic() - started < 5


@COMPILE
def test_a_rule_libseccomp_refuses_is_named():
    doc = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW",
             "args": [_arg(0, "GT", 3), _arg(1, "LT", 3)]},
            {"names": ["read"], "action": "SCMP_ACT_LOG", "args": [_arg(0, "GT", 3)]},
        ],
    }
    profile = sp.parse_seccomp_profile(json.dumps(doc).encode(), "exists.json")
    try:
        program = seccomp.compile_profile(profile)
    except ValueError as e:
        assert str(e).startswith(
            f"syscalls[1]: libseccomp {nlibc.libseccomp_version()} refused the SCMP_ACT_LOG rule "
            "for 'read' with args[0] > 3: "
        ), e
    else:
        assert _bpf_ok(program)


@COMPILE
def test_unknown_syscall_names_are_skipped_with_one_warning(capfd):
    doc = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "no_such_call_a", "write", "no_such_call_b"],
                      "action": "SCMP_ACT_ALLOW"}],
    }
    profile = sp.parse_seccomp_profile(json.dumps(doc).encode(), "new.json")
    capfd.readouterr()
    program = seccomp.compile_profile(profile)
    assert _bpf_ok(program)
    assert capfd.readouterr().err == (
        f"nucleus: warning: seccomp profile: syscalls unknown to libseccomp "
        f"{nlibc.libseccomp_version()} (newer than the library, or no syscall at all) skipped, "
        "so they get the default action: 'no_such_call_a', 'no_such_call_b'\n"
    )
    known = dict(doc, syscalls=[{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}])
    assert program == seccomp.compile_profile(known)

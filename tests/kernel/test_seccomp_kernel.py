"""The default seccomp profile loaded for real.

A denied syscall fails with EPERM (or the errno of its rule), or under the kill default kills
the whole process with SIGSYS, so every test forks, loads the filter in the child, tries the
call there and reports over a pipe; the parent asserts on what came back and on how the child
ended.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import resource
import signal
import socket
import textwrap

import pytest

from nucleus import linux
from nucleus.config import seccomp_default as sd
from nucleus.effects import abi, seccomp
from nucleus.effects import libc as nlibc
from tests.child import Child, in_child

pytestmark = pytest.mark.requires("root", "seccomp", "pyseccomp")

libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.syscall.restype = ctypes.c_long

NR = {
    "ioctl": 16,
    "mprotect": 10,
    "ptrace": 101,
    "prctl": 157,
    "keyctl": 250,
    "bpf": 321,
    "clone": 56,
    "clone3": 435,
    "execveat": 322,
    "io_uring_setup": 425,
    "mount": 165,
}


def syscall(nr: int, *args: int) -> tuple[int, int]:
    """A raw syscall with 64-bit arguments: (return value, errno)."""
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a & (2**64 - 1)) for a in args))
    return ret, ctypes.get_errno()


@pytest.fixture(scope="module")
def programs():
    return {
        False: seccomp.compile_profile(sd.default_profile(networked=False)),
        True: seccomp.compile_profile(sd.default_profile(networked=True)),
        "kill": seccomp.compile_profile(sd.default_profile(networked=False, default_action="kill")),
        "jit": seccomp.compile_profile(sd.default_profile(networked=False, jit=True)),
    }


def filtered(programs, body, *, networked=False, before=None, program=None) -> Child:
    def run(prepared=None):
        seccomp.load_program(programs[networked if program is None else program])
        return body(prepared)

    return in_child(run, before=before)


def assert_killed(outcome: Child) -> None:
    assert outcome.killed_by == signal.SIGSYS, outcome


def assert_survived(outcome: Child):
    assert outcome.exit_code == 0, outcome
    return outcome.result["value"]


# --- the filter is in force and ordinary programs run ------------------------------------------


def test_status_shows_filter_and_no_new_privs(programs):
    def body(_):
        fields = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return fields["Seccomp"], fields["NoNewPrivs"]

    assert assert_survived(filtered(programs, body)) == ["2", "1"]


def exec_in_filter(programs, argv, networked=False) -> Child:
    def body(_):
        os.execv(argv[0], argv)

    return filtered(programs, body, networked=networked)


def test_true_runs_via_execve(programs):
    outcome = exec_in_filter(programs, ["/bin/true"])
    assert outcome.exit_code == 0 and outcome.result is None, outcome


def test_coreutils_and_bash_run(tmp_path, programs):
    script = textwrap.dedent(
        f"""
        set -e
        cd {tmp_path}
        ls -la / | sort | uniq | wc -l > /dev/null
        echo hi > a; cp a b; mv b c; touch c; install -m 644 a d; rm -f c d
        mkdir -p x/y; rmdir x/y x
        tar cf t.tar a; tar tf t.tar > /dev/null
        timeout 5 true; nice -n 1 true; sleep 0.01; date > /dev/null; id > /dev/null
        find . -name a -exec cat {{}} + > /dev/null
        printf 'a\\nb\\n' | xargs -n1 echo | sort -r > /dev/null
        ps > /dev/null
        getent ahosts localhost > /dev/null
        x=$(echo sub); test "$x" = sub
        """
    )
    outcome = exec_in_filter(programs, ["/bin/bash", "-c", script])
    assert outcome.exit_code == 0, outcome


def test_python_runs(programs):
    code = textwrap.dedent(
        """
        import asyncio, json, multiprocessing, os, pty, signal, socket, sqlite3, subprocess
        import tempfile, threading
        subprocess.run(["/bin/true"], check=True)
        async def main():
            p = await asyncio.create_subprocess_exec("/bin/true")
            assert await p.wait() == 0
        asyncio.run(main())
        t = threading.Thread(target=lambda: None); t.start(); t.join()
        a, b = socket.socketpair(); a.send(b"x"); assert b.recv(1) == b"x"
        with tempfile.TemporaryDirectory() as d:
            db = sqlite3.connect(os.path.join(d, "x.db")); db.execute("create table t(x)")
            db.close()
        m, s = pty.openpty(); assert os.isatty(s); os.get_terminal_size(s)
        signal.alarm(5); signal.alarm(0)
        if __name__ == "__main__":
            with multiprocessing.Pool(2) as pool:
                assert pool.map(abs, [-1, -2]) == [1, 2]
        print(json.dumps("ok"))
        """
    )
    outcome = exec_in_filter(programs, ["/usr/bin/python3", "-c", code])
    assert outcome.exit_code == 0, outcome


def test_load_profile_uses_the_cache(tmp_path):
    profile = sd.default_profile(networked=False)

    def body():
        loaded = seccomp.load_profile(profile, cache_dir=str(tmp_path))
        return [loaded.cache_hit, loaded.instructions, loaded.key]

    first = assert_survived(in_child(body))
    second = assert_survived(in_child(body))
    assert first[0] is False and second[0] is True
    assert first[1:] == second[1:]
    assert (tmp_path / f"{first[2]}.bpf").exists()


def test_log_denied_flag_is_accepted(programs):
    def body():
        seccomp.load_program(programs[False], log_denied=True)
        return os.getpid() > 0

    assert assert_survived(in_child(body)) is True


# --- denials: the call fails (under kill, the process is killed) -----------------------------------


def _private_mounts():
    nlibc.unshare(linux.CLONE_NEWNS)
    nlibc.mount(None, "/", None, abi.MS_REC | abi.MS_PRIVATE)


def _mmap_page():
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    return page, ctypes.addressof(ctypes.c_char.from_buffer(page))


def _tmpdir():
    """Stands for the test's tmp_path (see test_denied_call_kills)."""
    raise AssertionError("replaced by the test")


def _raw_clone(flags):
    ret, err = syscall(NR["clone"], flags | signal.SIGCHLD, 0, 0, 0, 0)
    if ret == 0:
        os._exit(0)  # only if the filter let it through
    return ret, err


DENIED = {
    "mount": (lambda _: nlibc.mount("none", "/mnt", "tmpfs", 0), _private_mounts),
    "unshare_newuser": (lambda _: nlibc.unshare(linux.CLONE_NEWUSER), None),
    "unshare_newns": (lambda _: nlibc.unshare(linux.CLONE_NEWNS), None),
    "clone_newuser": (lambda _: _raw_clone(linux.CLONE_NEWUSER), None),
    "clone_newpid": (lambda _: _raw_clone(linux.CLONE_NEWPID), None),
    "ptrace_traceme": (lambda _: syscall(NR["ptrace"], 0, 0, 0, 0), None),
    "bpf": (lambda _: syscall(NR["bpf"], 5, 0, 0), None),
    "keyctl": (lambda _: syscall(NR["keyctl"], 0, 2**64 - 3, 0), None),
    "io_uring_setup": (lambda _: syscall(NR["io_uring_setup"], 1, 0), None),
    "socket_packet": (lambda _: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).fileno(), None),
    "socket_netlink_audit": (lambda _: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9).fileno(), None),
    "ioctl_tiocsti": (
        lambda fds: syscall(NR["ioctl"], fds[1], sd.TIOCSTI, ctypes.addressof(ctypes.c_char(b"x"))),
        os.openpty,
    ),
    "mprotect_wx": (
        lambda page: syscall(NR["mprotect"], page[1], mmap.PAGESIZE, 0x7),
        _mmap_page,
    ),
    "memfd_create": (lambda _: os.memfd_create("x"), None),
    "execveat_empty_path": (
        lambda fd: syscall(
            NR["execveat"], fd, ctypes.addressof(ctypes.c_char(b"\0")), 0, 0, 0x1000
        ),
        lambda: os.open("/bin/true", os.O_RDONLY),
    ),
    "prctl_set_mm": (lambda _: syscall(NR["prctl"], linux.PR_SET_MM, 0, 0, 0, 0), None),
    "prctl_set_dumpable_1": (lambda _: nlibc.prctl(linux.PR_SET_DUMPABLE, 1), None),
    "prctl_ambient_raise": (
        lambda _: nlibc.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, 10),
        None,
    ),
    # Limits of another process (the caller's own may be lowered: see below).
    "prlimit_other": (
        lambda _: resource.prlimit(1, resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)),
        None,
    ),
    "setresuid_real": (lambda _: os.setresuid(0, 0, 0), None),
    "setuid": (lambda _: os.setuid(0), None),
    "mknod_char": (lambda d: os.mknod(os.path.join(d, "null"), 0o600 | 0o020000, os.makedev(1, 3)), _tmpdir),
    # A nested filter that allows everything: harmless, and still refused.
    "seccomp": (lambda _: nlibc.seccomp_set_mode_filter(bytes.fromhex("060000000000ff7f")), None),
}


# The errno each refusal gets under the errno default (EPERM, but for a refused socket family).
REFUSED_WITH = {"socket_packet": errno.EAFNOSUPPORT, "socket_netlink_audit": errno.EAFNOSUPPORT}


def _errno_of(body):
    def call(prepared):
        try:
            got = body(prepared)
        except OSError as e:
            return e.errno
        if isinstance(got, tuple) and got[0] == -1:  # a raw syscall's (result, errno)
            return got[1]
        return 0

    return call


def _before(name, tmp_path):
    before = DENIED[name][1]
    return (lambda: str(tmp_path)) if before is _tmpdir else before


@pytest.mark.parametrize("name", sorted(DENIED))
def test_denied_call_fails_and_the_process_lives_on(programs, name, tmp_path):
    outcome = filtered(programs, _errno_of(DENIED[name][0]), before=_before(name, tmp_path))
    assert assert_survived(outcome) == REFUSED_WITH.get(name, errno.EPERM)


@pytest.mark.parametrize("name", sorted(DENIED))
def test_denied_call_kills_under_the_kill_default(programs, name, tmp_path):
    assert_killed(filtered(programs, DENIED[name][0], before=_before(name, tmp_path), program="kill"))


@pytest.mark.parametrize("networked", [False, True])
def test_loopback_servers_and_clients_work(programs, networked):
    # The network namespace is the boundary, not seccomp: TCP and UDP on loopback work.
    def body(_):
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        client.sendall(b"ping")
        got = peer.recv(4)
        six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        six.close()
        return got.decode()

    assert assert_survived(filtered(programs, body, networked=networked)) == "ping"


def test_netlink_route_fails_softly_without_network(programs):
    def body(_):
        try:
            socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        except OSError as e:
            return e.errno
        return 0

    assert assert_survived(filtered(programs, body)) == errno.EAFNOSUPPORT
    # glibc's getaddrinfo probe: an error even under kill, which ends every other family.
    assert assert_survived(filtered(programs, body, program="kill")) == errno.EAFNOSUPPORT
    assert assert_survived(filtered(programs, body, networked=True)) == 0


def test_a_call_newer_than_libseccomp_answers_enosys(programs):
    """glibc and the runtimes fall back to the older call on ENOSYS: a syscall this kernel has
    but libseccomp's table does not name gets it, not the default EPERM."""
    import pyseccomp

    def known(nr):
        try:
            pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, nr)
        except ValueError:
            return False
        return True

    highest = max(nr for nr in range(1024) if known(nr))
    probe = in_child(lambda: [syscall(nr, 0, 0, 0, 0)[1] for nr in range(highest + 1, highest + 16)])
    newer = [nr for nr, err in zip(range(highest + 1, highest + 16), assert_survived(probe), strict=True)
             if err != errno.ENOSYS]
    if not newer:
        pytest.skip(f"this kernel has no syscall above libseccomp's last ({highest})")
    under = filtered(programs, lambda _: [syscall(nr, 0, 0, 0, 0)[1] for nr in newer])
    assert assert_survived(under) == [errno.ENOSYS] * len(newer)


def test_unix_sockets_work_without_network(programs):
    def body(_):
        a, b = socket.socketpair()
        a.sendall(b"ping")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.close()
        return b.recv(4).decode()

    assert assert_survived(filtered(programs, body)) == "ping"


# --- argument filters let the right calls through ----------------------------------------------


def test_clone3_returns_enosys(programs):
    def body(_):
        return syscall(NR["clone3"], 0, 0)

    assert assert_survived(filtered(programs, body)) == [-1, errno.ENOSYS]


def test_threads_and_fork_still_work(programs):
    def body(_):
        import threading

        seen = []
        t = threading.Thread(target=lambda: seen.append(1))
        t.start()
        t.join()
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        return [seen, os.waitstatus_to_exitcode(status)]

    assert assert_survived(filtered(programs, body)) == [[1], 7]


def test_ioctl_request_compared_on_32_bits(programs):
    """The kernel reads the request as a 32-bit value, and so does the filter: garbage in the
    upper half of the register neither kills an allowed request nor rescues a denied one."""
    garbage = 0xDEADBEEF << 32

    def tcgets(fds):
        buf = ctypes.create_string_buffer(64)
        return syscall(NR["ioctl"], fds[1], garbage | 0x5401, ctypes.addressof(buf))

    assert assert_survived(filtered(programs, tcgets, before=os.openpty)) == [0, 0]

    def tiocsti(fds):
        return syscall(
            NR["ioctl"], fds[1], garbage | sd.TIOCSTI, ctypes.addressof(ctypes.c_char(b"x"))
        )

    assert assert_survived(filtered(programs, tiocsti, before=os.openpty)) == [-1, errno.EPERM]
    assert_killed(filtered(programs, tiocsti, before=os.openpty, program="kill"))


def test_pty_allocation_works(programs):
    def body(_):
        master, slave = os.openpty()
        os.write(master, b"hi\n")
        return [os.isatty(slave), os.read(slave, 3).decode()]

    assert assert_survived(filtered(programs, body)) == [True, "hi\n"]


def test_mprotect_without_wx_allowed(programs):
    def body(page):
        rw = syscall(NR["mprotect"], page[1], mmap.PAGESIZE, 0x3)
        rx = syscall(NR["mprotect"], page[1], mmap.PAGESIZE, 0x5)
        return [rw, rx]

    assert assert_survived(filtered(programs, body, before=_mmap_page)) == [[0, 0], [0, 0]]


def test_jit_lets_memory_be_writable_and_executable(programs):
    # Agent mode's profile: V8 (node) flips its code pages to W+X.
    def body(page):
        return syscall(NR["mprotect"], page[1], mmap.PAGESIZE, 0x7)

    assert assert_survived(filtered(programs, body, before=_mmap_page, program="jit")) == [0, 0]
    assert assert_survived(filtered(programs, body, before=_mmap_page)) == [-1, errno.EPERM]


def test_allowed_prctl_options(programs):
    def body(_):
        nlibc.prctl(linux.PR_SET_NAME, ctypes.addressof(ctypes.create_string_buffer(b"worker")))
        return [
            nlibc.prctl(linux.PR_GET_NO_NEW_PRIVS),
            nlibc.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_IS_SET, 10),
            nlibc.prctl(linux.PR_SET_DUMPABLE, 0),
            nlibc.prctl(linux.PR_GET_DUMPABLE),
            nlibc.prctl(linux.PR_CAPBSET_READ, 0) in (0, 1),
        ]

    assert assert_survived(filtered(programs, body)) == [1, 0, 0, 0, True]


def test_getrlimit_allowed(programs):
    def body(_):
        return list(resource.getrlimit(resource.RLIMIT_NOFILE))

    assert assert_survived(filtered(programs, body)) == list(
        resource.getrlimit(resource.RLIMIT_NOFILE)
    )


# --- foreign architectures ---------------------------------------------------------------------


def _int80_getpid():
    """A function that runs i386 getpid (eax=20) through `int 0x80` from this 64-bit process."""
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(bytes.fromhex("b814000000cd80c3"))  # mov eax, 20; int 0x80; ret
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return ctypes.CFUNCTYPE(ctypes.c_int)(address), page


def test_i386_syscall_is_killed(programs):
    control = in_child(lambda prepared: [prepared[0](), os.getpid()], before=_int80_getpid)
    if control.exit_code != 0:
        pytest.skip(f"int 0x80 does not work on this host without a filter: {control}")
    got, pid = control.result["value"]
    assert got == pid
    # Killed whatever the default action: errno (the default) and kill alike.
    for program in (False, "kill"):
        assert_killed(filtered(programs, lambda prepared: prepared[0](), before=_int80_getpid, program=program))


def test_narrow_forms_allowed(programs, tmp_path):
    """mkfifo, lowering the caller's own limits and setresuid(-1, euid, -1) (GNU make's
    posix_spawn) work under the filter."""

    def body(d):
        os.mkfifo(os.path.join(d, "fifo"))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512), hard))
        os.setresuid(-1, os.geteuid(), -1)
        os.setresgid(-1, os.getegid(), -1)
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    outcome = filtered(programs, body, before=lambda: str(tmp_path))
    assert_survived(outcome)
    assert (tmp_path / "fifo").exists()

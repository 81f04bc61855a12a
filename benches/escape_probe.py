"""Escape attempts made from inside a sandbox, one JSON line each:

    /usr/bin/python3 -I -c "$(cat benches/escape_probe.py)"

    {"attempt": NAME, "outcome": "blocked" | "allowed" | "skipped" | "error",
     "errno": "EPERM" | null, "signal": "SIGSYS" | null, "detail": TEXT}

It needs the system's python3 and nothing else: raw system calls through ctypes, each attempt in
a child of its own, so that a filter that kills, or an attempt that changes the process (a new
user namespace, a personality), touches no other attempt. Every call is one whose success is
harmless in a throwaway sandbox, or is made with an argument the kernel rejects (INVALID), so
that the errno says who answered: the kernel's own answer to the invalid argument (EINVAL,
EFAULT, EBADF, ...) means the call got past every control ("allowed"); any other error (EPERM
from a seccomp filter or a missing capability, EROFS from a read-only mount, ENOSYS, ENOENT for
what is not there) means it was stopped ("blocked"). Nothing is written to a kernel
interface: /proc/sys/kernel/core_pattern, /proc/sysrq-trigger and /sys/kernel are only opened
for writing, a tmpfs mounted is unmounted at once, a device node made is removed, and the egress
attempt is made only when the sandbox's network namespace has no route to its address.

tests/security/test_escapes.py runs the system-call helper (`prelude()`) and the raw calls
(RAW) inside nucleus and asserts the seccomp filter refuses every one.
"""

# prelude: begin
import ctypes
import errno
import json
import os
import signal
import socket
import stat
import sys
import tempfile

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def sc(nr, *args):
    """A raw system call: (its return value, the errno's name or "0")."""
    r = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
    return r, errno.errorcode.get(ctypes.get_errno(), "0") if r == -1 else "0"
# prelude: end


# Raw calls, harmless when they succeed: name -> (x86-64 system call number, arguments).
RAW = {
    "unshare(CLONE_NEWUSER)": (272, (0x10000000,)),
    "keyctl": (250, (0, 0, 0, 0)),  # KEYCTL_GET_KEYRING_ID of key 0
    "bpf(BPF_PROG_LOAD)": (321, (5, 0, 0)),  # no program
    "perf_event_open": (298, (0, 0, -1, -1, 0)),  # no attributes
    "init_module": (175, (0, 0, b"")),  # no image
    "finit_module": (313, (-1, b"", 0)),  # no file
    "socket(AF_PACKET, SOCK_RAW)": (41, (17, 3, 0)),
    "reboot (bad magic)": (169, (0, 0, 0, 0)),  # capability first, then EINVAL for the magic
    "io_uring_setup": (425, (1, 0)),  # no parameters
    "userfaultfd": (323, (0,)),
}
# The calls made with an argument the kernel rejects, and the errors it rejects them with.
INVALID = frozenset({"keyctl", "bpf(BPF_PROG_LOAD)", "perf_event_open", "init_module", "finit_module",
                     "reboot (bad magic)", "io_uring_setup", "clock_settime (an invalid clock)"})
ARGUMENT_ERRORS = frozenset({"EINVAL", "EFAULT", "EBADF", "E2BIG", "ENOKEY", "ENOEXEC"})
# Raw calls only the bench makes (the escape tests check raw sockets through Python's socket module).
BENCH_RAW = {
    "socket(AF_INET, SOCK_RAW)": (41, (2, 3, 1)),
    "clock_settime (an invalid clock)": (227, (0x7FFFFFF0, 0)),
    "personality(ADDR_NO_RANDOMIZE)": (135, (0x0040000,)),
}
EGRESS_ADDRESS = "192.0.2.1"  # TEST-NET-1: never routed
SYS_KERNEL_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"
CLONE_NEWNET = 0x40000000
PTRACE_ATTACH = 16
MNT_DETACH = 2


def prelude():
    """The imports and the system-call helper above, as source for probes written as text."""
    with open(__file__) as f:
        text = f.read()
    return text[text.index("# prelude: begin\n"):text.index("# prelude: end\n")]


def answer(err, done="succeeded", invalid=frozenset()):
    """(outcome, errno, detail) of a call that failed with `err` ("0": it succeeded), where
    `invalid` are the kernel's answers to the call's invalid argument."""
    if err == "0":
        return "allowed", None, done
    if err in invalid:
        return "allowed", err, "the kernel answered the invalid argument"
    return "blocked", err, ""


def raw(name):
    nr, args = RAW[name] if name in RAW else BENCH_RAW[name]
    invalid = ARGUMENT_ERRORS if name in INVALID else frozenset()
    return lambda: answer(sc(nr, *args)[1], invalid=invalid)


def scratch():
    """A new directory the sandbox can write to (its /tmp, /dev/shm, ...), or None."""
    for parent in ("/tmp", "/dev/shm", "/run", "/var/tmp"):
        try:
            return tempfile.mkdtemp(prefix="escape-", dir=parent)
        except OSError:
            continue
    return None


def mount_tmpfs():
    where = scratch() or "/tmp"
    r, err = sc(165, b"none", where.encode(), b"tmpfs", 0, None)
    if r == 0:
        sc(166, where.encode(), MNT_DETACH)
    if where != "/tmp":
        os.rmdir(where)
    return answer(err, f"mounted on {where} (unmounted again)")


def mknod_block():
    where = scratch()
    if where is None:
        return "skipped", None, "no writable directory"
    path = os.path.join(where, "blk")
    r, err = sc(133, path.encode(), stat.S_IFBLK | 0o600, (7 << 8) | 0)  # loop0
    if r == 0:
        os.unlink(path)
    os.rmdir(where)
    return answer(err, "made /dev/loop0's node (removed again)")


def setns_pid1_net():
    try:
        fd = os.open("/proc/1/ns/net", os.O_RDONLY)
    except OSError as e:
        return "blocked", errno.errorcode[e.errno], "opening /proc/1/ns/net"
    return answer(sc(308, fd, CLONE_NEWNET)[1], "joined PID 1's network namespace")


def ptrace_sibling(sibling):
    return lambda: answer(sc(101, PTRACE_ATTACH, sibling, 0, 0)[1], "attached to a sibling process")


def masked(fd):
    st = os.fstat(fd)
    return stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)


def open_file(path, flags, done):
    """Open and close, never read nor write: /dev/null bound over the path ("masked") counts
    as blocked."""
    def attempt():
        try:
            fd = os.open(path, flags)
        except OSError as e:
            return answer(errno.errorcode[e.errno])
        try:
            return ("blocked", None, "masked") if masked(fd) else answer("0", done)
        finally:
            os.close(fd)
    return attempt


def pid1_root():
    try:
        os.listdir("/proc/1/root/")
        theirs, ours = os.stat("/proc/1/root/"), os.stat("/")
    except OSError as e:
        return answer(errno.errorcode[e.errno])
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        return "blocked", None, "own root"  # PID 1's root is the sandbox's own: nothing else to read
    return "allowed", None, "listed a root other than the sandbox's"


def routed(table, address):
    """Whether /proc/net/route's text has a route (a default one included) covering address."""
    dest = int.from_bytes(socket.inet_aton(address), "little")
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and (dest & int(fields[7], 16)) == int(fields[1], 16):
            return True
    return False


def egress():
    try:
        with open("/proc/net/route") as f:
            table = f.read()
    except OSError as e:
        return "skipped", None, f"no route table to check ({errno.errorcode[e.errno]}): not attempted"
    if routed(table, EGRESS_ADDRESS):
        return "skipped", None, f"the namespace has a route to {EGRESS_ADDRESS}: not attempted"
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as e:
        return answer(errno.errorcode[e.errno])
    s.settimeout(1)
    try:
        s.connect((EGRESS_ADDRESS, 80))
    except TimeoutError:
        return "allowed", None, "sent, no answer within 1 s"
    except ConnectionRefusedError:
        return "allowed", "ECONNREFUSED", "a host answered"
    except OSError as e:
        return "blocked", errno.errorcode[e.errno], ""
    finally:
        s.close()
    return "allowed", None, "connected"


def attempts(sibling):
    """(name, attempt) in the order of the table."""
    def file(path, flags=os.O_WRONLY):
        verb = "for writing" if flags == os.O_WRONLY else ""
        done = "opened (nothing written)" if verb else "opened"
        return (f"open {path} {verb}".rstrip(), open_file(path, flags, done))
    return [
        ("mount a tmpfs", mount_tmpfs),
        ("unshare(CLONE_NEWUSER)", raw("unshare(CLONE_NEWUSER)")),
        ("setns to /proc/1/ns/net", setns_pid1_net),
        ("ptrace(PTRACE_ATTACH) a sibling", ptrace_sibling(sibling)),
        *((name, raw(name)) for name in
          ("keyctl", "bpf(BPF_PROG_LOAD)", "perf_event_open", "init_module", "finit_module")),
        file("/proc/kcore", os.O_RDONLY),
        file("/proc/sys/kernel/core_pattern"),
        file("/proc/sysrq-trigger"),
        file(SYS_KERNEL_FILE),
        *((name, raw(name)) for name in ("socket(AF_PACKET, SOCK_RAW)", "socket(AF_INET, SOCK_RAW)")),
        ("mknod a block device", mknod_block),
        *((name, raw(name)) for name in
          ("reboot (bad magic)", "clock_settime (an invalid clock)", "io_uring_setup", "userfaultfd",
           "personality(ADDR_NO_RANDOMIZE)")),
        ("list /proc/1/root", pid1_root),
        (f"connect to {EGRESS_ADDRESS}", egress),
    ]


def in_child(attempt, timeout=5):
    """(outcome, errno, signal, detail) of attempt() run in a child process."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        signal.alarm(timeout)
        try:
            got = list(attempt())
        except Exception as e:  # noqa: BLE001 - the attempt's own failure is its outcome
            got = ["error", None, f"{type(e).__name__}: {e}"]
        os.write(w, json.dumps(got).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        return ("blocked" if sig == "SIGSYS" else "error"), None, sig, "killed"
    outcome, err, detail = json.loads(data)
    return outcome, err, None, detail


def main():
    sibling = os.fork()
    if sibling == 0:
        signal.pause()
        os._exit(0)
    try:
        for name, attempt in attempts(sibling):
            outcome, err, sig, detail = in_child(attempt)
            print(json.dumps({"attempt": name, "outcome": outcome, "errno": err, "signal": sig,
                              "detail": detail}), flush=True)
    finally:
        os.kill(sibling, signal.SIGKILL)
        os.waitpid(sibling, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

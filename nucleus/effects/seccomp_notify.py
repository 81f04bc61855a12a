"""Seccomp trace mode: record every syscall a workload makes, through seccomp user notification.

The kernel's audit records (``/dev/kmsg``) drop most events under load, so trace mode does not
log: it asks. The traced process installs a filter that returns ``SECCOMP_RET_USER_NOTIF`` for
every native (x86_64) syscall and kills the process on any other ABI (i386, x32), exactly as an
enforced profile with ``architectures: [SCMP_ARCH_X86_64]`` would. Each syscall then waits until
the supervisor, holding the filter's listener fd, has received it (``SECCOMP_IOCTL_NOTIF_RECV``)
and answered ``SECCOMP_USER_NOTIF_FLAG_CONTINUE`` (``SECCOMP_IOCTL_NOTIF_SEND``), which lets it
run unchanged. The filter is inherited across fork, clone and execve, so every descendant is
traced too.

Two sides:

* the traced process calls :func:`start_tracing` with its end of a unix socket right before
  execve: no_new_privs, the filter, the listener fd handed over with SCM_RIGHTS, the listener
  closed. From then on each of its syscalls (the execve first) waits for the supervisor;
* the supervisor takes the listener with :func:`recv_fd` and serves it: :func:`run_until_exit`
  (serve and reap one child, forwarding signals) or :func:`serve` (serve until every traced
  process is gone, for a process that does nothing else; :func:`spawn_tracer` forks such a
  process). Both write NDJSON, one object a line::

      {"syscall": "openat", "nr": 257, "pid": 4242, "arch": "x86_64"}
      ...
      {"summary": {"events": 1234, "syscalls": 41, "exit_status": 0}}

  The summary line comes last, only when tracing ended normally; a trace without it was cut short.
  ``syscall`` is null for a number neither libseccomp nor the built-in table knows.

The one exemption. A filter can only be installed by the process itself, and the listener fd it
returns is still in that process when the filter is already in force: the sendmsg that hands it
over would wait for a supervisor that cannot answer before it receives the fd. So the filter
allows exactly that call without notification: ``sendmsg`` whose first argument is the handoff
socket's fd *and* whose second is the address of the ``msghdr`` built for the handoff (both full
64-bit compares). After execve that address belongs to a new, randomised address space, so a
workload's own sendmsg is always traced. Nothing else is exempt. Between the seccomp(2) call and
that sendmsg the code makes no other syscall: the arguments are built beforehand, both calls go
through a pre-built ``syscall(2)`` call, the garbage collector is paused (a finalizer may close a
file) and every signal is blocked (a handler's rt_sigreturn would wait for a supervisor that does
not hold the listener yet).

Reaping and the end of a trace: the kernel reports POLLHUP on the listener once no task uses the
filter any more, which happens when the last traced task has been *reaped* (a zombie still
counts). :func:`run_until_exit` therefore reaps its child itself and goes on serving until that
hang-up, so descendants that outlive the child keep being answered (``linger`` bounds this).
"""

from __future__ import annotations

import errno as _errno
import json
import os
import select
import signal
import socket
import struct
from typing import Any, TextIO

from nucleus.effects import libc as _sys

ARCH = "x86_64"
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
SYS_sendmsg = 46

# --- classic BPF ---------------------------------------------------------------------------------
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_ALLOW = 0x7FFF0000
# offsets in struct seccomp_data { int nr; u32 arch; u64 instruction_pointer; u64 args[6]; }
_NR, _ARCH = 0, 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i


def _arg_hi(i: int) -> int:
    return 16 + 8 * i + 4


# --- user notification ioctls (linux/seccomp.h) --------------------------------------------------
SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)  (80 bytes)
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp)  (24 bytes)
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
_NOTIF = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, data.nr, data.arch, data.ip, data.args
_RESP = struct.Struct("=QqiI")  # id, val, error, flags
_ZERO_NOTIF = bytes(_NOTIF.size)

# --- signalfd ------------------------------------------------------------------------------------
_SIGSET_BYTES = 128  # glibc's sigset_t
_SIGINFO = struct.Struct("=IiiI")  # ssi_signo, ssi_errno, ssi_code, ssi_pid (of 128 bytes)
_SIGINFO_SIZE = 128

# Longest wait in the serving loops: a safety net for a SIGCHLD that never shows up, and the
# longest a quiet trace file stays unflushed.
IDLE_MS = 1000

_lib = None


def _libc():
    global _lib
    if _lib is None:
        import ctypes

        lib = ctypes.CDLL("libc.so.6", use_errno=True)
        lib.syscall.restype = ctypes.c_long
        lib.signalfd.restype = ctypes.c_int
        _lib = lib
    return _lib


# --- the filter ----------------------------------------------------------------------------------


def _assemble(program: list[tuple]) -> bytes:
    """Lay out ``(code, k, jump_true_label, jump_false_label)`` rows and ``("label", name)``
    markers as struct sock_filter; jumps are forward, to labels."""
    labels: dict[str, int] = {}
    rows: list[tuple] = []
    for row in program:
        if row[0] == "label":
            labels[row[1]] = len(rows)
        else:
            rows.append(row)
    out = bytearray()
    for pc, (code, k, jt, jf) in enumerate(rows):
        offsets = [0 if target is None else labels[target] - pc - 1 for target in (jt, jf)]
        assert all(0 <= o <= 255 for o in offsets), "jump out of range"
        out += struct.pack("=HBBI", code, offsets[0], offsets[1], k)
    return bytes(out)


def _eq(offset: int, value: int, otherwise: str) -> list[tuple]:
    return [(BPF_LD_W_ABS, offset, None, None), (BPF_JEQ_K, value, None, otherwise)]


_cached_filter: bytes | None = None


def trace_filter(exempt: tuple[int, int] | None = None) -> bytes:
    """The trace filter as raw ``struct sock_filter`` bytes: a foreign ABI (any arch but x86_64,
    and x32 calls on x86_64) kills the process; every other syscall is notified.

    ``exempt=(fd, msghdr_address)`` allows the one handoff call ``sendmsg(fd, msghdr_address,
    ...)`` without notification (see the module's doc). Without it the program is built once
    and cached.
    """
    global _cached_filter
    if exempt is None and _cached_filter is not None:
        return _cached_filter
    program: list[tuple] = [
        *_eq(_ARCH, AUDIT_ARCH_X86_64, "kill"),
        (BPF_LD_W_ABS, _NR, None, None),
        (BPF_JGE_K, X32_SYSCALL_BIT, "kill", None),
    ]
    if exempt is not None:
        fd, address = exempt
        program += [
            (BPF_JEQ_K, SYS_sendmsg, None, "notify"),
            *_eq(_arg_lo(0), fd & 0xFFFFFFFF, "notify"),
            *_eq(_arg_hi(0), fd >> 32 & 0xFFFFFFFF, "notify"),
            *_eq(_arg_lo(1), address & 0xFFFFFFFF, "notify"),
            *_eq(_arg_hi(1), address >> 32 & 0xFFFFFFFF, "notify"),
            (BPF_RET_K, SECCOMP_RET_ALLOW, None, None),
        ]
    program += [
        ("label", "notify"),
        (BPF_RET_K, SECCOMP_RET_USER_NOTIF, None, None),
        ("label", "kill"),
        (BPF_RET_K, SECCOMP_RET_KILL_PROCESS, None, None),
    ]
    code = _assemble(program)
    if exempt is None:
        _cached_filter = code
    return code


# --- the traced process's side -------------------------------------------------------------------


class _Call:
    """One syscall(2) with every argument built in advance, so that making it allocates
    nothing: it is made while the filter may already be in force."""

    def __init__(self, nr: int, *args) -> None:
        import ctypes

        self._fn = _libc().syscall
        self._errno = ctypes.get_errno
        self._args = (ctypes.c_long(nr), *args)

    def __call__(self) -> tuple[int, int]:
        ret = self._fn(*self._args)
        return ret, (self._errno() if ret == -1 else 0)


class _Handoff:
    """The sendmsg that passes the listener to the supervisor: an iovec of one byte and an
    SCM_RIGHTS message whose fd slot is filled in once the listener exists."""

    def __init__(self, sock_fd: int) -> None:
        import ctypes

        class Iovec(ctypes.Structure):
            _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

        class Msghdr(ctypes.Structure):
            _fields_ = [
                ("name", ctypes.c_void_p),
                ("namelen", ctypes.c_uint32),
                ("iov", ctypes.c_void_p),
                ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p),
                ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int),
            ]

        class Cmsg(ctypes.Structure):  # struct cmsghdr + one int, padded to CMSG_SPACE(4)
            _fields_ = [
                ("len", ctypes.c_size_t),
                ("level", ctypes.c_int),
                ("type", ctypes.c_int),
                ("fd", ctypes.c_int),
                ("pad", ctypes.c_int),
            ]

        self.sock_fd = sock_fd
        self._byte = ctypes.create_string_buffer(b"L", 1)
        self._iov = Iovec(ctypes.addressof(self._byte), 1)
        self._cmsg = Cmsg(16 + 4, socket.SOL_SOCKET, socket.SCM_RIGHTS, -1, 0)
        self._msg = Msghdr(
            None, 0, ctypes.addressof(self._iov), 1,
            ctypes.addressof(self._cmsg), ctypes.sizeof(self._cmsg), 0,
        )
        self.address = ctypes.addressof(self._msg)
        self._send = _Call(
            SYS_sendmsg, ctypes.c_long(sock_fd), ctypes.c_void_p(self.address),
            ctypes.c_long(socket.MSG_NOSIGNAL),
        )

    @property
    def exemption(self) -> tuple[int, int]:
        return self.sock_fd, self.address

    def send(self, fd: int) -> tuple[int, int]:
        self._cmsg.fd = fd  # a store into the buffer: no syscall
        return self._send()


_installed: list[tuple] = []


def install_trace_filter(exempt: tuple[int, int] | None = None) -> int:
    """In the calling process: set no_new_privs, install :func:`trace_filter` with
    ``SECCOMP_FILTER_FLAG_NEW_LISTENER`` and return the listener fd (close-on-exec).

    From the moment this returns, every syscall of the process (but an exempted handoff) waits
    until someone serves the listener: hand it over with no syscall in between, as
    :func:`start_tracing` does.
    """
    import ctypes

    _sys.prctl(_sys.PR_SET_NO_NEW_PRIVS, 1)
    code = trace_filter(exempt)
    count = len(code) // _sys.BPF_INSN_SIZE
    program = ctypes.create_string_buffer(code, len(code))
    fprog = ctypes.create_string_buffer(struct.pack("=H6xQ", count, ctypes.addressof(program)), 16)
    flags = _sys.SECCOMP_FILTER_FLAG_NEW_LISTENER
    call = _Call(
        _sys.SYS_seccomp, ctypes.c_long(_sys.SECCOMP_SET_MODE_FILTER), ctypes.c_long(flags),
        ctypes.c_void_p(ctypes.addressof(fprog)),
    )
    # Kept alive, and stored before the call: freeing or growing memory after it could make a
    # syscall (munmap, brk) that the filter holds before the listener is served.
    _installed.append((program, fprog, call))
    fd, err = call()
    if fd < 0:
        raise _sys.SyscallError(
            "seccomp",
            ("SECCOMP_SET_MODE_FILTER", "SECCOMP_FILTER_FLAG_NEW_LISTENER",
             f"<{count} instructions>"),
            err,
        )
    return fd


def start_tracing(sock: socket.socket | int) -> None:
    """The traced process's side, right before execve: install the trace filter and hand its
    listener to the supervisor over ``sock`` (a connected AF_UNIX socket; the supervisor reads
    it with :func:`recv_fd`), then close the listener here.

    On return the filter is in force and served; the caller's execve is the next traced call.
    Raises SyscallError when the filter cannot be installed (nothing has changed then but
    no_new_privs). If the handoff itself fails (the supervisor's end is gone) the process can
    make no further syscall that returns: it stays blocked until killed, as a process whose
    supervisor died is (nucleus arms PR_SET_PDEATHSIG for that).
    """
    import gc

    sock_fd = sock if isinstance(sock, int) else sock.fileno()
    handoff = _Handoff(sock_fd)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    # A collection in the window could run a finalizer that closes a file: a syscall.
    collecting = gc.isenabled()
    gc.disable()
    try:
        listener = install_trace_filter(handoff.exemption)
    except BaseException:
        if collecting:
            gc.enable()
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        raise
    ret, err = handoff.send(listener)
    # Served from here on.
    if collecting:
        gc.enable()
    os.close(listener)
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    if ret < 0:
        raise _sys.SyscallError("sendmsg", (str(sock_fd), "SCM_RIGHTS", str(listener)), err)


def send_fd(sock: socket.socket, fd: int) -> None:
    """Send ``fd`` over a connected AF_UNIX socket (SCM_RIGHTS) with a one-byte message. Not for
    a traced process's own listener: use :func:`start_tracing`, whose send is exempt."""
    socket.send_fds(sock, [b"L"], [fd])


SECCOMP_LISTENER = "anon_inode:seccomp notify"  # what /proc/self/fd/N links to for a listener


def recv_fd(
    sock: socket.socket, timeout: float | None = None, expect: str | None = SECCOMP_LISTENER
) -> int:
    """Receive one fd sent by :func:`send_fd` or :func:`start_tracing` (close-on-exec here).

    Raises ConnectionError when the peer closed its end without sending (the traced process
    died before installing the filter) or, with ``expect``, when the fd is not what
    /proc/self/fd says it should be (by default: a seccomp listener); TimeoutError after
    ``timeout`` seconds.
    """
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        msg, fds, flags, _ = socket.recv_fds(sock, 1, 1, socket.MSG_CMSG_CLOEXEC)
    except TimeoutError as e:
        raise TimeoutError(
            _errno.ETIMEDOUT, f"no seccomp listener received within {timeout} s"
        ) from e
    finally:
        sock.settimeout(previous)
    for extra in fds[1:]:
        os.close(extra)
    if not fds:
        if flags & socket.MSG_CTRUNC:
            raise ConnectionError(_errno.EPROTO, "the seccomp listener was truncated (MSG_CTRUNC)")
        raise ConnectionError(
            _errno.ECONNRESET,
            "the traced process closed its socket before handing over a seccomp listener"
            if not msg else "a message without a seccomp listener arrived on the handoff socket",
        )
    fd = fds[0]
    if expect is not None:
        try:
            what = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            what = expect  # no /proc to ask
        if what != expect:
            os.close(fd)
            raise ConnectionError(_errno.EPROTO, f"the fd received is {what!r}, not {expect!r}")
    return fd


# --- syscall names -------------------------------------------------------------------------------

# x86_64 syscall numbers to names: 0..336 and 424..469 (469 is file_setattr, Linux 6.17; the
# numbers in between are unused on x86_64). Consulted where libseccomp does not know a number.
_TABLE_RUNS = (
    (0, """read write open close stat fstat lstat poll lseek mmap mprotect munmap brk rt_sigaction
rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev access pipe select sched_yield
mremap msync mincore madvise shmget shmat shmctl dup dup2 pause nanosleep getitimer alarm
setitimer getpid sendfile socket connect accept sendto recvfrom sendmsg recvmsg shutdown bind
listen getsockname getpeername socketpair setsockopt getsockopt clone fork vfork execve exit
wait4 kill uname semget semop semctl shmdt msgget msgsnd msgrcv msgctl fcntl flock fsync
fdatasync truncate ftruncate getdents getcwd chdir fchdir rename mkdir rmdir creat link unlink
symlink readlink chmod fchmod chown fchown lchown umask gettimeofday getrlimit getrusage
sysinfo times ptrace getuid syslog getgid setuid setgid geteuid getegid setpgid getppid
getpgrp setsid setreuid setregid getgroups setgroups setresuid getresuid setresgid getresgid
getpgid setfsuid setfsgid getsid capget capset rt_sigpending rt_sigtimedwait rt_sigqueueinfo
rt_sigsuspend sigaltstack utime mknod uselib personality ustat statfs fstatfs sysfs
getpriority setpriority sched_setparam sched_getparam sched_setscheduler sched_getscheduler
sched_get_priority_max sched_get_priority_min sched_rr_get_interval mlock munlock mlockall
munlockall vhangup modify_ldt pivot_root _sysctl prctl arch_prctl adjtimex setrlimit chroot
sync acct settimeofday mount umount2 swapon swapoff reboot sethostname setdomainname iopl
ioperm create_module init_module delete_module get_kernel_syms query_module quotactl
nfsservctl getpmsg putpmsg afs_syscall tuxcall security gettid readahead setxattr lsetxattr
fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr removexattr
lremovexattr fremovexattr tkill time futex sched_setaffinity sched_getaffinity set_thread_area
io_setup io_destroy io_getevents io_submit io_cancel get_thread_area lookup_dcookie
epoll_create epoll_ctl_old epoll_wait_old remap_file_pages getdents64 set_tid_address
restart_syscall semtimedop fadvise64 timer_create timer_settime timer_gettime timer_getoverrun
timer_delete clock_settime clock_gettime clock_getres clock_nanosleep exit_group epoll_wait
epoll_ctl tgkill utimes vserver mbind set_mempolicy get_mempolicy mq_open mq_unlink
mq_timedsend mq_timedreceive mq_notify mq_getsetattr kexec_load waitid add_key request_key
keyctl ioprio_set ioprio_get inotify_init inotify_add_watch inotify_rm_watch migrate_pages
openat mkdirat mknodat fchownat futimesat newfstatat unlinkat renameat linkat symlinkat
readlinkat fchmodat faccessat pselect6 ppoll unshare set_robust_list get_robust_list splice
tee sync_file_range vmsplice move_pages utimensat epoll_pwait signalfd timerfd_create eventfd
fallocate timerfd_settime timerfd_gettime accept4 signalfd4 eventfd2 epoll_create1 dup3 pipe2
inotify_init1 preadv pwritev rt_tgsigqueueinfo perf_event_open recvmmsg fanotify_init
fanotify_mark prlimit64 name_to_handle_at open_by_handle_at clock_adjtime syncfs sendmmsg
setns getcpu process_vm_readv process_vm_writev kcmp finit_module sched_setattr sched_getattr
renameat2 seccomp getrandom memfd_create kexec_file_load bpf execveat userfaultfd membarrier
mlock2 copy_file_range preadv2 pwritev2 pkey_mprotect pkey_alloc pkey_free statx io_pgetevents
rseq uretprobe uprobe"""),
    (424, """pidfd_send_signal io_uring_setup io_uring_enter io_uring_register open_tree move_mount
fsopen fsconfig fsmount fspick pidfd_open clone3 close_range openat2 pidfd_getfd faccessat2
process_madvise epoll_pwait2 mount_setattr quotactl_fd landlock_create_ruleset
landlock_add_rule landlock_restrict_self memfd_secret process_mrelease futex_waitv
set_mempolicy_home_node cachestat fchmodat2 map_shadow_stack futex_wake futex_wait
futex_requeue statmount listmount lsm_get_self_attr lsm_set_self_attr lsm_list_modules mseal
setxattrat getxattrat listxattrat removexattrat open_tree_attr file_getattr file_setattr"""),
)


def builtin_table() -> dict[int, str]:
    """The built-in x86_64 number-to-name table."""
    table = {}
    for first, names in _TABLE_RUNS:
        for i, name in enumerate(names.split()):
            table[first + i] = name
    return table


_builtin: dict[int, str] | None = None
_resolver: Any = None  # libseccomp's seccomp_syscall_resolve_num_arch; False: unavailable
_names: dict[int, str | None] = {}


def _libseccomp_name(nr: int) -> str | None:
    global _resolver
    if _resolver is None:
        import ctypes

        try:
            lib = ctypes.CDLL("libseccomp.so.2")
            fn = lib.seccomp_syscall_resolve_num_arch
        except (OSError, AttributeError):
            _resolver = False
        else:
            fn.restype = ctypes.c_void_p
            fn.argtypes = [ctypes.c_uint32, ctypes.c_int]
            _libc().free.argtypes = [ctypes.c_void_p]
            _resolver = fn
    if _resolver is False:
        return None
    import ctypes

    ptr = _resolver(AUDIT_ARCH_X86_64, nr)
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("ascii")
    finally:
        _libc().free(ptr)  # the name is the caller's to free


def syscall_name(nr: int) -> str | None:
    """The x86_64 name of syscall ``nr``: libseccomp's where it knows the number (so a
    generated profile uses names libseccomp compiles), else the built-in table's, else None."""
    global _builtin
    try:
        return _names[nr]
    except KeyError:
        pass
    name = _libseccomp_name(nr)
    if name is None:
        if _builtin is None:
            _builtin = builtin_table()
        name = _builtin.get(nr)
    _names[nr] = name
    return name


# --- the supervisor's side -----------------------------------------------------------------------


class Notification:
    """One received notification: its cookie, the task's pid (in the receiver's pid namespace),
    the syscall number, arch and first arguments."""

    __slots__ = ("id", "pid", "nr", "arch", "args")

    def __init__(self, id: int, pid: int, nr: int, arch: int, args: tuple[int, ...]) -> None:
        self.id, self.pid, self.nr, self.arch, self.args = id, pid, nr, arch, args

    def __repr__(self) -> str:
        return f"Notification(pid={self.pid}, nr={self.nr}, name={syscall_name(self.nr)!r})"


def _ioctl(fd: int, request: int, buf: bytearray) -> None:
    import fcntl

    while True:
        try:
            fcntl.ioctl(fd, request, buf, True)
            return
        except InterruptedError:
            continue


def receive(listener_fd: int) -> Notification | None:
    """SECCOMP_IOCTL_NOTIF_RECV: the next notification (blocks until there is one: poll the fd
    for POLLIN first). None when the task was killed before it could be received (ENOENT)."""
    buf = bytearray(_ZERO_NOTIF)  # the kernel wants the buffer zeroed
    try:
        _ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_RECV, buf)
    except OSError as e:
        if e.errno == _errno.ENOENT:
            return None
        call = (str(listener_fd), "SECCOMP_IOCTL_NOTIF_RECV")
        raise _sys.SyscallError("ioctl", call, e.errno or _errno.EIO) from e
    id_, pid, _, nr, arch, _, *args = _NOTIF.unpack(buf)
    return Notification(id_, pid, nr, arch, tuple(args))


def allow(listener_fd: int, notification_id: int) -> bool:
    """SECCOMP_IOCTL_NOTIF_SEND with SECCOMP_USER_NOTIF_FLAG_CONTINUE: the syscall runs as if
    never stopped. False when the task is gone (ENOENT: killed, or interrupted by a signal, in
    which case the kernel restarts the call and it is notified again)."""
    buf = bytearray(_RESP.pack(notification_id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE))
    try:
        _ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_SEND, buf)
    except OSError as e:
        if e.errno == _errno.ENOENT:
            return False
        call = (str(listener_fd), "SECCOMP_IOCTL_NOTIF_SEND")
        raise _sys.SyscallError("ioctl", call, e.errno or _errno.EIO) from e
    return True


class Tracer:
    """Answers notifications and writes one NDJSON line per syscall to ``out`` (a text file,
    or None to only count)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out
        self.events = 0
        self.counts: dict[int, int] = {}
        self._prefix: dict[int, str] = {}

    def handle(self, listener_fd: int) -> dict | None:
        """Receive one notification, let the syscall continue, record it. Returns the record
        ``{"syscall", "nr", "pid", "arch"}``, or None when the task died before it was received.
        A task that dies after being received is still recorded: it made the call."""
        n = receive(listener_fd)
        if n is None:
            return None
        allow(listener_fd, n.id)  # answered before anything else: the task is waiting
        self.events += 1
        self.counts[n.nr] = self.counts.get(n.nr, 0) + 1
        if self.out is not None:
            prefix = self._prefix.get(n.nr)
            if prefix is None:
                prefix = self._prefix[n.nr] = (
                    f'{{"syscall": {json.dumps(syscall_name(n.nr))}, "nr": {n.nr}, "pid": '
                )
            self.out.write(f'{prefix}{n.pid}, "arch": "{ARCH}"}}\n')
        return {"syscall": syscall_name(n.nr), "nr": n.nr, "pid": n.pid, "arch": ARCH}

    def names(self) -> list[str]:
        """The sorted names of the syscalls seen (unnamed numbers as ``nr:N``)."""
        return sorted(syscall_name(nr) or f"nr:{nr}" for nr in self.counts)

    def summary(self, exit_status: int | None = None) -> dict:
        return {"events": self.events, "syscalls": len(self.counts), "exit_status": exit_status}

    def write_summary(self, exit_status: int | None = None) -> None:
        if self.out is not None:
            self.out.write(json.dumps({"summary": self.summary(exit_status)}) + "\n")
            self.out.flush()

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()


def _signalfd(signals) -> int:
    import ctypes

    mask = bytearray(_SIGSET_BYTES)
    for sig in signals:
        bit = int(sig) - 1
        mask[bit // 8] |= 1 << (bit % 8)
    buf = ctypes.create_string_buffer(bytes(mask), _SIGSET_BYTES)
    fd = _libc().signalfd(-1, buf, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise _sys.SyscallError("signalfd", ("-1", repr(sorted(int(s) for s in signals)),
                                             "SFD_NONBLOCK|SFD_CLOEXEC"), ctypes.get_errno())
    return fd


def _read_signals(fd: int) -> list[tuple[int, int]]:
    """Every pending (signo, si_code) on a non-blocking signalfd."""
    out: list[tuple[int, int]] = []
    while True:
        try:
            data = os.read(fd, _SIGINFO_SIZE * 16)
        except (BlockingIOError, InterruptedError):
            return out
        if not data:
            return out
        for off in range(0, len(data) - _SIGINFO_SIZE + 1, _SIGINFO_SIZE):
            signo, _, code, _ = _SIGINFO.unpack_from(data, off)
            out.append((signo, code))


def exit_status(status: int) -> int:
    """A wait status as a shell would report it: the exit code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run_until_exit(
    listener_fd: int,
    child_pid: int,
    ndjson_out: TextIO | None,
    *,
    forward=(),
    linger: float | None = None,
    tracer: Tracer | None = None,
) -> int:
    """Serve ``listener_fd`` until ``child_pid`` (a child of the caller) has exited and every
    traced process is gone; reap the child; write the NDJSON events and the summary line to
    ``ndjson_out``. Returns the child's exit status (128+N for signal N, 125 if it was reaped
    elsewhere).

    No threads: one poll(2) on the listener and a signalfd for SIGCHLD and ``forward``. Those
    signals are blocked for the duration (the previous mask is restored); one of ``forward``
    sent on purpose (si_code <= 0: kill, sigqueue) is passed on to the child, like
    ``inside.wait_forwarding`` does. ``linger`` bounds, in seconds, how long descendants that
    outlive the child are still served; None waits for all of them. The caller closes the
    listener; a traced process left behind then gets ENOSYS from every syscall.
    """
    tracer = tracer or Tracer(ndjson_out)
    signals = {signal.SIGCHLD, *forward}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    sfd = _signalfd(signals)
    status: int | None = None
    hung_up = False
    deadline: float | None = None
    try:
        poller = select.poll()
        poller.register(listener_fd, select.POLLIN)
        poller.register(sfd, select.POLLIN)
        status = _reap(child_pid)  # it may have exited before SIGCHLD was blocked
        while status is None or not hung_up:
            if status is not None and linger is not None:
                if deadline is None:
                    deadline = _now() + linger
                left = deadline - _now()
                if left <= 0:
                    break
                timeout = min(IDLE_MS, int(left * 1000) + 1)
            else:
                timeout = IDLE_MS
            ready = poller.poll(timeout)
            if not ready:
                tracer.flush()
                if status is None:
                    status = _reap(child_pid)
                continue
            for fd, ev in ready:
                if fd == listener_fd:
                    if ev & select.POLLIN:
                        tracer.handle(listener_fd)
                    elif ev & (select.POLLHUP | select.POLLERR):
                        hung_up = True
                        poller.unregister(listener_fd)
                    elif ev & select.POLLNVAL:
                        raise _sys.SyscallError("poll", (str(listener_fd), "POLLIN"), _errno.EBADF)
                    continue
                for signo, code in _read_signals(sfd):
                    if signo == signal.SIGCHLD:
                        if status is None:
                            status = _reap(child_pid)
                    elif code <= 0 and status is None:
                        try:
                            os.kill(child_pid, signo)
                        except ProcessLookupError:
                            pass
        tracer.write_summary(status)
    finally:
        os.close(sfd)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        tracer.flush()
    return 125 if status is None else status


def _reap(pid: int) -> int | None:
    """The child's exit status once it has exited (reaping it), else None; 125 when it is not
    (any more) a child of ours."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 125
    return None if got == 0 else exit_status(status)


def _now() -> float:
    import time

    return time.monotonic()


def serve(listener_fd: int, ndjson_out: TextIO | None, tracer: Tracer | None = None) -> Tracer:
    """Serve ``listener_fd`` until every traced process is gone (the listener hangs up), then
    write the summary line (without an exit status). For a process that does nothing else,
    such as a tracer process forked by the supervisor; it waits for nobody and forwards
    nothing."""
    tracer = tracer or Tracer(ndjson_out)
    poller = select.poll()
    poller.register(listener_fd, select.POLLIN)
    try:
        while True:
            ready = poller.poll(IDLE_MS)
            if not ready:
                tracer.flush()
                continue
            ev = ready[0][1]
            if ev & select.POLLIN:
                tracer.handle(listener_fd)
            elif ev & (select.POLLHUP | select.POLLERR):
                break
            else:
                raise _sys.SyscallError("poll", (str(listener_fd), "POLLIN"), _errno.EBADF)
        tracer.write_summary(None)
    finally:
        tracer.flush()
    return tracer


# Signals a tracer process ignores: a terminal's ^C or a hang-up reaches the whole foreground
# process group, and the tracer must outlive every traced process to answer its last syscalls.
TRACER_IGNORES = (
    signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGWINCH, signal.SIGPIPE,
)


def spawn_tracer(sock: socket.socket, log_path: str) -> int:
    """Fork a tracer process: it receives the listener on ``sock`` (the end that
    :func:`start_tracing` does not use), serves it with :func:`serve` until every traced process
    is gone, writing NDJSON to ``log_path``, and exits 0; 1 when no listener arrived or serving
    failed (the reason on stderr). Returns its pid; the caller reaps it.

    ``log_path`` is opened (created, truncated, 0600) before the fork, so an unwritable path
    raises OSError here. The tracer keeps only fds 0-2, ``sock`` and the log; it dies with the
    caller (PR_SET_PDEATHSIG), ignores TRACER_IGNORES and unblocks nothing else. The caller
    closes its copy of ``sock`` and of the other end once the traced side holds it.
    """
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    parent = os.getpid()
    try:
        pid = os.fork()
    except BaseException:
        os.close(log_fd)
        raise
    if pid != 0:
        os.close(log_fd)
        return pid
    code = 1
    try:
        _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)
        for sig in TRACER_IGNORES:
            signal.signal(sig, signal.SIG_IGN)
        _close_all_but({0, 1, 2, sock.fileno(), log_fd})
        listener = recv_fd(sock)
        sock.close()
        with os.fdopen(log_fd, "w", encoding="ascii") as out:
            serve(listener, out)
        code = 0
    except BaseException as e:  # noqa: BLE001 - a forked process never unwinds into its parent
        try:
            os.write(2, f"nucleus: seccomp tracer: {e}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def _close_all_but(keep: set[int]) -> None:
    first = 0
    for fd in sorted(keep):
        if fd > first:
            _sys.close_range(first, fd - 1)
        first = fd + 1
    _sys.close_range(first)


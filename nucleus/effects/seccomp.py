"""Seccomp: compile an OCI profile to classic BPF, cache the program, load it.

The hot path is a cache hit: the profile's key is hashed, ``<cache_dir>/<key>.bpf`` is read and
checked, and the program is installed with one seccomp(2) call. pyseccomp (libseccomp) is
imported only to compile on a miss, and then in a forked child that is killed if libseccomp does
not finish (see ``compile_profile``).

Compilation follows runc's reading of an OCI profile: ``defaultAction`` (+ ``defaultErrnoRet``),
``architectures`` (the native one is always included; a syscall from any architecture not in the
filter kills the process), and ``syscalls`` entries of ``names``, ``action``, ``errnoRet`` and
``args`` (conditions on one argument index are ORed, conditions on different indexes ANDed: each
combination becomes a rule of its own, see ``nucleus.config.policies.expand_conditions``). A rule
whose action equals the default action is redundant and skipped. A syscall name libseccomp does not
know (too new for it, or no syscall at all) is skipped with a warning on stderr, so it gets the
default action. The default profile instead answers every syscall newer than libseccomp's table
with ENOSYS (its ``newerSyscallsErrno``; a stub before the program, as runc adds one), so such a
name is skipped quietly.

Profiles from files go through ``nucleus.config.policies.parse_seccomp_profile`` first, which
validates them completely and applies Docker's includes/excludes; this module compiles what it
returns (and the built-in default profile) without re-validating the finer points.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, cast

from nucleus import linux
from nucleus.effects import abi, digest, libc

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import ModuleType
    from typing import IO, Protocol

    from nucleus.config.policy.seccomp_args import Condition

    class _Filter(Protocol):
        """What this module uses of a ``pyseccomp.SyscallFilter`` (pyseccomp ships no type
        information, so mypy sees the module as untyped)."""

        def set_attr(self, attr: int, value: int) -> None: ...
        def add_arch(self, arch: int) -> None: ...
        def exist_arch(self, arch: int) -> bool: ...
        def add_rule(self, action: int, syscall: int | str, *args: object) -> None: ...
        def export_bpf(self, file: IO[bytes]) -> None: ...

# Bump when compile_profile would produce a different program for the same profile, so old
# cache entries stop matching.
COMPILER_REVISION = "3"
ROOT_CACHE_DIR = "/var/cache/nucleus/seccomp"
BY_SHA256 = "by-sha256"  # programs by the sha256 of their bytes, for attach

_SIMPLE_ACTIONS = {
    "SCMP_ACT_KILL_PROCESS": "KILL_PROCESS",
    "SCMP_ACT_KILL": "KILL_THREAD",
    "SCMP_ACT_KILL_THREAD": "KILL_THREAD",
    "SCMP_ACT_TRAP": "TRAP",
    "SCMP_ACT_LOG": "LOG",
    "SCMP_ACT_ALLOW": "ALLOW",
}
_REJECTED_ACTIONS = {
    "SCMP_ACT_TRACE": "it hands syscalls to a ptrace tracer, and ptrace is not allowed",
    "SCMP_ACT_NOTIFY": "nucleus runs no seccomp user-notification agent",
}
_OPS = {
    "SCMP_CMP_NE": "NE",
    "SCMP_CMP_LT": "LT",
    "SCMP_CMP_LE": "LE",
    "SCMP_CMP_EQ": "EQ",
    "SCMP_CMP_GE": "GE",
    "SCMP_CMP_GT": "GT",
    "SCMP_CMP_MASKED_EQ": "MASKED_EQ",
}
_EPERM = 1
_BPF_RET = 0x06  # BPF_RET class of an instruction's code
_U64 = (1 << 64) - 1
_MAX_RULES_PER_ENTRY = 256
_SYSCALL_SCAN = 1024  # native syscall numbers are below this on x86_64 and aarch64
COMPILE_TIMEOUT = 10.0  # seconds; a large profile compiles in well under one


def _warn(text: str) -> None:
    sys.stderr.write(f"nucleus: warning: {text}\n")


# --- compiling ----------------------------------------------------------------------------------


def _action(ps: ModuleType, name: object, errno_ret: object, where: str) -> int:
    # ps is pyseccomp, untyped for mypy: its actions are ints (ERRNO(x) too)
    if isinstance(name, str) and name in _SIMPLE_ACTIONS:
        action: int = getattr(ps, _SIMPLE_ACTIONS[name])
        return action
    if name == "SCMP_ACT_ERRNO":
        err = _EPERM if errno_ret is None else errno_ret
        if not isinstance(err, int) or not 0 <= err <= 0xFFFF:
            raise ValueError(f"{where}: errno return {errno_ret!r} is not an integer 0..65535")
        errno_action: int = ps.ERRNO(err)
        return errno_action
    if name in _REJECTED_ACTIONS:
        raise ValueError(f"{where}: action {name!r} is not supported: {_REJECTED_ACTIONS[name]}")
    raise ValueError(f"{where}: unknown action {name!r}")


def _arch(ps: ModuleType, name: object, where: str) -> int:
    if not isinstance(name, str) or not name.startswith("SCMP_ARCH_"):
        raise ValueError(f"{where}: unknown architecture {name!r}")
    token = name[len("SCMP_ARCH_") :]
    if token == "NATIVE" or not hasattr(ps.Arch, token):
        raise ValueError(f"{where}: unknown architecture {name!r}")
    arch: int = getattr(ps.Arch, token)  # pyseccomp's Arch values are ints
    return arch


def _condition(arg: object, where: str) -> tuple[int, str, int, int]:
    if not isinstance(arg, dict):
        raise ValueError(f"{where}: expected an object, got {arg!r}")
    index = arg.get("index")
    op = arg.get("op")
    value = arg.get("value", 0)
    value_two = arg.get("valueTwo", 0)
    if not isinstance(index, int) or not 0 <= index <= 5:
        raise ValueError(f"{where}.index: {index!r} is not an argument index 0..5")
    if op not in _OPS:
        raise ValueError(f"{where}.op: unknown comparison {op!r}")
    for field, v in (("value", value), ("valueTwo", value_two)):
        if not isinstance(v, int) or not 0 <= v <= _U64:
            raise ValueError(f"{where}.{field}: {v!r} is not an unsigned 64-bit integer")
    return index, op, value, value_two


def _add_rules(
    ps: ModuleType,
    filt: _Filter,
    default: int,
    number: int,
    action: int,
    rules: list[tuple[Condition, ...]],
) -> None:
    if action == default:
        return  # libseccomp refuses a rule that repeats the default action; it changes nothing
    for conditions in rules:
        args = [ps.Arg(i, getattr(ps, _OPS[op]), v, v2) for i, op, v, v2 in conditions]
        filt.add_rule(action, number, *args)


def _export(filt: _Filter) -> bytes:
    try:
        fd = os.memfd_create("nucleus-seccomp", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        import tempfile

        with tempfile.TemporaryFile() as f:
            filt.export_bpf(f)
            f.seek(0)
            return f.read()
    with os.fdopen(fd, "w+b") as f:
        filt.export_bpf(f)
        f.seek(0)
        return f.read()


def _compile(profile: dict[str, object], warnings: list[str]) -> bytes:
    import pyseccomp as ps

    from nucleus.config.policy.seccomp_args import count_rules, expand_conditions

    if not isinstance(profile, dict):
        raise ValueError(f"seccomp profile: expected an object, got {type(profile).__name__}")
    default = _action(
        ps,
        profile.get("defaultAction"),
        profile.get("defaultErrnoRet"),
        "defaultAction",
    )
    filt: _Filter = ps.SyscallFilter(default)
    # Any architecture the filter does not list is killed, including i386 (int 0x80) and x32
    # from a native process.
    filt.set_attr(ps.Attr.ACT_BADARCH, ps.KILL_PROCESS)
    try:
        filt.set_attr(ps.Attr.CTL_OPTIMIZE, 2)  # binary-tree dispatch on the syscall number
    except OSError:
        pass  # libseccomp < 2.5: the linear program is just as correct
    # The profile comes from parse_seccomp_profile (validated) or default_profile: its lists are
    # lists; their items are checked here all the same.
    architectures = cast("Iterable[object]", profile.get("architectures") or ())
    for i, name in enumerate(architectures):
        arch = _arch(ps, name, f"architectures[{i}]")
        if not filt.exist_arch(arch):
            filt.add_arch(arch)

    version = libc.libseccomp_version()
    unknown: list[str] = []
    for i, entry in enumerate(cast("Iterable[object]", profile.get("syscalls") or ())):
        where = f"syscalls[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object, got {entry!r}")
        names = entry.get("names")
        if names is None and "name" in entry:
            names = [entry["name"]]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{where}.names: expected a list of syscall names, got {names!r}")
        action = _action(ps, entry.get("action"), entry.get("errnoRet"), f"{where}.action")
        args = entry.get("args") or []
        if not isinstance(args, list):
            raise ValueError(f"{where}.args: expected a list of conditions, got {args!r}")
        conditions = [_condition(a, f"{where}.args[{j}]") for j, a in enumerate(args)]
        count = count_rules(conditions)
        if count > _MAX_RULES_PER_ENTRY:
            raise ValueError(f"{where}.args: the conditions expand to {count} rules")
        rules = expand_conditions(conditions)
        for name in names:
            number = ps.resolve_syscall(ps.Arch.NATIVE, name)
            if number == -1:  # __NR_SCMP_ERROR: not in libseccomp's tables
                unknown.append(name)
                continue
            try:
                _add_rules(ps, filt, default, number, action, rules)
            except OSError as e:
                shown = " or ".join(_describe(r) for r in rules) or "no argument conditions"
                raise ValueError(
                    f"{where}: libseccomp {version} refused the {entry.get('action')} rule for "
                    f"{name!r} with {shown}: {e.strerror or e} (it cannot combine this rule with "
                    "another rule for the same syscall that has a different action and shares "
                    "argument conditions)"
                ) from e
    # nucleus's own key: the default profile has it, a profile file may
    from nucleus.config.seccomp_default import NEWER_SYSCALLS_ERRNO

    newer = profile.get(NEWER_SYSCALLS_ERRNO)
    if unknown and newer is None:
        names = ", ".join(repr(n) for n in dict.fromkeys(unknown))
        warnings.append(
            f"seccomp profile: syscalls unknown to libseccomp {version} (newer than the library, "
            f"or no syscall at all) skipped, so they get the default action: {names}"
        )
    program = _export(filt)
    if newer is None:
        return program
    if not isinstance(newer, int) or not 0 < newer <= 0xFFFF:
        raise ValueError(f"{NEWER_SYSCALLS_ERRNO}: {newer!r} is not an errno 1..65535")
    from nucleus.effects.seccomp_bpf import newer_syscalls_stub

    return newer_syscalls_stub(_highest_known(ps), newer) + program


def _highest_known(ps: ModuleType) -> int:
    """The highest native syscall number libseccomp's table names."""
    highest = 0
    for number in range(_SYSCALL_SCAN):
        try:
            ps.resolve_syscall(ps.Arch.NATIVE, number)
        except ValueError:
            continue
        highest = number
    return highest


def _describe(conditions: tuple[Condition, ...]) -> str:
    ops = {"NE": "!=", "LT": "<", "LE": "<=", "EQ": "==", "GE": ">=", "GT": ">"}
    parts = []
    for index, op, value, value_two in conditions:
        short = _OPS[op]
        if short == "MASKED_EQ":
            parts.append(f"args[{index}] & {value:#x} == {value_two:#x}")
        else:
            parts.append(f"args[{index}] {ops[short]} {value}")
    return " and ".join(parts)


def compile_profile(profile: dict[str, object], *, timeout: float = COMPILE_TIMEOUT,
                    notes_out: list[str] | None = None) -> bytes:
    """Compile an OCI seccomp profile to the raw ``struct sock_filter`` array for this machine.

    libseccomp runs in a forked child that is killed after ``timeout`` seconds: libseccomp 2.5.4
    was seen looping forever while adding some sets of rules with several argument conditions
    (two rules for one syscall can be enough), and a profile file must not hang nucleus.
    Warnings (skipped syscall names) are written to stderr by the caller's process.

    Raises ValueError naming the field for a profile it cannot compile faithfully, or when
    libseccomp does not finish in time; ImportError when pyseccomp is missing.
    """
    import select
    import signal
    import time

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            warnings: list[str] = []
            try:
                payload = b"P" + _compile(profile, warnings)
            except ValueError as e:
                payload = b"V" + str(e).encode("utf-8", "backslashreplace")
            except ImportError as e:
                payload = b"I" + str(e).encode("utf-8", "backslashreplace")
            except BaseException as e:  # noqa: BLE001 - carried to the parent
                payload = b"X" + f"{type(e).__name__}: {e}".encode("utf-8", "backslashreplace")
            notes = "\0".join(warnings).encode("utf-8", "backslashreplace")
            message = len(notes).to_bytes(4, "little") + notes + payload
            view = memoryview(message)
            while view:
                view = view[os.write(w, view) :]
        finally:
            os._exit(0)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            ready = select.select([r], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise ValueError(
                    f"seccomp profile: libseccomp {libc.libseccomp_version()} did not finish "
                    f"compiling it within {timeout:g} s (a libseccomp bug with some rules that have "
                    "several argument conditions); simplify the argument conditions of its rules"
                )
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # reaped by a SIGCHLD handler of the caller's
    data = b"".join(chunks)
    if len(data) < 5:
        raise ValueError("seccomp profile: the compiler process ended without an answer")
    size = int.from_bytes(data[:4], "little")
    notes, kind, rest = data[4 : 4 + size], data[4 + size : 5 + size], data[5 + size :]
    for note in notes.decode("utf-8", "replace").split("\0") if notes else ():
        _warn(note)
        if notes_out is not None:
            notes_out.append(note)
    if kind == b"P":
        return rest
    text = rest.decode("utf-8", "replace")
    if kind == b"V":
        raise ValueError(text)
    if kind == b"I":
        raise ImportError(text)
    raise RuntimeError(f"seccomp profile: compiling failed: {text}")


# --- the cache ----------------------------------------------------------------------------------


def cache_key(profile: dict[str, object]) -> str:
    """sha256 over the profile's canonical JSON, the libseccomp version and the architecture
    (this machine's, from ``abi``'s table: UnsupportedArchitecture on another)."""
    import json

    canonical = json.dumps(profile, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    material = "\n".join(
        (canonical, f"libseccomp {libc.libseccomp_version()}", abi.architecture().machine,
         COMPILER_REVISION)
    )
    return digest.sha256(material.encode()).hexdigest()


def default_cache_dir() -> str:
    """/var/cache/nucleus/seccomp for root, else $XDG_CACHE_HOME/nucleus/seccomp."""
    if os.geteuid() == 0:
        return ROOT_CACHE_DIR
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nucleus", "seccomp")


def _insecure(st: os.stat_result) -> str | None:
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not {os.geteuid()}"
    if st.st_mode & 0o022:
        return f"mode {st.st_mode & 0o7777:04o} is group- or world-writable"
    return None


def read_cached(path: str) -> bytes | None:
    """The program cached at ``path``, or None when it is absent or fails a check (then a
    warning names the reason): a regular file, not a symlink, owned by the effective uid, not
    group/world-writable, 1..4096 instructions of 8 bytes, ending in a BPF return."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        _warn(f"seccomp cache {path!r} ignored: open failed: {e.strerror}")
        return None
    try:
        st = os.fstat(fd)
        reason = None if stat.S_ISREG(st.st_mode) else "not a regular file"
        reason = reason or _insecure(st)
        data = b""
        if reason is None:
            limit = abi.BPF_MAXINSNS * abi.BPF_INSN_SIZE
            data = os.read(fd, limit + 1)
            size = len(data)
            if size == 0 or size % abi.BPF_INSN_SIZE or size > limit:
                reason = f"size {size} is not 1..{abi.BPF_MAXINSNS} instructions of 8 bytes"
            elif data[-abi.BPF_INSN_SIZE] & 0x07 != _BPF_RET:
                reason = "the last instruction is not a return"
    finally:
        os.close(fd)
    if reason is not None:
        _warn(f"seccomp cache {path!r} ignored: {reason}")
        return None
    return data


def _ensure_dir(directory: str) -> str | None:
    """Create the cache directory (0700); the reason it cannot be used, or None."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.stat(directory)
    except OSError as e:
        return f"cannot create {directory!r}: {e.strerror}"
    return _insecure(st)


def _write_atomic(directory: str, path: str, data: bytes) -> None:
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _program(profile: dict[str, object], cache_dir: str | None) -> tuple[bytes, str, bool]:
    directory = cache_dir or default_cache_dir()
    key = cache_key(profile)
    path = os.path.join(directory, key + ".bpf")
    notes_path = os.path.join(directory, key + ".notes")
    unusable = _ensure_dir(directory)
    if unusable is None:
        cached = read_cached(path)
        if cached is not None:
            for note in _read_notes(notes_path):  # the compiler's warnings, on every run
                _warn(note)
            return cached, key, True
    else:
        _warn(f"seccomp cache directory not used: {unusable}")
    notes: list[str] = []
    program = compile_profile(profile, notes_out=notes)
    if unusable is None:
        try:
            if notes:  # written before the program, so a cached program never lacks its notes
                _write_atomic(directory, notes_path, "\0".join(notes).encode("utf-8"))
            _write_atomic(directory, path, program)
        except OSError as e:
            _warn(f"seccomp cache {path!r} not written: {e.strerror}")
    return program, key, False


def _read_notes(path: str) -> list[str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        data = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    return [n for n in data.decode("utf-8", "replace").split("\0") if n]


def _by_sha256(sha: str, cache_dir: str | None) -> tuple[str, str]:
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"not a sha256: {sha!r}")
    directory = os.path.join(cache_dir or default_cache_dir(), BY_SHA256)
    return directory, os.path.join(directory, f"{sha}.bpf")


def keep_by_sha256(sha: str, program: bytes, cache_dir: str | None = None) -> None:
    """Keep `program` in the cache under its sha256 too (once), so that a process joining a
    container later can load exactly the program the container has."""
    directory, path = _by_sha256(sha, cache_dir)
    if os.path.lexists(path):
        return
    unusable = _ensure_dir(directory)
    if unusable is not None:
        _warn(f"seccomp cache directory not used: {unusable}")
        return
    try:
        _write_atomic(directory, path, program)
    except OSError as e:
        _warn(f"seccomp cache {path!r} not written: {e.strerror}")


def read_by_sha256(sha: str, cache_dir: str | None = None) -> bytes | None:
    """The program kept under `sha` (checked like every cache entry, and against the hash),
    or None."""
    _, path = _by_sha256(sha, cache_dir)
    data = read_cached(path)
    if data is None or digest.sha256(data).hexdigest() != sha:
        return None
    return data


def cached_program(profile: dict[str, object], cache_dir: str | None = None) -> bytes:
    """The compiled program for ``profile``: from ``<cache_dir>/<key>.bpf`` when present and
    sound, else compiled and written there atomically (0600). Does not load anything."""
    return _program(profile, cache_dir)[0]


class Loaded:
    """What load_profile installed: the cache key, the program size, and whether it came from
    the cache."""

    __slots__ = ("key", "instructions", "cache_hit")

    def __init__(self, key: str, instructions: int, cache_hit: bool) -> None:
        self.key = key
        self.instructions = instructions
        self.cache_hit = cache_hit

    def __repr__(self) -> str:
        return (
            f"Loaded(key={self.key[:12]}..., instructions={self.instructions}, "
            f"cache_hit={self.cache_hit})"
        )


def load_program(program: bytes, *, log_denied: bool = False) -> None:
    """Install ``program`` on the calling thread with one seccomp(2) call.

    no_new_privs is set first (idempotent): the kernel requires it from a process without
    CAP_SYS_ADMIN, and nucleus wants it in every case. ``log_denied`` adds
    SECCOMP_FILTER_FLAG_LOG so every action other than allow is logged by the kernel.
    """
    libc.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    flags = abi.SECCOMP_FILTER_FLAG_LOG if log_denied else 0
    libc.seccomp_set_mode_filter(program, flags)


def load_profile(
    profile: dict[str, object], *, log_denied: bool = False, cache_dir: str | None = None
) -> Loaded:
    """cached_program + load_program: the filter is in force when this returns."""
    program, key, hit = _program(profile, cache_dir)
    load_program(program, log_denied=log_denied)
    return Loaded(key, len(program) // abi.BPF_INSN_SIZE, hit)

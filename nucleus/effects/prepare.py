"""What a command prepares before it changes anything on the host: policy files read once, the
seccomp program compiled (or taken from the cache; compiling is where a bad profile is refused),
the context opened, measured (and its manifest taken). Nothing here creates a container resource;
the seccomp cache is the only thing written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import heapq
import os
import stat

from nucleus.config.context import (
    FLAG,
    IGNORE_FILE,
    PAGE,
    SHOWN,
    Identity,
    Matcher,
    Measured,
    Pattern,
    footprint,
)
from nucleus.effects import abi, integrity, seccomp, tree
from nucleus.errors import HostUnsupported, InvalidInput, RuntimeFailure


def read_file(flag: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidInput(f"{flag} {path!r}: {e.strerror}") from e


def architecture() -> tuple[str, str]:
    """This machine's architecture (uname -m) and libseccomp's token for it; refuses a machine
    nucleus has no syscall table for."""
    arch = abi.check_architecture()
    return arch.machine, arch.seccomp_arch


def kernel_release() -> str:
    return os.uname().release


def program(profile: dict[str, object], flag: str | None = None, path: str | None = None) -> tuple[str, bytes]:
    """The compiled program of `profile` and its sha256; kept in the cache by that hash too, so
    that `attach` can load exactly the container's program later. A profile libseccomp cannot
    compile is refused naming the flag and file."""
    try:
        compiled = seccomp.cached_program(profile)
    except ImportError as e:
        raise HostUnsupported(f"cannot compile the seccomp profile: {e}",
                              hint="install libseccomp and its Python bindings (pip install pyseccomp)") from e
    except ValueError as e:
        if flag is None:
            raise RuntimeFailure(f"internal: the default seccomp profile does not compile: {e}") from e
        raise InvalidInput(f"{flag} {path!r}: {e}") from e
    sha = hashlib.sha256(compiled).hexdigest()
    seccomp.keep_by_sha256(sha, compiled)
    return sha, compiled


def program_by_sha256(sha: str) -> bytes | None:
    """A program this host compiled earlier, by its sha256 (checked against the bytes read)."""
    return seccomp.read_by_sha256(sha)


# --- the context ----------------------------------------------------------------------------------

NOGROUP = 65534  # the gid a copy reads with for a uid the user database does not know
IGNORE_FILE_MAX = 1 << 20


def identity_of(uid: int) -> Identity:
    """(uid, gid, groups) of a user, from the user database: whose permissions a copy reads a
    directory of theirs with. A uid without an entry reads with gid 65534 and no groups."""
    import pwd

    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return (uid, NOGROUP, ())
    return (uid, entry.pw_gid, tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)))))


def open_context(given: str, path_fd: int, read_as: int) -> int:
    """The context directory (open O_PATH at `path_fd`, which is closed) opened for reading as
    the user `read_as` names (-1 or 0: this process), so that listing it is allowed only if they
    may list it."""
    reader = tree.Reader(read_as, identity_of)
    try:
        with reader:
            reader.use(read_as)
            return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=path_fd)
    except OSError as e:
        raise InvalidInput(f"{FLAG} {given!r}: cannot open the directory"
                           + (f" as uid {read_as}, its owner" if read_as > 0 else "")
                           + f": {e.strerror}") from None
    finally:
        os.close(path_fd)


def compile_patterns(lines: list[str], where: str) -> tuple[Pattern, ...]:
    """.gitignore-syntax patterns as (pattern, regex, negated), translated by pathspec (imported
    only here: only a context with an ignore file or --context-include pays for it). Blank lines
    and comments are dropped; `where` names the file or flag in an error."""
    from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

    out: list[Pattern] = []
    for number, line in enumerate(lines, 1):
        try:
            regex, keeps = GitIgnoreSpecPattern.pattern_to_regex(line)
        except ValueError as e:
            raise InvalidInput(f"{where.format(number=number)}: {line!r} is not a pattern: {e}",
                               hint="patterns follow the .gitignore syntax") from None
        if regex is not None:
            out.append((line, regex, keeps is False))
    return tuple(out)


def ignore_patterns(given: str, fd: int, read_as: int) -> tuple[Pattern, ...]:
    """The patterns of the context's .nucleusignore (none without one), read by descriptor as
    the user `read_as` names."""
    reader = tree.Reader(read_as, identity_of)
    where = f"{FLAG} {given!r}: {IGNORE_FILE}"
    try:
        with reader:
            reader.use(read_as)
            try:
                ignore_fd = os.open(IGNORE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                                    | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                return ()
        try:
            st = os.fstat(ignore_fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > IGNORE_FILE_MAX:
                raise InvalidInput(f"{where}: not a regular file of at most 1 MiB")
            data = os.pread(ignore_fd, IGNORE_FILE_MAX + 1, 0)
        finally:
            os.close(ignore_fd)
    except OSError as e:
        hint = "it must be a regular file, not a symlink" if e.errno == errno.ELOOP else None
        raise InvalidInput(f"{where}: {e.strerror}", hint=hint) from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}: not UTF-8 text") from None
    return compile_patterns(text.splitlines(), where + ", line {number}")


class _Measure(tree.Visitor):
    """The walk before the copy: what it would copy, what it leaves out, and with
    --verify-context-integrity the manifest."""

    def __init__(self, manifest: integrity.Manifest | None) -> None:
        self.files = 0
        self.bytes = 0
        self.largest: list[tuple[int, str]] = []  # a heap of the largest files
        self.left: list[tuple[str, str]] = []
        self.manifest = manifest

    def left_out(self, rel: str, is_dir: bool, rule: str) -> None:
        self.left.append((rel + "/" if is_dir else rel, rule))

    def enter(self, rel: str, st: os.stat_result) -> None:
        if self.manifest is not None:
            self.manifest.enter(rel, st)

    def file(self, rel: str, st: os.stat_result, fd: int) -> None:
        size = footprint(st.st_size, st.st_blocks)
        self.files += 1
        self.bytes += size
        heapq.heappush(self.largest, (size, rel))
        if len(self.largest) > SHOWN:
            heapq.heappop(self.largest)
        if self.manifest is not None:
            self.manifest.file(rel, st, fd)

    def link(self, rel: str, st: os.stat_result, target: str) -> None:
        if len(target.encode()) >= 128:  # a tmpfs keeps shorter targets in the inode
            self.bytes += PAGE
        if self.manifest is not None:
            self.manifest.link(rel, st, target)


def measure_context(given: str, fd: int, matcher: Matcher, read_as: int, manifest: bool
                    ) -> tuple[Measured, tuple[tuple[str, str], ...] | None]:
    """Walk the context open at `fd` as a copy would (the same walk and rules, reading as
    `read_as` says), without copying: what it holds and leaves out, whose identities it reads
    with, and the manifest if asked. A failure names the entry (InvalidInput)."""
    visitor = _Measure(integrity.Manifest() if manifest else None)
    reader = tree.Reader(read_as, identity_of)
    try:
        tree.walk(fd, matcher, visitor, reader)
    except tree.WalkError as e:
        hint = (f"leave it out in {IGNORE_FILE}, or make it readable"
                + (" to that user" if e.uid > 0 else "")) if e.errno in (errno.EACCES, errno.EPERM) \
            else "try again" if e.errno == errno.ESTALE else None
        raise InvalidInput(f"{FLAG} {given!r}: cannot read {e.strerror}", hint=hint) from None
    measured = Measured(
        files=visitor.files, bytes=visitor.bytes,
        largest=tuple((rel, size) for size, rel in sorted(visitor.largest, reverse=True)),
        left_out=tuple(visitor.left), identities=tuple(sorted(reader.used.values())))
    entries = None if visitor.manifest is None else tuple(sorted(visitor.manifest.entries.items()))
    return measured, entries


def close_context(fd: int) -> None:
    """The supervisor's descriptor of the context, once nothing will be forked from it."""
    with contextlib.suppress(OSError):
        os.close(fd)

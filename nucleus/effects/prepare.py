"""What a command prepares before it changes anything on the host: policy files read once, the
seccomp program compiled (or taken from the cache; compiling is where a bad profile is refused),
the context opened, measured (and its manifest taken). Nothing here creates a container resource;
the seccomp cache is the only thing written.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import stat
import sys

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
from nucleus.config.secrets import Secret
from nucleus.effects import abi, digest, init_image, integrity, seccomp, tree
from nucleus.effects import secrets as secret_files
from nucleus.errors import HostUnsupported, InvalidInput, RuntimeFailure


def read_file(flag: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidInput(f"{flag} {path!r}: {e.strerror}") from e


def read_small_file(flag: str, path: str, limit: int) -> bytes:
    """The bytes of a regular file the caller names (an --env-file): opened as the caller
    would (its own file, symlinks followed), but never a FIFO, device or directory (it could
    block, or never end), and never more than `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise InvalidInput(f"{flag} {path!r}: {e.strerror}") from e
    try:
        data = read_regular(fd, limit)
    except OSError as e:
        raise InvalidInput(f"{flag} {path!r}: {e.strerror}") from e
    finally:
        os.close(fd)
    if data is None:
        raise InvalidInput(f"{flag} {path!r}: not a regular file (a pipe, device or directory is refused)")
    if len(data) > limit:
        raise InvalidInput(f"{flag} {path!r}: larger than {limit >> 10} KiB")
    return data


def read_regular(fd: int, limit: int) -> bytes | None:
    """What an open file holds, up to `limit` + 1 bytes (more than `limit`: too large); None
    when it is not a regular file."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return None
    chunks: list[bytes] = []
    size = 0
    while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _open_append(flag: str, path: str) -> tuple[int, bool]:
    """A file the run appends to (--violations), opened once, now, before anything changes:
    created 0600 if missing, never through a symlink (O_NOFOLLOW), never a FIFO, device or
    directory, never a file of another user's or one with other names (a hard link planted to
    a file the caller may write), so that what the caller names is what is written. Returns
    the descriptor and whether the file was made now. Refused as bad input naming the flag, the
    file and why."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
    created = False
    try:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(path, flags)
    except OSError as e:
        why = {errno.ELOOP: "is a symbolic link", errno.ENXIO: "is not a regular file (a FIFO or a socket)"
               }.get(e.errno or 0, e.strerror)
        raise InvalidInput(f"{flag} {path!r}: cannot be opened for appending: {why}",
                           hint="name a regular file of your own in a directory you may write") from None
    st = os.fstat(fd)
    why = None
    if not stat.S_ISREG(st.st_mode):
        why = "is not a regular file"
    elif st.st_uid != os.geteuid():
        why = f"belongs to uid {st.st_uid}, not to the caller (uid {os.geteuid()})"
    elif st.st_nlink != 1:
        why = f"has {st.st_nlink} names (hard links)"
    if why is not None:
        os.close(fd)
        raise InvalidInput(f"{flag} {path!r}: {why}", hint="name a regular file of your own")
    os.set_blocking(fd, True)
    return fd, created


class AppendFile:
    """A file a run appends to (--violations), opened as :func:`_open_append` opens it; a run
    refused after that removes the file if it made it and nothing was written."""

    def __init__(self, flag: str, path: str | None) -> None:
        self.path = path
        self.fd: int | None = None
        self.created = False
        if path is not None:
            self.fd, self.created = _open_append(flag, path)

    def discard(self) -> None:
        if self.fd is None:
            return
        made = os.fstat(self.fd) if self.created else None
        os.close(self.fd)
        self.fd = None
        if made is None or self.path is None:
            return
        with contextlib.suppress(OSError):
            now = os.lstat(self.path)
            if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino) and now.st_size == 0:
                os.unlink(self.path)


def rootfs_attested(root: str, stores: tuple[str, ...]) -> None:
    """--verify-rootfs-attestation: the closure is what its manifest says, or the run is refused
    (nucleus.effects.attestation)."""
    from nucleus.effects import attestation

    attestation.verify(root, stores)


def architecture() -> tuple[str, str]:
    """This machine's architecture (uname -m) and libseccomp's token for it; refuses a machine
    nucleus has no syscall table for."""
    arch = abi.check_architecture()
    return arch.machine, arch.seccomp_arch


def compiled_init(required: bool, environ: dict[str, str]) -> int | None:
    """The container's compiled init, loaded (nucleus.effects.init_image): the descriptor the
    setup process keeps for PID 1. Without it, refused when `required` (production), else None
    after a warning: PID 1 then stays the interpreter."""
    binary = init_image.path(environ)
    try:
        return init_image.load(binary)
    except OSError as e:
        why = f"the container's init {binary!r}: {e.strerror}"
        hint = f"build it with `make setup` (gcc), or name it with {init_image.ENVIRONMENT}=PATH"
        if required:
            raise HostUnsupported(f"production mode requires the compiled init (row \"PID 1 init\"): {why}",
                                  hint=hint) from e
        sys.stderr.write(f"warning: {why}; PID 1 stays the interpreter (about 10 MiB more)\nhint: {hint}\n")
        return None


SecretSource = secret_files.Source


def secret_sources(secrets: tuple[Secret, ...], caller: int) -> list[SecretSource]:
    """The --secret sources, opened and checked (nucleus.effects.secrets); read later, by the
    executor, just before the setup process is forked."""
    return secret_files.open_sources(secrets, caller)


def close_secrets(sources: list[SecretSource]) -> None:
    secret_files.close(sources)


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
    sha = digest.sha256(compiled).hexdigest()
    seccomp.keep_by_sha256(sha, compiled)
    return sha, compiled


def program_by_sha256(sha: str) -> bytes | None:
    """A program this host compiled earlier, by its sha256 (checked against the bytes read)."""
    return seccomp.read_by_sha256(sha)


# --- the context ----------------------------------------------------------------------------------

Manifest = integrity.Manifest  # what a walk before the copy fills (a --changes snapshot is one)
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


def directory_below(fd: int, rel: str) -> str | None:
    """Why `rel` is not a directory below the directory open at `fd`, walked one component at a
    time without following a symlink (None when it is one)."""
    current = os.dup(fd)
    walked = ""
    try:
        for part in rel.split("/"):
            walked = f"{walked}/{part}".lstrip("/")
            try:
                sub = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
            except OSError as e:
                return f"{walked!r} cannot be opened ({e.strerror})"
            os.close(current)
            current = sub
            mode = os.fstat(current).st_mode
            if stat.S_ISLNK(mode):
                return f"{walked!r} is a symlink"
            if not stat.S_ISDIR(mode):
                return f"{walked!r} is not a directory"
        return None
    finally:
        os.close(current)


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


def measure_context(given: str, fd: int, matcher: Matcher, read_as: int, manifest: bool,
                    snapshot: Manifest | None = None
                    ) -> tuple[Measured, tuple[tuple[str, str], ...] | None]:
    """Walk the context open at `fd` as a copy would (the same walk and rules, reading as
    `read_as` says), without copying: what it holds and leaves out, whose identities it reads
    with, and the manifest if asked. `snapshot`, a manifest of its own, is filled by the walk
    too (--changes). A failure names the entry (InvalidInput)."""
    visitor = _Measure(snapshot if snapshot is not None else integrity.Manifest() if manifest else None)
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
    entries = None if visitor.manifest is None or not manifest else tuple(sorted(visitor.manifest.entries.items()))
    return measured, entries


def close_context(fd: int) -> None:
    """The supervisor's descriptor of the context, once nothing will be forked from it."""
    with contextlib.suppress(OSError):
        os.close(fd)


def close_all(fds: list[int]) -> None:
    """Descriptors opened while preparing (volumes, destinations, a kept tree), once nothing
    needs them any more; the list is emptied."""
    for fd in fds:
        close_context(fd)
    fds.clear()


def volume_idmap(opened: int, uid: tuple[int, int], gid: tuple[int, int]) -> int | None:
    """A user namespace mapping host uid `uid[0]` to `uid[1]` (and `gid` so) through which the
    volume open at `opened` can be id-mapped (nucleus.effects.idmap), or None where its file
    system cannot be."""
    from nucleus.effects import idmap

    ns = idmap.userns(((uid[0], uid[1], 1),), ((gid[0], gid[1], 1),))
    if idmap.supported(opened, ns):
        return ns
    os.close(ns)
    return None


def changes_snapshot() -> Manifest:
    """What the walk before the copy fills for --changes (nucleus.effects.changes.Snapshot)."""
    from nucleus.effects.changes import Snapshot

    return Snapshot(copied=True)

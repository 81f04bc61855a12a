"""Rootfs attestation: measure a closure as the container will see it, write its manifest
(`nucleus attest`), and check it before a run mounts it (`--verify-rootfs-attestation`). The
format, what the container sees and where a symlink leads are nucleus.config.attestation's.

The walk goes by descriptors: each directory opened below its parent with O_NOFOLLOW, each file
read through a descriptor opened the same way, so that a directory swapped for a symlink while a
closure is measured is refused rather than followed, and nothing outside the closure and its
store paths is ever read. Symlinks are recorded as written, never followed by the walk: what one
leads to is measured at its own place. Every file is read once; a closure of more than
MAX_ENTRIES entries is refused.

What is measured is the closure at the moment of the check: a store path is immutable once built,
which is why production requires the closure under /nix/store.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field

from nucleus.config import attestation as fmt
from nucleus.errors import InvalidInput

MAX_LINKS = 40  # as the kernel's own bound on symlinks followed in one lookup
MAX_ENTRIES = 2_000_000
CHUNK = 1 << 20
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
         stat.S_IFBLK: "a block device"}


@dataclass
class Measure:
    root: str
    stores: tuple[str, ...]
    entries: dict[str, str] = field(default_factory=dict)
    links: dict[tuple[str, ...], str] = field(default_factory=dict)  # container path -> target

    def name(self, parts: tuple[str, ...]) -> str:
        path = "/" + "/".join(parts)
        return path if any(path == s or path.startswith(s + "/") for s in self.stores) else "/".join(parts)

    def add(self, parts: tuple[str, ...], value: str) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            raise InvalidInput(f"the closure {self.root!r} has more than {MAX_ENTRIES} entries")
        self.entries[self.name(parts)] = value


def _file_digest(dir_fd: int, name: str, where: str) -> str:
    import hashlib  # OpenSSL's: a closure is hundreds of MiB (not on the path of a plain run)

    fd = os.open(name, _READ, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput(f"{where} changed while it was measured")
        h = hashlib.sha256()
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def _walk(m: Measure, dir_fd: int, parts: tuple[str, ...], host: str) -> None:
    """Every entry below the directory `dir_fd` (container path `parts`, host path `host`)."""
    with os.scandir(dir_fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if not parts and (entry.name in (fmt.MANIFEST, fmt.STORE_PATHS) or not _visible(m, entry.name)):
            continue
        where = os.path.join(host, entry.name)
        child = (*parts, entry.name)
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(entry.name, dir_fd=dir_fd)
            m.links[child] = target
            m.add(child, fmt.LINK + target)
        elif stat.S_ISREG(st.st_mode):
            try:
                m.add(child, _file_digest(dir_fd, entry.name, where))
            except OSError as e:
                raise InvalidInput(f"{where}: cannot be read to attest it: {e.strerror}") from None
        elif stat.S_ISDIR(st.st_mode):
            try:
                fd = os.open(entry.name, _DIR, dir_fd=dir_fd)
            except OSError as e:
                raise InvalidInput(f"{where}: cannot be read to attest it: {e.strerror}") from None
            try:
                _walk(m, fd, child, where)
            finally:
                os.close(fd)
        else:
            kind = KINDS.get(stat.S_IFMT(st.st_mode), "no file, directory or symlink")
            raise InvalidInput(f"{where} is {kind}: a closure holds only files, directories and symlinks")


def _visible(m: Measure, top: str) -> bool:
    """A top-level entry of the closure the container binds (its own nix only without store paths)."""
    return top in fmt.VISIBLE and not (top == "nix" and m.stores)


def _check_links(m: Measure) -> None:
    """Every symlink leads, as the container resolves it, to what it sees of the closure."""
    for parts, target in m.links.items():
        at, to = list(parts), target
        for _ in range(MAX_LINKS):  # a longer chain is a loop: it leads nowhere
            dest = fmt.resolve(at, to)
            if not fmt.seen_by_container(dest, m.stores):
                raise InvalidInput(
                    f"{m.name(parts)!r} leads to /{'/'.join(dest)}, outside the closure and its store paths",
                    hint="a closure's symlinks stay inside it or in the store paths it lists "
                         "(.nucleus-rootfs-store-paths)")
            further = _link_at(m, dest)
            if further is None:
                break
            at, to = further


def _link_at(m: Measure, path: list[str]) -> tuple[list[str], str] | None:
    """The first symlink on container path `path`: the path up to it, and where the rest of
    `path` is from there."""
    for i in range(1, len(path) + 1):
        target = m.links.get(tuple(path[:i]))
        if target is not None:
            rest = path[i:]
            return path[:i], target + ("/" + "/".join(rest) if rest else "")
    return None


def _walk_tree(m: Measure, host: str, parts: tuple[str, ...]) -> None:
    """Every entry below the directory `host` (container path `parts`), opened without
    following a symlink."""
    try:
        fd = os.open(host, _DIR)
    except OSError as e:
        raise InvalidInput(f"{host}: cannot be read to attest it: {e.strerror}") from None
    try:
        _walk(m, fd, parts, host)
    finally:
        os.close(fd)


def measure(root: str, stores: tuple[str, ...]) -> dict[str, str]:
    """The manifest's entries for the closure at `root` with its store paths."""
    m = Measure(os.path.realpath(root), stores)
    for parts, host in [((), m.root)] + [(tuple(s.strip("/").split("/")), s) for s in stores]:
        _walk_tree(m, host, parts)
    _check_links(m)
    return m.entries


def discover(root: str) -> tuple[str, ...]:
    """The store paths the closure's symlinks lead into, and theirs in turn."""
    found: set[str] = set()
    todo: list[tuple[tuple[str, ...], str]] = [((), os.path.realpath(root))]
    while todo:
        parts, host = todo.pop()
        m = Measure(host, (), {}, {})
        _walk_tree(m, host, parts)
        for link, target in m.links.items():
            dest = fmt.resolve(list(link), target)
            if dest[:2] != ["nix", "store"]:
                continue
            if len(dest) < 3:
                raise InvalidInput(f"{'/'.join(link)!r} leads to the whole store (/{'/'.join(dest)})",
                                   hint="a symlink of a closure leads into one store path")
            store = "/" + "/".join(dest[:3])
            if store not in found and os.path.isdir(store) and not os.path.islink(store):
                found.add(store)
                todo.append((tuple(dest[:3]), store))
    return tuple(sorted(found))


def _read(dir_fd: int, name: str, where: str, limit: int) -> str | None:
    """A regular file's text (None where there is none), opened without following a symlink."""
    try:
        fd = os.open(name, _READ, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InvalidInput(f"{where} cannot be read: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput(f"{where} is not a regular file")
        data = b""
        while len(data) <= limit and (chunk := os.read(fd, CHUNK)):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InvalidInput(f"{where} is larger than {limit >> 20} MiB")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise InvalidInput(f"{where} is not UTF-8 text") from None


def _open_root(root: str, flag: str) -> int:
    try:
        return os.open(root, _DIR)
    except OSError as e:
        raise InvalidInput(f"{flag} {root!r}: {e.strerror}") from None


def store_paths(root: str) -> tuple[str, ...] | None:
    """The store paths the closure lists (None: it has no list)."""
    fd = _open_root(root, "--rootfs")
    try:
        text = _read(fd, fmt.STORE_PATHS, os.path.join(root, fmt.STORE_PATHS), fmt.MAX_MANIFEST)
    finally:
        os.close(fd)
    return None if text is None else fmt.parse_store_paths(text, os.path.join(root, fmt.STORE_PATHS))


def _write(dir_fd: int, name: str, text: str) -> None:
    tmp = f".{name}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def attest(root: str, stores: tuple[str, ...] | None = None) -> tuple[int, tuple[str, ...]]:
    """Write the closure's manifest and its store paths (`stores`; None: the list it has, else
    the store paths its symlinks lead into). Returns how many entries it lists, and the store
    paths."""
    if not os.path.isdir(root):
        raise InvalidInput(f"nucleus attest {root!r}: not a directory")
    root = os.path.realpath(root)
    if stores is None:
        stores = store_paths(root)
    if stores is None:
        stores = discover(root)
    stores = fmt.parse_store_paths(fmt.render_store_paths(stores), "--store-path")
    for store in stores:
        if not os.path.isdir(store) or os.path.islink(store):
            raise InvalidInput(f"--store-path {store!r}: not a directory")
    manifest = fmt.render(measure(root, stores))
    fd = _open_root(root, "nucleus attest")
    try:
        _write(fd, fmt.STORE_PATHS, fmt.render_store_paths(stores))
        _write(fd, fmt.MANIFEST, manifest)
    except OSError as e:
        raise InvalidInput(f"nucleus attest {root!r}: cannot write the manifest: {e.strerror}") from None
    finally:
        os.close(fd)
    return manifest.count("\n"), stores


def verify(root: str, stores: tuple[str, ...], flag: str = "--verify-rootfs-attestation") -> None:
    """Refuse the closure unless it is what its manifest says, naming what differs."""
    fd = _open_root(root, "--rootfs")
    try:
        text = _read(fd, fmt.MANIFEST, os.path.join(root, fmt.MANIFEST), fmt.MAX_MANIFEST)
    finally:
        os.close(fd)
    if text is None:
        raise InvalidInput(f"{flag}: the closure {root!r} has no {fmt.MANIFEST}",
                           hint=f"attest it when it is built: nucleus attest {root}")
    expected = fmt.parse(text, os.path.join(root, fmt.MANIFEST))
    differences = fmt.compare(expected, measure(root, stores))
    if differences:
        raise InvalidInput(f"{flag}: the closure {root!r} is not what {fmt.MANIFEST} says: "
                           f"{differences.summary()}",
                           hint="rebuild the closure; a closure changed after it was attested is not run")

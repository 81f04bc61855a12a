"""Context integrity: a manifest of a directory tree, and the difference between two manifests.

For ``--verify-context-integrity`` the runtime takes the manifest of the host context before the
copy and the manifest of the populated /context after it; any difference stops the run. The
manifest sees what ``nucleus.effects.fs.copy_tree`` copies and nothing else:

- names excluded by the copy's patterns are skipped, with the copy's own matcher;
- regular files map to the sha256 of their content (hex);
- symlinks map to ``"symlink:" + target``: recorded, never followed;
- directories map to ``"dir"``, so a missing or extra empty directory is noticed too;
- devices, sockets and FIFOs are skipped, as the copy skips them.

Paths are relative to the root, '/'-separated, without a leading '/'. Directories are opened
with O_NOFOLLOW relative to their parent's descriptor, so a tree swapped for a symlink while it
is read fails instead of being followed.
"""

from __future__ import annotations

import hashlib
import os
import stat

from nucleus.config.context import excluded

DIR = "dir"
SYMLINK_PREFIX = "symlink:"
NOT_REGULAR = "not-regular"
CHUNK = 1 << 20


def _hash_file(dir_fd: int, name: str) -> str:
    # O_NONBLOCK: a file swapped for a FIFO after the stat must not hang the hash.
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK,
                 dir_fd=dir_fd)
    digest = hashlib.sha256()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return NOT_REGULAR  # swapped after the stat: never equal to a digest
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _walk(dir_fd: int, prefix: str, exclude: tuple[str, ...], out: dict[str, str]) -> None:
    with os.scandir(dir_fd) as entries:
        items = sorted(entries, key=lambda e: e.name)
    for entry in items:
        name = entry.name
        if excluded(name, exclude):
            continue
        rel = prefix + name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            out[rel] = DIR
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dir_fd)
            try:
                _walk(sub, rel + "/", exclude, out)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            out[rel] = _hash_file(dir_fd, name)
        elif stat.S_ISLNK(st.st_mode):
            out[rel] = SYMLINK_PREFIX + os.readlink(name, dir_fd=dir_fd)


def manifest(root: int | str | os.PathLike[str], exclude_patterns: tuple[str, ...] | list[str] = ()
             ) -> dict[str, str]:
    """{relative path: sha256 hex | "symlink:<target>" | "dir"} for the tree at ``root`` (a
    directory path, or an open directory descriptor, which stays open), skipping names that
    match ``exclude_patterns`` (``nucleus.config.context.exclusion_list()`` for a context)."""
    exclude = tuple(exclude_patterns)
    if isinstance(root, int):
        fd = os.dup(root)
    else:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    out: dict[str, str] = {}
    try:
        _walk(fd, "", exclude, out)
    finally:
        os.close(fd)
    return out


def compare(expected: dict[str, str], actual: dict[str, str]
            ) -> tuple[list[str], list[str], list[str]]:
    """(missing, changed, extra), each sorted: paths only in ``expected``, paths in both with
    different entries, paths only in ``actual``."""
    missing = sorted(p for p in expected if p not in actual)
    changed = sorted(p for p in expected if p in actual and expected[p] != actual[p])
    extra = sorted(p for p in actual if p not in expected)
    return missing, changed, extra


def _some(paths: list[str], limit: int) -> str:
    shown = ", ".join(repr(p) for p in paths[:limit])
    if len(paths) > limit:
        shown += f" and {len(paths) - limit} more"
    return shown


def mismatch_message(missing: list[str], changed: list[str], extra: list[str], limit: int = 5,
                     what: str = "/context", source: str | None = None) -> str:
    """One sentence naming up to ``limit`` paths of each kind; "" when nothing differs, e.g.::

        /context does not match the context './ctx': 1 missing ('a.txt'), 2 changed ('b', 'c/d')
    """
    if not (missing or changed or extra):
        return ""
    parts = []
    for label, paths in (("missing", missing), ("changed", changed), ("extra", extra)):
        if paths:
            parts.append(f"{len(paths)} {label} ({_some(paths, limit)})")
    against = f"the context {source!r}" if source is not None else "the context it was copied from"
    return f"{what} does not match {against}: {', '.join(parts)}"

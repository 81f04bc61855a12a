"""Context integrity: a manifest of a directory tree, and the difference between two manifests.

For ``--verify-context-integrity`` the runtime takes the manifest of the host context before the
copy (in the same walk that measures it, nucleus.effects.prepare) and the manifest of the
populated /context after it; any difference stops the run. The manifest sees what
``nucleus.effects.fs.copy_tree`` copies and nothing else, because both walk the tree with
nucleus.effects.tree and leave out what the one nucleus.config.context.Matcher says:

- entries the rules leave out (by name, by the ignore file, a private key by its first bytes)
  are skipped;
- regular files map to the sha256 of their content (hex);
- symlinks map to ``"symlink:" + target``: recorded, never followed;
- directories map to ``"dir"``, so a missing or extra empty directory is noticed too;
- devices, sockets and FIFOs are skipped, as the copy skips them.

Paths are relative to the root, '/'-separated, without a leading '/'. The walk opens every entry
relative to its directory's descriptor without following symlinks, so a tree swapped for a
symlink while it is read fails instead of being followed.
"""

from __future__ import annotations

import os

from nucleus.config.context import Matcher
from nucleus.effects import digest, tree

DIR = "dir"
SYMLINK_PREFIX = "symlink:"
CHUNK = 1 << 20


def hash_file(fd: int) -> str:
    """The sha256 (hex) of the file open at `fd`, read from its start."""
    sha = digest.sha256(b"")
    offset = 0
    while chunk := os.pread(fd, CHUNK, offset):
        sha.update(chunk)
        offset += len(chunk)
    return sha.hexdigest()


class Manifest(tree.Visitor):
    """A walk's visitor that records the manifest in `entries`."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}

    def enter(self, rel: str, st: os.stat_result) -> None:
        self.entries[rel] = DIR

    def file(self, rel: str, st: os.stat_result, fd: int) -> None:
        self.entries[rel] = hash_file(fd)

    def link(self, rel: str, st: os.stat_result, target: str) -> None:
        self.entries[rel] = SYMLINK_PREFIX + target


def manifest(root: int | str | os.PathLike[str], matcher: Matcher | None = None) -> dict[str, str]:
    """{relative path: sha256 hex | "symlink:<target>" | "dir"} for the tree at ``root`` (a
    directory path, or an open directory descriptor, which stays open), leaving out what
    ``matcher`` leaves out (nothing but special files without one)."""
    fd = os.dup(root) if isinstance(root, int) else os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    visitor = Manifest()
    try:
        tree.walk(fd, matcher or Matcher(), visitor)
    finally:
        os.close(fd)
    return dict(sorted(visitor.entries.items()))


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

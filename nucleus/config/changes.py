"""What a copied context hands back (`--changes OUT`): the entries of /context that the workload
added, modified or deleted, against the tree the copy was made from. Pure data and decisions:
taking the two snapshots and writing OUT are effects (nucleus.effects.changes).

The rules, as README.md's "Results" states them:

* **What counts.** The tree the copy was made from is measured before the run (the sha256 of
  every file, every symlink's target, every directory, and their modes as the copy gives them);
  when the workload has ended, /context is walked the same way. A path in only the second is
  added, in only the first deleted, in both with another type, content, target or mode
  modified.
* **What is refused**, and named: devices, sockets and FIFOs; a symlink that is absolute, leaves
  the tree or passes through another symlink on its way (it would point somewhere else on the
  host); a file larger than `--changes-max-size` (default 16M).
* **What OUT is.** A directory holding `files/` (every added or modified entry, as it is now:
  files, directories and symlinks, never setuid, setgid or sticky), `manifest.json` (each change
  with its path, kind, type, size, mode and sha256, and what was refused) and `changes.patch`
  (a unified patch in git's format of the text files and symlinks, which `git apply` applies
  to the original tree; binary files are only in `files/`); or, when OUT ends in `.patch` or
  `.diff`, that patch alone, and what it cannot show is named as left out. OUT must not exist; it is created by the caller's identity (see
  nucleus.config.hostpaths), never through a symlink.
"""

from __future__ import annotations

import posixpath
from typing import NamedTuple

from nucleus.errors import InvalidInput

FLAG = "--changes"
SIZE_FLAG = "--changes-max-size"
DEFAULT_MAX_SIZE = 16 << 20
PATCH_SUFFIXES = (".patch", ".diff")
FILES = "files"
MANIFEST = "manifest.json"
PATCH = "changes.patch"
TEXT_MAX = 1 << 20  # larger text files are compared but not diffed line by line

ADDED, MODIFIED, DELETED = "added", "modified", "deleted"
FILE, DIRECTORY, SYMLINK = "file", "dir", "symlink"


class Entry(NamedTuple):
    """What a tree holds at one path."""

    kind: str  # FILE, DIRECTORY or SYMLINK
    mode: int  # the permission bits, as the copy gives them
    size: int
    digest: str = ""  # a file's sha256, a symlink's target


class Change(NamedTuple):
    path: str
    change: str  # ADDED, MODIFIED or DELETED
    before: Entry | None
    after: Entry | None


def patch_only(out: str) -> bool:
    """Whether OUT names a patch file rather than a directory."""
    return out.endswith(PATCH_SUFFIXES)


def copied_mode(kind: str, mode: int) -> int:
    """The permission bits a copy gives an entry of host mode `mode` (nucleus.effects.fs): no
    setuid, setgid or sticky bit; a directory always readable, writable and searchable by its
    owner."""
    bits = mode & 0o777
    return bits | 0o700 if kind == DIRECTORY else bits


def compare(before: dict[str, Entry], after: dict[str, Entry]) -> list[Change]:
    """Every change between two snapshots, in path order."""
    out = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        kind = ADDED if old is None else DELETED if new is None else MODIFIED
        out.append(Change(path, kind, old, new))
    return out


def link_refusal(path: str, target: str, kinds: dict[str, str]) -> str | None:
    """Why the symlink at `path` (relative to the tree) pointing to `target` is not brought
    back, or None: an absolute target, one that leaves the tree, or one that passes through
    another symlink of the tree (`kinds`: each path's type) on its way."""
    if not target or target.startswith("/"):
        return f"a symlink to {target!r}, an absolute path: it would point elsewhere on the host"
    where = posixpath.dirname(path)
    parts = where.split("/") if where else []
    steps = [p for p in target.split("/") if p and p != "."]
    for i, step in enumerate(steps):
        if step == "..":
            if not parts:
                return f"a symlink to {target!r}, out of the tree"
            parts.pop()
            continue
        parts.append(step)
        if i < len(steps) - 1 and kinds.get("/".join(parts)) == SYMLINK:
            return f"a symlink to {target!r}, through the symlink {'/'.join(parts)!r}"
    return None


class LeftOut(NamedTuple):
    path: str
    reason: str


SPECIAL = "a device, socket or FIFO: special files are not brought back"


def too_large(size: int, limit: int) -> str:
    return f"{size} bytes, more than {SIZE_FLAG} ({limit} bytes)"


def mode_text(mode: int) -> str:
    return f"{mode:04o}"


def document(source: str, changes: list[Change], left_out: list[LeftOut]) -> dict[str, object]:
    """manifest.json: each change with what the tree holds now (what it held, for a deleted
    entry), and what was refused."""
    rows = []
    for change in changes:
        entry = change.after or change.before
        assert entry is not None
        row: dict[str, object] = {"path": change.path, "change": change.change, "type": entry.kind,
                                  "size": entry.size, "mode": mode_text(entry.mode)}
        if entry.kind == FILE:
            row["sha256"] = entry.digest
        elif entry.kind == SYMLINK:
            row["target"] = entry.digest
        rows.append(row)
    return {"context": source, "changes": rows,
            "left_out": [{"path": item.path, "reason": item.reason} for item in left_out]}


def summary(out: str, changes: list[Change], left_out: list[LeftOut]) -> str:
    counts = {kind: sum(1 for c in changes if c.change == kind) for kind in (ADDED, MODIFIED, DELETED)}
    said = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    refused = f"; {len(left_out)} left out" if left_out else ""
    return f"{FLAG}: wrote {len(changes)} change{'' if len(changes) == 1 else 's'} to {out!r} ({said}){refused}"


def text_of(data: bytes) -> str | None:
    """`data` as text, or None for what a patch does not show line by line (not UTF-8, a NUL
    byte, larger than TEXT_MAX)."""
    if len(data) > TEXT_MAX or b"\0" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


# --- the flags ---------------------------------------------------------------------------------


def validate(out: str | None, context: str | None, mode: str, max_size: int | None) -> None:
    """--changes needs a copied context; --changes-max-size needs --changes."""
    if max_size is not None and out is None:
        raise InvalidInput(f"{SIZE_FLAG} needs {FLAG}", hint=f"give where the changes go: {FLAG} OUT")
    if max_size is not None and max_size < 1:
        raise InvalidInput(f"{SIZE_FLAG} {max_size}: must be at least one byte")
    if out is None:
        return
    if not out or "\0" in out:
        raise InvalidInput(f"{FLAG} {out!r}: not a usable path")
    if context is None:
        raise InvalidInput(f"{FLAG} {out!r}: needs --context: the changes are those of /context",
                           hint="add --context DIR")
    if mode != "copy":
        raise InvalidInput(f"{FLAG} {out!r}: applies to a copied context, not --context-mode {mode}",
                           hint="a bound context is read-only: nothing changes in it")

"""`--changes OUT`: the snapshot of the context taken in the walk before the copy, the walk of
/context once the workload has ended (through the detached copy of its mount the setup process
handed over: the container's mount namespace is gone by then), and OUT written. What counts as
a change, what is refused and what OUT holds are nucleus.config.changes'.

Both trees are read by descriptor: the copy's without following any symlink (it is read-only,
and nothing runs in it any more), the original's (for a patch's old text) from the context's
descriptor, as the user the copy read it as, and only when its sha256 is still the one taken
before the run. OUT is made by a transfer.Writer: new, never through a symlink, as the caller's
identity; a failure removes what was made.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import json
import os
import stat
from collections.abc import Callable
from typing import NamedTuple

from nucleus.config import changes as rules
from nucleus.config.changes import DIRECTORY, FILE, SYMLINK, Change, Entry, LeftOut
from nucleus.config.context import Identity, Matcher
from nucleus.config.hostpaths import Destination
from nucleus.effects import abi, integrity, libc, transfer, tree

_BENEATH = abi.RESOLVE_BENEATH | abi.RESOLVE_NO_SYMLINKS | abi.RESOLVE_NO_MAGICLINKS
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
UNLIMITED = 1 << 62


class Snapshot(integrity.Manifest):
    """A walk's visitor: every entry as a changes.Entry in `tree` (and the manifest's entries,
    for --verify-context-integrity). `copied`: modes as the copy will give them (the walk of
    the original); else as they are. Special files are listed in `special`."""

    def __init__(self, copied: bool) -> None:
        super().__init__()
        self.copied = copied
        self.tree: dict[str, Entry] = {}
        self.special: list[str] = []

    def _mode(self, kind: str, st: os.stat_result) -> int:
        return rules.copied_mode(kind, st.st_mode) if self.copied else stat.S_IMODE(st.st_mode)

    def left_out(self, rel: str, is_dir: bool, rule: str) -> None:
        if rule == "special":
            self.special.append(rel)

    def enter(self, rel: str, st: os.stat_result) -> None:
        super().enter(rel, st)
        self.tree[rel] = Entry(DIRECTORY, self._mode(DIRECTORY, st), 0)

    def file(self, rel: str, st: os.stat_result, fd: int) -> None:
        super().file(rel, st, fd)
        self.tree[rel] = Entry(FILE, self._mode(FILE, st), st.st_size, self.entries[rel])

    def link(self, rel: str, st: os.stat_result, target: str) -> None:
        super().link(rel, st, target)
        self.tree[rel] = Entry(SYMLINK, 0o777, len(os.fsencode(target)), target)


class Original(NamedTuple):
    """The context the copy was made from: its descriptor and whose identity reads it."""

    fd: int
    read_as: int
    lookup: Callable[[int], Identity]


def _reopen(fd: int) -> int:
    return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)


def select(before: Snapshot, after: Snapshot, limit: int) -> tuple[list[Change], list[LeftOut]]:
    """The changes to bring back, and what is refused (special files, symlinks that would
    point elsewhere, files over `limit` bytes)."""
    kinds = {path: entry.kind for path, entry in after.tree.items()}
    kept: list[Change] = []
    left = [LeftOut(path, rules.SPECIAL) for path in after.special]
    for change in rules.compare(before.tree, after.tree):
        new = change.after
        why = None
        if new is not None and new.kind == SYMLINK:
            why = rules.link_refusal(change.path, new.digest, kinds)
        elif new is not None and new.kind == FILE and new.size > limit:
            why = rules.too_large(new.size, limit)
        if why is None:
            kept.append(change)
        else:
            left.append(LeftOut(change.path, why))
    return kept, sorted(left)


def _open(top: int, path: str, identity: tree.Reader | None = None) -> int:
    """The regular file at `path` below `top`, opened without following any symlink (as
    `identity` says)."""
    if identity is not None:
        identity.use(identity.read_as)
    try:
        fd = libc.openat2(top, path, _READ, _BENEATH)
    finally:
        if identity is not None:
            identity.release()
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.ESTALE, f"{path!r} is not a regular file any more")
    return fd


def _read(top: int, path: str, size: int, identity: tree.Reader | None = None) -> bytes:
    """The data of the file at `path` below `top`, at most `size` bytes."""
    fd = _open(top, path, identity)
    try:
        return b"".join(transfer.read_chunks(fd, size))
    finally:
        os.close(fd)


NO_NEWLINE = "\\ No newline at end of file\n"


def _git_mode(entry: Entry) -> str:
    return f"100{entry.mode & 0o777:03o}" if entry.kind == FILE else "120000"


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def unified(change: Change, before: str | None, after: str | None) -> str:
    """The change of one text file (or a mode change) in git's unified format: `before` and
    `after` are the texts (None where there is no file)."""
    path = change.path
    head = [f"diff --git a/{path} b/{path}\n"]
    old, new = change.before, change.after
    if old is None and new is not None:
        head.append(f"new file mode {_git_mode(new)}\n")
    elif new is None and old is not None:
        head.append(f"deleted file mode {_git_mode(old)}\n")
    elif old is not None and new is not None and old.mode != new.mode:
        head += [f"old mode {_git_mode(old)}\n", f"new mode {_git_mode(new)}\n"]
    a, b = _lines(before or ""), _lines(after or "")
    if a == b:
        return "".join(head)
    body = []
    for line in difflib.unified_diff(a, b, "/dev/null" if old is None else f"a/{path}",
                                     "/dev/null" if new is None else f"b/{path}", n=3):
        if line.startswith(("---", "+++")):
            line = line.rstrip("\n").rstrip() + "\n"  # difflib adds a tab and nothing for the date
        body.append(line if line.endswith("\n") else line + "\n" + NO_NEWLINE)
    return "".join(head + body)


def _old_text(path: str, old: Entry, original: Original) -> tuple[str | None, str | None]:
    """The text a changed file held before the run, or why there is none (a binary file, or its
    original cannot be read as it was)."""
    with tree.Reader(original.read_as, original.lookup) as identity:
        try:
            data = _read(original.fd, path, old.size, identity)
        except OSError as e:
            return None, f"its original cannot be read ({e.strerror})"
    if hashlib.sha256(data).hexdigest() != old.digest:
        return None, "its original changed on the host during the run"
    text = rules.text_of(data)
    return text, None if text is not None else "a binary file"


def _pieces(change: Change) -> list[Change]:
    """A change as a patch shows it: a directory is no part of one; a path whose type changed
    is a deletion and an addition."""
    old, new = change.before, change.after
    if old is not None and old.kind == DIRECTORY:
        old = None
    if new is not None and new.kind == DIRECTORY:
        new = None
    if old is not None and new is not None and old.kind != new.kind:
        return [Change(change.path, rules.DELETED, old, None), Change(change.path, rules.ADDED, None, new)]
    if old is None and new is None:
        return []
    kind = rules.ADDED if old is None else rules.DELETED if new is None else change.change
    return [Change(change.path, kind, old, new)]


def patch(changes: list[Change], kept: int, original: Original) -> tuple[str, list[LeftOut]]:
    """The patch of `changes` in git's format (a symlink's text is its target), and what it
    cannot show (a binary file, one whose original changed on the host during the run): what
    it shows applies with `git apply` to the tree the copy was made from."""
    out: list[str] = []
    left: list[LeftOut] = []
    for piece in (p for change in changes for p in _pieces(change)):
        texts: list[str | None] = []
        why = None
        for entry, old in ((piece.before, True), (piece.after, False)):
            text = None
            if entry is not None and entry.kind == SYMLINK:
                text = entry.digest
            elif entry is not None and old:
                text, why = _old_text(piece.path, entry, original)
            elif entry is not None:
                text = rules.text_of(_read(kept, piece.path, entry.size))
                why = None if text is not None else "a binary file"
            texts.append(text)
            if why is not None:
                break
        if why is not None:
            left.append(LeftOut(piece.path, f"{why}: not in the patch"))
        else:
            out.append(unified(piece, texts[0], texts[1]))
    return "".join(out), left


def write(dest: Destination, source: str, before: integrity.Manifest, kept_tree: int, original: Original,
          limit: int) -> tuple[str, list[LeftOut]]:
    """Walk the kept copy of /context (`kept_tree`, a detached mount), compare it with
    `before` (the Snapshot the walk before the copy filled), and write OUT; returns the summary
    line and what was left out."""
    assert isinstance(before, Snapshot)
    kept = _reopen(kept_tree)
    try:
        after = Snapshot(copied=False)
        tree.walk(kept, Matcher(), after)
        changes, left = select(before, after, limit)
        text, unshown = patch(changes, kept, original)
        writer = transfer.Writer(dest.parent, UNLIMITED, rules.FLAG, dest.write_as, original.lookup)
        try:
            if rules.patch_only(dest.given):
                left = sorted(left + unshown)
                writer.file((dest.name,), 0o644, iter([text.encode()]))
            else:  # what the patch does not show is in files/
                _tree(writer, dest.name, changes, kept, text, source, left)
            writer.finish()
        except BaseException:
            writer.close()
            writer.undo(dest.parent)
            raise
    finally:
        os.close(kept)
    return rules.summary(dest.given, changes, left), left


def _tree(writer: transfer.Writer, name: str, changes: list[Change], kept: int, text: str,
          source: str, left: list[LeftOut]) -> None:
    """OUT as a directory: files/ with every added or modified entry as it is now, the
    manifest and the patch."""
    writer.directory((name,), 0o755)
    writer.directory((name, rules.FILES), 0o755)
    for change in changes:
        new = change.after
        if new is None:
            continue
        parts = (name, rules.FILES, *change.path.split("/"))
        if new.kind == DIRECTORY:
            writer.directory(parts, new.mode)
        elif new.kind == SYMLINK:
            writer.link(parts, new.digest)
        else:
            fd = _open(kept, change.path)
            try:
                writer.file(parts, new.mode, transfer.read_chunks(fd, new.size))
            finally:
                os.close(fd)
    document = rules.document(source, changes, sorted(left))
    writer.file((name, rules.MANIFEST), 0o644,
                iter([json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"]))
    writer.file((name, rules.PATCH), 0o644, iter([text.encode()]))

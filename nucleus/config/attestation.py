"""Rootfs attestation, the pure part: the manifest's format, where a closure's symlinks may
lead, and what a verification found.

A closure's manifest, `.nucleus-rootfs-sha256` at its root, has one line per entry the container
sees of it, sorted by path: the system directories it binds (`bin sbin usr lib lib64 etc`, and
`nix` unless the closure lists its store paths) and each store path listed in
`.nucleus-rootfs-store-paths` (one `/nix/store/<hash>-<name>` a line, bound at its own path).
A path inside the closure is relative to its root (`bin/sh`); one in a store path is absolute.

- a regular file: its sha256 in hex, two spaces, its path (`sha256sum`'s format);
- a symlink: `link`, a tab, its path, a tab, its target as written.

A closure holds nothing else (a Nix store path cannot: no FIFO, socket or device node), and no
symlink of it may lead, as the container resolves it, out of what the container sees of the
closure and its store paths (to /tmp, /proc, a home, the context...): either is refused.
Directories are not listed (they hold what is). Modes and owners are not part of the manifest:
the closure is bound read-only, nosuid and nodev. A path or target that a line cannot carry (a
newline, a tab, a carriage return, a backslash) is refused when attesting.
"""

from __future__ import annotations

import re

from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

MANIFEST = ".nucleus-rootfs-sha256"
STORE_PATHS = ".nucleus-rootfs-store-paths"
NIX_STORE = "/nix/store/"
MAX_MANIFEST = 64 << 20
_LINE = re.compile(r"([0-9a-f]{64})  (.+)")
_LINK = re.compile(r"link\t([^\t]+)\t([^\t]+)")
_UNWRITABLE = ("\n", "\r", "\\", "\t")
LINK = "link:"  # an entry's value for a symlink: LINK + its target
# The closure's directories the container binds (nucleus.plan.mounts): what it sees of the closure.
VISIBLE = ("bin", "sbin", "usr", "lib", "lib64", "etc", "nix")
SHOWN = 5  # names shown of each kind of difference


def writable(path: str) -> bool:
    return not any(c in path for c in _UNWRITABLE)


def render(entries: dict[str, str]) -> str:
    """The manifest for `entries` (path -> sha256 hex, or LINK + target)."""
    bad = sorted(p for p, value in entries.items() if not writable(p) or not writable(value))
    if bad:
        raise InvalidInput(f"{bad[0]!r}: a path or link target with a newline, a tab or a backslash cannot "
                           "be attested", hint="rename it; the manifest holds one entry per line")
    return "".join(f"link\t{path}\t{value[len(LINK):]}\n" if value.startswith(LINK) else f"{value}  {path}\n"
                   for path, value in sorted(entries.items()))


def parse(text: str, where: str) -> dict[str, str]:
    """The entries of a manifest (`where` names it in errors; no line's content is repeated)."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), 1):  # only a newline ends a line
        if not line.strip():
            continue
        file, link = _LINE.fullmatch(line), _LINK.fullmatch(line)
        if file is not None:
            path, value = file.group(2), file.group(1)
        elif link is not None:
            path, value = link.group(1), LINK + link.group(2)
        else:
            raise InvalidInput(f"{where}: line {number} is neither '<sha256>  <path>' nor "
                               "'link<TAB><path><TAB><target>'")
        if path in entries:
            raise InvalidInput(f"{where}: line {number} names a path a second time")
        if path.startswith("/") and not path.startswith(NIX_STORE) or ".." in path.split("/"):
            raise InvalidInput(f"{where}: line {number} names a path neither inside the closure nor in /nix/store")
        entries[path] = value
    return entries


def parse_store_paths(text: str, where: str) -> tuple[str, ...]:
    paths = sorted({line.strip() for line in text.split("\n") if line.strip()})
    for path in paths:
        if not is_store_path(path):
            shown = repr(path) if writable(path) and len(path) < 200 and path.startswith("/") else "a line"
            raise InvalidInput(f"{where} names {shown}, which is not a /nix/store/<hash>-<name> path")
    return tuple(p.rstrip("/") for p in paths)


def is_store_path(path: str) -> bool:
    name = path[len(NIX_STORE):].rstrip("/")
    return path.startswith(NIX_STORE) and bool(name) and "/" not in name and name not in (".", "..")


def resolve(parts: list[str], target: str) -> list[str]:
    """Where a symlink at container path `parts` with `target` leads, lexically (absolute from the
    container's root; `..` stops there)."""
    out = [] if target.startswith("/") else list(parts[:-1])
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    return out


def seen_by_container(parts: list[str], stores: tuple[str, ...]) -> bool:
    """The container path `parts` is one the container sees of the closure or its store paths."""
    if not parts:
        return True  # the root itself: what is below it is judged where a path goes on
    path = "/" + "/".join(parts)
    if any(path == s or path.startswith(s + "/") for s in stores):
        return True
    if stores and path in ("/nix", "/nix/store"):
        return True  # the directories made to hold the store paths
    top = parts[0] if parts else ""
    return top in VISIBLE and not (top == "nix" and stores)


def render_store_paths(paths: tuple[str, ...]) -> str:
    return "".join(f"{p}\n" for p in sorted(set(paths)))


@frozen
class Differences:
    missing: tuple[str, ...] = ()  # in the manifest, not in the closure
    changed: tuple[str, ...] = ()  # another content
    extra: tuple[str, ...] = ()  # in the closure, not in the manifest

    def __bool__(self) -> bool:
        return bool(self.missing or self.changed or self.extra)

    def summary(self) -> str:
        parts = []
        for label, names in (("changed", self.changed), ("missing", self.missing), ("not in the manifest", self.extra)):
            if names:
                shown = ", ".join(repr(n) for n in names[:SHOWN])
                more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
                parts.append(f"{len(names)} {label} ({shown}{more})")
        return "; ".join(parts)


def compare(expected: dict[str, str], found: dict[str, str]) -> Differences:
    return Differences(
        missing=tuple(sorted(expected.keys() - found.keys())),
        changed=tuple(sorted(p for p in expected.keys() & found.keys() if expected[p] != found[p])),
        extra=tuple(sorted(found.keys() - expected.keys())),
    )

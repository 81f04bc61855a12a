"""Where the workload may run what it writes: the container's writable places, which of them each
service mode makes executable, and `--allow-exec PATH`, checked before anything runs. Pure.

A writable place is a mount of its own that the workload can write: `/context` (a copy on a
tmpfs; a bound context is the host tree, read-only, and counts as a place too, so that its
programs can be allowed to run), the home directory, `/tmp` and each read-write volume. In
agent mode `/context` and home are executable (still nosuid and nodev, and Landlock grants
execute for exactly those trees): an agent builds and runs code there, and a bound project's
own `.venv/bin/python` runs; a bound context is read-only, so nothing the workload writes runs
from it, and what it could run there it could copy to home and run anyway. `/tmp` stays
noexec, the place a dropper writes to. In strict-agent and production every writable place is
noexec (the tmpfs ones by their mount flag too; a bound context and a volume by Landlock).
`--allow-exec PATH`, in any mode, makes PATH executable too: a place, or a directory below one
(a tmpfs place then gives it a mount of its own without noexec; the rest keeps noexec).
"""

from __future__ import annotations

import posixpath

from nucleus.config.container import CONTEXT_MOUNT as CONTEXT
from nucleus.config.container import ContainerConfig
from nucleus.config.modes import workspace_executable
from nucleus.errors import InvalidInput

FLAG = "--allow-exec"
TMP = "/tmp"


def places(spec: ContainerConfig) -> tuple[str, ...]:
    """The container's writable places that --allow-exec may name: /context (with a context),
    the home directory, /tmp and each read-write volume."""
    return (((CONTEXT,) if spec.context is not None else ()) + (spec.home, TMP)
            + tuple(vol.target for vol in spec.volumes if vol.writable))


def place_of(path: str, candidates: tuple[str, ...]) -> str | None:
    """The place that holds `path` (it, or a directory above it), the deepest one; or None."""
    holders = [p for p in candidates if path == p or path.startswith(p.rstrip("/") + "/")]
    return max(holders, key=len, default=None)


def parse_allow_exec(values: tuple[str, ...], spec: ContainerConfig) -> tuple[str, ...]:
    """The --allow-exec paths, normalized and without repeats, for the container `spec`
    describes; InvalidInput names the flag and the value of the first one that is not a
    writable place or below one."""
    out: list[str] = []
    allowed = places(spec)
    hint = f"name a writable place or a directory below one: {', '.join(allowed)}"
    for raw in values:
        if not raw.startswith("/") or "\0" in raw:
            raise InvalidInput(f"{FLAG} {raw!r}: not an absolute path inside the container", hint=hint)
        if ".." in raw.split("/"):
            raise InvalidInput(f"{FLAG} {raw!r}: '..' is not allowed in the path", hint=hint)
        path = posixpath.normpath(raw)
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
        if place_of(path, allowed) is None:
            why = (f"there is no context (add --context DIR to have {CONTEXT})"
                   if spec.context is None and place_of(path, (CONTEXT,)) else
                   "not one of the container's writable places nor below one")
            raise InvalidInput(f"{FLAG} {raw!r}: {why}", hint=hint)
        out.append(path)
    return tuple(dict.fromkeys(out))


def executable(spec: ContainerConfig) -> tuple[str, ...]:
    """The trees, besides the system directories, where the workload may execute files: in
    agent mode /context (with a context) and home; then every --allow-exec path."""
    default = ((CONTEXT,) if spec.context is not None else ()) + (spec.home,)
    if not workspace_executable(spec.service_mode):
        default = ()
    return tuple(dict.fromkeys(default + spec.allow_exec))


def noexec(spec: ContainerConfig) -> tuple[str, ...]:
    """The writable places mounted noexec: those `executable` does not name. (A bound context
    is the host tree, read-only, and a volume the caller's own: their mounts stay as bound, and
    Landlock decides.)"""
    copied = spec.context is not None and spec.context_mode == "copy"
    writable = ((CONTEXT,) if copied else ()) + (spec.home, TMP)
    allowed = executable(spec)
    return tuple(p for p in writable if p not in allowed)


def opened_below(spec: ContainerConfig, place: str) -> tuple[str, ...]:
    """The directories strictly below `place` that --allow-exec names, outermost only: each
    gets a mount of its own that keeps exec when `place` is mounted noexec."""
    below = sorted(p for p in spec.allow_exec if p != place and place_of(p, (place,)))
    return tuple(p for p in below if not place_of(p, tuple(q for q in below if q != p)))

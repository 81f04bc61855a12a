"""Volumes (`-v/--volume HOST:CONTAINER[:ro|rw]`): host directories or files of the caller's,
bound into the container. Pure data and decisions: walking and opening the host path is the
probe's (nucleus.effects.probe.host_path), which host paths may be one is
nucleus.config.hostpaths', binding is an effect (nucleus.effects.fs.mount_volume).

The rules, as README.md's "Volumes" states them:

* **Where inside.** An absolute path without `..`, never `/`, nor on or below what nucleus
  mounts itself (`/proc`, `/dev`, `/sys`, the system directories, `/context` with a context),
  nor `/etc` or a file nucleus writes there (any path under `/etc` with `--rootfs`, whose `/etc`
  is bound), nor `/tmp` or the home directory themselves (a path below them is fine); no two
  volumes at one path or one inside another (its mount point would be made in the host's tree);
  nor, once the host is known, below an entry of the host's `/etc` that nucleus lends the
  container, nor on one of its links (host_etc_refusal).
* **How.** A recursive bind of the host object opened before the run; read-only volumes are
  `rdonly,nosuid,nodev` and read-write ones `nosuid,nodev`, on every mount below them too (set
  on the detached tree in one mount_setattr(AT_RECURSIVE) before it is attached, then checked in
  mountinfo). Landlock grants read (ro) or read, write, create and remove (rw); execute only
  where the workspace rules give it (below an executable tree, or --allow-exec:
  nucleus.config.workspace).
* **Whose ids.** A rootless container's root is the caller, so the caller's files are its own.
  A container run as root maps its root to an unprivileged host uid, which could not write root's
  files: its volumes are id-mapped (MOUNT_ATTR_IDMAP through a user namespace mapping the
  volume's owner and group to container root's host ids), so inside they belong to container
  root and what it creates there belongs on the host to the volume's owner. Where the file
  system cannot be id-mapped, a read-write volume is refused before the run and a read-only one
  is bound as it is (readable as its modes allow others).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from nucleus.config import users
from nucleus.config.landlock_default import SYSTEM_EXEC_PATHS
from nucleus.errors import InvalidInput

FLAG = "-v/--volume"
MODES = {"ro": False, "rw": True}
RO_FLAGS = ("rdonly", "nosuid", "nodev")
RW_FLAGS = ("nosuid", "nodev")
# What nucleus mounts or writes itself: no volume on or below these.
OWN_TREES = ("/proc", "/dev", "/sys", *SYSTEM_EXEC_PATHS)
ETC_FILES = ("hostname", "hosts", "passwd", "group", "resolv.conf", "nsswitch.conf", "host.conf")
# nucleus's own mounts that a volume may go below but not replace.
OWN_MOUNTS = ("/", "/tmp", "/etc", "/run")


class Volume(NamedTuple):
    """A volume as asked for."""

    host: str  # as given
    target: str  # the path inside, normalized
    writable: bool
    owner: str | None = None  # USER[:GROUP] its host owner appears as inside (None: container root)

    @property
    def given(self) -> str:
        owner = f",owner={self.owner}" if self.owner else ""
        return f"{self.host}:{self.target}:{'rw' if self.writable else 'ro'}{owner}"

    @property
    def flag(self) -> str:
        return FLAG


class Placed(Protocol):
    """Something mounted at a path of its own inside (a volume, a --tmpfs), as its flag gave it."""

    @property
    def target(self) -> str: ...

    @property
    def given(self) -> str: ...

    @property
    def flag(self) -> str: ...


class VolumeSource(NamedTuple):
    """A volume as opened before any host change: what the plan takes."""

    path: str  # the host path it was opened from (no symlink on it)
    target: str
    writable: bool
    fd: int  # O_PATH, held by the supervisor, inherited by the setup process
    userns: int = -1  # a user namespace to map its ids through (MOUNT_ATTR_IDMAP); -1: none
    idmap: tuple[tuple[int, int], ...] = ()  # (host uid, container root's), (host gid, container root's)

    @property
    def flags(self) -> tuple[str, ...]:
        return RW_FLAGS if self.writable else RO_FLAGS


def parse(text: str) -> Volume:
    """HOST:CONTAINER[:ro|rw][,owner=USER[:GROUP]] (default rw, container root)."""
    parts = text.split(":", 2)
    options = parts.pop().split(",") if len(parts) == 3 else []
    if len(parts) != 2 or not parts[0] or not parts[1] or any(":" in o and not o.startswith("owner=") for o in options):
        raise InvalidInput(f"{FLAG} {text!r}: expected HOST:CONTAINER[:ro|rw]",
                           hint="for example -v ./out:/out or -v ./data:/data:ro (a path may hold no ':')")
    mode, owner = "rw", None
    for i, option in enumerate(options):
        if option.startswith("owner=") and owner is None:
            owner = option.removeprefix("owner=")
            users.parse(owner, f"{FLAG} {text!r}: owner")
        elif i == 0 and option in MODES:
            mode = option
        elif option.startswith("owner="):
            raise InvalidInput(f"{FLAG} {text!r}: owner= given twice")
        else:
            what = f"the mode {option!r} is neither ro nor rw" if i == 0 else f"{option!r} is not owner=USER[:GROUP]"
            raise InvalidInput(f"{FLAG} {text!r}: {what}",
                               hint="HOST:CONTAINER[:ro|rw][,owner=USER[:GROUP]], e.g. -v ./data:/data:rw,owner=1000")
    host, target = parts
    if "\0" in text:
        raise InvalidInput(f"{FLAG} {text!r}: holds a NUL byte")
    if not target.startswith("/"):
        raise InvalidInput(f"{FLAG} {text!r}: the container path {target!r} is not absolute",
                           hint=f"for example {host}:/{target.lstrip('./')}")
    if ".." in target.split("/"):
        raise InvalidInput(f"{FLAG} {text!r}: the container path {target!r} holds '..'",
                           hint="name the path inside the container as it is, without '..'")
    return Volume(host, "/" + posixpath.normpath(target).lstrip("/"), MODES[mode], owner)


def under(path: str, tree: str) -> bool:
    """Whether `path` is `tree` or below it."""
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def target_refusal(volume: Placed, home: str, context: str | None, rootfs: bool) -> InvalidInput | None:
    """Why `volume`'s container path may not be used (see the module's rules), or None.
    `context`: where the context is mounted, if there is one."""
    path = volume.target
    head = f"{volume.flag} {volume.given!r}: {path}"
    own = [*OWN_TREES, *((context,) if context else ()), *(("/etc",) if rootfs else ())]
    for tree in own:
        if under(path, tree):
            return InvalidInput(f"{head} is {'on' if path == tree else 'below'} {tree}, which "
                                "nucleus mounts itself", hint="choose a path of its own, such as /out")
    if path in (*OWN_MOUNTS, home) or path in (f"/etc/{name}" for name in ETC_FILES):
        return InvalidInput(f"{head} would replace what nucleus makes there",
                            hint=f"choose a path below it or of its own, such as {path.rstrip('/')}/out")
    return None


def host_etc_refusal(placed: Sequence[Placed], etc: tuple[tuple[str, str], ...]) -> InvalidInput | None:
    """Why a path inside is below an entry of the host's /etc that nucleus lends the container
    (`etc`: path relative to /etc, symlink target or ""), or on one of its links, or None: its
    mount point would be made through the entry (a link, or a link inside a bound directory),
    out of the new root onto the host's tree. A bound directory itself may be replaced."""
    for volume in placed:
        for rel, link in etc:
            entry = f"/etc/{rel}"
            if volume.target == entry and not link or not under(volume.target, entry):
                continue
            where = "on" if volume.target == entry else "below"
            what = "a link nucleus makes as the host's" if link else "which nucleus binds from the host's /etc"
            return InvalidInput(f"{volume.flag} {volume.given!r}: {volume.target} is {where} {entry}, {what}",
                                hint="choose a path of its own, such as /etc/myapp or /srv/data")
    return None


def validate(volumes: Sequence[Placed], home: str, context: str | None, rootfs: bool) -> None:
    """Every volume's container path, and no two at one path or one inside another."""
    for volume in volumes:
        problem = target_refusal(volume, home, context, rootfs)
        if problem is not None:
            raise problem
    for i, volume in enumerate(volumes):
        for other in volumes[:i]:
            if under(volume.target, other.target) or under(other.target, volume.target):
                raise InvalidInput(f"{volume.flag} {volume.given!r}: {volume.target} is "
                                   f"{'the path' if volume.target == other.target else 'inside or above the path'}"
                                   f" of {other.flag} {other.given!r}",
                                   hint="give each volume a path of its own, side by side")


def landlock_rules(volumes: tuple[Volume, ...]) -> tuple[tuple[str, bool], ...]:
    """(path, writable) for the default Landlock rules."""
    return tuple((volume.target, volume.writable) for volume in volumes)

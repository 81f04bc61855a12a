"""`nucleus cp`: copy between a container and the host (nucleus.config.transfer's rules).

Out of a running container, a helper process enters it (nucleus.effects.transfer: its user and
mount namespaces, from a pidfd of its init that the kernel confirmed; the container's root, no
capability) and streams what it finds to this process, which creates it on the host as the
caller (nucleus.config.hostpaths). Into one, this process reads the host's side and the helper
creates the entries inside. Out of a stopped detached container, only its copied /context can
be read, and only while it is kept (until `nucleus rm`).
"""

from __future__ import annotations

import sys
from typing import Any

from nucleus.app import manage, outputs
from nucleus.config import hostpaths
from nucleus.config import transfer as rules
from nucleus.config.container import CONTEXT_MOUNT
from nucleus.config.resources import parse_size
from nucleus.effects import prepare, probe, process, transfer
from nucleus.effects.store import Store
from nucleus.errors import InvalidInput, RuntimeFailure


def copy(src: str, dest: str, max_size: int = rules.DEFAULT_MAX_SIZE) -> int:
    ends = rules.parse(src, dest)
    record = manage.find(ends.container)
    action = "copy from" if ends.outward else "copy into"
    manage.authorize(record, action)
    held: list[int] = []
    try:
        running = manage.running_init(record, action)
        if ends.outward:
            _copy_out(ends, record, running, max_size, held)
        elif running is None:
            raise RuntimeFailure(f"cannot copy into container {record['name']!r}: it is "
                                 f"{manage.view(record)['status']}",
                                 hint="nucleus cp copies into running containers only")
        else:
            _copy_in(ends, record, running, max_size, held)
    finally:
        prepare.close_all(held)
    return 0


def _pinned(running: tuple[int, int], record: dict[str, Any], held: list[int]) -> int:
    """A pidfd of the container's init, taken while it is still the process that started
    then."""
    if record.get("rootless") and probe.identity().euid != 0:
        raise RuntimeFailure(
            f"cannot copy with container {record['name']!r}: it runs rootless, and entering a "
            "rootless container is not supported yet (its processes are not dumpable, so their "
            "namespaces cannot be joined by their own user)",
            hint="run the container as root (its root is then an unprivileged uid), or use a "
                 "volume (-v) or --changes")
    pidfd = process.pin(*running)
    if pidfd is None:
        raise RuntimeFailure(f"cannot copy: container {record['name']!r} stopped meanwhile")
    held.append(pidfd)
    return pidfd


def _notes(skipped: list[tuple[str, str]]) -> None:
    for path, why in skipped:
        sys.stderr.write(f"note: nucleus cp: left out {path!r}: {why}\n")


def _copy_out(ends: rules.Ends, record: dict[str, Any], running: tuple[int, int] | None, max_size: int,
              held: list[int]) -> None:
    name = rules.entry_name(ends.inside, f"{ends.container}:{ends.inside}")
    source: transfer.Inside | transfer.Kept
    if running is None:
        source = _kept(record, ends, held)
    else:
        source = transfer.Inside(_pinned(running, record, held), ends.inside)
    dest = outputs.destination(f"nucleus cp: {ends.host!r}", ends.host, "destination of a copy", held, into=name)
    try:
        skipped = transfer.copy_out(source, name, dest, max_size, rules.SIZE_FLAG, prepare.identity_of)
    except OSError as e:
        raise RuntimeFailure(f"nucleus cp: copying {ends.container}:{ends.inside} to {ends.host!r}: "
                             f"{e.strerror or e}") from None
    _notes(skipped)


def _kept(record: dict[str, Any], ends: rules.Ends, held: list[int]) -> transfer.Kept:
    """The kept /context of a stopped container, for a path in it; refused otherwise."""
    name = record["name"]
    kept = Store(probe.identity().state_root).kept_context(record["id"]) if record.get("detached") else None
    if kept is None:
        raise RuntimeFailure(
            f"cannot copy from container {name!r}: it is {manage.view(record)['status']}, and its "
            "file system ended with it",
            hint="a detached container run as root with a copied context (--context DIR -d) keeps "
                 "/context until nucleus rm; copy from a running container, or write results to a "
                 "volume (-v) or --changes")
    held.append(kept)
    if ends.inside != CONTEXT_MOUNT and not ends.inside.startswith(CONTEXT_MOUNT + "/"):
        raise RuntimeFailure(f"cannot copy {ends.inside} from container {name!r}: it has stopped, and "
                             f"only its {CONTEXT_MOUNT} is kept", hint=f"copy a path below {CONTEXT_MOUNT}")
    return transfer.Kept(kept, ends.inside[len(CONTEXT_MOUNT):].strip("/"))


def _copy_in(ends: rules.Ends, record: dict[str, Any], running: tuple[int, int], max_size: int,
             held: list[int]) -> None:
    shown = f"nucleus cp: {ends.host!r}"
    found, opened = probe.host_path(shown, ends.host, "source of a copy")
    held.append(opened)
    caller = probe.identity().euid or 0
    problem = hostpaths.refusal(shown, found, caller, probe.sudo_uid(), "source of a copy")
    if problem is not None:
        raise problem
    name = rules.entry_name(found.path, ends.host)
    _, parent = probe.host_path(shown, found.path.rsplit("/", 1)[0] or "/", "source of a copy")
    held.append(parent)
    read_as = found.uid if caller == 0 and found.uid != 0 else -1  # root reads a user's files as them
    source = transfer.HostSource(parent, name, opened, read_as)
    try:
        skipped = transfer.copy_in(source, _pinned(running, record, held), ends.inside, max_size,
                                   rules.SIZE_FLAG, prepare.identity_of)
    except OSError as e:
        raise RuntimeFailure(f"nucleus cp: copying {ends.host!r} to {ends.container}:{ends.inside}: "
                             f"{e.strerror or e}") from None
    _notes(skipped)


def parse_max_size(text: str | None) -> int:
    if text is None:
        return rules.DEFAULT_MAX_SIZE
    size = parse_size(text, rules.SIZE_FLAG)
    if size < 1:
        raise InvalidInput(f"{rules.SIZE_FLAG} {text!r}: must be at least one byte")
    return size

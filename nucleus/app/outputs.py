"""What a run lets out of the sandbox besides its output: volumes (-v), opened and checked before
anything changes on the host; the destination of `--changes`, checked then too; and, once the
workload has ended, the changes written and a detached container's copied /context kept for
`nucleus cp` until it is removed. The rules are nucleus.config.volumes, .changes and .hostpaths.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from nucleus.config import changes as changes_rules
from nucleus.config import hostpaths
from nucleus.config import volumes as volume_rules
from nucleus.config.container import ContainerConfig
from nucleus.config.context import ContextSource
from nucleus.config.hostpaths import Destination
from nucleus.config.volumes import VolumeSource
from nucleus.effects import prepare, probe
from nucleus.errors import InvalidInput, NucleusError, RuntimeFailure
from nucleus.facts import HostFacts
from nucleus.plan import run as run_plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nucleus.effects.store import Store


@dataclass
class Outputs:
    """What was opened for them before the run (held until the supervisor exits)."""

    volumes: tuple[VolumeSource, ...] = ()
    destination: Destination | None = None
    before: prepare.Manifest | None = None  # the context as the copy takes it (--changes)
    held: list[int] = field(default_factory=list)


def before_run(config: ContainerConfig, facts: HostFacts) -> Outputs:
    """Open and check every volume and the destination of --changes; refuse (InvalidInput)
    what may not be one. Nothing on the host changes."""
    out = Outputs()
    try:
        out.volumes = _volumes(config, facts, out.held)
        if config.changes is not None:
            out.destination = destination(f"{changes_rules.FLAG} {config.changes!r}", config.changes,
                                          "destination", out.held)
            out.before = prepare.changes_snapshot()
    except BaseException:
        release(out)
        raise
    return out


def release(out: Outputs) -> None:
    prepare.close_all(out.held)


def _volumes(config: ContainerConfig, facts: HostFacts, held: list[int]) -> tuple[VolumeSource, ...]:
    """Each volume's host object, walked without following a symlink and checked; for a
    container run as root, the user namespace its ids are mapped through (one per owner)."""
    if not config.volumes:
        return ()
    rootless, uid_map, gid_map = run_plan.id_maps(config, facts)
    caller = facts.ids()[0]
    sudo = None if rootless else probe.sudo_uid()
    accounts = run_plan.workload_user(config, facts, uid_map, gid_map)[0]
    namespaces: dict[tuple[tuple[int, int], tuple[int, int]], int | None] = {}
    sources = []
    for volume in config.volumes:
        shown = f"{volume_rules.FLAG} {volume.given!r}"
        uid, gid = run_plan.owner_ids(config, accounts, volume.owner, f"{shown}: owner", uid_map, gid_map)
        found, fd = probe.host_path(shown, volume.host, "volume")
        held.append(fd)
        problem = hostpaths.refusal(shown, found, caller, sudo, "volume", volume.writable)
        if problem is not None:
            raise problem
        if rootless:
            sources.append(VolumeSource(found.path, volume.target, volume.writable, fd))
            continue
        # The volume's owner and group appear inside as `owner=`'s (container root's by default).
        mapped = ((found.uid, uid_map[0][1] + uid), (found.gid, gid_map[0][1] + gid))
        if mapped not in namespaces:
            ns = prepare.volume_idmap(fd, *mapped)
            namespaces[mapped] = ns
            if ns is not None:
                held.append(ns)
        ns = namespaces[mapped]
        if ns is not None:
            sources.append(VolumeSource(found.path, volume.target, volume.writable, fd, ns, mapped))
            continue
        if volume.owner is not None:
            raise InvalidInput(f"{shown}: the file system of {found.path} cannot be id-mapped, so its "
                               f"owner cannot appear inside as {volume.owner!r}",
                               hint="use a directory on ext4, xfs, btrfs or tmpfs, or leave out owner=")
        if volume.writable:
            raise InvalidInput(
                f"{shown}: the file system of {found.path} cannot be id-mapped, so the container's "
                f"root (host uid {uid_map[0][1]}) could not write what uid {found.uid} owns there",
                hint="use a directory on ext4, xfs, btrfs or tmpfs, bind it read-only (:ro), or "
                     "run --rootless")
        sources.append(VolumeSource(found.path, volume.target, False, fd))
    return tuple(sources)


def destination(shown: str, value: str, what: str, held: list[int], into: str | None = None) -> Destination:
    """Where something new is created on the host: `value` itself, in its directory; or, with
    `into` and `value` an existing directory, `into` in it. The directory is walked without
    following a symlink and checked (nucleus.config.hostpaths); what is created must not exist.
    Its descriptor is added to `held`."""
    parent, fd, name, exists = probe.destination(shown, value, what, into)
    held.append(fd)
    caller = probe.identity().euid or 0
    problem = hostpaths.destination_refusal(shown, parent, name, caller, probe.sudo_uid(), what)
    if problem is not None:
        raise problem
    if exists:
        raise InvalidInput(f"{shown}: {parent.path.rstrip('/')}/{name} exists; nucleus creates a {what} "
                           "only anew, and replaces nothing", hint="remove it, or name another")
    return Destination(fd, name, hostpaths.writer(caller, parent), value)


def after_workload(config: ContainerConfig, out: Outputs, tree: int | None, context: ContextSource | None,
                   store: Store, cid: str, rootless: bool) -> NucleusError | None:
    """Once the workload has ended: write --changes (from the tree the setup process handed
    over), and keep a detached container's /context until it is removed. What fails is
    returned (the run's other steps go on), and said on stderr."""
    if tree is None:
        return None
    trouble: NucleusError | None = None
    try:
        if out.destination is not None and out.before is not None and context is not None:
            trouble = _write_changes(config, out, tree, context)
            if trouble is not None and config.detach:  # its log says so; no one waits for its status
                sys.stderr.write(trouble.render() + "\n")
        if config.detach and not rootless:
            try:
                store.keep_context(cid, tree)
            except OSError as e:
                sys.stderr.write(f"warning: /context is not kept for nucleus cp: {e}\n")
    finally:
        prepare.close_context(tree)
    return trouble


def _write_changes(config: ContainerConfig, out: Outputs, tree: int, context: ContextSource
                   ) -> NucleusError | None:
    from nucleus.effects import changes

    assert out.destination is not None and out.before is not None
    limit = config.changes_max_size or changes_rules.DEFAULT_MAX_SIZE
    original = changes.Original(context.fd, context.read_as, prepare.identity_of)
    try:
        summary, left = changes.write(out.destination, context.path, out.before, tree, original, limit)
    except OSError as e:
        return RuntimeFailure(f"{changes_rules.FLAG} {config.changes!r}: the changes were not "
                              f"written: {e.strerror or e}")
    for item in left:
        sys.stderr.write(f"note: {changes_rules.FLAG}: left out {item.path!r}: {item.reason}\n")
    sys.stderr.write(f"note: {summary}\n")
    return None

"""Intents: what a machine asks the effects layer to do, carrying what the kernel will receive
(the file and the value written, the mount's source, target and flags, the rule's path and
rights), so that a trace shows what was done and replay checks it.

`where` says which process carries an intent out: the supervisor on the host, or the process
inside the new namespaces that the machine spawned (the container's setup process, or the
joining process of `attach`). `reports` names the machine and step whose Done/Fail event the
intent's outcome is; intents without it report nothing (their consequences arrive as events of
their own, such as Exit).
"""

from __future__ import annotations

import json as _json
from typing import ClassVar

from nucleus.vocab.record import Record, record

IdMap = tuple[tuple[int, int, int], ...]
# A cgroup file write: (path, value, optional). An optional write is skipped when the file
# does not exist (a control this kernel lacks); what any other failure means is the intent's
# `strict` (SetCgroupLimits).
CgroupWrite = tuple[str, str, bool]
# A write SetCgroupLimits skipped: (path, value, the error: "EINVAL (Invalid argument)").
SkippedWrite = tuple[str, str, str]
OOM_KILLED = "oom-killed"  # what RemoveCgroup's Done event says when the kernel's OOM killer acted


def skipped_detail(skipped: list[SkippedWrite] | tuple[SkippedWrite, ...]) -> str:
    """SetCgroupLimits' Done detail: the writes it skipped, as a JSON list ("" for none)."""
    return _json.dumps([list(s) for s in skipped]) if skipped else ""


def skipped_writes(detail: str) -> tuple[SkippedWrite, ...]:
    """The writes a SetCgroupLimits' Done detail lists; a detail in no known form lists one
    write with an unknown path, so that it is still reported."""
    if not detail:
        return ()
    try:
        items = _json.loads(detail)
        return tuple((str(path), str(value), str(error)) for path, value, error in items)
    except (ValueError, TypeError):
        return (("?", "?", detail),)


def oom_detail(peak: int | None) -> str:
    """RemoveCgroup's Done detail when the OOM killer acted: "oom-killed", then the group's
    peak memory use in bytes where it was read ("oom-killed peak=67108864")."""
    return OOM_KILLED if peak is None else f"{OOM_KILLED} peak={peak}"


def oom_of(detail: str) -> tuple[bool, int | None]:
    """(whether the OOM killer acted, the peak in bytes or None) from RemoveCgroup's detail."""
    words = detail.split()
    if not words or words[0] != OOM_KILLED:
        return False, None
    for word in words[1:]:
        key, _, value = word.partition("=")
        if key == "peak" and value.isdigit():
            return True, int(value)
    return True, None


@record
class Intent(Record):
    where: ClassVar[str] = "host"
    reports: ClassVar[tuple[str, str] | None] = None


# Isolation ------------------------------------------------------------------------------------
@record
class SpawnChild(Intent):
    """Fork the setup process and connect the sync pipe. With `trace_log`, first start the
    tracer that serves the container's seccomp notifications, writing NDJSON there. With
    `terminal`, also a unix socket over which the process that becomes the workload hands the
    master of its pseudo-terminal to the supervisor (ExecWorkload.terminal)."""

    reports: ClassVar[tuple[str, str] | None] = ("iso", "spawn")
    trace_log: str = ""
    terminal: bool = False
    # The container's violation stream: with a path, first start the violation monitor that
    # answers what seccomp refuses and writes every refusal there (LoadSeccomp mode "notify").
    violations: str = ""


@record
class Unshare(Intent):
    """Make the new namespaces; first join those named by path: (kind as /proc/<pid>/ns names
    it, path, the field that named it), refused when the path is not a namespace of that kind,
    or is the host's own (PID 1's) unless `host` allows it."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("iso", "unshare")
    namespaces: tuple[str, ...] = ()
    joins: tuple[tuple[str, str, str], ...] = ()
    host: bool = False


@record
class ForkInit(Intent):
    """Fork the process that becomes PID 1 of the new PID namespace; the parent reports the new
    process's pid and exits."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("iso", "fork_init")


@record
class SetHostname(Intent):
    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("iso", "hostname")
    hostname: str = ""


@record
class LoopbackUp(Intent):
    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("iso", "loopback")


@record
class EnterUserNamespace(Intent):
    """Clear supplementary groups, then unshare a user namespace (privileged order)."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("iso", "enter_user")


@record
class WriteIdMaps(Intent):
    """Host side: write `setgroups` ("deny": the kernel requires it of an unprivileged writer;
    "allow": a -u user's supplementary groups can be set), uid_map and gid_map of the setup
    process."""

    reports: ClassVar[tuple[str, str] | None] = ("iso", "map_ids")
    uid_map: IdMap = ()
    gid_map: IdMap = ()
    setgroups: str = "deny"


@record
class BecomeRoot(Intent):
    """Take the ids 0/0 of the user namespace; stay non-dumpable and die with the parent."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("iso", "become_root")


# Filesystem: the mount plan's operations --------------------------------------------------------
@record
class FsOp(Intent):
    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("fs", "mount")


@record
class SetPropagation(FsOp):
    """Change the propagation of a mount tree ("private", "slave")."""

    target: str = "/"
    mode: str = "private"
    recursive: bool = True


@record
class MountFs(FsOp):
    """Mount a new filesystem (tmpfs, proc, devpts, mqueue) at target."""

    fstype: str = ""
    target: str = ""
    flags: tuple[str, ...] = ()
    data: str = ""


@record
class BindMount(FsOp):
    """Bind source onto target (created as a file or directory to match), then apply flags
    (with `recursive`, to every mount of the bound tree, checked afterwards). With `opened` (a
    descriptor the supervisor opened from `source` before any host change, inherited by the
    setup process) the source is bound only if it still is that directory. With `beneath` (a
    directory above the source) the source is opened from there one component at a time, and
    a symlink on the way stops the step: a host file chosen by name, or a directory of the
    context, is bound as itself, never as what a link leads to."""

    source: str = ""
    target: str = ""
    flags: tuple[str, ...] = ()
    recursive: bool = False
    optional: bool = False
    opened: int = -1
    beneath: str = ""


@record
class RemountFs(FsOp):
    target: str = ""
    flags: tuple[str, ...] = ()
    bind: bool = False


@record
class MakeDirs(FsOp):
    root: str = ""
    paths: tuple[str, ...] = ()
    mode: int = 0o755
    owner: tuple[int, int] | None = None


@record
class MakeSymlinks(FsOp):
    root: str = ""
    links: tuple[tuple[str, str], ...] = ()  # (link path, target)


@record
class CopyTree(FsOp):
    """Copy the context into target from `opened`, the descriptor the supervisor opened from
    `source` before any host change (inherited by the setup process: `source` is what it was
    opened from, never looked up again), leaving out what the built-in rules (`exclude`), the
    ignore file's patterns (`ignore`) and `include` decide (nucleus.config.context.Matcher),
    reading as `read_as` says (-1: the setup process's own identity; else the uid that reads
    the top directory, directories of other users read as their owner, whose ids and groups are
    in `identities`), every entry owned by `owner`."""

    source: str = ""
    target: str = ""
    exclude: tuple[str, ...] = ()
    owner: tuple[int, int] | None = None
    opened: int = -1
    ignore: tuple[tuple[str, str, bool], ...] = ()  # (pattern, regex, negated)
    include: tuple[tuple[str, str, bool], ...] = ()
    read_as: int = -1
    identities: tuple[tuple[int, int, tuple[int, ...]], ...] = ()  # (uid, gid, groups)


@record
class VerifyTree(FsOp):
    """Check a populated tree against the manifest taken from its source before the copy:
    every entry of it but what the built-in rules in `exclude` leave out."""

    target: str = ""
    manifest: tuple[tuple[str, str], ...] = ()  # (relative path, sha256 | "dir" | "symlink:..")
    exclude: tuple[str, ...] = ()


@record
class MountVolume(FsOp):
    """Bind the host object `source` (a directory or file the supervisor opened as `opened`
    before any host change, inherited: bound only if its path, walked again without following a
    symlink, still leads to it) onto `target`, made to match: a detached copy of it and every
    mount below it (open_tree), `flags` set on all of them in one mount_setattr(AT_RECURSIVE),
    its ids mapped through the user namespace `userns` when it is not -1 (`idmap`: host uid and
    gid, and container root's host uid and gid they become), then attached (move_mount) and
    its flags checked in mountinfo."""

    source: str = ""
    target: str = ""
    flags: tuple[str, ...] = ()
    opened: int = -1
    userns: int = -1
    idmap: tuple[tuple[int, int], ...] = ()


@record
class KeepTree(FsOp):
    """Hand the supervisor a detached copy of the mount at `target` (open_tree), read-only,
    nosuid, nodev and noexec, over the setup process's handover socket: what the supervisor
    reads once the workload has ended, after the container's mount namespace is gone."""

    target: str = ""


@record
class MaskPaths(FsOp):
    """Hide files (bind /dev/null, read-only) and directories (empty read-only tmpfs)."""

    root: str = ""
    paths: tuple[str, ...] = ()
    readonly: tuple[str, ...] = ()


@record
class WriteFile(FsOp):
    path: str = ""
    content: str = ""
    mode: int = 0o644


@record
class WriteSysctl(FsOp):
    """Write `value` to the kernel parameter `key` (dotted, one checked by nucleus.config.sysctl)
    through `proc`, the container's own /proc just mounted: the file is resolved beneath its
    sys/ without crossing a mount or following a link. The parameter is the namespace's of the
    process that writes it (the container's own)."""

    proc: str = ""
    key: str = ""
    value: str = ""


@record
class WriteSecret(FsOp):
    """Write the secret the supervisor read (the `index`th --secret: its bytes never travel
    in an intent, a trace or a record) to `path` on the secrets tmpfs, with `mode` and
    `owner`, then overwrite this process's copy."""

    path: str = ""
    index: int = 0
    mode: int = 0o400
    owner: tuple[int, int] = (0, 0)


@record
class BindSecret(FsOp):
    """Bind the secret file `source` onto `dest` below `root` (a --secret outside
    /run/secrets), read-only: the mount point and its missing directories are made below
    `root` without following a symlink (a link there stops the step)."""

    source: str = ""
    root: str = ""
    dest: str = ""
    flags: tuple[str, ...] = ()


@record
class PivotRoot(Intent):
    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("fs", "pivot")
    new_root: str = ""


@record
class Chroot(Intent):
    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("fs", "chroot")
    new_root: str = ""


@record
class DetachOldRoot(Intent):
    """Detach the old root stacked on the new one; then, with `propagation` (an OCI config's
    linux.rootfsPropagation: "shared", "slave", "private", "unbindable", "r"-prefixed for the
    whole tree), change the new root's (after pivot_root, which refuses a shared root)."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("fs", "detach")
    propagation: str = ""


@record
class AuditMounts(Intent):
    """Inside the sealed root: every rule's path must sit on a mount carrying its flags."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("fs", "audit")
    rules: tuple[tuple[str, tuple[str, ...], bool], ...] = ()


# Security -------------------------------------------------------------------------------------
@record
class DropCapabilities(Intent):
    """Keep only `keep` (bounding, permitted and effective sets), clear the others; set
    no_new_privs. With `user` = (uid, gid, supplementary groups), become that user once the
    bounding set is cut and before the other sets are: setgroups, setresgid, setresuid (the
    last calls that need root inside the container; the seccomp filter loaded next refuses
    them)."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("sec", "caps")
    keep: tuple[str, ...] = ()
    user: tuple[int, int, tuple[int, ...]] | None = None


@record
class LoadSeccomp(Intent):
    """mode "enforce": install the compiled program whose sha256 is given (with the kernel's
    log flag when `log_denied`). mode "trace": install the user-notification filter whose
    listener goes to the tracer (every syscall is reported and allowed). mode "notify": install
    the program's notify form, whose listener goes to the violation monitor (the calls the
    program refuses are answered and recorded there; the rest run as under "enforce")."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("sec", "seccomp")
    program_sha256: str = ""
    log_denied: bool = False
    mode: str = "enforce"


@record
class ApplyLandlock(Intent):
    """Restrict to `rules`; with `log_new_exec`, ask the kernel (ABI 7 and later) to log the
    denials of the programs exec'd from now on (LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON)."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("sec", "landlock")
    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    min_abi: int = 0
    log_new_exec: bool = False


@record
class Warn(Intent):
    message: str = ""


# Resources: the container's cgroup ------------------------------------------------------------
@record
class CreateCgroup(Intent):
    """mkdir each parent where missing and set `mark` = (extended attribute, value) on each one
    it makes (the parent is nucleus's), write each (subtree_control, "+controller ...") pair in
    order (cgroup v2), then mkdir the container's own directories (one per v1 hierarchy), which
    must not exist yet. With `unavailable`, the host offers no group to make: the step fails
    with that reason and touches nothing.

    `vacate` = (a delegated group's cgroup.procs, a leaf directory, the leaf's cgroup.procs),
    for a rootless run in a cgroup delegated to the caller: first make the leaf (where
    missing) and move every process of the group into it, so that the group holds no process
    when its subtree_control is written (cgroup v2 enables controllers only for a group without
    processes of its own)."""

    reports: ClassVar[tuple[str, str] | None] = ("res", "create")
    parents: tuple[str, ...] = ()
    enable: tuple[tuple[str, str], ...] = ()
    dirs: tuple[str, ...] = ()
    unavailable: str = ""
    mark: tuple[str, ...] = ()
    vacate: tuple[str, ...] = ()


@record
class SetCgroupLimits(Intent):
    """Write each value to its file, in order. With `strict` the first write that fails (other
    than an optional one whose file is missing) fails the step; without it that write is
    skipped, the others are still written, and Done's detail lists the skipped ones
    (`skipped_detail`)."""

    reports: ClassVar[tuple[str, str] | None] = ("res", "limits")
    writes: tuple[CgroupWrite, ...] = ()
    strict: bool = False


@record
class AttachCgroup(Intent):
    """Write the pid of the process the machine spawned to each cgroup.procs file."""

    reports: ClassVar[tuple[str, str] | None] = ("res", "attach")
    procs: tuple[str, ...] = ()


@record
class RemoveCgroup(Intent):
    """End every process left in the group (write "1" to `kill`; where the kernel lacks it,
    freeze through `freeze` = (control, freeze value, thaw value, status file, frozen marker),
    SIGKILL each pid of `procs`, thaw), note whether the OOM killer acted (`oom` = (file, key)),
    then rmdir `dirs` (deepest first; gone is fine) and, deepest first, each of `parents` that
    carries `mark` (nucleus made it; never a parent that was there before, such as an
    administrator's group with limits of its own) where it is empty. When the OOM killer acted,
    Done reports it with the group's peak memory use read from `peak` before anything is
    removed (`oom_detail`). A removal tried again after one failed waits `pause` seconds
    first (the retries' backoff, nucleus.machines.resources.RELEASE_PAUSES)."""

    reports: ClassVar[tuple[str, str] | None] = ("res", "release")
    procs: tuple[str, ...] = ()
    kill: str = ""
    freeze: tuple[str, ...] = ()
    oom: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    mark: tuple[str, ...] = ()
    peak: str = ""
    pause: float = 0.0


# Network: the container's bridge (nucleus.effects.network) ---------------------------------------
# A published port: (protocol "tcp" | "udp", host address ("" for every address), host port,
# container port).
Port = tuple[str, str, int, int]


@record
class NetBridge(Intent):
    """Under the state directory's lock: make `bridge` where it is missing (up, with
    the first host address of each of `subnets`, forwarding on), and lease container `owner` the
    lowest free address of each subnet, recorded in the state directory. Done's detail lists
    the addresses leased ("10.88.0.2/16 fd00:6e75::2/64")."""

    reports: ClassVar[tuple[str, str] | None] = ("net", "bridge")
    bridge: str = ""
    subnets: tuple[str, ...] = ()
    state: str = ""
    owner: str = ""


@record
class NetVeth(Intent):
    """Make the veth pair `host` and `peer`, attach `host` to `bridge` and bring it up, and move
    `peer` into the network namespace of the process the machine spawned, renamed `inside`."""

    reports: ClassVar[tuple[str, str] | None] = ("net", "veth")
    bridge: str = ""
    host: str = ""
    peer: str = ""
    inside: str = "eth0"


@record
class NetAttach(Intent):
    """One more attachment of a bridged container (a compose service on several networks):
    under the state directory's lock, `bridge` where it is missing and container `owner`'s lease
    of an address of each of `subnets`, as NetBridge does; then the veth pair `host` and `peer`
    on it, `peer` moved into the network namespace of the process the machine spawned, renamed
    `inside`; the bridge's own rules where they are missing, with `backend`, as NetNat makes
    them (no port of the container's). No route goes through it: the container reaches that
    network's own subnets only. Done's detail lists the addresses leased."""

    reports: ClassVar[tuple[str, str] | None] = ("net", "attach")
    bridge: str = ""
    subnets: tuple[str, ...] = ()
    state: str = ""
    owner: str = ""
    host: str = ""
    peer: str = ""
    inside: str = "eth1"
    backend: str = ""
    # What its join writes inside before the link comes up (the link's own settings).
    sysctls: tuple[tuple[str, str], ...] = ()


@record
class NetNat(Intent):
    """With `backend` ("nft" or "iptables"), under the state directory's lock: the bridge's own
    rules where they are missing (masquerade what leaves `subnets` for another link, forward to
    and from `bridge` whatever the host's forward policy), then the container's: each port of
    `ports` forwarded to its address among `addresses` (DNAT, for traffic from outside and from
    the host itself), marked as container `owner`'s."""

    reports: ClassVar[tuple[str, str] | None] = ("net", "nat")
    backend: str = ""
    bridge: str = ""
    subnets: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    owner: str = ""
    state: str = ""


@record
class NetEgress(Intent):
    """Under the state directory's lock: lease container `owner` two free ports of the bridge's
    gateway (its proxy's and its resolver's), recorded in the bridge's file, then, with
    `backend`, the container's own rules (named after `owner`): its `addresses` reach the host
    only at those ports of `gateways` (their DNS port 53 and the proxy's `proxy_port` DNATed
    there), and are forwarded only to `networks` on the ports of `tcp_ports` and `udp_ports`
    ((first, last) each; every port with `any_port`); everything else they send is dropped, and
    no other address reaches the leased ports. Done's detail: the ports leased ("PROXY DNS")."""

    reports: ClassVar[tuple[str, str] | None] = ("net", "egress")
    backend: str = ""
    bridge: str = ""
    owner: str = ""
    state: str = ""
    addresses: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    proxy_port: int = 3128
    networks: tuple[str, ...] = ()
    tcp_ports: tuple[tuple[int, int], ...] = ()
    udp_ports: tuple[tuple[int, int], ...] = ()
    any_port: bool = True
    # The bridges of the container's more attachments: what they carry is dropped as the
    # first's is (their addresses are among `addresses`).
    more_bridges: tuple[str, ...] = ()


@record
class NetProxy(Intent):
    """Bind the proxy (TCP `port`) and the resolver (UDP and TCP `dns_port`) on `gateway`, and
    fork the egress process serving them: the policy (`networks`, `domains`, `tcp_ports`,
    `udp_ports`, `any_port`), names resolved by `upstream` (address, port; "" for the first
    nameserver of the host's /etc/resolv.conf), refusals written to the violation stream
    `stream` as container `owner`'s (named `container`). Its pid and start time are recorded in the
    bridge's file under `owner`'s lease, in `state`, so that the teardown ends that process.
    What the firewall drops it reads from the NFLOG group the bridge's lease names, or with
    `inside_group` from that group of the container's own network namespace (a user-mode
    network's rules are there)."""

    reports: ClassVar[tuple[str, str] | None] = ("net", "proxy")
    bridge: str = ""
    owner: str = ""
    container: str = ""
    state: str = ""
    gateway: str = ""
    port: int = 0
    dns_port: int = 0
    networks: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    tcp_ports: tuple[tuple[int, int], ...] = ()
    udp_ports: tuple[tuple[int, int], ...] = ()
    any_port: bool = True
    upstream: tuple[str, int] = ("", 53)
    stream: str = ""
    inside_group: int = 0


@record
class NetUser(Intent):
    """Start the user-mode stack `stack` ("pasta" or "slirp4netns", the program `program`) for
    the network namespace of the process the machine spawned: its interface `inside` there
    (left down), for the container's `address` behind the gateway `gateway`, the stack's DNS
    forwarder at `dns`, each port of `ports` forwarded from the host; the host's loopback is
    reached at the gateway only with `loopback` (the egress process's way in). Its pid and start
    time are recorded in the file `record` names in `state`, as container `owner`'s, so that
    the teardown ends that process."""

    reports: ClassVar[tuple[str, str] | None] = ("net", "usernet")
    stack: str = ""
    program: str = ""
    inside: str = "eth0"
    address: str = ""
    gateway: str = ""
    dns: str = ""
    ports: tuple[Port, ...] = ()
    loopback: bool = False
    owner: str = ""
    record: str = ""
    state: str = ""


@record
class NetFilter(Intent):
    """Inside, with the nftables program `nft`: the egress rules of the container's own network
    namespace. What it sends to `gateway`'s port 53 and `proxy_port` goes to the ports `dns`
    and `proxy` there (its egress process's, on the host's loopback, which the user-mode stack
    reaches at the gateway) and is accepted; what it sends to `networks` on the ports of
    `tcp_ports` and `udp_ports` ((first, last) each; every port with `any_port`) is accepted,
    but never to the stack's own network `local`; everything else it sends is dropped, and
    logged to the NFLOG group `group` of the namespace (0: counted only)."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("net", "filter")
    nft: str = ""
    gateway: str = ""
    local: str = ""
    proxy_port: int = 3128
    proxy: int = 0
    dns: int = 0
    networks: tuple[str, ...] = ()
    tcp_ports: tuple[tuple[int, int], ...] = ()
    udp_ports: tuple[tuple[int, int], ...] = ()
    any_port: bool = True
    group: int = 0


@record
class NetAddress(Intent):
    """Inside: give `link` each of `addresses` (with their prefix lengths)."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("net", "address")
    link: str = "eth0"
    addresses: tuple[str, ...] = ()


@record
class NetLinkUp(Intent):
    """Inside: write each (file, value) of `sysctls` (the container's own network namespace's
    settings), then bring `link` up."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("net", "up")
    link: str = "eth0"
    sysctls: tuple[tuple[str, str], ...] = ()


@record
class NetJoin(Intent):
    """Inside: write each (file, value) of `sysctls`, give one more attachment's `link` each of
    `addresses`, then bring it up."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("net", "join")
    link: str = "eth1"
    addresses: tuple[str, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()


@record
class NetRoute(Intent):
    """Inside: the default route of each address family through its gateway on `link`."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("net", "route")
    link: str = "eth0"
    gateways: tuple[str, ...] = ()


@record
class NetTeardown(Intent):
    """Remove what the steps of `held` made: the veth `host` (its peer goes with it), the
    container's rules (its `ports`, marked as `owner`'s, with `backend`; its egress rules), its
    egress process (the pid its lease records, if it is still that process), its lease; the
    bridge's last lease takes the bridge and the bridge's own rules with it. What is already
    gone is fine."""

    reports: ClassVar[tuple[str, str] | None] = ("net", "teardown")
    held: tuple[str, ...] = ()
    bridge: str = ""
    host: str = ""
    backend: str = ""
    ports: tuple[Port, ...] = ()
    owner: str = ""
    state: str = ""
    # With "attach" held: each more attachment's (bridge, host-side veth), its lease and veth
    # removed as the first's are (what is already gone is fine).
    attached: tuple[tuple[str, str], ...] = ()


# Lifecycle ------------------------------------------------------------------------------------
@record
class ExecWorkload(Intent):
    """Inside: PID 1 forks the workload, which sets its rlimits (nofile, nproc, memlock, then
    `exact_rlimits`), enters
    `cwd` and execs `argv` with exactly `env`; PID 1 stays as its minimal init. `places`: the
    writable places --allow-exec may name, for the reason a refused exec gives."""

    where: ClassVar[str] = "child"
    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = "/"
    rlimits: tuple[int, int, int] = (1024, 512, 65536)
    places: tuple[str, ...] = ()
    # With `terminal`, its stdin, stdout and stderr are a new pseudo-terminal of the
    # container's devpts (nucleus.effects.terminal), the caller's stdin relayed to it with
    # `stdin`; without, stdin is inherited with `stdin`, else /dev/null (Docker's -i).
    terminal: bool = False
    stdin: bool = False
    # (RLIMIT_*, soft, hard): set as given, in place of nucleus's own for the same resource
    # (an OCI config's process.rlimits; -1 is unlimited).
    exact_rlimits: tuple[tuple[str, int, int], ...] = ()


@record
class SendSignal(Intent):
    signal: str = "TERM"


@record
class Cleanup(Intent):
    """End the processes the machine started (the container's init takes its namespaces down
    with it) and close what connects to them."""


# Join: a command entering a running container ---------------------------------------------------
@record
class JoinSpawn(SpawnChild):
    """Fork the process that will join the container and connect the sync pipe."""

    reports: ClassVar[tuple[str, str] | None] = ("join", "spawn")


@record
class JoinCgroup(AttachCgroup):
    reports: ClassVar[tuple[str, str] | None] = ("join", "cgroup")


@record
class EnterNamespaces(Intent):
    """setns into each (kind, /proc/<pid>/ns/<kind>) in order: the namespaces the container
    created, of its init `pid`, which must still be the process that started at `start` once
    they are open (never a process that reused the pid), and none of which may be the joining
    process's own. With `clear_groups`, drop supplementary groups first (host root's groups
    must not follow into the container)."""

    where: ClassVar[str] = "child"
    reports: ClassVar[tuple[str, str] | None] = ("join", "enter")
    namespaces: tuple[tuple[str, str], ...] = ()
    clear_groups: bool = False
    pid: int = 0
    start: int = 0


@record
class JoinIdentity(BecomeRoot):
    reports: ClassVar[tuple[str, str] | None] = ("join", "identity")


@record
class JoinFork(ForkInit):
    """Fork the process that is in the container's PID namespace (setns affects children)."""

    reports: ClassVar[tuple[str, str] | None] = ("join", "fork")


@record
class JoinDropCapabilities(DropCapabilities):
    reports: ClassVar[tuple[str, str] | None] = ("join", "caps")


@record
class JoinLoadSeccomp(LoadSeccomp):
    reports: ClassVar[tuple[str, str] | None] = ("join", "seccomp")


@record
class JoinApplyLandlock(ApplyLandlock):
    reports: ClassVar[tuple[str, str] | None] = ("join", "landlock")


@record
class ExecCommand(Intent):
    """Inside: set the rlimits, enter `cwd` (or "/" when it is gone, unless `cwd_required`)
    and exec `argv` with exactly `env`, in place. `places`, `terminal` and `stdin`: as
    ExecWorkload's."""

    where: ClassVar[str] = "child"
    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = "/"
    rlimits: tuple[int, int, int] = (1024, 512, 65536)
    places: tuple[str, ...] = ()
    terminal: bool = False
    stdin: bool = False
    cwd_required: bool = False
    exact_rlimits: tuple[tuple[str, int, int], ...] = ()


INTENTS: dict[str, type[Intent]] = {
    cls.__name__: cls
    for cls in (
        SpawnChild, Unshare, ForkInit, SetHostname, LoopbackUp, EnterUserNamespace, WriteIdMaps,
        BecomeRoot, SetPropagation, MountFs, BindMount, RemountFs, MakeDirs, MakeSymlinks,
        CopyTree, VerifyTree, MountVolume, KeepTree, MaskPaths, WriteFile, WriteSysctl, WriteSecret, BindSecret, PivotRoot, Chroot, DetachOldRoot, AuditMounts,
        DropCapabilities, LoadSeccomp, ApplyLandlock, Warn, CreateCgroup, SetCgroupLimits,
        AttachCgroup, RemoveCgroup, NetBridge, NetVeth, NetAttach, NetNat, NetEgress, NetProxy, NetUser, NetFilter,
        NetAddress, NetLinkUp, NetJoin, NetRoute, NetTeardown, ExecWorkload, SendSignal, Cleanup, JoinSpawn, JoinCgroup,
        EnterNamespaces, JoinIdentity, JoinFork, JoinDropCapabilities, JoinLoadSeccomp,
        JoinApplyLandlock, ExecCommand,
    )
}

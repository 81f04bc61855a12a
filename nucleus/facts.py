"""Host facts: what the host offers, as plain data. Gathered once per command by
`nucleus.effects.probe` (the only place that looks), then handed to the pure checks and plans.

A field that is None was not probed (the command did not need it); a check that needs it is
skipped rather than guessed.
"""

from __future__ import annotations

from nucleus.frozen import frozen

UNIFIED = "unified"  # the key of a cgroup v2 mount in CgroupLayout.mounts


@frozen
class CgroupLayout:
    """Where the cgroup controllers nucleus uses are mounted.

    ``backend``: "v2" when a cgroup2 mount offers memory, cpu and pids; else "v1" with a
    hierarchy for each; else "none", with ``reason`` saying why. ``mounts``: on v1 (controller,
    mount point) pairs; on v2 one (UNIFIED, mount point) pair. ``controllers``: the controllers
    nucleus uses there. ``root_enabled``: on v2, the controllers the hierarchy root enables for
    its children (nucleus never writes the root's files). ``swap_accounting``: whether swap
    can be limited (None: unknown). ``unified``: the cgroup2 mount point, also on a hybrid host.

    For a caller that is not root (probed only then): ``delegated``, the caller's own cgroup v2
    group when it is delegated to the caller (writable by it, holding no process but the
    caller's, with cpu, memory and pids in its cgroup.controllers), where a rootless run makes
    its group; ``delegated_controllers``, the controllers nucleus uses that it offers;
    ``delegation``, why there is none ("" when not probed).
    """

    backend: str = "none"
    mounts: tuple[tuple[str, str], ...] = ()
    controllers: tuple[str, ...] = ()
    root_enabled: tuple[str, ...] = ()
    swap_accounting: bool | None = None
    unified: str | None = None
    reason: str = ""
    delegated: str = ""
    delegated_controllers: tuple[str, ...] = ()
    delegation: str = ""

    def mount(self, controller: str) -> str:
        return dict(self.mounts)[controller]

    @property
    def unusable(self) -> str | None:
        """Why no container group can be made here, or None: no hierarchy offers the
        controllers, or (v2) the hierarchy root does not enable them for its children."""
        if self.backend not in ("v1", "v2"):
            return self.reason or "no cgroup hierarchy found"
        missing = [c for c in sorted(self.controllers) if self.backend == "v2" and c not in self.root_enabled]
        if missing:
            point = self.mount(UNIFIED)
            plus = " ".join(f"+{c}" for c in missing)
            return (f"{' '.join(missing)} not enabled for the children of {point}; enable them on "
                    f"the host with: echo '{plus}' > {point}/cgroup.subtree_control")
        return None


@frozen
class SubordinateRange:
    """An entry of /etc/subuid or /etc/subgid: ids `start`..`start+count-1` given to `owner`."""

    file: str
    owner: str
    start: int
    count: int


@frozen
class HostFacts:
    """The facts a run, a join or a mode check may need; None means "not probed"."""

    arch: str = ""  # os.uname().machine
    euid: int | None = None
    egid: int | None = None
    state_root: str = ""
    # The system directories to bind (from the host, or from a --rootfs closure): (path, symlink
    # target) with "" for a directory; and the closure's /nix/store paths.
    system: tuple[tuple[str, str], ...] = ()
    store_paths: tuple[str, ...] = ()
    # The host's /etc entries of nucleus.config.host_etc's allowlist: (path relative to /etc,
    # symlink target or "" for a directory or file to bind); and the entries inside those
    # trees that its secret rules mask.
    etc: tuple[tuple[str, str], ...] = ()
    etc_masked: tuple[str, ...] = ()
    cgroups: CgroupLayout | None = None
    landlock_abi: int | None = None
    lockdown: str | None = None  # the text of /sys/kernel/security/lockdown
    lockdown_error: str = ""  # why it could not be read, when it was probed
    seccomp_filter: bool | None = None  # the kernel accepts seccomp filters
    max_user_namespaces: int | None = None
    rootfs_realpath: str | None = None  # --rootfs with every symlink resolved
    # A --rootfs closure with an /etc of its own: its etc/passwd and etc/group as text, and why
    # they could not be read ("" when they were); None without one (the files are generated).
    rootfs_accounts: tuple[str, str, str] | None = None
    # What a limit's value is checked against (probed when the run asks for the limit): the
    # CPUs this process may run on (its affinity, which its cpuset bounds), and the block
    # devices as (MAJ:MIN, MAJ:MIN of its whole disk: itself for a disk, the disk of a
    # partition).
    cpus: int | None = None
    block_devices: tuple[tuple[str, str], ...] | None = None
    subordinate_ids: tuple[SubordinateRange, ...] = ()  # /etc/subuid and /etc/subgid entries
    # For --network bridge (probed only then): the host's routes as (destination network, link),
    # and the NAT tool --nat-backend chose ("nft" or "iptables"; "" when none is installed).
    routes: tuple[tuple[str, str], ...] | None = None
    nat_backend: str = ""
    # For --network user (probed only then): the user-mode stacks installed, (name, program),
    # pasta first; and the nftables program its egress rules are made with ("" for none).
    user_stacks: tuple[tuple[str, str], ...] = ()
    nft: str = ""

    @property
    def lockdown_probed(self) -> bool:
        return self.lockdown is not None or bool(self.lockdown_error)

    @property
    def cgroup_backend(self) -> str | None:
        return None if self.cgroups is None else self.cgroups.backend

    @property
    def cgroup_reason(self) -> str:
        return "" if self.cgroups is None else self.cgroups.reason

    def ids(self) -> tuple[int, int]:
        """The caller's effective uid and gid (a plan needs them probed)."""
        if self.euid is None or self.egid is None:
            raise ValueError("the caller's ids were not probed")
        return self.euid, self.egid

"""The root filesystem: formal/Filesystem.tla.

The mount plan (built by nucleus.plan.mounts) is data: a sequence of operations that build the
new root under a staging directory. The machine issues the whole plan at Begin (the executor
stops at the first failure and reports it), then pivot_root, then detaches the old root. With
the chroot fallback allowed, a failed pivot_root becomes a chroot, noted as such.

In production the sealed root's mounts are then audited (AuditMounts): every rule's path must
sit on a mount carrying its flags, or the setup fails.

Cleanup needs no unmounting: every mount lives in the container's private mount namespace, which
the kernel tears down when its last process exits.
"""

from __future__ import annotations

from dataclasses import replace

from nucleus import vocab as v
from nucleus.frozen import frozen
from nucleus.machines.base import Refused, Step

PHASES = ("idle", "mounting", "pivoting", "chrooting", "detaching", "auditing", "sealed", "failed")


@frozen
class FilesystemState:
    plan: tuple[v.Intent, ...] = ()
    new_root: str = ""
    allow_chroot: bool = False
    phase: str = "idle"
    mounted: int = 0
    chrooted: bool = False
    audit: tuple[tuple[str, tuple[str, ...], bool], ...] = ()  # (path, flags, required); production
    audited: bool = False
    propagation: str = ""  # the new root's, set once the old root is detached (DetachOldRoot)

    @property
    def audits(self) -> bool:
        return bool(self.audit)

    @property
    def total(self) -> int:
        return len(self.plan)


def initial(plan: tuple[v.Intent, ...], new_root: str, allow_chroot: bool = False,
            audit: tuple[tuple[str, tuple[str, ...], bool], ...] = (), propagation: str = "") -> FilesystemState:
    return FilesystemState(plan=plan, new_root=new_root, allow_chroot=allow_chroot, audit=audit,
                           propagation=propagation)


def _expected(state: FilesystemState) -> str | None:
    return {
        "mounting": "mount", "pivoting": "pivot", "chrooting": "chroot", "detaching": "detach",
        "auditing": "audit",
    }.get(state.phase)


def step(state: FilesystemState, event: v.Event) -> Step | Refused:
    match event:
        case v.FsBegin():
            if state.phase != "idle":
                return Refused(f"cannot Begin the filesystem: it is {state.phase} (Begin is allowed only from idle)")
            if state.total == 0:
                return Step(replace(state, phase="pivoting"), (v.PivotRoot(state.new_root),))
            return Step(replace(state, phase="mounting"), state.plan)
        case v.FsDone(step=name) | v.FsFailed(step=name):
            expected = _expected(state)
            if expected is None or name != expected:
                return Refused(
                    f"cannot {v.action_name(event)} filesystem step {name!r}: it is {state.phase}"
                    + (f" (the step under way is {expected!r})" if expected else "")
                )
            if isinstance(event, v.FsFailed):
                if name == "pivot" and state.allow_chroot:
                    return Step(
                        replace(state, phase="chrooting"),
                        (v.Warn(f"pivot_root failed ({event.message}); falling back to chroot"),
                         v.Chroot(state.new_root)),
                    )
                return Step(replace(state, phase="failed"))
            if name == "mount":
                mounted = state.mounted + 1
                if mounted < state.total:
                    return Step(replace(state, mounted=mounted))
                return Step(replace(state, mounted=mounted, phase="pivoting"), (v.PivotRoot(state.new_root),))
            if name == "pivot":
                return Step(replace(state, phase="detaching"), (v.DetachOldRoot(state.propagation),))
            if name == "audit":
                return Step(replace(state, phase="sealed", audited=True))
            chrooted = state.chrooted or name == "chroot"
            if state.audits:  # production: check every mount's flags before anything runs
                return Step(replace(state, phase="auditing", chrooted=chrooted), (v.AuditMounts(state.audit),))
            return Step(replace(state, phase="sealed", chrooted=chrooted))  # chroot or detach
    return Refused(f"the filesystem has no action {event.name}")


def is_initial(state: FilesystemState) -> bool:
    return state.phase == "idle" and state.mounted == 0 and not state.chrooted and not state.audited


def to_tla(state: FilesystemState) -> dict[str, object]:
    return {
        "fs_phase": state.phase, "fs_mounted": state.mounted, "fs_total": state.total,
        "fs_allowChroot": state.allow_chroot, "fs_chrooted": state.chrooted,
        "fs_audit": state.audits, "fs_audited": state.audited,
    }


def from_tla(values: dict[str, object], base: FilesystemState | None = None) -> FilesystemState:
    """The state the spec's variables describe. The mount plan and the audit rules come from
    `base` when it has a plan of the right length; otherwise placeholders of that length."""
    total, mounted = values["fs_total"], values["fs_mounted"]
    assert isinstance(total, int) and isinstance(mounted, int)
    state = base or FilesystemState(new_root="/newroot")
    if state.total != total:
        state = replace(state, plan=tuple(v.MakeDirs(root="/", paths=(f"step{i}",)) for i in range(total)))
    if bool(values["fs_audit"]) != state.audits:
        state = replace(state, audit=(("/", ("nosuid",), True),) if values["fs_audit"] else ())
    return replace(
        state, allow_chroot=bool(values["fs_allowChroot"]), phase=str(values["fs_phase"]),
        mounted=mounted, chrooted=bool(values["fs_chrooted"]), audited=bool(values["fs_audited"]),
    )


# Invariants: the same names as in formal/Filesystem.tla.
def TypeOK(s: FilesystemState) -> bool:  # noqa: N802
    return s.phase in PHASES and 0 <= s.mounted <= s.total


def PivotOnlyAfterPlan(s: FilesystemState) -> bool:  # noqa: N802
    return s.phase not in ("pivoting", "chrooting", "detaching", "auditing", "sealed") or s.mounted == s.total


def ChrootOnlyIfAllowed(s: FilesystemState) -> bool:  # noqa: N802
    return not s.chrooted or s.allow_chroot


def ChrootOnlyWhenSealed(s: FilesystemState) -> bool:  # noqa: N802
    return not s.chrooted or s.phase in ("auditing", "sealed", "failed")


def SealedMeansAudited(s: FilesystemState) -> bool:  # noqa: N802
    return not (s.phase == "sealed" and s.audits) or s.audited


def AuditedOnlyIfAsked(s: FilesystemState) -> bool:  # noqa: N802
    return not s.audited or s.audits


def MountsOnlyWhileMounting(s: FilesystemState) -> bool:  # noqa: N802
    return s.phase != "idle" or s.mounted == 0


INVARIANTS = (
    TypeOK, PivotOnlyAfterPlan, ChrootOnlyIfAllowed, ChrootOnlyWhenSealed, MountsOnlyWhileMounting,
    SealedMeansAudited, AuditedOnlyIfAsked,
)


def candidate_events(state: FilesystemState) -> list[v.Event]:
    names = ("mount", "pivot", "chroot", "detach", "audit")
    return [v.FsBegin()] + [v.FsDone(n) for n in names] + [v.FsFailed(n) for n in names]

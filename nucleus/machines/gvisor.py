"""A container run by gVisor's runsc (`nucleus run --runtime gvisor`): formal/Gvisor.tla.

The supervisor writes the OCI bundle, then `runsc run` makes the sandbox (runsc's state under
nucleus's own --root, its cgroups, its processes) and runs the workload. When the workload ends,
when a setup step fails, or when the supervisor is lost, the sandbox is deleted (runsc delete
--force) before the bundle is removed, and the container is removed only once neither is left.
A cleanup step that fails leaves its part in place: Sweep (nucleus rm --force) tries again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from nucleus.machines.base import Refused, Step, refuse
from nucleus.vocab import gvisor as gv

STATUSES = ("none", "creating", "running", "stopped", "failed", "removed")
STEPS = ("bundle", "run")
SIGNALS = ("TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2")
ENDED = ("stopped", "failed")
ACTIVE = ("creating", "running")


@dataclass(frozen=True)
class GvisorPlan:
    """What the machine asks of runsc, planned once (nucleus.plan.gvisor): the bundle to write,
    the run, and runsc's command line with its global flags (for kill and delete)."""

    bundle: gv.WriteBundle = field(default_factory=gv.WriteBundle)
    run: gv.RunSandbox = field(default_factory=gv.RunSandbox)
    runsc: tuple[str, ...] = ("runsc",)
    cid: str = "gvisor"

    def signal(self, sig: str) -> gv.SignalSandbox:
        return gv.SignalSandbox(argv=(*self.runsc, "kill", self.cid, sig))

    def exec(self, event: gv.Exec) -> gv.ExecSandbox:
        user = ("--user", event.user) if event.user else ()
        cwd = ("--cwd", event.cwd) if event.cwd else ()
        env = tuple(arg for key, value in event.env for arg in ("--env", f"{key}={value}"))
        return gv.ExecSandbox(argv=(*self.runsc, "exec", *user, *cwd, *env, self.cid, *event.command),
                              stdin=event.stdin)

    def delete(self) -> gv.DeleteSandbox:
        return gv.DeleteSandbox(argv=(*self.runsc, "delete", "--force", self.cid),
                                kill=(*self.runsc, "kill", "--all", self.cid, "KILL"))

    def remove(self) -> gv.RemoveBundle:
        return gv.RemoveBundle(directory=self.bundle.directory)


@dataclass(frozen=True)
class GvisorState:
    status: str = "none"
    bundle: bool = False
    sandbox: bool = False
    # Not part of the spec's abstraction: the plan, the workload's status, why a step failed.
    plan: GvisorPlan = field(default_factory=GvisorPlan)
    exit_code: int | None = None
    failure: str = ""


def initial(plan: GvisorPlan) -> GvisorState:
    return GvisorState(plan=plan)


def _refuse(action: str, state: GvisorState, allowed: str) -> Refused:
    return refuse("the gVisor container", action, state.status, allowed)


def _cleanup(state: GvisorState) -> Step:
    """The next cleanup step of an ended container: the sandbox first, then the bundle."""
    if state.sandbox:
        return Step(state, (state.plan.delete(),))
    if state.bundle:
        return Step(state, (state.plan.remove(),))
    return Step(state)


def step(state: GvisorState, event: gv.GvEvent) -> Step | Refused:
    status = state.status
    match event:
        case gv.Create():
            if status != "none":
                return _refuse("Create", state, "from none")
            return Step(replace(state, status="creating"), (state.plan.bundle,))
        case gv.Written():
            if status != "creating" or state.bundle:
                return _refuse("Written", state, "while creating, before the bundle is written")
            return Step(replace(state, bundle=True), (state.plan.run,))
        case gv.Started():
            if status != "creating" or not state.bundle or state.sandbox:
                return _refuse("Started", state, "while creating, once the bundle is written")
            return Step(replace(state, status="running", sandbox=True))
        case gv.Fail(step=name, message=message):
            if status != "creating" or name not in STEPS:
                return _refuse(f"Fail({name})", state, "while creating, at bundle or run")
            if (name == "bundle") == state.bundle or state.sandbox:
                return Refused(f"cannot Fail({name}) the gVisor container: that step is not under way")
            return _cleanup(replace(state, status="failed", sandbox=name == "run", failure=message))
        case gv.Exit(code=code):
            if status != "running":
                return _refuse("Exit", state, "while running")
            return _cleanup(replace(state, status="stopped", exit_code=code))
        case gv.Kill(signal=sig):
            if status != "running" or sig not in SIGNALS:
                return _refuse(f"Kill({sig})", state, f"while running, with one of {', '.join(SIGNALS)}")
            return Step(state, (state.plan.signal(sig),))
        case gv.Exec():
            if status != "running":
                return _refuse("Exec", state, "while running")
            return Step(state, (state.plan.exec(event),))
        case gv.Lost():
            if status not in ACTIVE:
                return _refuse("Lost", state, "while creating or running")
            return _cleanup(replace(state, status="failed", sandbox=state.bundle))
        case gv.Deleted():
            if status not in ENDED or not state.sandbox:
                return _refuse("Deleted", state, "once ended, with a sandbox left")
            return _cleanup(replace(state, sandbox=False))
        case gv.Unbundled():
            if status not in ENDED or not state.bundle or state.sandbox:
                return _refuse("Unbundled", state, "once ended, with the bundle and no sandbox left")
            return Step(replace(state, bundle=False))
        case gv.Sweep():
            if status not in ENDED or not (state.bundle or state.sandbox):
                return _refuse("Sweep", state, "once ended, with something left")
            return _cleanup(state)
        case gv.Remove():
            if status not in ENDED or state.bundle or state.sandbox:
                return _refuse("Remove", state, "once ended, with nothing left")
            return Step(replace(state, status="removed"))
    return Refused(f"the gVisor machine has no action {event.name}")


def is_initial(state: GvisorState) -> bool:
    return state.status == "none" and not state.bundle and not state.sandbox


def to_tla(state: GvisorState) -> dict[str, object]:
    return {"gv_status": state.status, "gv_bundle": state.bundle, "gv_sandbox": state.sandbox}


def from_tla(values: dict[str, object], base: GvisorState | None = None) -> GvisorState:
    """The state the spec's variables describe; the plan from `base` (a placeholder without)."""
    return replace(base or GvisorState(), status=str(values["gv_status"]), bundle=bool(values["gv_bundle"]),
                   sandbox=bool(values["gv_sandbox"]))


def candidate_events(state: GvisorState) -> list[gv.GvEvent]:
    return ([gv.Create(), gv.Written(), gv.Started(), gv.Exit(0), gv.Exit(1), gv.Exec(), gv.Lost(), gv.Deleted(),
             gv.Unbundled(), gv.Sweep(), gv.Remove()]
            + [gv.Fail(step=s) for s in STEPS] + [gv.Kill(signal=s) for s in SIGNALS])


# Invariants: the same names as in formal/Gvisor.tla.
def TypeOK(s: GvisorState) -> bool:  # noqa: N802
    return s.status in STATUSES


def RunningHasSandbox(s: GvisorState) -> bool:  # noqa: N802
    return s.status != "running" or (s.sandbox and s.bundle)


def SandboxNeedsBundle(s: GvisorState) -> bool:  # noqa: N802
    return not s.sandbox or s.bundle


def RemovedLeavesNothing(s: GvisorState) -> bool:  # noqa: N802
    return s.status not in ("none", "removed") or not (s.bundle or s.sandbox)


INVARIANTS = (TypeOK, RunningHasSandbox, SandboxNeedsBundle, RemovedLeavesNothing)

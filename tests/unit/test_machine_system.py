"""The System machine (formal/System.tla), setup: the composition's guards and their exact
refusals, the order the driver follows (cgroup, namespaces inside it, root, audit, controls),
the planned intents issued as planned, and the abstraction."""

from __future__ import annotations

import dataclasses

import pytest

from nucleus import vocab as v
from nucleus.machines import isolation, system
from tests.unit.machine_support import (
    ATTACH,
    AUDIT,
    CREATE,
    LIMITS,
    ok,
    refused,
    run,
    without_state,
)
from tests.unit.system_support import WORKLOAD, at_unshare_gate, follow, sys_initial


def test_system_guards_exact_refusals():
    s = sys_initial()
    assert without_state(refused(system.step(s, v.IsoBegin()))) == (
        "cannot Begin (iso): isolation begins only while the container is creating"
    )
    assert without_state(refused(system.step(s, v.SetupFailed()))) == "cannot SetupFailed (lc): setup has not failed"
    assert without_state(refused(system.step(s, v.ResBegin()))) == (
        "cannot Begin (res): the cgroup is created only while the container is creating"
    )
    creating = ok(system.step(s, v.Create())).state
    assert without_state(refused(system.step(creating, v.IsoBegin()))) == (
        "cannot Begin (iso): isolation begins once the cgroup is limited (or knowingly skipped)"
    )
    assert without_state(refused(system.step(creating, v.FsBegin()))) == (
        "cannot Begin (fs): the filesystem is built only inside the new namespaces (after loopback is up)"
    )
    assert without_state(refused(system.step(creating, v.SecBegin()))) == (
        "cannot Begin (sec): security controls are applied only once isolation is ready and the root is sealed"
    )
    assert without_state(refused(system.step(creating, v.Prepared("enforced")))) == (
        "cannot Prepared (lc): the container is prepared only when every security control is in force"
    )
    assert without_state(refused(system.step(creating, v.ResRelease()))) == (
        "cannot Release (res): the cgroup is released only once the container has stopped or failed"
    )
    limited, _ = run(system, creating, v.ResBegin(), v.ResDone("create"), v.ResDone("limits"))
    assert without_state(refused(system.step(limited, v.ResAttach()))) == (
        "cannot Attach (res): there is no setup process to move into the cgroup yet"
    )
    assert refused(system.step(limited, v.ResAttach())) == (
        "cannot Attach (res): there is no setup process to move into the cgroup yet (the container is "
        "creating; isolation idle, filesystem idle, security idle, cgroup waiting)"
    )
    # A machine's own refusal passes through unchanged.
    assert refused(system.step(s, v.Start())) == (
        "cannot Start the container: it is none (Start is allowed only from created)"
    )
    assert refused(system.step(limited, v.ResBegin())) == (
        "cannot Begin resources: it is waiting (Begin is allowed only from idle)"
    )
    assert refused(system.step(limited, v.ResAbandon())) == (
        "cannot Abandon (res): a cgroup step is abandoned only when the supervisor is lost (Lost) "
        "(the container is creating; isolation idle, filesystem idle, security idle, cgroup waiting)"
    )


def test_system_unshare_waits_for_the_setup_process_in_its_cgroup():
    s = at_unshare_gate()
    assert refused(system.step(s, v.IsoResume())) == (
        "cannot Resume (iso): namespaces are created only once the setup process is in its cgroup "
        "(the container is creating; isolation waiting, filesystem idle, security idle, cgroup waiting)"
    )
    assert system.advance(s) == v.ResAttach()
    r = ok(system.step(s, v.ResAttach()))
    assert (r.state.res.phase, r.intents) == ("attaching", (ATTACH,))
    assert "namespaces are created only once" in refused(system.step(r.state, v.IsoResume()))
    assert system.advance(r.state) is None
    s = ok(system.step(r.state, v.ResDone("attach"))).state
    assert system.advance(s) == v.IsoResume()
    r = ok(system.step(s, v.IsoResume()))
    assert isinstance(r.intents[0], v.Unshare) and r.state.iso.phase == "running"


def test_system_unshare_passes_its_gate_without_a_cgroup_when_it_is_optional():
    s = at_unshare_gate(required=False)
    s = ok(system.step(s, v.ResAttach())).state
    r = ok(system.step(s, v.ResFailed("attach", 1, "EPERM")))
    assert (r.state.res.phase, r.state.res.held) == ("degraded", True) and isinstance(r.intents[0], v.Warn)
    assert system.advance(r.state) == v.IsoResume()
    s = at_unshare_gate(required=True)
    s = ok(system.step(s, v.ResAttach())).state
    s = ok(system.step(s, v.ResFailed("attach", 1, "EPERM"))).state
    assert s.res.phase == "failed" and system.advance(s) == v.SetupFailed()
    assert "namespaces are created only once" in refused(system.step(s, v.IsoResume()))


def test_system_resume_waits_for_the_sealed_root():
    s = at_unshare_gate()
    s, _ = run(system, s, v.ResAttach(), v.ResDone("attach"), v.IsoResume())
    for name in ("unshare", "fork_init", "hostname", "loopback"):
        s = ok(system.step(s, v.IsoDone(name))).state
    assert s.iso.phase == "waiting" and isolation.next_step(s.iso) == "enter_user"
    assert without_state(refused(system.step(s, v.IsoResume()))) == (
        "cannot Resume (iso): the user namespace is entered only after the root filesystem is sealed"
    )
    assert refused(system.step(s, v.IsoResume())).endswith(
        "(the container is creating; isolation waiting, filesystem idle, security idle, cgroup ready)"
    )
    assert system.advance(s) == v.NetBegin()  # the network first (none here: nothing to do)
    s = ok(system.step(s, v.NetBegin())).state
    assert s.net.phase == "ready" and system.advance(s) == v.FsBegin()


def test_system_prepared_needs_the_container_in_its_cgroup():
    s = follow(ok(system.step(sys_initial(), v.Create())).state, stop_before=v.Prepared)
    assert (s.sec.phase, s.res.phase) == ("locked", "ready")
    # Not reachable (a cgroup stays ready until it is released), but the guard stands on its own.
    outside = dataclasses.replace(s, res=dataclasses.replace(s.res, phase="waiting"))
    assert without_state(refused(system.step(outside, v.Prepared("enforced")))) == (
        "cannot Prepared (lc): the container is prepared only inside its cgroup (or knowingly without one)"
    )
    assert ok(system.step(s, v.Prepared("enforced"))).state.lc.status == "created"


@pytest.mark.parametrize("rootless", [False, True])
@pytest.mark.parametrize("allow_degraded", [False, True])
@pytest.mark.parametrize("required", [False, True])
def test_system_setup_reaches_created(rootless, allow_degraded, required):
    intents: list[v.Intent] = []
    s = follow(ok(system.step(sys_initial(rootless, allow_degraded=allow_degraded, required=required),
                              v.Create())).state, intents=intents)
    assert s.lc.status == "created" and s.lc.security == "enforced"
    assert (s.iso.phase, s.fs.phase, s.sec.phase, s.res.phase) == ("ready", "sealed", "locked", "ready")
    assert system.advance(s) is None
    names = [i.name for i in intents]
    # The cgroup is limited before the setup process exists, and it is in the cgroup before it
    # creates any namespace; the cgroup intents are the planned ones.
    assert names[:5] == ["CreateCgroup", "SetCgroupLimits", "SpawnChild", "AttachCgroup", "Unshare"]
    assert (intents[0], intents[1], intents[3]) == (CREATE, LIMITS, ATTACH)
    assert "RemoveCgroup" not in names and "Cleanup" not in names


def test_system_start_execs_the_planned_workload():
    s = follow(ok(system.step(sys_initial(), v.Create())).state)
    r = ok(system.step(s, v.Start()))
    assert (r.state.lc.status, r.intents) == ("running", (WORKLOAD,))


@pytest.mark.parametrize("failing", ["LoadSeccomp", "ApplyLandlock"])
def test_system_prepared_level_must_match_the_controls(failing):
    start = ok(system.step(sys_initial(allow_degraded=True), v.Create())).state
    step = "seccomp" if failing == "LoadSeccomp" else "landlock"
    fail = {failing: v.SecFailed(step, 22, "Invalid argument")}
    s = follow(start, fail, stop_before=v.Prepared)
    assert (s.lc.status, s.sec.phase, s.sec.level) == ("creating", "locked", "degraded")
    assert system.advance(s) == v.Prepared("degraded")
    assert without_state(refused(system.step(s, v.Prepared("enforced")))) == (
        "cannot Prepared (lc): the security level is 'degraded', not 'enforced'"
    )
    assert follow(start, fail).lc.security == "degraded"


def test_system_attach_only_while_running():
    s = follow(ok(system.step(sys_initial(), v.Create())).state)
    assert refused(system.step(s, v.Attach())) == (
        "cannot Attach the container: it is created (Attach is allowed only from running)"
    )
    s = ok(system.step(s, v.Start())).state
    r = ok(system.step(s, v.Attach()))
    assert r.state == s and r.intents == ()


def test_system_to_tla_is_the_union_of_the_machines():
    s = sys_initial(required=True)
    values = system.to_tla(s)
    for prefix, machine in system.MACHINES.items():
        for k, val in machine.to_tla(getattr(s, prefix)).items():
            # the spec composes the network at its NetExtra, recorded only when there are some
            assert values[k] == val if k != "net_extra" else "net_extra" not in values
    assert len(values) == 32 and values["res_required"] is True
    more = dataclasses.replace(s, net=dataclasses.replace(s.net, bridged=True, extra=2))
    assert system.to_tla(more)["net_extra"] == 2 and len(system.to_tla(more)) == 33
    assert system.from_tla(system.to_tla(more), more).net.extra == 2
    assert (values["sys_mode"], values["sec_trace"], values["res_tries"]) == ("agent", False, 0)
    assert (values["sec_strict"], values["fs_audit"], values["fs_audited"]) == (False, False, False)
    assert system.to_tla(system.from_tla(values)) == values
    assert system.is_initial(system.from_tla(values))
    production = system.to_tla(sys_initial(required=True, strict=True, audit=AUDIT))
    assert production == {**values, "sec_strict": True, "fs_audit": True}
    assert system.to_tla(system.from_tla(production)) == production
    assert system.is_initial(system.from_tla(production))


def test_system_from_tla_takes_every_machines_parameters_from_the_base():
    """Trace replay of a recorded run rebuilds each state with the planned intents (cgroup
    writes, mounts, workload), so what it issues next is compared with the record."""
    base = sys_initial(required=True, audit=AUDIT)
    s = follow(ok(system.step(base, v.Create())).state, stop_before=v.ResAttach)
    rebuilt = system.from_tla(system.to_tla(s), base)
    assert rebuilt == s
    assert ok(system.step(rebuilt, v.ResAttach())).intents == (ATTACH,)
    plain = system.from_tla(system.to_tla(s))
    assert system.to_tla(plain) == system.to_tla(s) and plain.res.attach == v.AttachCgroup()


def until_the_audit(s: system.SystemState) -> system.SystemState:
    """Follow setup, answering every intent as done, until the mount audit is under way."""
    pending: list[v.Event] = []
    while s.fs.phase != "auditing":
        e = pending.pop(0) if pending else system.advance(s)
        assert e is not None, f"setup stopped before the audit: {system.to_tla(s)}"
        r = ok(system.step(s, e))
        s = r.state
        pending.extend(d for d in map(v.done, r.intents) if d is not None)
    return s


def test_system_production_audits_the_root_before_anything_runs_in_it():
    for rootless in (False, True):
        intents: list[v.Intent] = []
        s = follow(ok(system.step(sys_initial(rootless, audit=AUDIT, strict=True, required=True),
                                  v.Create())).state, intents=intents)
        assert (s.lc.status, s.lc.security, s.fs.phase, s.fs.audited) == ("created", "enforced", "sealed", True)
        names = [i.name for i in intents]
        audit = names.index("AuditMounts")
        assert intents[audit] == v.AuditMounts(AUDIT)
        assert names[audit - 1] == "DetachOldRoot"
        assert names[audit + 1] == ("DropCapabilities" if rootless else "EnterUserNamespace")
        assert names.count("AuditMounts") == 1


def test_system_exact_refusals_while_the_root_is_audited():
    for rootless in (False, True):
        s = until_the_audit(ok(system.step(sys_initial(rootless, audit=AUDIT), v.Create())).state)
        assert system.advance(s) is None  # the audit is under way: its outcome comes first
        if rootless:
            assert s.iso.phase == "ready"
            assert refused(system.step(s, v.SecBegin())) == (
                "cannot Begin (sec): security controls are applied only once isolation is ready and "
                "the root is sealed (the container is creating; isolation ready, filesystem auditing, "
                "security idle, cgroup ready)"
            )
        else:
            assert (s.iso.phase, isolation.next_step(s.iso)) == ("waiting", "enter_user")
            assert refused(system.step(s, v.IsoResume())) == (
                "cannot Resume (iso): the user namespace is entered only after the root filesystem is "
                "sealed (the container is creating; isolation waiting, filesystem auditing, security "
                "idle, cgroup ready)"
            )
        assert refused(system.step(s, v.FsDone("detach"))) == (
            "cannot Done filesystem step 'detach': it is auditing (the step under way is 'audit')"
        )
        s = ok(system.step(s, v.FsDone("audit"))).state
        assert system.advance(s) == (v.SecBegin() if rootless else v.IsoResume())


@pytest.mark.parametrize("phase", ["creating", "limiting", "attaching"])
def test_system_abandons_a_cgroup_step_only_when_the_supervisor_is_lost(phase):
    s = ok(system.step(sys_initial(), v.Create())).state
    s, _ = run(system, s, *{
        "creating": [v.ResBegin()],
        "limiting": [v.ResBegin(), v.ResDone("create")],
        "attaching": [v.ResBegin(), v.ResDone("create"), v.ResDone("limits"), v.IsoBegin(),
                      v.IsoDone("spawn"), v.ResAttach()],
    }[phase])
    assert s.res.phase == phase
    assert without_state(refused(system.step(s, v.ResAbandon()))).startswith("cannot Abandon (res): ")

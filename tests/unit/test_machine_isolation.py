"""The isolation machine (formal/Isolation.tla): both plans in order, the gates that wait for
Resume, failures, refusals, and the parameters its intents carry."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import isolation
from tests.unit.machine_support import ok, refused


def iso_drive(state: isolation.IsolationState):
    """Run a plan to its end by reporting each asked-for step done; Resume when it waits."""
    intents: list[v.Intent] = []
    waits: list[int] = []
    r = ok(isolation.step(state, v.IsoBegin()))
    state = r.state
    intents.extend(r.intents)
    while state.phase != "ready":
        if state.phase == "waiting":
            waits.append(state.done)
            r = ok(isolation.step(state, v.IsoResume()))
        else:
            r = ok(isolation.step(state, v.IsoDone(state.plan[state.done])))
        state = r.state
        intents.extend(r.intents)
    return state, intents, waits


def test_isolation_rootless_plan_pauses_only_before_unshare():
    s = isolation.initial(rootless=True, hostname="box", uid_map=((0, 1000, 1),), gid_map=((0, 1000, 1),))
    end, intents, waits = iso_drive(s)
    assert waits == [isolation.ROOTLESS_PLAN.index("unshare")] == [1]
    assert end.done == len(isolation.ROOTLESS_PLAN)
    assert intents == [
        v.SpawnChild(),
        v.Unshare(("user", "pid", "mount", "net", "uts", "ipc", "cgroup")),
        v.WriteIdMaps(((0, 1000, 1),), ((0, 1000, 1),)),
        v.BecomeRoot(),
        v.ForkInit(),
        v.SetHostname("box"),
        v.LoopbackUp(),
    ]


@pytest.mark.parametrize("rootless", [False, True])
def test_isolation_spawn_carries_the_trace_log(rootless):
    """In seccomp trace mode the setup process is spawned with the tracer that writes the log;
    otherwise with none."""
    s = isolation.initial(rootless=rootless, trace_log="/tmp/trace.ndjson")
    assert s.trace_log == "/tmp/trace.ndjson"
    _, intents, _ = iso_drive(s)
    assert intents[0] == v.SpawnChild("/tmp/trace.ndjson") == v.SpawnChild(trace_log="/tmp/trace.ndjson")
    assert intents[0] != v.SpawnChild()
    assert [i for i in intents if isinstance(i, v.SpawnChild)] == [intents[0]]  # spawned once
    _, intents, _ = iso_drive(isolation.initial(rootless=rootless))
    assert intents[0] == v.SpawnChild("") and intents[0].trace_log == ""


@pytest.mark.parametrize("rootless", [False, True])
def test_isolation_pauses_before_unshare_until_resume(rootless):
    r = ok(isolation.step(isolation.initial(rootless=rootless), v.IsoBegin()))
    assert (r.state.phase, r.state.done, r.intents) == ("running", 0, (v.SpawnChild(),))
    r = ok(isolation.step(r.state, v.IsoDone("spawn")))
    assert (r.state.phase, r.state.done, r.intents) == ("waiting", 1, ())
    assert isolation.next_step(r.state) == "unshare" and isolation.is_gate(r.state, "unshare")
    waiting = r.state
    assert refused(isolation.step(waiting, v.IsoDone("unshare"))) == (
        "cannot Done isolation step 'unshare': it is waiting (steps finish only while running)"
    )
    assert refused(isolation.step(waiting, v.IsoFailed("unshare", 1, "EPERM"))) == (
        "cannot Fail isolation step 'unshare': it is waiting (steps finish only while running)"
    )
    r = ok(isolation.step(waiting, v.IsoResume()))
    assert r.state.phase == "running" and r.state.done == 1
    assert r.intents == (v.Unshare((("user",) if rootless else ()) + isolation.initial().namespaces),)
    assert all(f(waiting) for f in isolation.INVARIANTS)


def test_isolation_gates_and_next_step():
    privileged, rootless = isolation.initial(rootless=False), isolation.initial(rootless=True)
    assert [n for n in isolation.PRIVILEGED_PLAN if isolation.is_gate(privileged, n)] == ["unshare", "enter_user"]
    assert [n for n in isolation.ROOTLESS_PLAN if isolation.is_gate(rootless, n)] == ["unshare"]
    assert isolation.next_step(privileged) == "spawn"
    end, _, _ = iso_drive(rootless)
    assert isolation.next_step(end) is None


def test_isolation_privileged_plan_pauses_before_enter_user_until_resume():
    s = ok(isolation.step(isolation.initial(rootless=False), v.IsoBegin())).state
    s = ok(isolation.step(s, v.IsoDone("spawn"))).state
    s = ok(isolation.step(s, v.IsoResume())).state
    for name in ("unshare", "fork_init", "hostname"):
        s = ok(isolation.step(s, v.IsoDone(name))).state
    r = ok(isolation.step(s, v.IsoDone("loopback")))
    assert (r.state.phase, r.state.done, r.intents) == ("waiting", 5, ())
    waiting = r.state
    # Nothing finishes while it waits, and enter_user is not asked for.
    assert refused(isolation.step(waiting, v.IsoDone("enter_user"))) == (
        "cannot Done isolation step 'enter_user': it is waiting (steps finish only while running)"
    )
    assert refused(isolation.step(waiting, v.IsoBegin())) == (
        "cannot Begin isolation: it is waiting (Begin is allowed only from idle)"
    )
    r = ok(isolation.step(waiting, v.IsoResume()))
    assert (r.state.phase, r.intents) == ("running", (v.EnterUserNamespace(),))
    r = ok(isolation.step(r.state, v.IsoDone("enter_user")))
    # Host root's maps allow setgroups (a -u user's groups); an unprivileged writer must deny it.
    assert r.intents == (v.WriteIdMaps(((0, 100000, 65536),), ((0, 100000, 65536),), "allow"),)
    r = ok(isolation.step(r.state, v.IsoDone("map_ids")))
    assert r.intents == (v.BecomeRoot(),)
    r = ok(isolation.step(r.state, v.IsoDone("become_root")))
    assert (r.state.phase, r.intents) == ("ready", ())


def test_isolation_privileged_intents_in_order():
    end, intents, waits = iso_drive(isolation.initial(rootless=False))
    assert waits == [isolation.PRIVILEGED_PLAN.index("unshare"), isolation.PRIVILEGED_PLAN.index("enter_user")]
    assert [i.name for i in intents] == [
        "SpawnChild", "Unshare", "ForkInit", "SetHostname", "LoopbackUp", "EnterUserNamespace",
        "WriteIdMaps", "BecomeRoot",
    ]
    unshare = intents[1]
    assert "user" not in unshare.namespaces  # the user namespace comes last, on its own
    assert end.phase == "ready" and all(f(end) for f in isolation.INVARIANTS)


def test_isolation_every_step_is_reported_by_its_own_intent():
    """What each intent reports (its `reports`) is the step the machine asked it for."""
    for rootless in (False, True):
        state = ok(isolation.step(isolation.initial(rootless=rootless), v.IsoBegin())).state
        _, intents, _ = iso_drive(isolation.initial(rootless=rootless))
        assert [i.reports for i in intents] == [("iso", n) for n in state.plan]
        assert {i.where for i in intents} == {"host", "child"}
        assert [i.name for i in intents if i.where == "host"] == ["SpawnChild", "WriteIdMaps"]


def test_isolation_initial_never_plans_user_among_the_first_namespaces():
    s = isolation.initial(rootless=False, namespaces=("user", "pid", "mount"))
    assert s.namespaces == ("pid", "mount")
    _, intents, _ = iso_drive(isolation.initial(rootless=True, namespaces=("user", "pid")))
    assert intents[1] == v.Unshare(("user", "pid"))


def test_isolation_resume_only_while_waiting():
    s = ok(isolation.step(isolation.initial(rootless=True), v.IsoBegin())).state
    assert refused(isolation.step(s, v.IsoResume())) == (
        "cannot Resume isolation: it is running (Resume is allowed only from waiting)"
    )
    assert "it is idle" in refused(isolation.step(isolation.initial(), v.IsoResume()))


def test_isolation_steps_must_come_in_plan_order():
    s = ok(isolation.step(isolation.initial(rootless=False), v.IsoBegin())).state
    assert refused(isolation.step(s, v.IsoDone("hostname"))) == (
        "cannot Done isolation step 'hostname': the step under way is 'spawn'"
    )
    assert refused(isolation.step(s, v.IsoFailed("unshare", 1, "EPERM"))) == (
        "cannot Fail isolation step 'unshare': the step under way is 'spawn'"
    )
    assert refused(isolation.step(isolation.initial(), v.IsoDone("spawn"))) == (
        "cannot Done isolation step 'spawn': it is idle (steps finish only while running)"
    )


@pytest.mark.parametrize("rootless", [False, True])
def test_isolation_failure_at_any_step_is_final(rootless):
    plan = isolation.ROOTLESS_PLAN if rootless else isolation.PRIVILEGED_PLAN
    for i, name in enumerate(plan):
        s = ok(isolation.step(isolation.initial(rootless=rootless), v.IsoBegin())).state
        for done in plan[:i]:
            if s.phase == "waiting":
                s = ok(isolation.step(s, v.IsoResume())).state
            s = ok(isolation.step(s, v.IsoDone(done))).state
        if s.phase == "waiting":
            s = ok(isolation.step(s, v.IsoResume())).state
        r = ok(isolation.step(s, v.IsoFailed(name, 1, "Operation not permitted")))
        assert (r.state.phase, r.state.done, r.intents) == ("failed", i, ())
        for e in isolation.candidate_events(r.state):
            assert "it is failed" in refused(isolation.step(r.state, e))


def test_isolation_ready_refuses_everything():
    end, _, _ = iso_drive(isolation.initial(rootless=True))
    for e in isolation.candidate_events(end):
        assert "it is ready" in refused(isolation.step(end, e))
    assert refused(isolation.step(end, v.Create())) == "isolation has no action Create"


def test_isolation_from_tla_takes_the_parameters_from_the_base():
    """Replay rebuilds a state from the spec's variables; the namespaces, host name, id maps and
    trace log come from the planned state (without one: the defaults)."""
    base = isolation.initial(rootless=False, namespaces=("pid", "mount"), hostname="web",
                             uid_map=((0, 200000, 65536),), gid_map=((0, 300000, 65536),),
                             trace_log="/tmp/t.ndjson")
    s = ok(isolation.step(base, v.IsoBegin())).state
    values = isolation.to_tla(s)
    assert values == {"iso_rootless": False, "iso_phase": "running", "iso_done": 0}
    rebuilt = isolation.from_tla(values, base)
    assert rebuilt == s
    end, intents, _ = iso_drive(base)
    assert intents[0] == v.SpawnChild("/tmp/t.ndjson") and v.SetHostname("web") in intents
    assert v.WriteIdMaps(((0, 200000, 65536),), ((0, 300000, 65536),), "allow") in intents
    plain = isolation.from_tla(values)
    assert (plain.hostname, plain.trace_log, plain.uid_map) == ("nucleus", "", ((0, 100000, 65536),))
    assert isolation.to_tla(isolation.from_tla(isolation.to_tla(end), base)) == isolation.to_tla(end)

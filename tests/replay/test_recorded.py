"""Traces of real runs (traces/recorded/, made by `make record`): they keep the inputs of the
run's plan and the intents of every step, so replay plans each run again and compares what it
would write with what the run wrote. A wrong value planted in the plan is caught, with a message
that names the step, the intent, the field and both values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nucleus import vocab as v
from nucleus.plan import cgroups, mounts
from nucleus.trace import itf
from nucleus.trace.replay import replay

RECORDED = Path(__file__).resolve().parents[2] / "traces" / "recorded"


def load(name: str) -> itf.Trace:
    path = RECORDED / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: re-record with `make record` (as root)")
    return itf.load(str(path))


def intents_of(trace: itf.Trace, name: str) -> list[dict]:
    return [i for meta in trace.state_meta for i in meta.get("intents", []) if i["t"] == name]


def test_the_recorded_runs_replay():
    for name in ("run-limits.itf.json", "run-seccomp-failure.itf.json", "attach.itf.json"):
        trace = load(name)
        assert "plan" in trace.meta, f"{name} carries no plan inputs"
        assert replay(trace) is None, name


def test_a_run_in_seccomp_trace_mode_is_traced_never_enforced():
    """Trace mode's filter refuses nothing: the run is prepared at the level "traced", which the
    record and `inspect` show, and the run is a behaviour of System with sec_trace."""
    trace = load("run-seccomp-trace.itf.json")
    assert replay(trace) is None
    prepared = [s["event"] for s in trace.states if s["event"]["name"] == "Prepared"]
    assert prepared == [{"m": "lc", "name": "Prepared", "arg": "traced"}]
    last = trace.states[-1]
    assert (last["sec_trace"], last["lc_security"], last["sys_mode"], last["lc_status"]) == (
        True, "traced", "agent", "removed")
    (load_seccomp,) = intents_of(trace, "LoadSeccomp")
    assert load_seccomp["f"]["mode"] == "trace"


def test_a_run_with_limits_shows_the_cgroup_files_and_values():
    trace = load("run-limits.itf.json")
    (limits,) = intents_of(trace, "SetCgroupLimits")
    written = {path.rsplit("/", 1)[1]: value for path, value, _ in limits["f"]["writes"]}
    backend = trace.meta["plan"]["facts"]["cgroups"]["backend"]
    if backend == "v1":
        assert written["memory.limit_in_bytes"] == str(64 << 20)
        assert written["memory.memsw.limit_in_bytes"] == str(64 << 20)  # --swap 0
        assert written["pids.max"] == "20"
        assert (written["cpu.cfs_quota_us"], written["cpu.cfs_period_us"]) == ("50000", "100000")
    else:
        assert written["memory.max"] == str(64 << 20) and written["pids.max"] == "20"
        assert written["cpu.max"] == "50000 100000"
    (create,) = intents_of(trace, "CreateCgroup")
    cid = trace.meta["plan"]["cid"]
    assert create["f"]["dirs"] and all(d.endswith(f"/{cid}") for d in create["f"]["dirs"])
    assert intents_of(trace, "RemoveCgroup")[0]["f"]["dirs"]


def test_a_wrong_cgroup_value_planted_in_the_plan_is_caught(monkeypatch):
    trace = load("run-limits.itf.json")
    honest = cgroups.plan

    def planted(*args, **kwargs):
        plan = honest(*args, **kwargs)
        writes = tuple((path, str(int(value) * 2) if path.endswith(("memory.limit_in_bytes", "memory.max"))
                        else value, optional) for path, value, optional in plan.limits.writes)
        return plan.__class__(plan.backend, plan.dirs, plan.create, v.SetCgroupLimits(writes),
                              plan.attach, plan.remove)

    monkeypatch.setattr(cgroups, "plan", planted)
    divergence = replay(trace)
    assert divergence is not None
    text = str(divergence)
    assert "res.Done(create)" in text and "(SetCgroupLimits) differs in writes" in text, text
    assert str(64 << 21) in text and str(64 << 20) in text, text


def test_a_mount_flag_dropped_from_the_plan_is_caught(monkeypatch):
    trace = load("run-limits.itf.json")
    monkeypatch.setattr(mounts, "RO", ("rdonly", "nodev"))  # nosuid forgotten on the system binds
    divergence = replay(trace)
    assert divergence is not None
    text = str(divergence)
    assert "fs.Begin" in text and "(BindMount) differs in flags" in text, text
    assert "the plan now gives 'nodev' where the trace recorded 'nosuid'" in text, text


def test_a_capability_planted_in_a_join_is_caught(monkeypatch):
    from nucleus.plan import join as join_plan

    trace = load("attach.itf.json")
    honest = join_plan.plan

    def planted(*args, **kwargs):
        state = honest(*args, **kwargs)
        steps = tuple(v.JoinDropCapabilities(("CHOWN", "SYS_ADMIN")) if isinstance(i, v.DropCapabilities)
                      else i for i in state.steps)
        return state.__class__(**{**state.__dict__, "steps": steps})

    monkeypatch.setattr(join_plan, "plan", planted)
    divergence = replay(trace)
    assert divergence is not None and "(JoinDropCapabilities) differs in keep" in str(divergence), divergence


def test_a_recorded_intent_changed_by_hand_is_caught(tmp_path):
    trace = load("run-limits.itf.json")
    data = json.loads((RECORDED / "run-limits.itf.json").read_text())
    for state in data["states"]:
        for intent in state["#meta"].get("intents", []):
            if intent["t"] == "SetCgroupLimits":
                intent["f"]["writes"][0][1] = "1"
    tampered = tmp_path / "tampered.itf.json"
    tampered.write_text(json.dumps(data))
    divergence = replay(itf.load(str(tampered)))
    assert divergence is not None and "(SetCgroupLimits) differs in writes" in str(divergence)
    assert replay(trace) is None

"""Replay: every trace under traces/ goes through the production driver, step by step.

The traces are produced from formal/*.tla by the model checker (`make traces`); an empty folder is
a failure, not a pass. The other tests here check the replay itself: a run recorded by the driver
replays cleanly, and a tampered trace is caught with a message that says where.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nucleus import vocab as v
from nucleus.driver import Driver, FakeExecutor
from nucleus.machines import filesystem, isolation, lifecycle, resources, security, system
from nucleus.machines.base import Refused
from nucleus.trace import itf
from nucleus.trace.record import Recorder
from nucleus.trace.replay import MODULES, Divergence, replay
from tools.tla.behaviours import load_behaviour
from tools.tla.coverage import coverage_of
from tools.tla.specs import all_specs

TRACES = Path(__file__).resolve().parents[2] / "traces"
RECORDED = "recorded"  # traces of real runs (tools/record.py), beside the model checker's
# Hidden folders (traces/.tmp/) are the generator's scratch space, never part of the repository.
TRACE_FILES = sorted(
    p
    for p in TRACES.rglob("*.itf.json")
    if not any(part.startswith(".") for part in p.relative_to(TRACES).parts)
)


def test_traces_folder_is_not_empty():
    assert TRACE_FILES, (
        f"no *.itf.json trace under {TRACES}: generate them from the specs with `make traces`"
    )


def test_every_spec_has_traces_of_its_own():
    formal = TRACES.parent / "formal"
    specs = {
        p.stem for p in formal.glob("*.cfg") if not p.stem.endswith("Export") and (formal / f"{p.stem}.tla").is_file()
    }
    assert {"Lifecycle", "Isolation", "Filesystem", "Security", "Resources", "System", "Join"} <= specs
    by_folder: dict[str, int] = {}
    for path in TRACE_FILES:
        folder = path.relative_to(TRACES).parts[0]
        if folder == RECORDED:
            continue
        assert json.loads(path.read_text())["#meta"]["module"] == folder, path
        by_folder[folder] = by_folder.get(folder, 0) + 1
    assert set(by_folder) == specs, f"traces for {sorted(by_folder)}, specs {sorted(specs)}"
    assert set(MODULES) == specs  # the replay knows every spec


# Steps the traces must take (machine, action, argument, phase after, parameters that are TRUE;
# as `python -m tools.tla coverage` counts them): strict modes fail closed even with degraded
# security allowed, and the mount audit is taken and failed after a pivot and after a chroot
# (in System, where the service mode fixes the parameters, those its modes allow).
STRICT_STEPS = {
    ("sec", "Fail", "seccomp", "failed", "allowDegraded,strict"),
    ("sec", "Fail", "landlock", "failed", "allowDegraded,strict"),
    ("sec", "Fail", "seccomp", "failed", "strict"),
    ("sec", "Fail", "landlock", "failed", "strict"),
    ("sec", "Fail", "seccomp", "landlock", "allowDegraded"),
    ("sec", "Fail", "landlock", "locked", "allowDegraded"),
    ("sec", "Done", "landlock", "locked", "allowDegraded,strict"),
}
AUDIT_STEPS = {
    ("fs", "Done", "detach", "auditing", "audit"),
    ("fs", "Done", "detach", "auditing", "allowChroot,audit"),
    ("fs", "Done", "chroot", "auditing", "allowChroot,audit"),
    ("fs", "Done", "audit", "sealed", "audit"),
    ("fs", "Done", "audit", "sealed", "allowChroot,audit"),
    ("fs", "Fail", "audit", "failed", "audit"),
    ("fs", "Fail", "audit", "failed", "allowChroot,audit"),
    ("fs", "Done", "detach", "sealed", ""),
    ("fs", "Done", "chroot", "sealed", "allowChroot"),
}


def test_the_traces_take_every_action_and_the_strict_and_audit_steps():
    """`make traces` checks that the traces take every step TLC finds reachable; here, without
    TLC: every action of each spec's Next, and the steps of the strict modes and the audit."""
    behaviours = [load_behaviour(p) for p in TRACE_FILES]
    taken: dict[str, set] = {}
    for spec in all_specs():
        mine = [b for b in behaviours if b.spec == spec]
        cov = coverage_of(spec, mine, None)
        assert not cov.untaken_actions, f"{spec}: actions never taken: {cov.untaken_actions}"
        taken[spec] = set(cov.taken)
    assert STRICT_STEPS <= taken["Security"], sorted(STRICT_STEPS - taken["Security"])
    assert AUDIT_STEPS <= taken["Filesystem"], sorted(AUDIT_STEPS - taken["Filesystem"])
    # System's modes never allow degraded security or the chroot fallback with strict mode or
    # the audit (ModeParameters); trace mode runs at its own level.
    in_system = {s for s in STRICT_STEPS | AUDIT_STEPS if s[4] not in ("allowDegraded,strict", "allowChroot,audit")}
    assert in_system <= taken["System"], sorted(in_system - taken["System"])
    assert ("lc", "Prepared", "traced", "created", "") in taken["System"]
    # A strict mode's seccomp or Landlock failure fails the setup, and the container is removed.
    strict_failures = 0
    for b in behaviours:
        if b.spec != "System":
            continue
        states = itf.load(str(b.path)).states
        first, last = states[0], states[-1]
        if not first["sec_strict"] or last["sec_phase"] != "failed":
            continue
        events = [(s["event"]["m"], s["event"]["name"], s["event"]["arg"]) for s in states]
        if ("sec", "Fail", "caps") in events:
            continue
        strict_failures += 1
        assert last["sec_degraded"] == frozenset() and ("lc", "SetupFailed", "") in events
        assert last["lc_status"] == "removed", b.path
    assert strict_failures > 0


@pytest.mark.parametrize("path", TRACE_FILES, ids=lambda p: str(p.relative_to(TRACES)))
def test_trace_replays(path):
    trace = itf.load(str(path))
    assert trace.states, f"{path}: the trace has no states"
    divergence = replay(trace)
    assert divergence is None, str(divergence)


# ---------------------------------------------------------------------------------------------
# The replay itself, on runs recorded here.

PLAN = (v.SetPropagation(), v.MountFs("tmpfs", "/new"), v.MakeDirs("/new", ("dev", "proc")))
AUDIT = (("/", ("nosuid", "nodev"), True), ("/proc", ("nosuid", "nodev", "noexec"), True))


def record_system_run(
    path: Path, *, rootless: bool, fail: dict | None = None, allow_degraded: bool = False,
    required: bool = False, strict: bool = False, audit: tuple = (),
) -> itf.Trace:
    """A full run: setup, start, a signal, exit, cleanup, remove (or a failed setup, cleanup,
    remove), recorded. A cgroup whose removal failed is released again first (`rm --force`)."""
    rec = Recorder(system, "System", str(path), "recorded by the driver")
    state = system.initial(
        isolation.initial(rootless=rootless),
        filesystem.initial(PLAN, "/new", allow_chroot=True, audit=audit),
        security.initial(allow_degraded=allow_degraded, strict=strict),
        resources.initial(required=required),
    )
    d = Driver(system, state, FakeExecutor(fail=fail), rec)
    d.feed(v.Create())
    d.settle()
    if d.state.lc.status == "created":
        for e in (v.Start(), v.Attach(), v.Kill("TERM"), v.Exit(143)):
            d.feed(e)
        d.settle()
    if d.state.res.phase == "leaked":
        d.feed(v.ResRelease())
        d.settle()
    d.feed(v.Remove())
    assert d.state.lc.status == "removed"
    rec.write()
    return itf.load(str(path))


@pytest.mark.parametrize("rootless", [False, True])
@pytest.mark.parametrize(
    "fail,allow_degraded,required,strict,audit",
    [
        (None, False, False, False, ()),
        (None, False, True, False, ()),
        ({"LoadSeccomp": (22, "Invalid argument")}, True, True, False, ()),
        ({"PivotRoot": (22, "Invalid argument")}, False, True, False, ()),
        ({"MountFs": (19, "No such device")}, False, True, False, ()),
        ({"DropCapabilities": (1, "Operation not permitted")}, True, False, False, ()),
        ({"CreateCgroup": (95, "Operation not supported")}, False, False, False, ()),
        ({"SetCgroupLimits": (22, "Invalid argument")}, False, True, False, ()),
        ({"AttachCgroup": (13, "Permission denied")}, False, False, False, ()),
        ({"AttachCgroup": (13, "Permission denied")}, False, True, False, ()),
        ({"RemoveCgroup#1": (16, "Device or resource busy")}, False, True, False, ()),
        ({"LoadSeccomp": (22, "Invalid argument")}, True, True, True, ()),
        ({"ApplyLandlock": (95, "Operation not supported")}, True, True, True, AUDIT),
        (None, False, True, True, AUDIT),
        ({"AuditMounts": (1, "mount audit: /proc (mount /proc): lacks noexec")}, False, True, True, AUDIT),
        ({"PivotRoot": (22, "Invalid argument")}, False, False, False, AUDIT),
        ({"PivotRoot": (22, "Invalid argument"), "AuditMounts": (1, "mount audit: /: lacks nodev")},
         False, False, False, AUDIT),
    ],
    ids=[
        "clean", "clean-cgroup-required", "degraded", "chroot", "mount-fails", "caps-fail",
        "no-cgroup", "limits-fail-required", "attach-fails-optional", "attach-fails-required",
        "removal-fails-once", "strict-seccomp-fails-closed", "production-landlock-fails-closed",
        "production", "production-audit-fails", "chroot-then-audit", "chroot-then-audit-fails",
    ],
)
def test_a_recorded_system_run_replays_cleanly(
    tmp_path, rootless, fail, allow_degraded, required, strict, audit
):
    trace = record_system_run(
        tmp_path / "run.itf.json", rootless=rootless, fail=fail, allow_degraded=allow_degraded,
        required=required, strict=strict, audit=audit,
    )
    assert len(trace.states) > 5
    assert replay(trace) is None
    steps = [(s["event"]["m"], s["event"]["name"]) for s in trace.states[1:]]
    assert steps[0] == ("lc", "Create") and steps[-2:] == [("lc", "CleanupDone"), ("lc", "Remove")]
    assert ("res", "Release") in steps and trace.states[-1]["res_phase"] == "released"
    last = trace.states[-1]
    assert (last["sec_strict"], last["fs_audit"]) == (strict, bool(audit))
    if strict:
        assert last["sec_degraded"] == frozenset() and last["lc_security"] != "degraded"
    if audit and last["fs_phase"] == "sealed":
        assert last["fs_audited"] is True and ("fs", "Done") in steps


@pytest.mark.parametrize(
    "module,initial,events,fail",
    [
        (
            "Lifecycle",
            lifecycle.initial(),
            [v.Create(), v.Prepared("enforced"), v.Start(), v.Exit(0), v.CleanupDone(), v.Remove()],
            None,
        ),
        (
            "Isolation",
            isolation.initial(rootless=True),
            [v.IsoBegin(), v.IsoResume()],
            {"ForkInit": (11, "EAGAIN")},
        ),
        (
            "Isolation",
            isolation.initial(rootless=False),
            [v.IsoBegin(), v.IsoResume(), v.IsoResume()],  # both gates: unshare, enter_user
            None,
        ),
        (
            "Filesystem",
            filesystem.initial(PLAN, "/new", allow_chroot=True),
            [v.FsBegin()],
            {"PivotRoot": (22, "EINVAL")},
        ),
        (
            "Security",
            security.initial(allow_degraded=True),
            [v.SecBegin()],
            {"LoadSeccomp": (22, "EINVAL")},
        ),
        (
            "Security",
            security.initial(allow_degraded=True, strict=True),
            [v.SecBegin()],
            {"ApplyLandlock": (95, "EOPNOTSUPP")},
        ),
        (
            "Filesystem",
            filesystem.initial(PLAN, "/new", allow_chroot=True, audit=AUDIT),
            [v.FsBegin()],
            {"PivotRoot": (22, "EINVAL")},
        ),
        (
            "Filesystem",
            filesystem.initial(PLAN, "/new", audit=AUDIT),
            [v.FsBegin()],
            {"AuditMounts": (1, "mount audit: /proc: lacks noexec")},
        ),
        (
            "Lifecycle",
            lifecycle.initial(),
            [v.Create(), v.Prepared("degraded"), v.Start(), v.Attach(), v.Lost(), v.CleanupDone()],
            None,
        ),
        (
            "Resources",
            resources.initial(required=False),
            [v.ResBegin(), v.ResRelease(), v.ResRelease()],
            {"SetCgroupLimits": (22, "EINVAL"), "RemoveCgroup#1": (16, "EBUSY")},
        ),
        (
            "Resources",
            resources.initial(required=True),
            [v.ResBegin(), v.ResAttach(), v.ResRelease()],
            None,
        ),
    ],
    ids=[
        "Lifecycle", "Isolation-rootless", "Isolation-privileged", "Filesystem", "Security",
        "Security-strict", "Filesystem-chroot-audit", "Filesystem-audit-fails",
        "Lifecycle-lost", "Resources-degraded-leaked", "Resources-required",
    ],
)
def test_recorded_single_machine_runs_replay(tmp_path, module, initial, events, fail):
    machine = MODULES[module]
    path = tmp_path / f"{module}.itf.json"
    rec = Recorder(machine, module, str(path))
    d = Driver(machine, initial, FakeExecutor(fail=fail), rec)
    for e in events:
        assert not isinstance(d.feed(e), Refused)
    rec.write()
    trace = itf.load(str(path))
    assert len(trace.states) == len(d.history) + 1 > len(events)
    if fail:  # every scripted failure happened
        failed = [e for e, _ in d.history if "Fail" in v.action_name(e)]
        assert len(failed) == len(fail), failed
    assert replay(trace) is None


def test_a_tampered_trace_names_file_step_action_and_variable(tmp_path):
    original = record_system_run(tmp_path / "run.itf.json", rootless=False)
    data = json.loads((tmp_path / "run.itf.json").read_text())
    states = data["states"]
    # Flip a boolean in the middle of the run; pick a step whose action keeps it unchanged.
    index = len(states) // 2
    while states[index]["event"]["m"] == "lc":
        index += 1
    before = states[index]["lc_cleaned"]
    states[index]["lc_cleaned"] = not before
    tampered = tmp_path / "tampered.itf.json"
    tampered.write_text(json.dumps(data))

    result = replay(itf.load(str(tampered)))
    assert isinstance(result, Divergence)
    ev = states[index]["event"]
    label = f"{ev['m']}.{ev['name']}" + (f"({ev['arg']})" if ev["arg"] else "")
    assert (result.path, result.index, result.action) == (str(tampered), index, label)
    text = str(result)
    assert text.startswith(f"{tampered}: step {index} ({label}): ")
    assert f"lc_cleaned: code has {before!r}, trace has {(not before)!r}" in text
    assert replay(original) is None


def test_a_trace_with_an_action_the_machine_refuses(tmp_path):
    record_system_run(tmp_path / "run.itf.json", rootless=True)
    data = json.loads((tmp_path / "run.itf.json").read_text())
    data["states"][2]["event"] = {"m": "lc", "name": "Start", "arg": ""}
    data["states"][2]["#meta"]["event"] = {"t": "Start", "f": {}}
    path = tmp_path / "refused.itf.json"
    path.write_text(json.dumps(data))
    result = replay(itf.load(str(path)))
    assert isinstance(result, Divergence)
    assert str(result) == (
        f"{path}: step 2 (lc.Start): the machine refused it: "
        "cannot Start the container: it is creating (Start is allowed only from created)"
    )


def test_a_recorded_event_that_disagrees_with_the_event_variable(tmp_path):
    record_system_run(tmp_path / "run.itf.json", rootless=True)
    data = json.loads((tmp_path / "run.itf.json").read_text())
    data["states"][2]["event"] = {"m": "lc", "name": "Start", "arg": ""}  # the record says ResBegin
    path = tmp_path / "disagrees.itf.json"
    path.write_text(json.dumps(data))
    assert str(replay(itf.load(str(path)))) == (
        f"{path}: step 2 (lc.Start): unknown action: the step's event variable names lc.Start(), "
        "its record ResBegin()"
    )


def test_a_trace_with_an_unknown_action(tmp_path):
    record_system_run(tmp_path / "run.itf.json", rootless=True)
    data = json.loads((tmp_path / "run.itf.json").read_text())
    data["states"][1]["event"] = {"m": "lc", "name": "Reboot", "arg": ""}
    path = tmp_path / "unknown.itf.json"
    path.write_text(json.dumps(data))
    result = replay(itf.load(str(path)))
    assert isinstance(result, Divergence)
    assert (result.index, result.action) == (1, "lc.Reboot")
    assert "unknown action" in result.message and "lc.Reboot" in result.message


def test_a_trace_with_a_wrong_initial_state(tmp_path):
    record_system_run(tmp_path / "run.itf.json", rootless=True)
    data = json.loads((tmp_path / "run.itf.json").read_text())
    data["states"][0]["lc_status"] = "running"
    path = tmp_path / "init.itf.json"
    path.write_text(json.dumps(data))
    result = replay(itf.load(str(path)))
    # A trace must start where the machine starts.
    assert isinstance(result, Divergence)
    assert (result.index, result.action) == (0, "Init")
    assert result.message.startswith("not an initial state: ")
    assert "lc_status='running'" in result.message


def test_apalache_style_integers_replay(tmp_path):
    """Apalache writes every integer as {"#bigint": "n"}; the replay must read them as numbers."""
    record_system_run(tmp_path / "run.itf.json", rootless=False)
    data = json.loads((tmp_path / "run.itf.json").read_text())
    for state in data["states"]:
        for k, val in list(state.items()):
            if isinstance(val, int) and not isinstance(val, bool):
                state[k] = {"#bigint": str(val)}
    path = tmp_path / "bigint.itf.json"
    path.write_text(json.dumps(data))
    assert replay(itf.load(str(path))) is None


@pytest.mark.parametrize(
    "dropped,missing",
    [
        (("res_required", "res_phase", "res_held", "res_limited"), "res_required"),
        (("fs_audit", "fs_audited"), "fs_audit"),
        (("sec_strict",), "sec_strict"),
    ],
    ids=["before-the-cgroup", "before-the-audit", "before-strict-modes"],
)
def test_a_trace_of_an_older_system_is_refused_at_init(tmp_path, dropped, missing):
    """A System trace from before a machine or a parameter was part of it cannot be replayed:
    it says which variable it lacks."""
    record_system_run(tmp_path / "run.itf.json", rootless=True)
    data = json.loads((tmp_path / "run.itf.json").read_text())
    for state in data["states"]:
        for name in dropped:
            del state[name]
    data["vars"] = [n for n in data["vars"] if n not in dropped]
    path = tmp_path / "old.itf.json"
    path.write_text(json.dumps(data))
    result = replay(itf.load(str(path)))
    assert isinstance(result, Divergence)
    assert (result.index, result.action) == (0, "Init")
    assert result.message == f"cannot build the initial state: {missing!r}"


@pytest.mark.parametrize(
    "module,initial,variable",
    [
        ("Security", security.initial(allow_degraded=True, strict=True), "sec_degraded"),
        ("Filesystem", filesystem.initial(PLAN, "/new", audit=AUDIT), "fs_audited"),
    ],
    ids=["Security-starts-degraded", "Filesystem-starts-audited"],
)
def test_a_trace_that_starts_past_the_init_is_refused(tmp_path, module, initial, variable):
    machine = MODULES[module]
    rec = Recorder(machine, module, str(tmp_path / "run.itf.json"))
    rec.record(None, initial)
    rec.write()
    assert replay(itf.load(str(tmp_path / "run.itf.json"))) is None
    data = json.loads((tmp_path / "run.itf.json").read_text())
    data["states"][0][variable] = {"#set": ["seccomp"]} if variable == "sec_degraded" else True
    path = tmp_path / "started.itf.json"
    path.write_text(json.dumps(data))
    result = replay(itf.load(str(path)))
    assert isinstance(result, Divergence) and (result.index, result.action) == (0, "Init")
    assert result.message.startswith("not an initial state: ") and variable in result.message


def test_an_empty_trace_is_a_divergence():
    result = replay(
        itf.Trace(meta={"module": "Lifecycle"}, vars=("lc_status",), states=(), path="e.itf.json")
    )
    assert isinstance(result, Divergence) and "no states" in str(result)

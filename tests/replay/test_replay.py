"""Replay: every trace under traces/ goes through the production driver, step by step.

The traces are produced from formal/*.tla by the model checker (`make traces`); an empty folder is
a failure, not a pass. The other tests here check the replay itself: a run recorded by the driver
replays cleanly, and a tampered trace is caught with a message that says where.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nucleus import itf
from nucleus import vocab as v
from nucleus.driver import Driver, FakeExecutor
from nucleus.machines import filesystem, isolation, lifecycle, resources, security, system
from nucleus.machines.base import Refused
from nucleus.replay import MODULES, Divergence, replay

TRACES = Path(__file__).resolve().parents[2] / "traces"
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
    assert {"Lifecycle", "Isolation", "Filesystem", "Security", "Resources", "System"} <= specs
    by_folder: dict[str, int] = {}
    for path in TRACE_FILES:
        folder = path.relative_to(TRACES).parts[0]
        assert json.loads(path.read_text())["#meta"]["module"] == folder, path
        by_folder[folder] = by_folder.get(folder, 0) + 1
    assert set(by_folder) == specs, f"traces for {sorted(by_folder)}, specs {sorted(specs)}"
    assert set(MODULES) == specs  # the replay knows every spec


@pytest.mark.parametrize("path", TRACE_FILES, ids=lambda p: str(p.relative_to(TRACES)))
def test_trace_replays(path):
    trace = itf.load(str(path))
    assert trace.states, f"{path}: the trace has no states"
    divergence = replay(trace)
    assert divergence is None, str(divergence)


# ---------------------------------------------------------------------------------------------
# The replay itself, on runs recorded here.

PLAN = (v.SetPropagation(), v.MountFs("tmpfs", "/new"), v.MakeDirs("/new", ("dev", "proc")))


def record_system_run(
    path: Path, *, rootless: bool, fail: dict | None = None, allow_degraded: bool = False,
    required: bool = False,
) -> itf.Trace:
    """A full run: setup, start, a signal, exit, cleanup, remove (or a failed setup, cleanup,
    remove), recorded. A cgroup whose removal failed is released again first (`rm --force`)."""
    rec = itf.Recorder(system, "System", str(path), "recorded by the driver")
    state = system.initial(
        isolation.initial(rootless=rootless),
        filesystem.initial(PLAN, "/new", allow_chroot=True),
        security.initial(allow_degraded=allow_degraded),
        resources.initial(required=required, name="c1"),
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
    "fail,allow_degraded,required",
    [
        (None, False, False),
        (None, False, True),
        ({"LoadSeccomp": (22, "Invalid argument")}, True, True),
        ({"PivotRoot": (22, "Invalid argument")}, False, True),
        ({"MountFs": (19, "No such device")}, False, True),
        ({"DropCapabilities": (1, "Operation not permitted")}, True, False),
        ({"CreateCgroup": (95, "Operation not supported")}, False, False),
        ({"SetCgroupLimits": (22, "Invalid argument")}, False, True),
        ({"AttachCgroup": (13, "Permission denied")}, False, False),
        ({"AttachCgroup": (13, "Permission denied")}, False, True),
        ({"RemoveCgroup#1": (16, "Device or resource busy")}, False, True),
    ],
    ids=[
        "clean", "clean-cgroup-required", "degraded", "chroot", "mount-fails", "caps-fail",
        "no-cgroup", "limits-fail-required", "attach-fails-optional", "attach-fails-required",
        "removal-fails-once",
    ],
)
def test_a_recorded_system_run_replays_cleanly(tmp_path, rootless, fail, allow_degraded, required):
    trace = record_system_run(
        tmp_path / "run.itf.json", rootless=rootless, fail=fail, allow_degraded=allow_degraded,
        required=required,
    )
    assert len(trace.states) > 5
    assert replay(trace) is None
    steps = [(s["event"]["m"], s["event"]["name"]) for s in trace.states[1:]]
    assert steps[0] == ("lc", "Create") and steps[-2:] == [("lc", "CleanupDone"), ("lc", "Remove")]
    assert ("res", "Release") in steps and trace.states[-1]["res_phase"] == "released"


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
            "Lifecycle",
            lifecycle.initial(),
            [v.Create(), v.Prepared("degraded"), v.Start(), v.Attach(), v.Lost(), v.CleanupDone()],
            None,
        ),
        (
            "Resources",
            resources.initial(required=False, name="c1"),
            [v.ResBegin(), v.ResRelease(), v.ResRelease()],
            {"SetCgroupLimits": (22, "EINVAL"), "RemoveCgroup#1": (16, "EBUSY")},
        ),
        (
            "Resources",
            resources.initial(required=True, name="c1"),
            [v.ResBegin(), v.ResAttach(), v.ResRelease()],
            None,
        ),
    ],
    ids=[
        "Lifecycle", "Isolation-rootless", "Isolation-privileged", "Filesystem", "Security",
        "Lifecycle-lost", "Resources-degraded-leaked", "Resources-required",
    ],
)
def test_recorded_single_machine_runs_replay(tmp_path, module, initial, events, fail):
    machine = MODULES[module]
    path = tmp_path / f"{module}.itf.json"
    rec = itf.Recorder(machine, module, str(path))
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
    path = tmp_path / "refused.itf.json"
    path.write_text(json.dumps(data))
    result = replay(itf.load(str(path)))
    assert isinstance(result, Divergence)
    assert str(result) == (
        f"{path}: step 2 (lc.Start): the machine refused it: "
        "cannot Start the container: it is creating (Start is allowed only from created)"
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


def test_a_trace_of_the_system_without_its_cgroup_is_refused_at_init(tmp_path):
    """A System trace from before the cgroup was part of it cannot be replayed: it says why."""
    record_system_run(tmp_path / "run.itf.json", rootless=True)
    data = json.loads((tmp_path / "run.itf.json").read_text())
    for state in data["states"]:
        for name in ("res_required", "res_phase", "res_held", "res_limited"):
            del state[name]
    data["vars"] = [n for n in data["vars"] if not n.startswith("res_")]
    path = tmp_path / "old.itf.json"
    path.write_text(json.dumps(data))
    result = replay(itf.load(str(path)))
    assert isinstance(result, Divergence)
    assert (result.index, result.action) == (0, "Init")
    assert result.message == "cannot build the initial state: 'res_required'"


def test_an_empty_trace_is_a_divergence():
    result = replay(
        itf.Trace(meta={"module": "Lifecycle"}, vars=("lc_status",), states=(), path="e.itf.json")
    )
    assert isinstance(result, Divergence) and "no states" in str(result)

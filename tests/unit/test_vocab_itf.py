"""The vocabulary (events, intents, their wire form, their TLA+ names) and the ITF reader/writer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nucleus import vocab as v
from nucleus.driver import Driver, FakeExecutor
from nucleus.machines import lifecycle
from nucleus.trace import itf

FORMAL = Path(__file__).resolve().parents[2] / "formal"
SINGLE_SPECS = ("Lifecycle", "Isolation", "Filesystem", "Security", "Resources")


def _spec_text(module: str) -> str:
    return (FORMAL / f"{module}.tla").read_text()


def _spec_strings(module: str, name: str) -> tuple[str, ...]:
    m = re.search(rf"^{name}\s*==\s*(\{{[^}}]*\}}|<<[^>]*>>)", _spec_text(module), re.MULTILINE)
    assert m, f"formal/{module}.tla defines no {name}"
    return tuple(re.findall(r'"([^"]*)"', m.group(1)))


def _spec_machine(module: str) -> str:
    """The machine tag a single-machine spec writes into `event` (Ev == ... m |-> "xx")."""
    m = re.search(r'Ev\(name, arg\) == event\' = \[m \|-> "(\w+)"', _spec_text(module))
    assert m, f"formal/{module}.tla has no Ev definition"
    return m.group(1)


def _spec_actions(module: str) -> set[str]:
    body = _spec_text(module).split("Next ==", 1)[1].split("Spec ==", 1)[0]
    return set(re.findall(r'Ev\("(\w+)"', body))


# The argument each action ranges over in the specs ("" for none).
def _arguments(machine: str, action: str) -> tuple[str, ...]:
    if (machine, action) == ("lc", "Prepared"):
        return ("enforced", "degraded")
    if (machine, action) == ("lc", "Kill"):
        return _spec_strings("Lifecycle", "ModelSignals")
    if action in ("Done", "Fail"):
        module, const = {
            "iso": ("Isolation", "StepNames"),
            "fs": ("Filesystem", "StepNames"),
            "sec": ("Security", "Controls"),
            "res": ("Resources", "StepNames"),
        }[machine]
        return _spec_strings(module, const)
    return ("",)


def spec_pairs() -> list[tuple[str, str, str]]:
    """Every (machine, action, argument) the specs' Next can record, single specs and System alike."""
    pairs = {
        (_spec_machine(module), action, arg)
        for module in SINGLE_SPECS
        for action in _spec_actions(module)
        for arg in _arguments(_spec_machine(module), action)
    }
    system = set(re.findall(r'Ev\("(\w+)", "(\w+)"', _spec_text("System")))
    assert system == {(m, a) for m, a, _ in pairs}, (
        "System records other actions than its components"
    )
    return sorted(pairs)


def _concrete(base: type) -> list[type]:
    """Every class defined in vocab that derives from `base` and has no subclass of its own."""
    out = []
    for obj in vars(v).values():
        if (
            isinstance(obj, type)
            and issubclass(obj, base)
            and obj is not base
            and not obj.__name__.startswith("_")
        ):
            if not obj.__subclasses__():
                out.append(obj)
    return out


# ---------------------------------------------------------------------------------------------
# Registry and wire form


def test_every_event_and_intent_class_is_registered():
    assert sorted(c.__name__ for c in _concrete(v.Event)) == sorted(v.EVENTS)
    assert sorted(c.__name__ for c in _concrete(v.Intent)) == sorted(v.INTENTS)
    assert not set(v.EVENTS) & set(v.INTENTS)


@pytest.mark.parametrize("name", sorted(v.EVENTS) + sorted(v.INTENTS))
def test_wire_round_trip_with_default_fields(name):
    cls = v.EVENTS.get(name) or v.INTENTS[name]
    obj = cls()
    wire = v.to_wire(obj)
    assert wire["t"] == name
    assert v.from_wire(wire) == obj
    assert v.from_wire(json.loads(json.dumps(wire))) == obj


SAMPLES = [
    v.Prepared("degraded"),
    v.SetupFailed("mount failed"),
    v.Exit(137),
    v.Kill("KILL"),
    v.IsoFailed("unshare", 1, "unshare(CLONE_NEWPID): Operation not permitted"),
    v.FsDone("mount", "tmpfs on /new"),
    v.SecFailed("seccomp", 22, "Invalid argument"),
    v.Unshare(("user", "pid", "mount")),
    v.SetHostname("box"),
    v.WriteIdMaps(((0, 100000, 65536), (65536, 1000, 1)), ((0, 100000, 65536),)),
    v.MountFs("tmpfs", "/new", ("nosuid", "nodev"), "size=64m,mode=0755"),
    v.BindMount("/usr", "/new/usr", ("rdonly",), recursive=True, optional=True),
    v.MakeDirs("/new", ("dev", "proc"), 0o700, (0, 0)),
    v.MakeSymlinks("/new", (("bin", "usr/bin"), ("lib", "usr/lib"))),
    v.CopyTree("/src", "/new/src", ("*.pyc", ".git"), (1000, 1000)),
    v.MaskPaths("/new/proc", ("kcore", "keys"), ("sys",)),
    v.WriteFile("/new/etc/hosts", "127.0.0.1\tlocalhost\n", 0o600),
    v.DropCapabilities(("CAP_NET_BIND_SERVICE", "CAP_CHOWN")),
    v.LoadSeccomp("ab" * 32, True),
    v.ApplyLandlock((("/usr", ("read_file", "read_dir")), ("/tmp", ("write_file",))), 3),
    v.Warn("seccomp could not be applied"),
    v.SendSignal("HUP"),
    v.AuditMounts((("/", ("nosuid", "nodev"), True), ("/run/secrets", ("noexec",), False))),
    v.FsFailed("audit", 1, "mount audit: /proc (mount /proc): lacks noexec"),
    v.ResDone("create", "/sys/fs/cgroup/nucleus/c1"),
    v.ResFailed("attach", 13, "write cgroup.procs: Permission denied"),
    v.CreateCgroup("nucleus.slice", "c-0123"),
]


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: o.name)
def test_wire_round_trip_with_values(obj):
    wire = json.loads(json.dumps(v.to_wire(obj)))
    back = v.from_wire(wire)
    assert back == obj
    assert hash(back) == hash(obj)  # nested lists came back as tuples


def test_from_wire_rejects_an_unknown_type():
    with pytest.raises(ValueError, match="unknown message type 'Reboot'"):
        v.from_wire({"t": "Reboot", "f": {}})


# ---------------------------------------------------------------------------------------------
# TLA+ names


@pytest.mark.parametrize("machine,action,arg", spec_pairs())
def test_event_from_tla_for_every_spec_action(machine, action, arg):
    e = v.event_from_tla(machine, action, arg)
    assert e.machine == machine
    assert v.action_name(e) == action
    assert e.tla_arg() == arg


def test_every_event_class_is_an_action_of_its_spec():
    actions = {(_spec_machine(m), a) for m in SINGLE_SPECS for a in _spec_actions(m)}
    for name, cls in v.EVENTS.items():
        assert (cls.machine, v.action_name(cls())) in actions, f"{name} is no action of any spec"


def test_event_from_tla_fills_the_first_field():
    assert v.event_from_tla("lc", "Exit", "3") == v.Exit(3)
    assert v.event_from_tla("lc", "Exit", "") == v.Exit()
    assert v.event_from_tla("lc", "Kill", "KILL") == v.Kill("KILL")
    assert v.event_from_tla("iso", "Fail", "unshare") == v.IsoFailed(step="unshare")
    assert v.event_from_tla("sec", "Done", "caps") == v.SecDone(step="caps")


def test_event_from_tla_unknown_action():
    with pytest.raises(KeyError, match=r"no event for action lc\.Reboot"):
        v.event_from_tla("lc", "Reboot", "")
    with pytest.raises(KeyError):
        v.event_from_tla("net", "Begin", "")


def test_the_same_action_name_maps_per_machine():
    assert v.event_from_tla("iso", "Begin", "") == v.IsoBegin()
    assert v.event_from_tla("fs", "Begin", "") == v.FsBegin()
    assert v.event_from_tla("sec", "Begin", "") == v.SecBegin()
    assert v.event_from_tla("res", "Begin", "") == v.ResBegin()
    # Attach is the lifecycle's (joining a running container) and the cgroup's (moving the setup
    # process into it): the machine tells them apart.
    assert v.event_from_tla("lc", "Attach", "") == v.Attach()
    assert v.event_from_tla("res", "Attach", "") == v.ResAttach()
    assert v.event_from_tla("res", "Release", "") == v.ResRelease()
    assert v.event_from_tla("res", "Fail", "release") == v.ResFailed(step="release")
    assert v.event_from_tla("lc", "Lost", "") == v.Lost()


# ---------------------------------------------------------------------------------------------
# What each intent reports


def test_outcome_steps_are_spec_step_names():
    steps = {
        "iso": set(_spec_strings("Isolation", "StepNames")),
        "fs": set(_spec_strings("Filesystem", "StepNames")),
        "sec": set(_spec_strings("Security", "Controls")),
        "res": set(_spec_strings("Resources", "StepNames")),
    }
    reported: dict[str, set[str]] = {m: set() for m in steps}
    for name, (ok_cls, bad_cls, step) in v.OUTCOME.items():
        assert name in v.INTENTS
        assert ok_cls.machine == bad_cls.machine
        assert step in steps[ok_cls.machine], f"{name} reports step {step!r}"
        reported[ok_cls.machine].add(step)
    # Every step of every spec is reported by some intent (isolation's, fs's chroot included).
    assert reported == steps


def test_cgroup_intents_report_the_resources_steps():
    assert v.done(v.CreateCgroup("nucleus", "c1")) == v.ResDone(step="create")
    assert v.done(v.SetCgroupLimits()) == v.ResDone(step="limits")
    assert v.done(v.AttachCgroup()) == v.ResDone(step="attach")
    assert v.done(v.RemoveCgroup()) == v.ResDone(step="release")
    assert v.failed(v.RemoveCgroup(), 16, "busy") == v.ResFailed("release", 16, "busy")


def test_the_mount_audit_reports_the_filesystem_step_audit():
    rules = (("/", ("nosuid", "nodev"), True), ("/usr", ("rdonly",), False))
    assert v.done(v.AuditMounts(rules)) == v.FsDone(step="audit")
    assert v.failed(v.AuditMounts(rules), 1, "mount audit: /usr: lacks rdonly") == v.FsFailed(
        "audit", 1, "mount audit: /usr: lacks rdonly"
    )
    assert v.AuditMounts.where == "child"  # inside the sealed root
    assert "audit" in _spec_strings("Filesystem", "StepNames")
    assert v.event_from_tla("fs", "Fail", "audit") == v.FsFailed(step="audit")
    assert v.AuditMounts(rules) != v.AuditMounts(rules[:1])  # the rules are part of the intent


def test_every_mount_plan_operation_reports_as_mount():
    for cls in _concrete(v.FsOp):
        assert v.OUTCOME[cls.__name__][2] == "mount"
        assert v.done(cls()) == v.FsDone(step="mount")


@pytest.mark.parametrize("name", sorted(v.INTENTS))
def test_done_and_failed(name):
    intent = v.INTENTS[name]()
    if name in v.OUTCOME:
        ok_cls, bad_cls, step = v.OUTCOME[name]
        assert v.done(intent, "detail") == ok_cls(step=step, detail="detail")
        bad = v.failed(intent, 13, "Permission denied")
        assert bad == bad_cls(step=step, errno=13, message="Permission denied")
    else:
        assert name in ("Warn", "ExecWorkload", "SendSignal", "Cleanup")
        assert v.done(intent) is None
        with pytest.raises(KeyError):
            v.failed(intent, 1, "x")


def test_events_and_intents_are_values():
    e = v.Exit(1)
    with pytest.raises(AttributeError):
        e.code = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del e.code  # type: ignore[misc]
    assert e == v.Exit(1)
    assert v.Exit(1) == v.Exit(1) and hash(v.Unshare(("pid",))) == hash(v.Unshare(("pid",)))


# ---------------------------------------------------------------------------------------------
# ITF values

scalars = (
    st.booleans()
    | st.text(max_size=6)
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.integers(min_value=2**53, max_value=2**80)
    | st.integers(min_value=-(2**80), max_value=-(2**53))
)
hashables = st.recursive(
    scalars,
    lambda inner: st.frozensets(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple),
    max_leaves=8,
)
values = st.recursive(
    hashables,
    lambda inner: (
        st.dictionaries(st.text(alphabet="abcxyz_", min_size=1, max_size=5), inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
    ),
    max_leaves=12,
)


@given(values)
def test_itf_encode_decode_round_trip(value):
    text = json.dumps(itf.encode(value))
    assert itf.decode(json.loads(text)) == value


def test_itf_bigints():
    assert itf.encode(2**53 - 1) == 2**53 - 1
    assert itf.encode(2**53) == {"#bigint": "9007199254740992"}
    assert itf.encode(-(2**60)) == {"#bigint": str(-(2**60))}
    assert itf.decode({"#bigint": "-5"}) == -5
    assert (
        itf.decode({"#bigint": "123456789012345678901234567890"}) == 123456789012345678901234567890
    )


def test_itf_sets_records_sequences_tuples_maps():
    assert itf.encode(frozenset({"b", "a"})) == {"#set": ["a", "b"]}
    assert itf.encode(set()) == {"#set": []}
    assert itf.decode({"#set": ["seccomp", "caps"]}) == frozenset({"caps", "seccomp"})
    assert itf.decode({"#set": [{"#set": [1]}, {"#set": []}]}) == frozenset(
        {frozenset({1}), frozenset()}
    )
    assert itf.decode({"m": "lc", "name": "Start", "arg": ""}) == {
        "m": "lc",
        "name": "Start",
        "arg": "",
    }
    assert itf.decode([1, {"#bigint": "2"}, "x"]) == (1, 2, "x")
    assert itf.decode({"#tup": ["a", 1]}) == ("a", 1)
    assert itf.decode({"#map": [["a", 1], ["b", {"#set": []}]]}) == {"a": 1, "b": frozenset()}
    assert itf.decode({"a": 1, "#meta": {"index": 3}}) == {"a": 1}
    with pytest.raises(ValueError, match="unserializable value in trace: <lambda>"):
        itf.decode({"#unserializable": "<lambda>"})
    with pytest.raises(TypeError, match="cannot encode float in ITF"):
        itf.encode(1.5)


def test_itf_encoding_is_deterministic():
    a = itf.encode(frozenset({"landlock", "caps", "seccomp"}))
    b = itf.encode(frozenset({"seccomp", "landlock", "caps"}))
    assert json.dumps(a) == json.dumps(b)


def test_itf_parse_rejects_a_non_trace():
    with pytest.raises(ValueError, match=r"x\.json: not an ITF trace \(no 'states'\)"):
        itf.parse({"vars": []}, "x.json")
    with pytest.raises(ValueError):
        itf.parse([], "y.json")


def test_itf_parse_reads_an_apalache_style_trace():
    data = {
        "#meta": {"format": "ITF", "source": "Security.tla"},
        "vars": ["sec_allowDegraded", "sec_applied", "sec_degraded", "sec_phase", "sec_strict", "event"],
        "states": [
            {
                "#meta": {"index": 0},
                "sec_allowDegraded": False,
                "sec_applied": {"#set": []},
                "sec_degraded": {"#set": []},
                "sec_phase": "idle",
                "sec_strict": True,
                "event": {"m": "", "name": "", "arg": ""},
            },
            {
                "#meta": {"index": 1},
                "sec_allowDegraded": False,
                "sec_applied": {"#set": []},
                "sec_degraded": {"#set": []},
                "sec_phase": "caps",
                "sec_strict": True,
                "event": {"m": "sec", "name": "Begin", "arg": ""},
            },
        ],
    }
    t = itf.parse(data, "s.itf.json")
    assert t.vars == ("sec_allowDegraded", "sec_applied", "sec_degraded", "sec_phase", "sec_strict", "event")
    assert t.states[1]["sec_phase"] == "caps" and t.states[1]["sec_applied"] == frozenset()
    assert t.states[1]["sec_strict"] is True
    assert "#meta" not in t.states[0]
    assert t.module is None and t.path == "s.itf.json"


def test_itf_dump_parse_round_trip():
    states = [
        {"a": 1, "s": frozenset({"x"}), "r": {"m": "lc", "name": "", "arg": ""}, "q": (1, 2)},
        {"a": 2**60, "s": frozenset(), "r": {"m": "lc", "name": "Create", "arg": ""}, "q": ()},
    ]
    data = json.loads(json.dumps(itf.dump("Demo", states, "two states")))
    assert data["#meta"]["module"] == "Demo" and data["#meta"]["format"] == "ITF"
    assert [s["#meta"]["index"] for s in data["states"]] == [0, 1]
    t = itf.parse(data)
    assert t.module == "Demo" and t.meta["description"] == "two states"
    assert t.vars == ("a", "q", "r", "s")
    assert list(t.states) == states


# ---------------------------------------------------------------------------------------------
# Recorder


def test_recorder_output_parses_back(tmp_path):
    path = tmp_path / "run.itf.json"
    rec = itf.Recorder(lifecycle, "Lifecycle", str(path), "a lifecycle run")
    d = Driver(lifecycle, lifecycle.initial(), FakeExecutor(), rec)
    for e in (
        v.Create(),
        v.Prepared("degraded"),
        v.Start(),
        v.Kill("TERM"),
        v.Exit(3),
        v.CleanupDone(),
        v.Remove(),
    ):
        d.feed(e)
    rec.write()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.itf.json"]  # no temporary file left
    t = itf.load(str(path))
    assert t.module == "Lifecycle" and t.meta["description"] == "a lifecycle run"
    assert t.path == str(path)
    assert t.vars == ("event", "lc_cleaned", "lc_removed", "lc_security", "lc_status")
    assert len(t.states) == 8
    assert [s["event"]["name"] for s in t.states] == [
        "",
        "Create",
        "Prepared",
        "Start",
        "Kill",
        "Exit",
        "CleanupDone",
        "Remove",
    ]
    assert t.states[2]["event"] == {"m": "lc", "name": "Prepared", "arg": "degraded"}
    assert t.states[4]["event"] == {"m": "lc", "name": "Kill", "arg": "TERM"}
    assert t.states[0]["event"] == {"m": "", "name": "", "arg": ""}
    assert [s["lc_status"] for s in t.states] == [
        "none",
        "creating",
        "created",
        "running",
        "running",
        "stopped",
        "stopped",
        "removed",
    ]
    for recorded, parsed in zip(rec.states, t.states, strict=True):
        assert parsed == recorded

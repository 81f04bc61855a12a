"""The vocabulary: the immutable Record every event and intent is, the registry, the wire form,
the TLA+ names of events, and what each intent reports (its Done/Fail event)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import ClassVar

import pytest

from nucleus import vocab as v
from nucleus.vocab.record import Record, field_names, record

FORMAL = Path(__file__).resolve().parents[2] / "formal"
SINGLE_SPECS = ("Lifecycle", "Isolation", "Filesystem", "Security", "Resources", "Network", "Join")
# The shapes other classes derive from: never fed, never issued, not registered.
BASES = {v.Event, v.Intent, v.FsOp, v.Begin, v.StepDone, v.StepFailed}


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


STEP_NAMES = {
    "iso": ("Isolation", "StepNames"), "fs": ("Filesystem", "StepNames"), "sec": ("Security", "Controls"),
    "res": ("Resources", "StepNames"), "net": ("Network", "StepNames"), "join": ("Join", "StepNames"),
}


def _steps(machine: str) -> tuple[str, ...]:
    return _spec_strings(*STEP_NAMES[machine])


# The argument each action ranges over in the specs ("" for none).
def _arguments(machine: str, action: str) -> tuple[str, ...]:
    if (machine, action) == ("lc", "Prepared"):
        return ("enforced", "degraded")
    if (machine, action) == ("lc", "Kill"):
        return _spec_strings("Lifecycle", "Signals")
    if action in ("Done", "Fail"):
        return _steps(machine)
    return ("",)


def spec_pairs() -> list[tuple[str, str, str]]:
    """Every (machine, action, argument) the specs' Next can record, single specs and System alike."""
    pairs = {
        (_spec_machine(module), action, arg)
        for module in SINGLE_SPECS
        for action in _spec_actions(module)
        for arg in _arguments(_spec_machine(module), action)
    }
    # System records every action of its six machines but the cgroup's and the network's
    # Abandon, which it takes inside the lifecycle's Lost (LostStep), in the same step.
    system = set(re.findall(r'Ev\("(\w+)", "(\w+)"', _spec_text("System")))
    components = {(m, a) for m, a, _ in pairs if m != "join"}
    assert system == components - {("res", "Abandon"), ("net", "Abandon")}, \
        "System records other actions than its components"
    assert "LC!Lost /\\ Ev(\"lc\", \"Lost\", \"\")" in _spec_text("System")
    lost = _spec_text("System").split("LostStep ==", 1)[1].split("\n\n", 1)[0]
    assert "RES!Abandon" in lost and "NET!Abandon" in lost
    return sorted(pairs)


def _vocabulary_classes(base: type) -> set[type]:
    return {obj for obj in vars(v).values() if isinstance(obj, type) and issubclass(obj, base)}


# ---------------------------------------------------------------------------------------------
# Record: the immutable base


@record
class Sample(Record):
    """A record of its own: fields from annotations, with defaults; ClassVars are not fields."""

    kind: ClassVar[str] = "sample"
    first: int
    second: tuple[str, ...] = ()
    third: str = "x"


@record
class Derived(Sample):
    fourth: bool = False


def test_record_fields_defaults_and_positional_arguments():
    assert field_names(Sample) == ("first", "second", "third") == Sample.__match_args__
    assert field_names(Derived) == ("first", "second", "third", "fourth")
    s = Sample(1, ("a",))
    assert (s.first, s.second, s.third, s.kind) == (1, ("a",), "x", "sample")
    assert s.values() == (1, ("a",), "x")
    assert s.name == "Sample" and repr(s) == "Sample(first=1, second=('a',), third='x')"
    assert Sample(first=1, second=("a",)) == s and hash(Sample(1, ("a",))) == hash(s)


def test_record_skips_class_variables_without_postponed_annotations():
    namespace: dict[str, object] = {}
    source = (
        "from typing import ClassVar\n"
        "from nucleus.vocab.record import Record, record\n"
        "@record\n"
        "class Plain(Record):\n"
        "    kind: ClassVar[str] = 'plain'\n"
        "    x: int = 0\n"
    )
    # A module of its own: without this file's `from __future__ import annotations`.
    exec(compile(source, "<plain>", "exec", dont_inherit=True), namespace)
    assert field_names(namespace["Plain"]) == ("x",)


def test_record_refuses_what_it_cannot_build():
    with pytest.raises(TypeError, match="Sample takes 3 fields, got 4"):
        Sample(1, (), "y", True)
    with pytest.raises(TypeError, match="Sample has no field 'fourth'"):
        Sample(1, fourth=True)
    with pytest.raises(TypeError, match="Sample needs field 'first'"):
        Sample()


def test_record_is_immutable_and_replace_makes_a_new_one():
    s = Sample(1)
    with pytest.raises(AttributeError, match="Sample is immutable"):
        s.first = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="Sample is immutable"):
        del s.third  # type: ignore[misc]
    t = s.replace(third="y")
    assert (s.third, t.third, t.first, type(t)) == ("x", "y", 1, Sample)
    with pytest.raises(TypeError, match="has no field 'nope'"):
        s.replace(nope=1)


def test_record_equality_is_by_type_and_values():
    """A join's intent is not the run's, even with the same values (it reports elsewhere)."""
    assert Derived(1) != Sample(1) and Sample(1) != Derived(1)
    assert v.JoinSpawn() != v.SpawnChild() and hash(v.JoinSpawn()) != hash(v.SpawnChild())
    assert v.JoinLoadSeccomp("ab", True) != v.LoadSeccomp("ab", True)
    assert v.Exit(1) != v.JoinExit(1)
    assert v.Exit(1) != (1,) and v.Exit(1) != 1


def test_record_pattern_matching():
    match v.ResDone("release", v.OOM_KILLED):
        case v.ResDone(step=step, detail=detail):
            assert (step, detail) == ("release", "oom-killed")
        case _:
            raise AssertionError("no match")
    match v.LoadSeccomp("ab", False, "trace"):
        case v.LoadSeccomp(sha, _, mode):
            assert (sha, mode) == ("ab", "trace")
    match v.JoinLoadSeccomp():
        case v.LoadSeccomp():  # a join's intent is one of the run's intents too
            pass
        case _:
            raise AssertionError("a JoinLoadSeccomp is a LoadSeccomp")


# ---------------------------------------------------------------------------------------------
# Registry and wire form


def test_every_event_and_intent_class_is_registered():
    assert {c.__name__ for c in _vocabulary_classes(v.Event) - BASES} == set(v.EVENTS)
    assert {c.__name__ for c in _vocabulary_classes(v.Intent) - BASES} == set(v.INTENTS)
    assert not set(v.EVENTS) & set(v.INTENTS)
    assert not {c.__name__ for c in BASES} & (set(v.EVENTS) | set(v.INTENTS))


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
    v.SpawnChild("/var/log/trace.ndjson"),
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
    v.LoadSeccomp("", False, "trace"),
    v.ApplyLandlock((("/usr", ("read_file", "read_dir")), ("/tmp", ("write_file",))), 3),
    v.Warn("seccomp could not be applied"),
    v.SendSignal("HUP"),
    v.AuditMounts((("/", ("nosuid", "nodev"), True), ("/run/secrets", ("noexec",), False))),
    v.FsFailed("audit", 1, "mount audit: /proc (mount /proc): lacks noexec"),
    v.ResDone("create", "/sys/fs/cgroup/nucleus/c1"),
    v.ResDone("release", v.OOM_KILLED),
    v.ResFailed("attach", 13, "write cgroup.procs: Permission denied"),
    v.ResAbandon(),
    v.CreateCgroup(("/sys/fs/cgroup/nucleus",),
                   (("/sys/fs/cgroup/nucleus/cgroup.subtree_control", "+cpu +memory +pids"),),
                   ("/sys/fs/cgroup/nucleus/c-0123",)),
    v.CreateCgroup(unavailable="memory not enabled for the children of /sys/fs/cgroup"),
    v.SetCgroupLimits((("/sys/fs/cgroup/nucleus/c-0123/memory.max", "536870912", False),
                       ("/sys/fs/cgroup/nucleus/c-0123/memory.swap.max", "0", True))),
    v.AttachCgroup(("/sys/fs/cgroup/cpu/nucleus/c-0123/cgroup.procs", "/sys/fs/cgroup/memory/nucleus/c-0123/cgroup.procs")),
    v.RemoveCgroup(("/g/cgroup.procs",), "/g/cgroup.kill", ("/g/cgroup.freeze", "1", "0", "/g/cgroup.events", "frozen 1"),
                   ("/g/memory.events", "oom_kill"), ("/g",), ("/p",)),
    v.ExecWorkload(("/bin/sh", "-c", "echo $HOME"), (("HOME", "/home/agent"), ("PATH", "/usr/bin")), "/context",
                   (4096, 128, 65536)),
    v.JoinBegin(),
    v.JoinFailed("enter", 1, "setns(/proc/42/ns/user): Operation not permitted"),
    v.JoinExit(3),
    v.JoinCgroup(("/sys/fs/cgroup/nucleus/c1/cgroup.procs",)),
    v.EnterNamespaces((("user", "/proc/42/ns/user"), ("mnt", "/proc/42/ns/mnt")), clear_groups=True),
    v.JoinLoadSeccomp("cd" * 32, True),
    v.ExecCommand(("/bin/ls",), (("PATH", "/bin"),), "/", (1024, 512, 65536)),
]


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: o.name)
def test_wire_round_trip_with_values(obj):
    wire = json.loads(json.dumps(v.to_wire(obj)))
    back = v.from_wire(wire)
    assert back == obj and type(back) is type(obj)
    assert hash(back) == hash(obj)  # nested lists came back as tuples


def test_the_wire_form_is_the_type_and_every_field():
    assert v.to_wire(v.LoadSeccomp("ab", True, "trace")) == {
        "t": "LoadSeccomp", "f": {"program_sha256": "ab", "log_denied": True, "mode": "trace"},
    }
    assert v.to_wire(v.SetCgroupLimits((("/g/pids.max", "64", False),))) == {
        "t": "SetCgroupLimits", "f": {"writes": [["/g/pids.max", "64", False]], "strict": False},
    }


def test_from_wire_rejects_what_it_cannot_build():
    with pytest.raises(ValueError, match="unknown message type 'Reboot'"):
        v.from_wire({"t": "Reboot", "f": {}})
    with pytest.raises(ValueError, match="unknown message type None"):
        v.from_wire({"f": {}})
    with pytest.raises(ValueError, match="message 'Exit': fields are not an object"):
        v.from_wire({"t": "Exit", "f": [1]})
    with pytest.raises(TypeError, match="Exit has no field 'signal'"):
        v.from_wire({"t": "Exit", "f": {"signal": "TERM"}})


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
    # The network's Abandon is System's alone (inside Lost): an operator of formal/Network.tla.
    assert "\nAbandon ==" in _spec_text("Network") and ("net", "Abandon") not in actions
    actions.add(("net", "Abandon"))
    for name, cls in v.EVENTS.items():
        assert (cls.machine, v.action_name(cls())) in actions, f"{name} is no action of any spec"


def test_event_from_tla_fills_the_first_field():
    assert v.event_from_tla("lc", "Exit", "3") == v.Exit(3)
    assert v.event_from_tla("lc", "Exit", "") == v.Exit()
    assert v.event_from_tla("lc", "Kill", "KILL") == v.Kill("KILL")
    assert v.event_from_tla("iso", "Fail", "unshare") == v.IsoFailed(step="unshare")
    assert v.event_from_tla("sec", "Done", "caps") == v.SecDone(step="caps")
    assert v.event_from_tla("join", "Exit", "") == v.JoinExit()
    assert v.event_from_tla("join", "Exit", "2") == v.JoinExit(2)
    assert v.event_from_tla("join", "Fail", "seccomp") == v.JoinFailed(step="seccomp")


def test_event_from_tla_unknown_action():
    with pytest.raises(KeyError, match=r"no event for action lc\.Reboot"):
        v.event_from_tla("lc", "Reboot", "")
    with pytest.raises(KeyError):
        v.event_from_tla("gpu", "Begin", "")
    with pytest.raises(KeyError, match=r"no event for action join\.Abandon"):
        v.event_from_tla("join", "Abandon", "")


def test_the_same_action_name_maps_per_machine():
    assert v.event_from_tla("iso", "Begin", "") == v.IsoBegin()
    assert v.event_from_tla("fs", "Begin", "") == v.FsBegin()
    assert v.event_from_tla("sec", "Begin", "") == v.SecBegin()
    assert v.event_from_tla("res", "Begin", "") == v.ResBegin()
    assert v.event_from_tla("join", "Begin", "") == v.JoinBegin()
    # Attach is the lifecycle's (joining a running container) and the cgroup's (moving the setup
    # process into it): the machine tells them apart. So are Start and Exit (the container's
    # workload, the joining command).
    assert v.event_from_tla("lc", "Attach", "") == v.Attach()
    assert v.event_from_tla("res", "Attach", "") == v.ResAttach()
    assert v.event_from_tla("res", "Release", "") == v.ResRelease()
    assert v.event_from_tla("res", "Abandon", "") == v.ResAbandon()
    assert v.event_from_tla("res", "Fail", "release") == v.ResFailed(step="release")
    assert v.event_from_tla("lc", "Lost", "") == v.Lost()
    assert v.event_from_tla("lc", "Start", "") == v.Start()
    assert v.event_from_tla("join", "Start", "") == v.JoinStart()
    assert v.action_name(v.JoinStart()) == "Start" and v.action_name(v.ResAbandon()) == "Abandon"


# ---------------------------------------------------------------------------------------------
# What each intent reports


def test_reported_steps_are_spec_step_names():
    steps = {machine: set(_steps(machine)) for machine in STEP_NAMES}
    reported: dict[str, set[str]] = {m: set() for m in steps}
    for name in v.REPORTING:
        machine, step = v.INTENTS[name].reports
        assert step in steps[machine], f"{name} reports step {step!r} of {machine}"
        reported[machine].add(step)
    # Every step of every spec is reported by some intent (isolation's, fs's chroot included).
    assert reported == steps
    assert v.REPORTING == {name for name, cls in v.INTENTS.items() if cls.reports is not None}


def test_where_each_intent_is_carried_out():
    """The supervisor on the host (spawning, id maps, cgroups, signals) or the process the
    machine spawned, inside the new namespaces (everything else)."""
    host = {name for name, cls in v.INTENTS.items() if cls.where == "host"}
    assert host == {
        "SpawnChild", "WriteIdMaps", "Warn", "CreateCgroup", "SetCgroupLimits", "AttachCgroup",
        "RemoveCgroup", "SendSignal", "Cleanup", "JoinSpawn", "JoinCgroup",
        # a bridge's host side: in the host's network namespace
        "NetBridge", "NetVeth", "NetAttach", "NetNat", "NetEgress", "NetProxy", "NetTeardown",
        # a user-mode network's stack, started from the host's network namespace
        "NetUser",
    }
    assert {cls.where for cls in v.INTENTS.values()} == {"host", "child"}


def test_the_joins_intents_are_the_runs_reporting_to_the_join():
    pairs = {
        v.JoinSpawn: v.SpawnChild, v.JoinCgroup: v.AttachCgroup, v.JoinIdentity: v.BecomeRoot,
        v.JoinFork: v.ForkInit, v.JoinDropCapabilities: v.DropCapabilities,
        v.JoinLoadSeccomp: v.LoadSeccomp, v.JoinApplyLandlock: v.ApplyLandlock,
    }
    for joins, runs in pairs.items():
        assert issubclass(joins, runs) and field_names(joins) == field_names(runs)
        assert joins.reports[0] == "join" and runs.reports[0] != "join"
        assert joins.where == runs.where
    assert v.done(v.JoinLoadSeccomp("ab")) == v.JoinDone("seccomp")
    assert v.done(v.LoadSeccomp("ab")) == v.SecDone("seccomp")


def test_cgroup_intents_report_the_resources_steps():
    assert v.done(v.CreateCgroup(dirs=("/g",))) == v.ResDone(step="create")
    assert v.done(v.SetCgroupLimits()) == v.ResDone(step="limits")
    assert v.done(v.AttachCgroup()) == v.ResDone(step="attach")
    assert v.done(v.RemoveCgroup(), v.OOM_KILLED) == v.ResDone("release", v.OOM_KILLED)
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
    ops = _vocabulary_classes(v.FsOp) - {v.FsOp}
    assert len(ops) == 15  # with the secrets' WriteSecret and BindSecret, and WriteSysctl
    for cls in ops:
        assert cls.reports == ("fs", "mount") and cls.where == "child"
        assert v.done(cls()) == v.FsDone(step="mount")


@pytest.mark.parametrize("name", sorted(v.INTENTS))
def test_done_and_failed(name):
    intent = v.INTENTS[name]()
    if name in v.REPORTING:
        machine, step = intent.reports
        assert v.done(intent, "detail") == v.DONE[machine](step=step, detail="detail")
        bad = v.failed(intent, 13, "Permission denied")
        assert bad == v.FAILED[machine](step=step, errno=13, message="Permission denied")
        assert v.is_failure(bad) and not v.is_failure(v.done(intent))
    else:
        assert name in ("Warn", "ExecWorkload", "SendSignal", "Cleanup", "ExecCommand")
        assert v.done(intent) is None
        with pytest.raises(ValueError, match=f"{name} reports no outcome"):
            v.failed(intent, 1, "x")


def test_is_failure_is_true_of_the_step_failures_only():
    assert {name for name, cls in v.EVENTS.items() if v.is_failure(cls())} == {
        "IsoFailed", "FsFailed", "SecFailed", "ResFailed", "NetFailed", "JoinFailed",
    }
    assert not v.is_failure(v.SetupFailed()) and not v.is_failure(v.ResAbandon())


def test_events_and_intents_are_values():
    e = v.Exit(1)
    with pytest.raises(AttributeError):
        e.code = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del e.code  # type: ignore[misc]
    assert e == v.Exit(1)
    assert v.Exit(1) == v.Exit(1) and hash(v.Unshare(("pid",))) == hash(v.Unshare(("pid",)))
    assert v.CreateCgroup(dirs=("/a",)).replace(dirs=("/b",)) == v.CreateCgroup(dirs=("/b",))

"""The ITF reader and writer (the JSON trace format of Apalache and Quint), and the recorder
that writes a run's own trace: the spec's variables, and in each state's "#meta" the event as it
was fed and the intents the step issued; in the trace's "#meta" the inputs of the plan."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nucleus import vocab as v
from nucleus.driver import Driver, FakeExecutor
from nucleus.machines import join, lifecycle
from nucleus.trace import itf
from nucleus.trace.record import Recorder

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


def test_itf_parse_keeps_each_states_meta():
    data = {
        "#meta": {"format": "ITF"},
        "states": [
            {"#meta": {"index": 0}, "x": 1},
            {"#meta": {"index": 1, "event": {"t": "Exit", "f": {"code": 3}}}, "x": 2},
            {"x": 3},
        ],
    }
    t = itf.parse(data)
    assert t.state_meta == ({"index": 0}, {"index": 1, "event": {"t": "Exit", "f": {"code": 3}}}, {})
    assert t.vars == ("x",) and [s["x"] for s in t.states] == [1, 2, 3]


def test_itf_dump_with_meta_and_state_meta():
    states = [{"a": 1}, {"a": 2}]
    data = json.loads(json.dumps(itf.dump("Demo", states, "d", {"plan": {"cid": "c1"}},
                                          [{}, {"event": {"t": "Create", "f": {}}, "intents": []}])))
    assert data["#meta"]["plan"] == {"cid": "c1"} and data["#meta"]["module"] == "Demo"
    assert data["states"][1]["#meta"] == {"index": 1, "event": {"t": "Create", "f": {}}, "intents": []}
    t = itf.parse(data)
    assert t.meta["plan"] == {"cid": "c1"} and t.state_meta[1]["event"] == {"t": "Create", "f": {}}


# ---------------------------------------------------------------------------------------------
# Recorder


def test_recorder_output_parses_back(tmp_path):
    path = tmp_path / "run.itf.json"
    rec = Recorder(lifecycle, "Lifecycle", str(path), "a lifecycle run")
    workload = v.ExecWorkload(("/bin/true",), (("PATH", "/bin"),), "/", (1024, 64, 65536))
    d = Driver(lifecycle, lifecycle.initial(workload), FakeExecutor(), rec)
    events = (v.Create(), v.Prepared("degraded"), v.Start(), v.Kill("TERM"), v.Exit(3), v.CleanupDone(),
              v.Remove())
    for e in events:
        d.feed(e)
    rec.write()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.itf.json"]  # no temporary file left
    t = itf.load(str(path))
    assert t.module == "Lifecycle" and t.meta["description"] == "a lifecycle run"
    assert "plan" not in t.meta  # a recorder without inputs
    assert t.path == str(path)
    assert t.vars == ("event", "lc_cleaned", "lc_removed", "lc_security", "lc_status")
    assert len(t.states) == 8
    assert [s["event"]["name"] for s in t.states] == [
        "", "Create", "Prepared", "Start", "Kill", "Exit", "CleanupDone", "Remove",
    ]
    assert t.states[2]["event"] == {"m": "lc", "name": "Prepared", "arg": "degraded"}
    assert t.states[4]["event"] == {"m": "lc", "name": "Kill", "arg": "TERM"}
    assert t.states[0]["event"] == {"m": "", "name": "", "arg": ""}
    assert [s["lc_status"] for s in t.states] == [
        "none", "creating", "created", "running", "running", "stopped", "stopped", "removed",
    ]
    for recorded, parsed in zip(rec.states, t.states, strict=True):
        assert parsed == recorded
    # Each step's "#meta": the event with every field (Exit's code is not the spec's), and the
    # intents the step issued, in their wire form.
    assert t.state_meta[0] == {"index": 0}
    assert [v.from_wire(m["event"]) for m in t.state_meta[1:]] == list(events)
    assert t.state_meta[5]["event"] == {"t": "Exit", "f": {"code": 3, "reason": ""}}
    assert [[v.from_wire(i) for i in m["intents"]] for m in t.state_meta[1:]] == [
        [], [], [workload], [v.SendSignal("TERM")], [v.Cleanup()], [], [],
    ]


def test_recorder_keeps_the_plan_inputs_and_a_failures_message(tmp_path):
    path = tmp_path / "join.itf.json"
    inputs = {"init_pid": 42, "argv": ["/bin/sh"]}
    rec = Recorder(join, "Join", str(path), "nucleus attach web", inputs)
    d = Driver(join, join.placeholder(), FakeExecutor(fail={"EnterNamespaces": (1, "setns: EPERM")}), rec)
    d.feed(v.JoinBegin())
    rec.write()
    t = itf.load(str(path))
    assert t.meta["plan"] == inputs and t.module == "Join"
    assert [s["join_phase"] for s in t.states] == ["idle", "running", "running", "running", "failed"]
    assert t.states[-1]["event"] == {"m": "join", "name": "Fail", "arg": "enter"}
    assert t.state_meta[-1]["event"] == v.to_wire(v.JoinFailed("enter", 1, "setns: EPERM"))
    assert [i["t"] for i in t.state_meta[-1]["intents"]] == ["Cleanup"]
    assert t.state_meta[1]["intents"] == [v.to_wire(v.JoinSpawn())]

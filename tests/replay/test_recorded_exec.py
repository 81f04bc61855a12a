"""The recorded `nucleus exec -t -u nobody -w /tmp -e MODE=exec` (traces/recorded/exec.itf.json,
made by `make record`): replay plans the join again from the inputs it kept (the container's
join policy with its accounts, and the exec options) and compares every intent, so a change in
the user the caps step switches to, in the terminal asked for or in the command's directory is
caught, naming the step, the intent and the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nucleus.plan import join as join_plan
from nucleus.trace import itf
from nucleus.trace.replay import replay

RECORDED = Path(__file__).resolve().parents[2] / "traces" / "recorded" / "exec.itf.json"


@pytest.fixture
def trace() -> itf.Trace:
    if not RECORDED.is_file():
        pytest.fail(f"{RECORDED} is missing: re-record with `make record` (as root)")
    return itf.load(str(RECORDED))


def recorded(trace: itf.Trace, name: str) -> dict:
    (found,) = [i for meta in trace.state_meta for i in meta.get("intents", []) if i["t"] == name]
    return found["f"]


def test_the_recorded_exec_replays_and_shows_what_it_asked(trace):
    assert replay(trace) is None
    assert recorded(trace, "JoinSpawn")["terminal"] is True
    assert recorded(trace, "JoinDropCapabilities")["user"] == [65534, 65534, []]
    command = recorded(trace, "ExecCommand")
    assert (command["cwd"], command["cwd_required"], command["terminal"], command["stdin"]) == ("/tmp", True, True, False)
    assert dict(command["env"])["MODE"] == "exec" and dict(command["env"])["HOME"] == "/"
    # The command's refusals go to the container's stream: a monitor of its own, the notify form.
    stream = trace.meta["plan"]["stream"]
    assert stream.endswith(".violations") and recorded(trace, "JoinSpawn")["violations"] == stream
    assert recorded(trace, "JoinLoadSeccomp")["mode"] == "notify"
    assert recorded(trace, "JoinApplyLandlock")["log_new_exec"] is True


def test_a_different_user_planted_in_the_plan_is_caught(trace, monkeypatch):
    real = join_plan.users.resolve

    def root_instead(*args, **kw):
        return dataclasses.replace(real(*args, **kw), uid=0, gid=0)

    monkeypatch.setattr(join_plan.users, "resolve", root_instead)
    divergence = replay(trace)
    assert divergence is not None and "(JoinDropCapabilities) differs in user" in str(divergence), divergence


def test_a_join_planned_without_the_stream_is_caught(trace, monkeypatch):
    real = join_plan.plan

    def unrecorded(*args):
        return real(*args[:8])  # all but the container's stream

    monkeypatch.setattr(join_plan, "plan", unrecorded)
    divergence = replay(trace)
    assert divergence is not None and "(JoinSpawn) differs in violations" in str(divergence), divergence

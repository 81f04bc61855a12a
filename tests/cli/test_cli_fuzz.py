"""`nucleus run`'s parser and validation under generated input: flag values, policy files and
commands. Whatever is given, the command either hands a validated configuration on or refuses
with a message and a documented exit code; never a traceback or an internal error, and nothing
on the host changes before that point. The run itself is replaced by a recorder: this is about
what reaches it, and the pure plan of it on a host like this one (cgroup v1 controllers, two
CPUs, one disk): the plan is where a value the host cannot honour is refused.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nucleus.app import run as app_run
from nucleus.cli import main as cli_main
from nucleus.config.container import ContainerConfig
from nucleus.facts import CgroupLayout, HostFacts
from nucleus.plan.run import Artifacts, plan

# 0: handed on; 125: refused (bad input, usage, a host that lacks what the mode requires).
DOCUMENTED = {0, 125}

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
number = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e308", "1e-308", "0x10", "1_000", " 5 ", "5.5.5", "-0", "nan", "inf"]),
)
size = st.one_of(number, st.builds(lambda n, u: f"{n}{u}", st.integers(-5, 2**66),
                                   st.sampled_from(["", "K", "M", "G", "T", "P", "k", "MiB", "b", "Q"])))
io_limit = st.one_of(text, st.builds(lambda maj, mi, key, val: f"{maj}:{mi} {key}={val}",
                                     st.integers(-1, 2**33), st.integers(-1, 2**33),
                                     st.sampled_from(["rbps", "wbps", "riops", "wiops", "x"]), size))
choice = st.sampled_from
VALUE_FLAGS = {
    "--name": text, "--hostname": text, "--context-mode": st.one_of(text, choice(["copy", "bind"])),
    "--env": st.one_of(text, st.builds(lambda k, val: f"{k}={val}", text, text)),
    "--workdir": text, "--memory": size, "--swap": size, "--cpus": number, "--cpu-weight": number,
    "--pids": number, "--io-limit": io_limit, "--memlock": size, "--cgroup-parent": text,
    "--service-mode": st.one_of(text, choice(["agent", "strict-agent", "production"])),
    "--trust-level": st.one_of(text, choice(["trusted", "untrusted"])),
    "--seccomp-mode": st.one_of(text, choice(["enforce", "trace"])), "--id-range": number,
    "--require-kernel-lockdown": st.one_of(text, choice(["integrity", "confidentiality"])),
    "--seccomp-profile-sha256": text, "--caps-policy-sha256": text, "--landlock-policy-sha256": text,
}
SWITCHES = ["--rootless", "--time-namespace", "--allow-degraded-security", "--allow-chroot-fallback",
            "--disable-cgroup-namespace", "--verify-context-integrity", "--seccomp-log-denied"]

json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), text),
                          lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                  st.dictionaries(text, inner, max_size=4)), max_leaves=12)
seccomp_profile = st.one_of(
    st.binary(max_size=64),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({
        "defaultAction": choice(["SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW", "SCMP_ACT_KILL", "nope"]),
        "syscalls": st.lists(st.fixed_dictionaries({
            "names": st.lists(choice(["read", "write", "nosuch", "clone", ""]), max_size=3),
            "action": choice(["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_NOTIFY", 7]),
        }), max_size=3),
    }).map(lambda v: json.dumps(v).encode()),
)
caps_policy = st.one_of(st.binary(max_size=64), st.builds(
    lambda keep: f"[bounding]\nkeep = {json.dumps(keep)}\n".encode(),
    st.lists(choice(["CHOWN", "SYS_ADMIN", "NET_RAW", "cap_kill", "NOPE", ""]), max_size=3)))
landlock_policy = st.one_of(st.binary(max_size=64), st.builds(
    lambda path, access, abi: f'min_abi = {abi}\n[[rules]]\npath = {json.dumps(path)}\naccess = {json.dumps(access)}\n'.encode(),
    st.one_of(text, choice(["/usr", "relative", "/"])), st.lists(choice(["read", "write", "all", "x"]), max_size=3),
    st.integers(-2, 9)))


@st.composite
def invocations(draw, tmp):
    args: list[str] = []
    for flag in draw(st.lists(choice(sorted(VALUE_FLAGS)), max_size=5, unique=True)):
        args += [flag, draw(VALUE_FLAGS[flag])]
    args += draw(st.lists(choice(SWITCHES), max_size=3, unique=True))
    for flag, strategy, name in (("--seccomp-profile", seccomp_profile, "p.json"),
                                 ("--caps-policy", caps_policy, "c.toml"),
                                 ("--landlock-policy", landlock_policy, "l.toml")):
        if draw(st.booleans()):
            path = os.path.join(tmp, name)
            with open(path, "wb") as f:
                f.write(draw(strategy))
            args += [flag, path]
    if draw(st.booleans()):
        args += ["--context", draw(choice([tmp, os.path.join(tmp, "missing"), "/nonexistent", ""]))]
    command = draw(st.lists(text, max_size=3))
    return ["run", *args, "--", *command]


V1 = tuple((c, f"/sys/fs/cgroup/{c}") for c in ("blkio", "cpu", "cpuacct", "freezer", "memory", "pids"))
HOST = HostFacts(arch="x86_64", euid=0, egid=0, state_root="/run/nucleus",
                 system=(("/usr", ""), ("/bin", "usr/bin")),
                 cgroups=CgroupLayout("v1", V1, tuple(c for c, _ in V1), swap_accounting=True),
                 cpus=2, block_devices=(("254:0", "254:0"), ("254:1", "254:0")))


@pytest.fixture
def recorded(monkeypatch):
    got: list[ContainerConfig] = []

    def run(config, trace_path=None, environ=None):
        plan(config, HOST, Artifacts(seccomp_sha256="0" * 64), "0" * 32)
        got.append(config)
        return 0

    monkeypatch.setattr(app_run, "run", run)
    return got


def _state(root: str) -> list[str]:
    try:
        return sorted(os.listdir(root))
    except FileNotFoundError:
        return []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_run_refuses_or_hands_on_never_crashes(data, recorded, tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("NUCLEUS_STATE_DIR", str(state))
    argv = data.draw(invocations(str(tmp_path)))
    before = _state(str(tmp_path))
    code, message = _invoke(argv, monkeypatch)
    assert "internal error" not in message and "Traceback" not in message, (argv, message)
    assert code in DOCUMENTED, (argv, code, message)
    if code != 0:
        assert message.strip(), (argv, code)  # a refusal says why
    else:
        assert isinstance(recorded[-1], ContainerConfig)
    assert not state.exists()  # nothing reached the host before the run
    assert _state(str(tmp_path)) == before


def _invoke(argv: list[str], monkeypatch) -> tuple[int, str]:
    err = io.StringIO()
    monkeypatch.setattr(sys, "argv", ["nucleus", *argv])
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli_main.run_cli()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, err.getvalue()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=choice(sorted(VALUE_FLAGS)), data=st.data())
def test_each_flag_alone_refuses_or_hands_on(flag, data, recorded, monkeypatch, tmp_path):
    monkeypatch.setenv("NUCLEUS_STATE_DIR", str(tmp_path / "state"))
    value = data.draw(VALUE_FLAGS[flag])
    code, message = _invoke(["run", flag, value, "--", "true"], monkeypatch)
    assert "internal error" not in message and "Traceback" not in message, (flag, value, message)
    assert code in DOCUMENTED, (flag, value, code, message)
    assert (code == 0) == (not message.strip() or message.startswith("warning")), (flag, value, message)
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("argv", [
    ["--cpus", "1e308"], ["--cpus", "inf"], ["--cpus", "64"], ["--memory", "9999999T"],
    ["--pids", "99999999999999999999"], ["--io-limit", "999:999 rbps=1M"], ["--", ""],
    ["--context-mode", "bind"],
], ids=lambda a: " ".join(a))
def test_known_bad_values_are_refused(argv, recorded, monkeypatch, tmp_path):
    monkeypatch.setenv("NUCLEUS_STATE_DIR", str(tmp_path / "state"))
    args = ["run", *argv] if "--" in argv else ["run", *argv, "--", "true"]
    code, message = _invoke(args, monkeypatch)
    assert code == 125 and message.startswith("error: "), (argv, code, message)
    assert recorded == []

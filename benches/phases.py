"""Runs `nucleus run` in this process with a timestamp at every phase, for the cold-start
breakdown. It wraps nucleus's own functions from the outside; nucleus itself is unchanged.

    python benches/phases.py OUT.json [nucleus run options] -- COMMAND...

Writes OUT.json: "marks" (name, CLOCK_MONOTONIC ns) in order, "spans" (name, start, end) of the
supervisor's steps, "child" spans of the setup process and the container's init, and the
modules the run imported after the preload. The caller notes when it spawned this process and
when it exited; CLOCK_MONOTONIC is the same clock in every process.
"""

import time

T_SCRIPT = time.monotonic_ns()

import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

MARKS = [("script", T_SCRIPT)]
SPANS: list[tuple[str, int, int]] = []


def mark(name: str) -> None:
    MARKS.append((name, time.monotonic_ns()))


import nucleus.cli.main as cli_main  # noqa: E402

mark("import cli")

# Everything the run path imports lazily, imported here so that the phases below time work,
# not imports (a module missing from this list shows up in "late_imports").
PRELOAD = (
    "nucleus.spec.container", "nucleus.spec.context", "nucleus.spec.rootfs",
    "nucleus.spec.landlock_default", "nucleus.spec.seccomp_default", "nucleus.spec.capabilities",
    "nucleus.runner", "nucleus.driver", "nucleus.vocab", "nucleus.machines.system",
    "nucleus.machines.lifecycle", "nucleus.machines.isolation", "nucleus.machines.filesystem",
    "nucleus.machines.security", "nucleus.effects.host", "nucleus.effects.inside",
    "nucleus.effects.seccomp", "nucleus.effects.landlock", "nucleus.effects.caps",
    "nucleus.effects.channel", "nucleus.effects.fs", "nucleus.effects.sys",
    "hashlib", "signal", "stat", "dataclasses",
)
for _name in PRELOAD:
    try:
        importlib.import_module(_name)
    except ImportError:
        pass
mark("import run path")
PRELOADED = set(sys.modules)

from nucleus import runner  # noqa: E402
from nucleus.effects import host as _host  # noqa: E402
from nucleus.effects import inside as _inside  # noqa: E402

CHILD_R, CHILD_W = os.pipe()


def _span(name, fn):
    def wrapper(*args, **kwargs):
        t0 = time.monotonic_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            SPANS.append((name, t0, time.monotonic_ns()))
    return wrapper


def _child(record: str) -> None:
    try:
        os.write(CHILD_W, (record + "\n").encode())
    except OSError:
        pass


def _child_span(name, fn):
    def wrapper(*args, **kwargs):
        t0 = time.monotonic_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            _child(f"{name} {t0} {time.monotonic_ns()}")
    return wrapper


runner.gather_facts = _span("gather_facts", runner.gather_facts)
runner.check_context = _span("check_context", runner.check_context)
runner.build = _span("build", runner.build)

_orig_run = runner.run


def _run(*args, **kwargs):
    mark("run")
    try:
        return _orig_run(*args, **kwargs)
    finally:
        mark("run returned")


runner.run = _run

_orig_local = _host.HostExecutor._local
_orig_remote = _host.HostExecutor._remote


def _local(self, intent):
    t0 = time.monotonic_ns()
    try:
        return _orig_local(self, intent)
    finally:
        SPANS.append((f"host {intent.name}", t0, time.monotonic_ns()))


def _remote(self, intents):
    t0 = time.monotonic_ns()
    try:
        return _orig_remote(self, intents)
    finally:
        SPANS.append(("pipe " + "+".join(i.name for i in intents), t0, time.monotonic_ns()))


_host.HostExecutor._local = _local
_host.HostExecutor._remote = _remote
_host.HostExecutor.wait = _span("wait", _host.HostExecutor.wait)
_host.HostExecutor.cleanup = _span("cleanup", _host.HostExecutor.cleanup)

_orig_effects = _inside._effects


def _effects(inside):
    return {name: _child_span(name, fn) for name, fn in _orig_effects(inside).items()}


_orig_fork_init = _inside._fork_init


def _fork_init(inside, intent, events):
    t0 = time.monotonic_ns()
    became_init = _orig_fork_init(inside, intent, events)
    if became_init:
        _child(f"ForkInit {t0} {time.monotonic_ns()}")
    return became_init


_orig_exec_workload = _inside._exec_workload


def _exec_workload(inside, events):
    _child(f"ExecWorkload {time.monotonic_ns()} 0")
    _orig_exec_workload(inside, events)


_orig_exec_child = _inside._exec_child


def _exec_child(w):
    _child(f"exec {time.monotonic_ns()} 0")
    _orig_exec_child(w)


_inside._effects = _effects
_inside._fork_init = _fork_init
_inside._exec_workload = _exec_workload
_inside._exec_child = _exec_child


def main() -> int:
    out = sys.argv[1]
    sys.argv = ["nucleus", *sys.argv[2:]]
    mark("main")
    code = 0
    try:
        cli_main.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    mark("main returned")
    os.close(CHILD_W)
    data = b""
    while chunk := os.read(CHILD_R, 65536):
        data += chunk
    child = []
    for line in data.decode().splitlines():
        name, t0, t1 = line.split()
        child.append((name, int(t0), int(t1)))
    with open(out, "w") as f:
        json.dump({"marks": MARKS, "spans": SPANS, "child": child, "exit_code": code,
                   "late_imports": sorted(set(sys.modules) - PRELOADED)}, f)
    return code


if __name__ == "__main__":
    sys.exit(main())

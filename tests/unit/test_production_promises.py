"""Production's promises checked once more just before Start (nucleus.plan.promises, and
nucleus.app.run.keep_promises on the run path): a row of the mode table not kept, in the
machines' state or in what the host shows, names the row, aborts the run and leaves the
container cleaned up and removed. Driven with the fake executor."""

from __future__ import annotations

import dataclasses

import pytest

from nucleus import vocab as v
from nucleus.app.run import keep_promises
from nucleus.config.container import ContainerConfig
from nucleus.config.resources import validate_limits
from nucleus.driver import Driver, FakeExecutor
from nucleus.errors import EXIT_FAILURE, RuntimeFailure
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts
from nucleus.machines import system
from nucleus.plan import promises
from nucleus.plan.run import Artifacts, plan

V2 = CgroupLayout("v2", ((UNIFIED, "/sys/fs/cgroup"),), ("cpu", "memory", "pids"), ("cpu", "memory", "pids"),
                  None, "/sys/fs/cgroup")
FACTS = HostFacts(arch="x86_64", euid=0, egid=0, state_root="/run/nucleus",
                  system=(("/usr", ""), ("/bin", "usr/bin")), cgroups=V2)
MEMORY = 64 * 1024 * 1024
KEPT = promises.Observed(str(MEMORY) + "\n", ("rw", "nosuid", "nodev", "noexec", "relatime", "hidepid=invisible"))


def prepared(mode: str = "production", **changes) -> system.SystemState:
    """A container of `mode` set up by the fake executor, created and not yet started."""
    config = ContainerConfig(argv=("/bin/true",), service_mode=mode,
                             limits=validate_limits(memory=MEMORY, cpus=1), **changes)
    driver = Driver(system, plan(config, FACTS, Artifacts(seccomp_sha256="ab" * 32), "c1").state, FakeExecutor())
    driver.require(v.Create())
    driver.settle()
    assert driver.state.lc.status == "created"
    return driver.state


def test_a_production_container_set_up_as_planned_keeps_every_promise():
    state = prepared()
    assert promises.memory_limit(state) == ("/sys/fs/cgroup/nucleus/c1/memory.max", str(MEMORY))
    assert promises.unmet(state, KEPT) == []
    # The kernel rounds the limit down to a page.
    assert promises.unmet(state, dataclasses.replace(KEPT, memory=str(MEMORY - 4096))) == []


def test_other_modes_make_no_such_promise():
    assert promises.unmet(prepared("strict-agent"), promises.Observed()) == []
    assert promises.unmet(prepared("agent"), promises.Observed()) == []


def changed(state: system.SystemState, machine: str, **fields) -> system.SystemState:
    return dataclasses.replace(state, **{machine: dataclasses.replace(getattr(state, machine), **fields)})


@pytest.mark.parametrize("machine,fields,row,found", [
    ("sec", {"degraded": frozenset({"landlock"})}, "Degraded security", "security is 'degraded' (landlock degraded)"),
    ("sec", {"seccomp_mode": "trace"}, "Degraded security", "security is 'traced'"),
    ("fs", {"chrooted": True}, "Chroot fallback", "entered with chroot"),
    ("fs", {"audited": False}, "Mount audit", "the mounts were not audited"),
    ("res", {"phase": "degraded", "limited": False}, "Cgroup limits", "the cgroup is degraded, its limits not written"),
    ("net", {"bridged": True, "egress": False}, "Egress policy", "egress is open"),
])
def test_a_row_the_state_breaks_is_named(machine, fields, row, found):
    problems = promises.unmet(changed(prepared(), machine, **fields), KEPT)
    assert len(problems) == 1 and problems[0].startswith(f'row "{row}": ') and found in problems[0]


def test_egress_policy_steps_not_in_force_are_named():
    state = prepared()
    # A bridge with its egress policy planned, stopped before the rules were made.
    state = changed(state, "net", bridged=True, egress=True, phase="ready", done=3)
    assert promises.unmet(state, KEPT) == ['row "Egress policy": egress is open on the container\'s network '
                                           "(egress, proxy not in force)"]


@pytest.mark.parametrize("seen,found", [
    (dataclasses.replace(KEPT, memory="max\n"), "memory.max holds 'max', not the 67108864 bytes written"),
    (dataclasses.replace(KEPT, memory=str(MEMORY * 2)), "holds '134217728'"),
    (dataclasses.replace(KEPT, memory=None, unread=(("memory", "Permission denied"),)),
     "memory.max could not be read back (Permission denied)"),
])
def test_a_memory_limit_the_host_does_not_show_is_named(seen, found):
    problems = promises.unmet(prepared(), seen)
    assert len(problems) == 1 and problems[0].startswith('row "Memory limit": ') and found in problems[0]


def test_a_production_run_without_a_memory_write_is_named():
    state = prepared()
    state = changed(state, "res", limits=v.SetCgroupLimits(
        tuple(w for w in state.res.limits.writes if not w[0].endswith("memory.max")), True))
    assert promises.unmet(state, KEPT) == ['row "Memory limit": no memory limit is planned for the cgroup']


@pytest.mark.parametrize("options,found", [
    (("rw", "nosuid", "nodev", "noexec"), "/proc is mounted with 'rw,nosuid,nodev,noexec', without hidepid=2"),
    (None, "the container's /proc mount was not found"),
])
def test_proc_without_hidepid_is_named(options, found):
    problems = promises.unmet(prepared(), dataclasses.replace(KEPT, proc_options=options))
    assert problems == [f'row "/proc": {found}']


def test_the_run_path_aborts_cleans_up_and_removes_a_container_that_breaks_a_promise():
    config = ContainerConfig(argv=("/bin/true",), service_mode="production",
                             limits=validate_limits(memory=MEMORY, cpus=1))
    executor = FakeExecutor()
    driver = Driver(system, plan(config, FACTS, Artifacts(seccomp_sha256="ab" * 32), "c1").state, executor)
    driver.require(v.Create())
    driver.settle()
    asked = []

    def shown(memory_file):
        asked.append(memory_file)
        return "max\n", KEPT.proc_options, ()
    with pytest.raises(RuntimeFailure) as caught:
        keep_promises(driver, shown)
    assert asked == ["/sys/fs/cgroup/nucleus/c1/memory.max"]
    assert caught.value.exit_code == EXIT_FAILURE
    assert str(caught.value.message).startswith('production mode: the workload was not started: row "Memory limit"')
    assert (driver.state.lc.status, driver.state.lc.cleaned) == ("removed", True)
    assert (driver.state.res.phase, driver.state.net.phase) == ("released", "released")
    assert not any(isinstance(i, v.ExecWorkload) for i in executor.performed)  # never started
    assert any(isinstance(i, v.RemoveCgroup) for i in executor.performed)


def test_the_run_path_starts_a_container_that_keeps_its_promises():
    state = prepared()
    driver = Driver(system, state, FakeExecutor())
    keep_promises(driver, lambda memory_file: (KEPT.memory, KEPT.proc_options, ()))
    driver.require(v.Start())
    assert driver.state.lc.status == "running"

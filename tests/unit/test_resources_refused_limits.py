"""What the resources machine makes of a limits step that skipped writes (agent mode: one
warning per limit, naming its flag, the file, the value and the error; the step is done and the
spec's state is as for a complete one) and of a release that saw the OOM killer (with the peak),
and what a foreground run then says."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.app.run import oom_message
from nucleus.machines import resources
from tests.unit.machine_support import CGROUP, GROUP, ok, run

MiB = 1 << 20


def waiting_after(detail: str) -> tuple[resources.ResourcesState, tuple[v.Intent, ...]]:
    s, _ = run(resources, resources.initial(False, **CGROUP), v.ResBegin(), v.ResDone("create"))
    step = ok(resources.step(s, v.ResDone("limits", detail=detail)))
    return step.state, step.intents


def test_a_complete_limits_step_warns_of_nothing():
    s, intents = waiting_after("")
    assert (s.phase, s.limited, intents) == ("waiting", True, ())


def test_each_skipped_write_is_one_warning_naming_its_flag():
    detail = v.skipped_detail([(f"{GROUP}/memory.max", "536870912", "EINVAL (Invalid argument)"),
                               (f"{GROUP}/io.max", "8:0 rbps=1", "ENODEV (No such device)"),
                               (f"{GROUP}/some.new.file", "1", "EPERM (Operation not permitted)")])
    s, intents = waiting_after(detail)
    assert resources.to_tla(s) == {"res_required": False, "res_phase": "waiting", "res_held": True,
                                   "res_limited": True, "res_tries": 0}
    assert intents == (
        v.Warn(f"--memory not applied: writing '536870912' to {GROUP}/memory.max failed: EINVAL "
               "(Invalid argument); running with the other limits"),
        v.Warn(f"--io-limit not applied: writing '8:0 rbps=1' to {GROUP}/io.max failed: ENODEV "
               "(No such device); running with the other limits"),
        v.Warn(f"a cgroup limit not applied: writing '1' to {GROUP}/some.new.file failed: EPERM "
               "(Operation not permitted); running with the other limits"),
    )


def test_a_detail_in_no_known_form_is_still_reported():
    _, intents = waiting_after("something else")
    assert intents == (v.Warn("a cgroup limit not applied: writing '?' to ? failed: something else; "
                              "running with the other limits"),)


@pytest.mark.parametrize("detail,oom,peak", [
    ("", False, None), ("oom-killed", True, None), (f"oom-killed peak={64 * MiB}", True, 64 * MiB),
    ("oom-killed peak=x", True, None), ("something", False, None),
])
def test_the_release_detail_says_whether_the_oom_killer_acted_and_the_peak(detail, oom, peak):
    assert v.oom_of(detail) == (oom, peak)
    s, _ = run(resources, resources.initial(False, **CGROUP), v.ResBegin(), v.ResDone("create"),
               v.ResDone("limits"), v.ResRelease(), v.ResDone("release", detail=detail))
    assert (s.phase, s.oom_killed, s.oom_peak) == ("released", oom, peak)


def test_what_a_foreground_run_says_of_the_oom_killer():
    def said(detail: str, memory: int | None, code: int) -> str | None:
        s, _ = run(resources, resources.initial(False, **CGROUP), v.ResBegin(), v.ResDone("create"),
                   v.ResDone("limits"), v.ResRelease(), v.ResDone("release", detail=detail))
        return oom_message(s, memory, code)

    assert said("", 64 * MiB, 137) is None
    assert said(v.oom_detail(64 * MiB), 64 * MiB, 137) == (
        "nucleus: the workload was killed by the OOM killer (memory limit 64 MiB, peak 64 MiB)")
    assert said(v.oom_detail(67_043_328), 3 << 29, 137) == (
        "nucleus: the workload was killed by the OOM killer (memory limit 1.5 GiB, peak 63.9 MiB)")
    assert said(v.oom_detail(None), None, 0) == (
        "nucleus: the OOM killer killed a process of the workload (no memory limit of its own)")

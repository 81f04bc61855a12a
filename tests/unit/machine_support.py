"""What the machine tests share: accepting and refusing steps, and sample planned intents.

A refusal is what a user reads when they ask for something the container cannot do now, so the
machine tests pin the exact text of several; all of them must name the action and the state.
"""

from __future__ import annotations

import re
from typing import Any

from nucleus import vocab as v
from nucleus.config import modes
from nucleus.machines.base import Refused, Step


def ok(result: Step | Refused) -> Step:
    assert isinstance(result, Step), (
        f"refused: {result.why}" if isinstance(result, Refused) else result
    )
    return result


def refused(result: Step | Refused) -> str:
    assert isinstance(result, Refused), f"expected a refusal, got {result!r}"
    assert result.why.startswith("cannot ") or re.search(r" ha(s|ve) no action ", result.why), result.why
    return result.why


def without_state(why: str) -> str:
    """A composition refusal without its trailing description of the current phases."""
    return why.split(" (the container is ")[0]


def run(machine: Any, state: Any, *events: v.Event) -> tuple[Any, list[v.Intent]]:
    """Apply events in order (each must be accepted); return the final state and all intents."""
    intents: list[v.Intent] = []
    for e in events:
        r = ok(machine.step(state, e))
        state = r.state
        intents.extend(r.intents)
    return state, intents


# A small mount plan (each operation reports as the filesystem step "mount").
PLAN = (v.SetPropagation(), v.MountFs("tmpfs", "/new"), v.MakeDirs("/new", ("dev", "proc")))

# The production mount audit, as nucleus.plan.run builds it.
AUDIT = tuple((r.path, tuple(r.flags), r.required) for r in modes.mount_audit("production"))

# A cgroup v2 plan of one container (what nucleus.plan.cgroups makes for --memory 512M --pids 64):
# the resources machine issues exactly these intents, whatever they hold.
GROUP = "/sys/fs/cgroup/nucleus/c1"
CREATE = v.CreateCgroup(
    parents=("/sys/fs/cgroup/nucleus",),
    enable=(("/sys/fs/cgroup/nucleus/cgroup.subtree_control", "+cpu +memory +pids"),),
    dirs=(GROUP,),
)
LIMITS = v.SetCgroupLimits((
    (f"{GROUP}/memory.max", "536870912", False),
    (f"{GROUP}/memory.high", "483183820", False),
    (f"{GROUP}/memory.swap.max", "0", True),
    (f"{GROUP}/pids.max", "64", False),
))
ATTACH = v.AttachCgroup((f"{GROUP}/cgroup.procs",))
REMOVE = v.RemoveCgroup(
    procs=(f"{GROUP}/cgroup.procs",), kill=f"{GROUP}/cgroup.kill",
    freeze=(f"{GROUP}/cgroup.freeze", "1", "0", f"{GROUP}/cgroup.events", "frozen 1"),
    oom=(f"{GROUP}/memory.events", "oom_kill"), dirs=(GROUP,), parents=("/sys/fs/cgroup/nucleus",),
)
CGROUP = {"create": CREATE, "limits": LIMITS, "attach": ATTACH, "remove": REMOVE}

"""A health check or readiness command, run as `nucleus exec` runs a command: the Join machine
enters the container's cgroup and namespaces and gives the command the container's identity,
capabilities, seccomp program and Landlock rules, as the workload's user.

The check's process, its process group and its output are nucleus.effects.service's: every
process of the check is ended with that group, at its timeout and when it ends.
"""

from __future__ import annotations

import sys

from nucleus.effects import service as host
from nucleus.effects.service import Check


def start(cid: str, command: str, timeout: float, now: float) -> Check:
    """Fork the check of container `cid`: `/bin/sh -c command` joined into it."""
    return host.start_check(lambda: _join(cid, command), timeout, now)


def _join(cid: str, command: str) -> int:
    from nucleus.app import attach
    from nucleus.errors import NucleusError

    try:
        return attach.attach(cid, ["/bin/sh", "-c", command], verb="health-check")
    except NucleusError as e:
        sys.stderr.write(f"nucleus: {e.message}\n")  # into the check's output
        sys.stderr.flush()
        return e.exit_code

"""The audit log: one JSON object a line for every step of a container's lifecycle and of the
machines that set it up and tear it down, in the violation stream's vocabulary (``time``,
``container``, ``layer``). Pure: the steps come in as the machines' events.

A line holds::

    {"time": "2025-06-01T12:00:00.125Z", "container": {"id": "<32 hex>", "name": "web"},
     "layer": "security", "event": "seccomp_applied", "step": "sec.Done(seccomp)",
     "error": false, "detail": ""}

- ``layer``: "lifecycle", or the machine that took the step: "isolation", "filesystem",
  "security", "resources", "network", "join", "health", "secrets".
- ``event``: what happened, in snake case: the lifecycle's (``container_create``,
  ``security_prepared``, ``container_start``, ``container_exit``, ``container_signal``,
  ``supervisor_lost``, ``cleanup_done``, ``container_removed``, ...), a named step's
  (``namespaces_created``, ``seccomp_applied``, ``landlock_applied``, ``capabilities_dropped``,
  ``root_pivoted``, ``mount_audit_passed``, ``limits_applied``, ``egress_policy_applied``, ...),
  else ``<step>_done`` or ``<step>_failed``; a service's, in the layer ``health``
  (``service_ready``, ``service_healthy``, ``service_unhealthy``, ``service_terminated``,
  ``service_restarting``: see `service_notes`).
- ``step``: the machine's step as the specs and traces name it (``m.Action(arg)``).
- ``error``: the step failed (or the container was lost, or its setup failed).
- ``detail``: what the step reported: an exit status, a signal, the security level, an error's
  message; never a secret's value (``secrets_mounted`` names the files only).

With ``--audit-log -`` the lines go to stderr with a syslog priority prefix (``<6>``, or ``<3>``
for an error), which journald reads as the line's priority.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from nucleus import vocab as v
from nucleus.vocab import service as sv

if TYPE_CHECKING:  # the Service machine's state, not imported on a run's path for a type
    from nucleus.machines.service import ServiceState

LAYERS = {"lc": "lifecycle", "iso": "isolation", "fs": "filesystem", "sec": "security",
          "res": "resources", "net": "network", "join": "join"}

LIFECYCLE = {
    "Create": "container_create", "Prepared": "security_prepared", "SetupFailed": "setup_failed",
    "Start": "container_start", "Abort": "container_abort", "Exit": "container_exit",
    "Kill": "container_signal", "Lost": "supervisor_lost", "Attach": "command_joined",
    "CleanupDone": "cleanup_done", "Remove": "container_removed",
}
LIFECYCLE_ERRORS = frozenset({"SetupFailed", "Abort", "Lost"})

# Steps with a name of their own: (layer, step) -> (done, failed).
NAMED = {
    ("isolation", "unshare"): ("namespaces_created", "namespaces_failed"),
    ("isolation", "map_ids"): ("id_maps_written", "id_maps_failed"),
    ("filesystem", "pivot"): ("root_pivoted", "pivot_failed"),
    ("filesystem", "chroot"): ("chroot_fallback", "chroot_failed"),
    ("filesystem", "audit"): ("mount_audit_passed", "mount_audit_failed"),
    ("security", "seccomp"): ("seccomp_applied", "seccomp_failed"),
    ("security", "landlock"): ("landlock_applied", "landlock_failed"),
    ("security", "caps"): ("capabilities_dropped", "capabilities_failed"),
    ("resources", "limits"): ("limits_applied", "limits_failed"),
    ("resources", "release"): ("cgroup_released", "cgroup_release_failed"),
    ("network", "egress"): ("egress_policy_applied", "egress_policy_failed"),
    ("network", "proxy"): ("egress_proxy_started", "egress_proxy_failed"),
    ("network", "teardown"): ("network_released", "network_release_failed"),
}

_WORD = re.compile(r"(?<!^)(?=[A-Z])")
# A KEY=VALUE whose key names a secret: the value is never written.
SECRET_KEY = re.compile(r"(?i)\b([A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH)"
                        r"[A-Z0-9_]*)=(\S+)")


def redact(text: str) -> str:
    return SECRET_KEY.sub(lambda m: f"{m.group(1)}=***", text)


def _snake(name: str) -> str:
    return _WORD.sub("_", name).lower()


def step_name(event: v.Event) -> str:
    arg = event.tla_arg()
    return f"{event.machine}.{v.action_name(event)}" + (f"({arg})" if arg else "")


def _lifecycle_detail(event: v.Event) -> str:
    match event:
        case v.Prepared(level=level):
            return level
        case v.Exit(code=code, reason=reason):
            return f"status {code}" + (f": {reason}" if reason else "")
        case v.Kill(signal=sig):
            return f"SIG{sig}"
        case v.SetupFailed(reason=reason) | v.Abort(reason=reason):
            return reason
    return ""


def classify(event: v.Event) -> tuple[str, str, bool, str]:
    """(layer, event type, error, detail) of a machine's event."""
    layer = LAYERS.get(event.machine, event.machine or "lifecycle")
    action = v.action_name(event)
    if event.machine == "lc":
        return layer, LIFECYCLE.get(action, _snake(action)), action in LIFECYCLE_ERRORS, _lifecycle_detail(event)
    if isinstance(event, v.StepDone | v.StepFailed):
        failed = isinstance(event, v.StepFailed)
        named = NAMED.get((layer, event.step))
        kind = named[failed] if named else f"{event.step}_{'failed' if failed else 'done'}"
        detail = event.message if isinstance(event, v.StepFailed) else event.detail
        return layer, kind, failed, detail
    return layer, f"{layer}_{_snake(action)}", False, ""


def record(container_id: str, container_name: str, when: str, layer: str, kind: str, *,
           step: str = "", error: bool = False, detail: str = "") -> dict[str, object]:
    return {"time": when, "container": {"id": container_id, "name": container_name}, "layer": layer,
            "event": kind, "step": step, "error": error, "detail": redact(detail)}


def from_event(container_id: str, container_name: str, when: str, event: v.Event) -> dict[str, object]:
    layer, kind, error, detail = classify(event)
    return record(container_id, container_name, when, layer, kind, step=step_name(event), error=error,
                  detail=detail)


def service_notes(before: ServiceState, after: ServiceState, intents: tuple[object, ...]) -> list[tuple[str, bool, str]]:
    """(event type, error, detail) of one step of the Service machine (its state `before` and
    `after`, the intents it asked for): health as it changes (a check that leaves it as it was
    says nothing), readiness once, the workload ended as unhealthy, a restart coming."""
    notes: list[tuple[str, bool, str]] = []
    if after.ready and not before.ready:
        notes.append(("service_ready", False, ""))
    if after.health != before.health and after.health in ("healthy", "unhealthy"):
        failing = after.health == "unhealthy"
        last = after.log[-1] if after.log else None
        detail = "" if last is None else f"check {'timed out' if last.timed_out else f'exit status {last.code}'}"
        if failing:
            detail = f"{after.streak} checks failed in a row; last: {detail}"
        notes.append((f"service_{after.health}", failing, detail))
    for intent in intents:
        match intent:
            case sv.Terminate(reason=reason):
                notes.append(("service_terminated", True, reason))
            case sv.RestartAfter(delay=delay):
                notes.append(("service_restarting", False, f"restart {after.restarts} in {delay:g}s"))
    return notes


def line(entry: dict[str, object]) -> bytes:
    return json.dumps(entry, separators=(",", ":"), sort_keys=False).encode() + b"\n"


def journal_line(entry: dict[str, object]) -> bytes:
    """The line with the syslog priority journald reads from a stream: 3 (err) or 6 (info)."""
    return (b"<3>" if entry.get("error") else b"<6>") + line(entry)

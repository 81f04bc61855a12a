"""Recording a run (or a join) as an ITF trace: the audit trail of what one command did.

Each state holds the spec's variables and the `event` that led to it, as the specs' own traces
do; its "#meta" adds the event as it was fed (every field, e.g. a failure's errno and message)
and the intents the step issued, with what the kernel was given (the cgroup file and value, the
mount's flags). The trace's "#meta" holds the inputs of the plan (`plan`), so that replay plans
the run again and checks every intent against the record.
"""

from __future__ import annotations

import json
import os
from typing import Any

from nucleus import vocab as v
from nucleus.trace import itf


class Recorder:
    def __init__(self, machine: Any, module: str, path: str, description: str = "",
                 inputs: dict[str, Any] | None = None) -> None:
        self.machine = machine
        self.module = module
        self.path = path
        self.description = description
        self.inputs = inputs
        self.states: list[dict[str, Any]] = []
        self.state_meta: list[dict[str, Any]] = []

    def record(self, event: v.Event | None, state: Any, intents: tuple[v.Intent, ...] = ()) -> None:
        values = dict(self.machine.to_tla(state))
        if event is None:
            values["event"] = {"m": "", "name": "", "arg": ""}
            self.state_meta.append({})
        else:
            values["event"] = {"m": event.machine, "name": v.action_name(event), "arg": event.tla_arg()}
            self.state_meta.append({"event": v.to_wire(event), "intents": [v.to_wire(i) for i in intents]})
        self.states.append(values)

    def dump(self) -> dict[str, Any]:
        """The trace so far, as its ITF document."""
        meta = {"plan": self.inputs} if self.inputs is not None else None
        return itf.dump(self.module, self.states, self.description, meta, self.state_meta)

    @classmethod
    def resumed(cls, machine: Any, module: str, path: str, data: dict[str, Any]) -> Recorder:
        """A recorder that goes on from the trace `dump` gave (the same run, in another process:
        nucleus.app.keeper)."""
        trace = itf.parse(data, path)
        meta = dict(trace.meta)
        recorder = cls(machine, module, path, str(meta.get("description", "")), meta.get("plan"))
        recorder.states = [dict(state) for state in trace.states]
        recorder.state_meta = [{k: x for k, x in m.items() if k != "index"} for m in trace.state_meta]
        return recorder

    def write(self) -> None:
        data = self.dump()
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.path)

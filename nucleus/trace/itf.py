"""The Informal Trace Format (ITF, the JSON trace format of Apalache and Quint): read and write.

Values: strings, booleans and numbers as JSON; sets as {"#set": [...]}; big integers as
{"#bigint": "..."}; sequences and tuples as arrays ({"#tup": [...]} for tuples); records as
objects; functions as {"#map": [[k, v], ...]}.
"""

from __future__ import annotations

import json
from typing import Any

from nucleus.frozen import frozen


@frozen
class Trace:
    meta: dict[str, Any]
    vars: tuple[str, ...]
    states: tuple[dict[str, Any], ...]
    path: str = ""
    # Each state's "#meta" object (in a recorded run: the event as it was fed, with every field,
    # and the intents the step issued).
    state_meta: tuple[dict[str, Any], ...] = ()

    @property
    def module(self) -> str | None:
        return self.meta.get("module")


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "#set" in value:
            return frozenset(_hashable(decode(x)) for x in value["#set"])
        if "#bigint" in value:
            return int(value["#bigint"])
        if "#tup" in value:
            return tuple(decode(x) for x in value["#tup"])
        if "#map" in value:
            return {_hashable(decode(k)): decode(v) for k, v in value["#map"]}
        if "#unserializable" in value:
            raise ValueError(f"unserializable value in trace: {value['#unserializable']}")
        return {k: decode(v) for k, v in value.items() if not k.startswith("#")}
    if isinstance(value, list):
        return tuple(decode(x) for x in value)
    return value


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in value.items()))
    return value


def encode(value: Any) -> Any:
    if isinstance(value, bool) or isinstance(value, str) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**53) < value < 2**53 else {"#bigint": str(value)}
    if isinstance(value, (set, frozenset)):
        return {"#set": sorted((encode(x) for x in value), key=json.dumps)}
    if isinstance(value, (list, tuple)):
        return [encode(x) for x in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    raise TypeError(f"cannot encode {type(value).__name__} in ITF")


def load(path: str) -> Trace:
    with open(path) as f:
        data = json.load(f)
    return parse(data, path)


def parse(data: Any, path: str = "<trace>") -> Trace:
    if not isinstance(data, dict) or "states" not in data:
        raise ValueError(f"{path}: not an ITF trace (no 'states')")
    meta = data.get("#meta", {})
    if not isinstance(meta, dict) or not isinstance(data["states"], list):
        raise ValueError(f"{path}: not an ITF trace ('#meta' or 'states' malformed)")
    states = tuple(
        {k: decode(v) for k, v in state.items() if k != "#meta"} for state in data["states"]
    )
    state_meta = tuple(dict(state.get("#meta") or {}) for state in data["states"])
    names = tuple(data.get("vars") or (sorted(states[0]) if states else ()))
    return Trace(meta=meta, vars=names, states=states, path=path, state_meta=state_meta)


def dump(module: str, states: list[dict[str, Any]], description: str = "",
         meta: dict[str, Any] | None = None, state_meta: list[dict[str, Any]] | None = None,
         ) -> dict[str, Any]:
    names = sorted(states[0]) if states else []
    extra = state_meta or [{} for _ in states]
    return {
        "#meta": {
            "format": "ITF",
            "format-description": "https://apalache-mc.org/docs/adr/015adr-trace.html",
            "module": module,
            "description": description,
            **(meta or {}),
        },
        "vars": names,
        "states": [
            {"#meta": {"index": i, **extra[i]}, **{k: encode(v) for k, v in state.items()}}
            for i, state in enumerate(states)
        ],
    }

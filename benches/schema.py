"""The shape of bench-results/*.json, checked before a result is written (and by the tests).

A spec is a type (or tuple of types), a list holding one element spec, or a dict of required
keys; the key "*" gives the spec of every value of a mapping. A section that did not run is
{"status": "skipped" | "error", "error": str} instead of its full shape.
"""

from __future__ import annotations

SCHEMA = "nucleus-bench/1"

NUM = (int, float)
OPT_NUM = (int, float, type(None))
STR = str
OPT_STR = (str, type(None))

SUMMARY = {"n": int, "median": OPT_NUM, "min": OPT_NUM, "max": OPT_NUM, "samples": [NUM]}

COLD = {
    "reps": int, "unit": STR, "baseline": STR, "command": STR,
    "results": {"*": {"label": STR, "command": STR, "status": STR, **SUMMARY}},
}
BREAKDOWN = {
    "reps": int, "command": STR, "method": STR, "total_ms": SUMMARY,
    "phases": [{"phase": STR, "what": STR, **SUMMARY}],
    "setup_steps_ms": {"*": NUM}, "host_steps_ms": {"*": NUM}, "late_imports": [STR],
    "python_floor_ms": SUMMARY, "python_venv_site_ms": SUMMARY,
    "importtime": {"runs": int, "total_ms": SUMMARY, "by_group_ms": {"*": NUM},
                   "top_self_ms": [{"module": STR, "ms": NUM}],
                   "top_level_cumulative_ms": [{"module": STR, "ms": NUM}]},
    "cprofile": {"runs": int},
}
MEMORY = {
    "reps": int, "command": STR, "baseline": STR,
    "results": {"*": {"label": STR, "unit": STR, "status": STR, "rss": SUMMARY, "pss": SUMMARY}},
}
MICRO_TARGET = {"label": STR, "status": STR, **SUMMARY, "cpu": SUMMARY}
WORKLOAD = {
    "micro": {"*": {"what": STR, "iterations": int, "unit": STR, "baseline": STR,
                    "targets": {"*": MICRO_TARGET}}},
    "pgbench": {"what": STR, "status": STR},
}
THROUGHPUT = {
    "total_runs": int, "batch": int, "levels": [int], "command": STR, "baseline": STR,
    "results": {"*": {"label": STR, "levels": {"*": {"status": STR, "runs": int,
                                                     "runs_per_s": SUMMARY,
                                                     "overall_runs_per_s": OPT_NUM}}}},
}
ESCAPES = {  # optional in RESULT: results written before it have none
    "command": STR, "attempts": [STR], "reference": STR,
    "results": {"*": {"label": STR, "status": STR,
                      "attempts": {"*": {"outcome": STR, "errno": OPT_STR, "signal": OPT_STR,
                                         "detail": STR}}}},
}
RESULT = {
    "schema": STR, "date": STR, "duration_s": NUM,
    "machine": {"kernel": STR, "cpu_model": STR, "cores": int, "os": STR, "python": STR,
                "cgroups": STR},
    "config": {"quick": bool, "cold_reps": int},
    "tools": {"*": {"path": OPT_STR, "version": OPT_STR}},
    "nucleus": {"command": [STR], "limit_flags": [STR], "version": STR},
    "runtimes": {"*": {"status": STR}},
    "notes": [STR],
    "cold_start": COLD, "breakdown": BREAKDOWN, "memory": MEMORY, "workload": WORKLOAD,
    "throughput": THROUGHPUT,
    "targets": [{"target": STR, "measured": STR, "met": (bool, type(None))}],
    "leftovers": {"clean": bool, "processes": [STR], "mounts": [STR], "cgroups": [STR],
                  "state_dirs": [STR], "paths": [STR]},
}
SECTIONS = ("cold_start", "escapes", "breakdown", "memory", "workload", "throughput")


def _check(value, spec, path: str, problems: list[str]) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        if path.count(".") == 1 and path.split(".")[1] in SECTIONS and value.get("status") in ("skipped", "error"):
            if not isinstance(value.get("error"), str):
                problems.append(f"{path}.error: missing (a section that did not run says why)")
            return
        for key, sub in spec.items():
            if key == "*":
                for k, v in value.items():
                    _check(v, sub, f"{path}.{k}", problems)
            elif key not in value:
                problems.append(f"{path}.{key}: missing")
            else:
                _check(value[key], sub, f"{path}.{key}", problems)
        if value.get("status") == "n/a" and not isinstance(value.get("error"), str):
            problems.append(f"{path}.error: missing (n/a says why)")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(item, spec[0], f"{path}[{i}]", problems)
    else:
        types = spec if isinstance(spec, tuple) else (spec,)
        if isinstance(value, bool) and bool not in types:
            problems.append(f"{path}: expected {'/'.join(t.__name__ for t in types)}, got bool")
        elif not isinstance(value, types):
            problems.append(f"{path}: expected {'/'.join(t.__name__ for t in types)}, "
                            f"got {type(value).__name__}")


def validate(result: dict) -> list[str]:
    """Every way `result` departs from the schema ([] when it conforms)."""
    problems: list[str] = []
    _check(result, RESULT, "$", problems)
    if "escapes" in result:
        _check(result["escapes"], ESCAPES, "$.escapes", problems)
    if result.get("schema") != SCHEMA:
        problems.append(f"$.schema: expected {SCHEMA!r}, got {result.get('schema')!r}")
    return problems

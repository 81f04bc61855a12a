"""Cold start: the wall time from spawning a runtime to its exit, for `/bin/true`.

Runs are interleaved: each round runs every runtime once, starting with a different one each
round. Every runtime is warmed up first (page cache, nucleus's seccomp program cache)."""

from __future__ import annotations

import time

from benches import stats
from benches.runtimes import Runtime, first_line

COMMAND = ["/bin/true"]
WARMUP = 2


def run_once(rt: Runtime, args: list[str] = COMMAND) -> tuple[float, str | None]:
    """(milliseconds, error or None) of one start-to-exit run."""
    cid = rt.ctx.cid()
    t0 = time.perf_counter_ns()
    code, err = rt.run(args, cid)
    t1 = time.perf_counter_ns()
    rt.finish(cid)
    if code != 0:
        return (t1 - t0) / 1e6, first_line(err) or f"exit {code}"
    return (t1 - t0) / 1e6, None


def measure(runtimes: list[Runtime], reps: int, log=print, baseline: str = "runc") -> dict:
    samples: dict[str, list[float]] = {rt.name: [] for rt in runtimes}
    errors: dict[str, str] = {}
    live = list(runtimes)
    for rt in runtimes:
        for _ in range(WARMUP):
            _, err = run_once(rt)
            if err:
                errors[rt.name] = err
                live.remove(rt)
                break
    for i in range(reps):
        for rt in stats.rotated(live, i):
            if rt.name in errors:
                continue
            ms, err = run_once(rt)
            if err:
                errors[rt.name] = err
                continue
            samples[rt.name].append(ms)
        if (i + 1) % 10 == 0:
            log(f"  cold start: {i + 1}/{reps} rounds")
    base = stats.summary(samples.get(baseline, []))["median"]
    results = {}
    for rt in runtimes:
        s = stats.summary(samples[rt.name])
        entry = {"label": rt.label, "command": rt.command, **s}
        if rt.name in errors:
            entry.update(status="n/a", error=errors[rt.name])
        else:
            entry.update(status="ok", ratio_to_baseline=stats.ratio(s["median"], base))
        results[rt.name] = entry
    return {"reps": reps, "unit": "ms", "baseline": baseline, "command": " ".join(COMMAND),
            "results": results}


def with_network_ratio(section: dict, bridge: str = "nucleus-bridge", none: str = "nucleus-none",
                       egress: str = "nucleus-egress") -> dict:
    """The section with what a bridge costs: the median cold start with --network bridge over
    the one with --network none, both in a network namespace of their own, and the same for a
    bridge with an egress policy (None when either could not run)."""
    results = section.get("results", {})
    plain = results.get(none, {})
    for key, name in (("network_ratio", bridge), ("egress_ratio", egress)):
        other = results.get(name, {})
        ok = other.get("status") == plain.get("status") == "ok"
        section[key] = stats.ratio(other.get("median"), plain.get("median")) if ok else None
    return section


def unavailable(rt_name: str, label: str, reason: str) -> dict:
    return {"label": label, "command": "", "status": "n/a", "error": reason,
            **stats.summary([])}


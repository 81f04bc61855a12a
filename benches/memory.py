"""Memory kept per sleeping container: Rss and Pss summed over every process a runtime keeps
alive while its container runs `sleep`, the `sleep` itself left out.

For nucleus: the supervisor, the violation monitor and the container's init (the
compiled init, or a forked Python without it); runc and crun in the
foreground: the runtime process (its init became the workload); runc -d: nothing; bwrap: its
monitor and the namespace's init; runsc: the run process, the gofer and the sandbox with its
ptrace stubs (the workload lives inside the sandbox, so it is counted there)."""

from __future__ import annotations

import time

from benches import procs, stats
from benches.runtimes import Runtime, UnavailableError, reap_orphans, wait_ready

COMMAND = ["sleep", "30"]
SETTLE_S = 0.3  # let the runtime finish its post-start work before reading its memory


def measure_once(rt: Runtime) -> dict:
    cid = rt.ctx.cid()
    proc = rt.spawn(COMMAND, cid)
    try:
        wait_ready(rt, proc, cid)
        time.sleep(SETTLE_S)
        root = rt.kept_root(proc, cid)
        if root is None:
            return {"rss_kib": 0, "pss_kib": 0, "processes": []}
        return procs.tree_memory(root, exclude_comm=frozenset({"sleep"}))
    finally:
        rt.stop(proc, cid)
        rt.finish(cid)
        stray = reap_orphans(rt.ctx)
        if stray:
            raise RuntimeError(f"{rt.name}: processes still alive after stopping: {stray}")


def measure(runtimes: list[Runtime], reps: int, log=print, baseline: str = "runc") -> dict:
    samples: dict[str, list[dict]] = {rt.name: [] for rt in runtimes}
    errors: dict[str, str] = {}
    for i in range(reps):
        for rt in stats.rotated(runtimes, i):
            if rt.name in errors:
                continue
            try:
                samples[rt.name].append(measure_once(rt))
            except UnavailableError as e:
                errors[rt.name] = str(e)
    base = None
    results = {}
    for rt in runtimes:
        got = samples[rt.name]
        rss = stats.summary([s["rss_kib"] / 1024 for s in got], 2)
        pss = stats.summary([s["pss_kib"] / 1024 for s in got], 2)
        entry: dict = {"label": rt.label, "unit": "MiB", "rss": rss, "pss": pss}
        if got:
            # the processes of the median run, by Pss
            mid = sorted(got, key=lambda s: s["pss_kib"])[len(got) // 2]
            entry["processes"] = [
                {"comm": p["comm"], "cmdline": p["cmdline"], "rss_kib": p["rss_kib"],
                 "pss_kib": p["pss_kib"]} for p in mid["processes"]
            ]
        if rt.name in errors:
            entry.update(status="n/a", error=errors[rt.name])
        else:
            entry["status"] = "ok"
        results[rt.name] = entry
        if rt.name == baseline:
            base = pss["median"]
    for entry in results.values():
        if entry["status"] == "ok":
            entry["pss_ratio_to_baseline"] = stats.ratio(entry["pss"]["median"], base)
    return {"reps": reps, "command": " ".join(COMMAND), "baseline": baseline, "results": results}

"""Throughput: sandboxes per second, `/bin/true` started back to back by one caller and by N
concurrent callers (forked worker processes, each starting its share one after another).

The runs are split into batches; batches of the runtimes alternate, so a noisy moment hits all
of them. Every figure is runs per second over a batch (median, min, max over the batches), and
the overall rate (all runs over all their time)."""

from __future__ import annotations

import os
import time

from benches import stats
from benches.cold import COMMAND, run_once
from benches.runtimes import Runtime, reap_orphans


def _share(rt: Runtime, count: int) -> tuple[int, str | None]:
    failures, first = 0, None
    for _ in range(count):
        _, err = run_once(rt, COMMAND)
        if err:
            failures += 1
            first = first or err
    return failures, first


def batch(rt: Runtime, runs: int, concurrency: int) -> tuple[float, int, str | None]:
    """(seconds, failed runs, first error) for `runs` runs by `concurrency` callers."""
    if concurrency <= 1:
        t0 = time.perf_counter()
        failures, err = _share(rt, runs)
        return time.perf_counter() - t0, failures, err
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    shares = [runs // concurrency + (1 if i < runs % concurrency else 0) for i in range(concurrency)]
    pids = []
    for share in shares:
        pid = os.fork()
        if pid == 0:  # a worker: wait for the start, run its share, report, exit
            code = 0
            try:
                os.close(go_w)
                os.close(res_r)
                os.read(go_r, 1)
                failures, err = _share(rt, share)
                line = f"{failures}\t{(err or '').replace(chr(10), ' ')[:200]}\n".encode()
                os.write(res_w, line)
            except BaseException:  # noqa: BLE001 - a worker never returns into the harness
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(go_r)
    os.close(res_w)
    t0 = time.perf_counter()
    os.write(go_w, b"x" * len(pids))
    for pid in pids:
        os.waitpid(pid, 0)
    elapsed = time.perf_counter() - t0
    os.close(go_w)
    data = b""
    while chunk := os.read(res_r, 65536):
        data += chunk
    os.close(res_r)
    failures, first = 0, None
    lines = data.decode(errors="replace").splitlines()
    for line in lines:
        n, _, err = line.partition("\t")
        failures += int(n)
        first = first or (err or None)
    missing = len(pids) - len(lines)
    if missing:
        failures += missing
        first = first or f"{missing} worker(s) died"
    return elapsed, failures, first


def measure(runtimes: list[Runtime], total: int, batch_size: int, levels: list[int],
            log=print, baseline: str = "runc") -> dict:
    batches = max(1, total // batch_size)
    rates: dict[tuple[str, int], list[float]] = {}
    spent: dict[tuple[str, int], float] = {}
    done: dict[tuple[str, int], int] = {}
    errors: dict[tuple[str, int], str] = {}
    for b in range(batches):
        for level in levels:
            for rt in stats.rotated(runtimes, b + level):
                key = (rt.name, level)
                if key in errors:
                    continue
                seconds, failures, err = batch(rt, batch_size, level)
                stray = reap_orphans(rt.ctx)
                if stray:
                    err = err or f"left running: {stray}"
                if failures or stray:
                    errors[key] = f"{failures} of {batch_size} runs failed: {err}"
                    continue
                rates.setdefault(key, []).append(batch_size / seconds)
                spent[key] = spent.get(key, 0.0) + seconds
                done[key] = done.get(key, 0) + batch_size
        log(f"  throughput: batch {b + 1}/{batches}")
    results: dict = {}
    for rt in runtimes:
        per: dict = {}
        for level in levels:
            key = (rt.name, level)
            s = stats.summary(rates.get(key, []), 1)
            entry: dict = {"runs_per_s": s, "runs": done.get(key, 0),
                           "overall_runs_per_s": round(done[key] / spent[key], 1) if done.get(key) else None}
            if key in errors:
                entry.update(status="n/a", error=errors[key])
            else:
                entry["status"] = "ok"
            per[str(level)] = entry
        results[rt.name] = {"label": rt.label, "levels": per}
    for level in levels:
        base = results.get(baseline, {}).get("levels", {}).get(str(level), {}).get("runs_per_s", {}).get("median")
        for r in results.values():
            e = r["levels"][str(level)]
            e["ratio_to_baseline"] = stats.ratio(e["runs_per_s"]["median"], base) if e["status"] == "ok" else None
    return {"total_runs": batches * batch_size, "batch": batch_size, "levels": levels,
            "command": " ".join(COMMAND), "baseline": baseline, "results": results}

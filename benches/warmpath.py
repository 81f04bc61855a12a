"""Where the warm path's milliseconds go: a resident caller (this process) asks a `nucleus serve`
of its own for sandbox after sandbox, and each request is timed at every message of the exchange
(serve_wire's send and Reader.next wrapped from the outside, as phases.py wraps the run), with
the CPU time of each sandbox's process tree (the supervisor and what it forked: the server
reaps them, so they are its children's time).

    python -m benches.warmpath [--reps N]

Runs `/bin/true` with the bench's limits (as the cold-start rows), after two warm-up requests.
The supervisor's own phases are a cold run's after its imports: `benches/phases.py`."""

from __future__ import annotations

import argparse
import os
import statistics
import time

from benches import cold, runtimes
from benches.session import Session

PHASES = (
    ("create", "create: connect, send the request, the server's machine accepts it"),
    ("start", "start: the server forks the supervisor (stdio passed), answers started"),
    ("run", "the run in the supervisor, started to exited (a cold run's work after its imports)"),
    ("remove", "remove: the server forgets the sandbox"),
    ("total", "total, as the caller sees it"),
)


def _children_cpu_ms(pid: int) -> float:
    """cutime + cstime of `pid` (/proc/PID/stat fields 16 and 17), in milliseconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) * 1000 / os.sysconf("SC_CLK_TCK")


def measure(rt: runtimes.NucleusServed, reps: int) -> dict:
    from nucleus.effects import serve_wire as wire

    marks: list[tuple[str, int]] = []
    send, take = wire.send, wire.Reader.next

    def timed_send(sock, message, fds=()):
        marks.append((f"send {message['op']}", time.perf_counter_ns()))
        return send(sock, message, fds)

    def timed_next(reader):
        message = take(reader)
        marks.append((f"got {(message or {}).get('op')}", time.perf_counter_ns()))
        return message

    wire.send, wire.Reader.next = timed_send, timed_next
    samples: dict[str, list[float]] = {name: [] for name, _ in PHASES}
    try:
        for _ in range(cold.WARMUP):
            rt.run(cold.COMMAND, rt.ctx.cid())
        assert rt.server is not None
        cpu0 = _children_cpu_ms(rt.server.pid)
        for _ in range(reps):
            marks.clear()
            t0 = time.perf_counter_ns()
            code, err = rt.run(cold.COMMAND, rt.ctx.cid())
            t1 = time.perf_counter_ns()
            if code != 0:
                raise RuntimeError(runtimes.first_line(err) or f"exit {code}")
            at = dict(marks)
            for name, ns in (("create", at["got created"] - t0), ("start", at["got started"] - at["send start"]),
                             ("run", at["got exited"] - at["got started"]), ("remove", t1 - at["send remove"]),
                             ("total", t1 - t0)):
                samples[name].append(ns / 1e6)
        cpu = (_children_cpu_ms(rt.server.pid) - cpu0) / reps
    finally:
        wire.send, wire.Reader.next = send, take
    return {"reps": reps, "cpu_ms_per_sandbox": round(cpu, 1),
            "phases": [{"phase": name, "what": what, "median": round(statistics.median(samples[name]), 2),
                        "min": round(min(samples[name]), 2), "max": round(max(samples[name]), 2)}
                       for name, what in PHASES]}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benches.warmpath")
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args()
    with Session(log=lambda _: None, need_mntns=False) as ctx:
        rt = runtimes.NucleusServed(ctx)
        try:
            rt.check()
            result = measure(rt, args.reps)
        finally:
            runtimes.stop_servers()
    print(f"{'median ms':>10} {'min':>7} {'max':>7}  phase ({result['reps']} requests, load "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])})")
    for row in result["phases"]:
        print(f"{row['median']:10.2f} {row['min']:7.2f} {row['max']:7.2f}  {row['what']}")
    print(f"CPU time of each sandbox's process tree: {result['cpu_ms_per_sandbox']} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

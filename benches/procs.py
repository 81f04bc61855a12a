"""Processes, their memory, and what a benchmark could leave behind.

Memory figures come from /proc/PID/smaps_rollup: Rss (resident pages, shared ones counted in
full) and Pss (each shared page divided by the number of processes mapping it), in KiB.
"""

from __future__ import annotations

import glob
import os

LIBEXEC = "/usr/local/libexec/nucleus-bench"
STATE_ROOTS = ("/run/runc", "/run/crun", "/var/run/runsc", "/run/nucleus-bench")
# Default state roots a runtime creates on any invocation (crun makes /run/crun even for
# --version), removed at the end of a session if it made them and they are empty.
DEFAULT_ROOTS = ("/run/crun", "/run/runc", "/var/run/runsc")
NUCLEUS_RECORDS = "/run/nucleus/containers"  # nucleus's record of each container (ps, rm)


def _text(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _records() -> set[str]:
    try:
        return {os.path.join(NUCLEUS_RECORDS, n) for n in os.listdir(NUCLEUS_RECORDS)}
    except OSError:
        return set()


def _stat(pid: int) -> tuple[str, int] | None:
    """(comm, ppid) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    lpar, rpar = data.index("("), data.rindex(")")
    fields = data[rpar + 2:].split()
    return data[lpar + 1:rpar], int(fields[1])


def table() -> dict[int, tuple[str, int]]:
    """pid -> (comm, ppid) for every process visible now."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def descendants(root: int, procs: dict[int, tuple[str, int]] | None = None) -> list[int]:
    """root and every process below it, parents before children."""
    procs = table() if procs is None else procs
    children: dict[int, list[int]] = {}
    for pid, (_, ppid) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        if pid in procs or pid == root:
            out.append(pid)
        todo.extend(sorted(children.get(pid, ())))
    return [p for p in out if p in procs]


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def rollup(pid: int) -> dict[str, int] | None:
    """{"rss_kib", "pss_kib"} of one process, or None if it is gone (or has no memory map)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key.lower() + "_kib"] = int(rest.split()[0])
    return values if len(values) == 2 else None


def tree_memory(root: int, exclude_comm: frozenset[str] = frozenset()) -> dict[str, object]:
    """Sum of Rss and Pss over root's process tree, leaving out processes named in
    exclude_comm (the workload itself). Lists every process counted."""
    procs = table()
    counted = []
    for pid in descendants(root, procs):
        comm = procs[pid][0]
        if comm in exclude_comm:
            continue
        mem = rollup(pid)
        if mem is None:  # kernel threads and zombies map nothing
            continue
        counted.append({"pid": pid, "comm": comm, "cmdline": cmdline(pid)[:160], **mem})
    return {
        "rss_kib": sum(p["rss_kib"] for p in counted),
        "pss_kib": sum(p["pss_kib"] for p in counted),
        "processes": counted,
    }


def mountpoints() -> set[str]:
    points = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            points.add(line.split()[4])
    return points


class Snapshot:
    """What exists before a benchmark, to tell afterwards what it left behind."""

    def __init__(self, marker: str, workdir: str | None = None) -> None:
        self.marker = marker  # every container id and cgroup the harness makes starts with it
        self.workdir = workdir
        self.mounts = mountpoints()
        self.records = _records()
        self.roots = {p for p in DEFAULT_ROOTS if os.path.lexists(p)}

    def remove_created_roots(self) -> None:
        for path in DEFAULT_ROOTS:
            if path not in self.roots and os.path.isdir(path) and not os.listdir(path):
                os.rmdir(path)

    def _ours(self, text: str) -> bool:
        return self.marker in text or (self.workdir is not None and self.workdir in text)

    def leftovers(self) -> dict[str, object]:
        """Everything of the harness still present: live descendants of this process, processes
        naming its container ids or work directory, new mounts, cgroups, runtime state
        directories, the helper directory under /usr/local/libexec, the work directory."""
        me = os.getpid()
        procs = table()
        below = descendants(me, procs)
        mine = set(below)
        processes = [f"{pid} {procs[pid][0]}: {cmdline(pid)[:120]}" for pid in below[1:]]
        for pid in procs:
            if pid not in mine and self._ours(cmdline(pid)):
                processes.append(f"{pid} {procs[pid][0]}: {cmdline(pid)[:120]}")
        mounts = sorted(
            m for m in mountpoints() - self.mounts
            if self._ours(m) or m.startswith(("/sys/fs/cgroup", LIBEXEC, "/run/nucleus-bench"))
        )
        cgroups = sorted(
            glob.glob(f"/sys/fs/cgroup/*/{self.marker}*") + glob.glob(f"/sys/fs/cgroup/*/*/{self.marker}*")
        )
        state = sorted(p for root in STATE_ROOTS for p in glob.glob(f"{root}/{self.marker}*"))
        state += sorted(p for p in _records() - self.records if self._ours(_text(p)))
        # A default root made during the run and left empty is the harness's (remove_created_roots
        # removes those); one holding another user's containers (a shared machine) is not.
        state += sorted(p for p in DEFAULT_ROOTS if p not in self.roots and os.path.lexists(p)
                        and not (os.path.isdir(p) and os.listdir(p)))
        paths = [p for p in (LIBEXEC, self.workdir) if p and os.path.lexists(p)]
        found = {"processes": processes, "mounts": mounts, "cgroups": cgroups,
                 "state_dirs": state, "paths": paths}
        return {**found, "clean": not any(found.values())}

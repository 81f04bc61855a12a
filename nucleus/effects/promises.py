"""What the host shows of production's promises just before Start (nucleus.plan.promises
compares it with the plan): the memory limit read back from the container's cgroup, and the
options of the /proc mount the container's init sees."""

from __future__ import annotations

Shown = tuple[str | None, tuple[str, ...] | None, tuple[tuple[str, str], ...]]


def observe(memory_file: str | None, init_pid: int) -> Shown:
    """(the memory limit file's content, the container's /proc options, what could not be read
    and why): nucleus.plan.promises.Observed's fields."""
    unread = []
    memory = None
    if memory_file is not None:
        try:
            with open(memory_file) as f:
                memory = f.read()
        except OSError as e:
            unread.append(("memory", f"{memory_file}: {e.strerror or e}"))
    proc = None
    try:
        proc = proc_options(f"/proc/{init_pid}/mountinfo")
    except OSError as e:
        unread.append(("proc_options", f"/proc/{init_pid}/mountinfo: {e.strerror or e}"))
    return memory, proc, tuple(unread)


def proc_options(mountinfo: str) -> tuple[str, ...] | None:
    """The options (the mount's, then the filesystem's) of the last proc filesystem mounted on
    /proc in `mountinfo`, or None."""
    found = None
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            if " - " not in line or len(fields) < 6:
                continue
            after = line.split(" - ", 1)[1].split()
            if fields[4] == "/proc" and after and after[0] == "proc":
                found = tuple(fields[5].split(",")) + (tuple(after[2].split(",")) if len(after) > 2 else ())
    return found

"""Run a test body in a forked child.

A seccomp filter, a Landlock ruleset or a capability drop cannot be lifted, and a denied call may
kill the process, so the kernel tests apply them in a child:

- ``in_child(body)`` forks and runs ``body()`` in the child, which exits 0 when it returns and 1
  when it raises. ``before=prepare`` runs ``prepare()`` first and calls ``body(prepare())``: what
  the body needs, made before it restricts itself. ``capture=True`` collects the child's stdout
  and stderr (and those of a program it execs).
- ``say(value)``, called in the child, reports a JSON value to the parent at once, so a report
  made before a fatal call survives.
- The returned ``Child`` tells how the child ended (``exit_code``, ``killed_by``), what it said
  (``reports``), how the body ended (``result``) and, for a body that must simply succeed, what
  it returned (``value``).
"""

from __future__ import annotations

import json
import os
import select

# In the child: where say() writes. None in the test process.
_report_fd: int | None = None


class Child:
    def __init__(self, status: int, messages: list[dict], output: bytes) -> None:
        self.status = status
        self.output = output
        # The values said, in order.
        self.reports = [m["say"] for m in messages if "say" in m]
        # {"value": v} when the body returned v, {"error": ..., "errno": ...} when it raised,
        # None when it did neither (it exec'd, or was killed).
        self.result = next((m for m in messages if "say" not in m), None)

    @property
    def killed_by(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def exit_code(self) -> int | None:
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None

    @property
    def value(self):
        """What the body returned; the test fails unless it returned and the child exited 0."""
        assert self.exit_code == 0 and self.result is not None and "value" in self.result, self
        return self.result["value"]

    def __repr__(self) -> str:
        shown = f", output={self.output[-400:]!r}" if self.output else ""
        return (f"Child(killed_by={self.killed_by}, exit={self.exit_code}, "
                f"reports={self.reports}, result={self.result}{shown})")


def _send(message: dict) -> None:
    assert _report_fd is not None, "say() is for the body of in_child"
    data = json.dumps(message).encode() + b"\n"
    while data:
        data = data[os.write(_report_fd, data):]


def say(value) -> None:
    """In the child: report ``value`` (JSON-able) to the parent now."""
    _send({"say": value})


def in_child(body, *, before=None, capture: bool = False) -> Child:
    """Fork, run ``body()`` (or ``body(before())``) in the child, wait for it; see the module."""
    global _report_fd
    r, w = os.pipe()  # not inherited: a program the body execs does not hold it open
    out_r, out_w = os.pipe() if capture else (None, None)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            _report_fd = w
            if capture:
                os.close(out_r)
                os.dup2(out_w, 1)
                os.dup2(out_w, 2)
                os.close(out_w)
            try:
                value = body(before()) if before is not None else body()
                message = {"value": value}
                json.dumps(message)  # a value that cannot be reported is the body's error
                code = 0
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                message = {"error": f"{type(e).__name__}: {e}", "errno": getattr(e, "errno", None)}
                code = 1
            _send(message)
        finally:
            os._exit(code)
    os.close(w)
    if capture:
        os.close(out_w)
    data = _read_all([r, out_r] if capture else [r])
    _, status = os.waitpid(pid, 0)
    messages = [json.loads(line) for line in data[r].splitlines()]
    return Child(status, messages, data.get(out_r, b""))


def _read_all(fds: list[int]) -> dict[int, bytes]:
    """Read every pipe to its end (together: a child filling one must not block on it) and close
    it."""
    data = {fd: b"" for fd in fds}
    pending = set(fds)
    while pending:
        ready, _, _ = select.select(sorted(pending), [], [])
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                data[fd] += chunk
            else:
                pending.discard(fd)
                os.close(fd)
    return data

"""Run one batch of intents through the real serving loop of the spawned process
(``nucleus.effects.setup.serve``) in a forked child, which inherits the test's fake libc: the
events that come back are those the supervisor would receive, Fail events included."""

from __future__ import annotations

import os

from nucleus import vocab as v
from nucleus.effects import channel, setup


def serve_batch(
    intents: tuple[v.Intent, ...], programs: dict[str, bytes] | None = None
) -> tuple[list[v.Event], int]:
    """The events the serving loop answers to ``intents``, and its exit code once the pipe is
    closed (125: the supervisor went away)."""
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; serve() never returns
        try:
            os.close(req_w)
            os.close(resp_r)
            setup.serve(setup.SetupProcess(req_fd=req_r, resp_fd=resp_w, programs=programs or {}))
        finally:
            os._exit(99)
    os.close(req_r)
    os.close(resp_w)
    try:
        channel.send_intents(req_w, intents)
        events = channel.receive_events(resp_r)
    finally:
        os.close(req_w)
        os.close(resp_r)
        _, status = os.waitpid(pid, 0)
    return events, os.waitstatus_to_exitcode(status)

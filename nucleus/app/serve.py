"""`nucleus serve`: a resident server that has imported the run path once and, per request,
forks a supervisor that is exactly a cold `nucleus run` of the caller.

The Server machine (nucleus.machines.server, formal/Server.tla) decides who is served, which
sandbox a message may touch, and what a hangup, SIGTERM and the shutdown's deadline do; the
effects (nucleus.effects.serve) listen, fork, forward, reap and report, as its intents say.
"""

from __future__ import annotations

from collections.abc import Callable

from nucleus.driver import Driver
from nucleus.effects import probe
from nucleus.effects import serve as effects
from nucleus.errors import InvalidInput
from nucleus.machines import server
from nucleus.machines.base import Refused
from nucleus.vocab.events import Event

SOCKET_NAME = "serve.sock"
GRACE = 10.0  # seconds the shutdown waits for the supervisors it asked to end


def default_socket() -> str:
    """`serve.sock` in the state directory: /run/nucleus as root, else
    $XDG_RUNTIME_DIR/nucleus (or what --root / NUCLEUS_STATE_DIR names)."""
    facts = probe.identity()
    return f"{facts.state_root.rstrip('/')}/{SOCKET_NAME}"


def serve(path: str | None, group: str | None, grace: float, body: Callable[[list[str]], int],
          warm: Callable[[], None]) -> int:
    """Run the server until SIGTERM or SIGINT (then the shutdown); its exit status. `body`:
    what a child runs once it is the caller (the CLI's run); `warm`: imports the run path."""
    import posixpath

    path = posixpath.abspath(path or default_socket())
    root = probe.identity().euid == 0
    gid = None
    if group is not None:
        if not root:
            raise InvalidInput(f"--group {group!r}: only a server run as root serves other users",
                               hint="run nucleus serve as root, or leave --group out")
        gid = _group_id(group)
    warm()
    _freeze()
    listener, inode = effects.listen(path, gid)
    loop = effects.Server(path, listener, inode, grace, body)
    print(f"nucleus serve: listening on {path}", flush=True)
    driver = Driver(server, server.initial(root), loop)

    def feed(event: Event) -> str | None:
        result = driver.feed(event)
        return result.why if isinstance(result, Refused) else None

    loop.feed = feed
    loop.phase = lambda: str(driver.state.phase)
    return loop.serve()


def _freeze() -> None:
    """Leave what the template holds (modules, their objects) out of every later garbage
    collection: a supervisor's collection then never writes to, and so never copies, the pages
    it shares with the server, however long its sandbox runs."""
    import gc

    gc.collect()
    gc.freeze()


def _group_id(group: str) -> int:
    if group.isdigit():
        return int(group)
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise InvalidInput(f"--group {group!r}: no such group", hint="name a group of /etc/group, or a gid") from None

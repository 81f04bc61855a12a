"""What `nucleus exec` asks of the command it runs in a running container, beyond the
container's own restrictions: a user, a working directory, more environment, a terminal, the
caller's stdin. `nucleus attach` is `exec -i` without the other options (ATTACH). Checked for form only
(which user a name is, the container decides: nucleus.plan.join). Pure.
"""

from __future__ import annotations

from nucleus.config import users
from nucleus.config.container import env_key_refused
from nucleus.errors import InvalidInput
from nucleus.frozen import frozen


@frozen
class ExecOptions:
    user: str | None = None  # -u: None runs as the container's workload does
    workdir: str | None = None  # -w: None is the container's working directory
    env: tuple[tuple[str, str], ...] = ()  # --env-file's, then -e's (a later name wins)
    tty: bool = False  # -t
    interactive: bool = False  # -i: the command reads the caller's stdin (else /dev/null)


def validate(options: ExecOptions) -> ExecOptions:
    """Raise InvalidInput naming the flag and value; returns the options."""
    if options.user is not None:
        users.parse(options.user)
    if options.workdir is not None and (not options.workdir.startswith("/") or "\0" in options.workdir):
        raise InvalidInput(f"--workdir {options.workdir!r}: must be an absolute path inside the container",
                           hint="for example -w /tmp")
    for key, _ in options.env:
        if env_key_refused(key):
            raise InvalidInput(f"--env {key!r}: refused")
    return options


PLAIN = ExecOptions()  # `exec` without options: the container's user, directory and environment
ATTACH = ExecOptions(interactive=True)  # what `nucleus attach` asks: the caller's stdin, as ever

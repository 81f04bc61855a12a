"""Loading the --env-file files named on the command line (of `run` and `exec`): each read once,
as the caller (a regular file of at most 1 MiB), and handed to the pure parser
(nucleus.config.env_file) with the caller's environment, which a bare KEY takes its value from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nucleus.config import env_file
from nucleus.effects import prepare


def load(paths: Iterable[str], environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Every file's variables, in the order given."""
    return env_file.parse_all(((path, prepare.read_small_file(env_file.FLAG, path, env_file.MAX_BYTES))
                               for path in paths), environ)

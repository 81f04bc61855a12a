"""Write the virtualenv's `nucleus` command as a launcher that starts the interpreter isolated and
without site:

    .venv/bin/python -m tools.launcher        (`make setup` runs it after pip)

pip's console script runs the interpreter with site, which scans site-packages, reads every .pth
file there and, for the editable install, imports setuptools' finder and what it needs (pathlib,
fnmatch, re, importlib.util): about two thirds of the interpreter's start (BENCHMARKS.md, cold
start). The launcher runs `python -IS` (no site, no user site, no PYTHON* variables, no script
directory on sys.path) and names the two directories nucleus is imported from itself: this
source tree, so the install stays editable, and the virtualenv's site-packages, for click and
the libraries imported only by some runs. pip's script does the same work, slower; a `pip
install -e .` puts it back, and `make setup` writes the launcher again.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEMPLATE = """\
#!{python} -IS
# nucleus's launcher, written by tools/launcher.py (make setup): an isolated interpreter without
# site, importing nucleus from its source tree and the libraries from the virtualenv.
import sys
sys.path[:0] = [{root!r}, {site!r}]
from nucleus.cli.entry import main
main()
"""


def script() -> str:
    return TEMPLATE.format(python=sys.executable, root=str(ROOT),
                           site=sysconfig.get_paths()["purelib"])


def install(path: str) -> None:
    """Replace `path` with the launcher in one rename (a run starting meanwhile sees either)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(script())
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def main() -> None:
    if sys.prefix == sys.base_prefix:
        raise SystemExit("tools.launcher: run it with the virtualenv's python")
    path = os.path.join(os.path.dirname(sys.executable), "nucleus")
    install(path)
    print(f"{path}: python -IS launcher for {ROOT}")


if __name__ == "__main__":
    main()

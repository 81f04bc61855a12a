"""What goes wrong in the tooling: an error a checker reports, and the way out of the command."""

from __future__ import annotations

import sys
from typing import NoReturn

from nucleus.tla.errors import TlaError

# A checker could not run, or reported something other than a verdict (the built-in checker's
# SpecError and EvalError are ToolErrors too).
ToolError = TlaError


def die(message: str, code: int = 2) -> NoReturn:
    print(f"tools.tla: {message}", file=sys.stderr)
    sys.exit(code)

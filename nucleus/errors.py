"""The error vocabulary. Only the CLI turns these into text and exit codes.

Exit codes follow Docker's, so that nucleus's own failures never pass for the workload's status:
125 nucleus failed or refused (every error here, a usage error, an internal error), 126 the
command was found but cannot be invoked, 127 it was not found; anything else is the workload's
own status (128+N when a signal N ended it).
"""

from __future__ import annotations

EXIT_FAILURE = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


class NucleusError(Exception):
    """Base error: a message a user can read, and an optional hint."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text

    def to_data(self) -> dict[str, object]:
        """The error as a structured value, to cross a process boundary."""
        return {"kind": type(self).__name__, "message": self.message, "hint": self.hint,
                "exit_code": self.exit_code}


class InvalidInput(NucleusError):
    """Bad input from a flag or a file: nothing was done."""


class RuntimeFailure(NucleusError):
    """A refused transition or a failed effect."""


class HostUnsupported(NucleusError):
    """The host lacks a feature that was required."""


def error_from_data(data: dict[str, object]) -> NucleusError:
    """The error another process sent with `NucleusError.to_data`."""
    kinds: dict[str, type[NucleusError]] = {
        cls.__name__: cls for cls in (NucleusError, InvalidInput, RuntimeFailure, HostUnsupported)}
    cls = kinds.get(str(data.get("kind")), RuntimeFailure)
    hint = data.get("hint")
    error = cls(str(data.get("message", "")), hint=None if hint is None else str(hint))
    code = data.get("exit_code")
    if isinstance(code, int) and code != cls.exit_code:
        error.exit_code = code
    return error

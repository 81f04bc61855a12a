"""The error vocabulary. Only the CLI turns these into text and exit codes."""

from __future__ import annotations


class NucleusError(Exception):
    """Base error: a message a user can read, and an optional hint."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


class InvalidInput(NucleusError):
    """Bad input from a flag or a file: nothing was done."""

    exit_code = 2


class RuntimeFailure(NucleusError):
    """A refused transition or a failed effect."""

    exit_code = 1


class HostUnsupported(NucleusError):
    """The host lacks a feature that was required."""

    exit_code = 3

"""sha256 pins of policy files: the file's bytes against the hash given with a ``--*-sha256``
option."""

from __future__ import annotations

import re

from nucleus.config.policy.common import _show
from nucleus.errors import InvalidInput

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def sha256_of(data: bytes) -> str:
    """The lower-case hex sha256 of ``data`` (what ``sha256sum`` prints)."""
    import hashlib  # here, not at the top: it loads OpenSSL, and most runs pin nothing

    return hashlib.sha256(data).hexdigest()


def check_pin(path_label: str, data: bytes, expected_hex: str, flag: str) -> str:
    """Check the file's bytes against the pinned sha256 given with ``flag``; return the digest.

    The pin must be 64 hex digits (either case, surrounding blanks ignored). A mismatch raises
    InvalidInput printing both hashes.
    """
    pin = expected_hex.strip() if isinstance(expected_hex, str) else expected_hex
    if not isinstance(pin, str) or not _HEX64.fullmatch(pin):
        raise InvalidInput(
            f"{flag} {_show(expected_hex, 80)}: not a sha256 (64 hexadecimal characters)",
            hint=f"compute it with: sha256sum {path_label}",
        )
    actual = sha256_of(data)
    if actual != pin.lower():
        raise InvalidInput(
            f"{flag}: {path_label!r} has sha256 {actual}, expected {pin.lower()}",
            hint="the file is not the one that was pinned: review what changed, then pin the "
            f"new hash (sha256sum {path_label})",
        )
    return actual

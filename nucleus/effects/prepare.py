"""What a command prepares before it changes anything on the host: policy files read once, the
seccomp program compiled (or taken from the cache; compiling is where a bad profile is refused),
the context's manifest taken. Nothing here creates a container resource; the seccomp cache is
the only thing written.
"""

from __future__ import annotations

import hashlib
import os

from nucleus.effects import abi, integrity, seccomp
from nucleus.errors import HostUnsupported, InvalidInput, RuntimeFailure


def read_file(flag: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidInput(f"{flag} {path!r}: {e.strerror}") from e


def architecture() -> tuple[str, str]:
    """This machine's architecture (uname -m) and libseccomp's token for it; refuses a machine
    nucleus has no syscall table for."""
    arch = abi.check_architecture()
    return arch.machine, arch.seccomp_arch


def kernel_release() -> str:
    return os.uname().release


def program(profile: dict[str, object], flag: str | None = None, path: str | None = None) -> tuple[str, bytes]:
    """The compiled program of `profile` and its sha256; kept in the cache by that hash too, so
    that `attach` can load exactly the container's program later. A profile libseccomp cannot
    compile is refused naming the flag and file."""
    try:
        compiled = seccomp.cached_program(profile)
    except ImportError as e:
        raise HostUnsupported(f"cannot compile the seccomp profile: {e}",
                              hint="install libseccomp and its Python bindings (pip install pyseccomp)") from e
    except ValueError as e:
        if flag is None:
            raise RuntimeFailure(f"internal: the default seccomp profile does not compile: {e}") from e
        raise InvalidInput(f"{flag} {path!r}: {e}") from e
    sha = hashlib.sha256(compiled).hexdigest()
    seccomp.keep_by_sha256(sha, compiled)
    return sha, compiled


def program_by_sha256(sha: str) -> bytes | None:
    """A program this host compiled earlier, by its sha256 (checked against the bytes read)."""
    return seccomp.read_by_sha256(sha)


def context_manifest(path: str, exclude: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """--verify-context-integrity: the source context's manifest, taken before the copy."""
    return tuple(sorted(integrity.manifest(path, exclude).items()))

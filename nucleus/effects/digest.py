"""sha256 for the run path: CPython's own small sha256 module loads in ~0.2 ms where hashlib,
which loads OpenSSL, takes ~5 ms of a cold start; the digest is the same."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from collections.abc import Callable


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _constructor() -> Callable[[bytes], Digest]:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256
    # The private modules have no stubs; their sha256 is hashlib.sha256's twin.
    return cast("Callable[[bytes], Digest]", sha256)


sha256 = _constructor()

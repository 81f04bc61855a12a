"""`nucleus cp`: which end is the container's, and what is created where. Pure.

Docker's syntax: `nucleus cp CONTAINER:PATH HOSTDEST` or `nucleus cp HOSTSRC CONTAINER:PATH`;
exactly one end names a container (a host path holding ':' is written with a '/' or './' in
front). The container's path is absolute and holds no '..'. What is copied is created new:
into DEST when DEST is an existing directory (under the source's name), else as DEST itself;
nothing that exists is replaced. Symlinks are copied as links and never followed; devices,
sockets and FIFOs are left out and named; the data copied is capped (`--max-size`).
"""

from __future__ import annotations

import posixpath
import re
from typing import NamedTuple

from nucleus.errors import InvalidInput

DEFAULT_MAX_SIZE = 1 << 30
SIZE_FLAG = "--max-size"
_CONTAINER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63}):(.*)$")


class Ends(NamedTuple):
    """The two ends of a copy."""

    container: str  # as the user named it
    inside: str  # the container's path, normalized
    host: str  # the host path, as given
    outward: bool  # True: from the container to the host


def _inside(given: str, path: str) -> str:
    if not path.startswith("/"):
        raise InvalidInput(f"{given!r}: the container's path {path!r} is not absolute",
                           hint="name it from the container's root, e.g. box:/context/out.txt")
    if ".." in path.split("/") or "\0" in path:
        raise InvalidInput(f"{given!r}: the container's path {path!r} holds '..' or a NUL byte")
    return "/" + posixpath.normpath(path).lstrip("/")


def parse(src: str, dest: str) -> Ends:
    """The ends of `nucleus cp SRC DEST`."""
    found = [(text, _CONTAINER.match(text)) for text in (src, dest)]
    named = [(text, m) for text, m in found if m is not None]
    if len(named) != 1:
        raise InvalidInput(
            "nucleus cp: name a container on exactly one side, as CONTAINER:PATH"
            + (f" (both {src!r} and {dest!r} do)" if named else ""),
            hint="nucleus cp box:/context/out.txt . or nucleus cp ./in.txt box:/tmp/in.txt; a host "
                 "path holding ':' is written ./a:b")
    text, match = named[0]
    assert match is not None
    host = dest if text == src else src
    if not host or "\0" in host:
        raise InvalidInput(f"nucleus cp: {host!r} is not a usable host path")
    return Ends(match.group(1), _inside(text, match.group(2)), host, text == src)


def entry_name(path: str, given: str) -> str:
    """The name a copied object takes in a destination directory: the source's own."""
    name = posixpath.basename(path.rstrip("/"))
    if not name or name in (".", ".."):
        raise InvalidInput(f"nucleus cp: {given!r} names no entry to copy (the root)",
                           hint="copy a directory or file inside it")
    return name

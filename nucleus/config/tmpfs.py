"""--tmpfs PATH[:OPTIONS]: an empty in-memory file system of the container's own at PATH,
gone with the container. OPTIONS, separated by commas: `size=SIZE` (its limit, default 64M:
writing past it fails with ENOSPC), `mode=OCTAL` (its root directory's, default 0755) and
`owner=USER[:GROUP]` (its root directory's owner, a name or an id as -u takes them, resolved
in the container's /etc/passwd and /etc/group when the run is planned; default container
root). It is `nosuid,nodev,noexec`, and its path obeys the rules of a volume's
(nucleus.config.volumes). Pure: parsing and validation only.
"""

from __future__ import annotations

import posixpath
import re
from typing import NamedTuple

from nucleus.config import users
from nucleus.config.resources import parse_size
from nucleus.errors import InvalidInput

FLAG = "--tmpfs"
DEFAULT_SIZE = 64 << 20
DEFAULT_MODE = 0o755
MOUNT_FLAGS = ("nosuid", "nodev", "noexec")
OPTIONS = ("size", "mode", "owner")
_OCTAL = re.compile(r"[0-7]+")  # int(text, 8) alone takes '0o755', '+755', '7_55', ' 755'
HINT = "--tmpfs PATH[:size=SIZE,mode=OCTAL,owner=USER[:GROUP]], e.g. --tmpfs /cache:size=32M,owner=1000"


class Tmpfs(NamedTuple):
    """A --tmpfs as asked for (the owner as written: resolved by the plan)."""

    target: str  # normalized
    size: int = DEFAULT_SIZE
    mode: int = DEFAULT_MODE
    owner: str | None = None
    given: str = ""  # as written

    @property
    def flag(self) -> str:
        return FLAG

    def data(self, uid: int, gid: int) -> str:
        """The tmpfs's mount data, its owner's ids as the mounting process names them."""
        return f"size={self.size},mode={self.mode:04o},uid={uid},gid={gid}"


def parse(text: str) -> Tmpfs:
    """PATH[:OPTIONS]; InvalidInput naming the flag, the value and the option."""
    path, _, rest = text.partition(":")
    head = f"{FLAG} {text!r}"
    if "\0" in text:
        raise InvalidInput(f"{head}: holds a NUL byte")
    if not path.startswith("/"):
        raise InvalidInput(f"{head}: the container path {path!r} is not absolute", hint=HINT)
    if ".." in path.split("/"):
        raise InvalidInput(f"{head}: the container path {path!r} holds '..'",
                           hint="name the path inside the container as it is, without '..'")
    found: dict[str, str] = {}
    for item in rest.split(",") if rest else ():
        key, sep, value = item.partition("=")
        if key not in OPTIONS or not sep:
            raise InvalidInput(f"{head}: {item!r} is not an option", hint=f"the options: {', '.join(OPTIONS)}; {HINT}")
        if key in found:
            raise InvalidInput(f"{head}: {key} given twice")
        found[key] = value
    size = DEFAULT_SIZE
    if "size" in found:
        size = parse_size(found["size"], f"{FLAG} {path} size")
        if size == 0:
            raise InvalidInput(f"{head}: size 0", hint="give its limit, e.g. size=64M")
    mode = DEFAULT_MODE
    if "mode" in found:
        mode = int(found["mode"], 8) if _OCTAL.fullmatch(found["mode"]) else -1
        if not 0 <= mode <= 0o7777:
            raise InvalidInput(f"{head}: mode {found['mode']!r} is not an octal mode", hint="for example mode=0700")
    owner = found.get("owner")
    if owner is not None:
        users.parse(owner, f"{FLAG} {path} owner")
    return Tmpfs("/" + posixpath.normpath(path).lstrip("/"), size, mode, owner, text)

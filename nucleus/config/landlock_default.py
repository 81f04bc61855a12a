"""Landlock filesystem access rights, the user-facing groups, and the default rules.

Data only: no I/O, standard library only. Bits are those of linux/landlock.h.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: keeps the import free for the hot path
    from collections.abc import Iterable

# --- access rights (LANDLOCK_ACCESS_FS_*) -------------------------------------------------------

ACCESS_FS: dict[str, int] = {
    "EXECUTE": 1 << 0,
    "WRITE_FILE": 1 << 1,
    "READ_FILE": 1 << 2,
    "READ_DIR": 1 << 3,
    "REMOVE_DIR": 1 << 4,
    "REMOVE_FILE": 1 << 5,
    "MAKE_CHAR": 1 << 6,
    "MAKE_DIR": 1 << 7,
    "MAKE_REG": 1 << 8,
    "MAKE_SOCK": 1 << 9,
    "MAKE_FIFO": 1 << 10,
    "MAKE_BLOCK": 1 << 11,
    "MAKE_SYM": 1 << 12,
    "REFER": 1 << 13,  # ABI 2: link/rename into another directory
    "TRUNCATE": 1 << 14,  # ABI 3
    "IOCTL_DEV": 1 << 15,  # ABI 5: ioctl on character/block devices
}

EXECUTE = ACCESS_FS["EXECUTE"]
WRITE_FILE = ACCESS_FS["WRITE_FILE"]
READ_FILE = ACCESS_FS["READ_FILE"]
READ_DIR = ACCESS_FS["READ_DIR"]
REMOVE_DIR = ACCESS_FS["REMOVE_DIR"]
REMOVE_FILE = ACCESS_FS["REMOVE_FILE"]
MAKE_CHAR = ACCESS_FS["MAKE_CHAR"]
MAKE_DIR = ACCESS_FS["MAKE_DIR"]
MAKE_REG = ACCESS_FS["MAKE_REG"]
MAKE_SOCK = ACCESS_FS["MAKE_SOCK"]
MAKE_FIFO = ACCESS_FS["MAKE_FIFO"]
MAKE_BLOCK = ACCESS_FS["MAKE_BLOCK"]
MAKE_SYM = ACCESS_FS["MAKE_SYM"]
REFER = ACCESS_FS["REFER"]
TRUNCATE = ACCESS_FS["TRUNCATE"]
IOCTL_DEV = ACCESS_FS["IOCTL_DEV"]

# The filesystem rights each ABI version knows. ABI 4 added TCP rights, ABI 6 scoping and ABI 7
# audit flags; none of them adds a filesystem right.
_ABI1 = (1 << 13) - 1
FS_RIGHTS_BY_ABI: dict[int, int] = {
    1: _ABI1,
    2: _ABI1 | REFER,
    3: _ABI1 | REFER | TRUNCATE,
    4: _ABI1 | REFER | TRUNCATE,
    5: _ABI1 | REFER | TRUNCATE | IOCTL_DEV,
    6: _ABI1 | REFER | TRUNCATE | IOCTL_DEV,
    7: _ABI1 | REFER | TRUNCATE | IOCTL_DEV,
}
LATEST_ABI = max(FS_RIGHTS_BY_ABI)

# The only rights a rule on a non-directory may carry (the kernel refuses the others).
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

# Scopes (ABI 6): what a sandboxed process may no longer reach outside its own Landlock domain.
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

# --- user-facing groups -------------------------------------------------------------------------

ACCESS_GROUPS: dict[str, int] = {
    # Read files and list directories; never execute (a separate group, asked for explicitly).
    "read": READ_FILE | READ_DIR,
    "write": WRITE_FILE | TRUNCATE,
    "execute": EXECUTE,
    # Create regular files, directories, symlinks, sockets and FIFOs. Device nodes are left out
    # (they also need CAP_MKNOD). REFER lets rename/link move an entry between directories that
    # both grant it; Landlock still refuses a move that would give the entry more rights than
    # it had, so this does not widen access, and without it `mv a/x b/` fails with EXDEV.
    "create": MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_SYM | REFER,
    "remove": REMOVE_DIR | REMOVE_FILE,
    "readdir": READ_DIR,
    # ioctl on device files (terminals): ABI 5 and later.
    "ioctl_dev": IOCTL_DEV,
    "all": FS_RIGHTS_BY_ABI[LATEST_ABI],
    "all_except_execute": FS_RIGHTS_BY_ABI[LATEST_ABI] & ~EXECUTE,
}


def fs_rights_for_abi(abi: int) -> int:
    """Every filesystem right ABI ``abi`` knows (0 for ABI 0, the latest set above it)."""
    if abi <= 0:
        return 0
    return FS_RIGHTS_BY_ABI[min(abi, LATEST_ABI)]


def access_mask(groups: Iterable[str]) -> int:
    """The rights of a set of group names (``{"read", "execute"}``); ValueError names an
    unknown group and lists the known ones."""
    mask = 0
    for group in groups:
        try:
            mask |= ACCESS_GROUPS[group]
        except KeyError:
            known = ", ".join(sorted(ACCESS_GROUPS))
            raise ValueError(f"unknown access group {group!r} (known: {known})") from None
    return mask


# --- the default rules --------------------------------------------------------------------------

_READ_EXEC = frozenset({"read", "execute"})
_READ = frozenset({"read"})
_SCRATCH = frozenset({"read", "write", "create", "remove"})
_DEVICE = frozenset({"read", "write", "ioctl_dev"})

SYSTEM_EXEC_PATHS = ("/bin", "/sbin", "/usr", "/lib", "/lib64", "/lib32", "/nix")
READ_ONLY_PATHS = ("/etc", "/context")
DEVICE_PATHS = (
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",  # opening a new pseudo-terminal (its peers live under /dev/pts)
    "/dev/pts",
)


def default_rules(home: str, writable_context: bool = False, executable: Iterable[str] = (),
                  volumes: Iterable[tuple[str, bool]] = ()) -> list[tuple[str, frozenset[str]]]:
    """The default Landlock rules for a workload whose home directory is ``home``.

    ``/`` may only be listed — and since a rule covers everything beneath its path, every
    directory can be listed, while no file outside the rules can be opened; system directories are readable and executable; /etc and
    /context are readable; /tmp, the home directory and /dev/shm are scratch space (read,
    write, create, remove); the listed devices can be read, written and (ABI 5) driven with
    ioctl; /proc is readable. Nothing outside the system directories runs but in the
    ``executable`` trees (nucleus.config.workspace). A volume, ``(path, writable)``, is read
    (ro) or scratch space (rw), executable only below a tree that is. Everything else is denied.
    """
    rules: list[tuple[str, frozenset[str]]] = [("/", frozenset({"readdir"}))]
    rules += [(p, _READ_EXEC) for p in SYSTEM_EXEC_PATHS]
    rules += [(p, _READ) for p in READ_ONLY_PATHS if not (writable_context and p == "/context")]
    scratch = ["/tmp", home, "/dev/shm"] + (["/context"] if writable_context else [])
    rules += [(p, _SCRATCH) for p in dict.fromkeys(scratch)]
    rules += [(p, _DEVICE) for p in DEVICE_PATHS]
    rules.append(("/proc", _READ))
    rules += [(path, _SCRATCH if writable else _READ) for path, writable in volumes]
    return with_execute(rules, executable)


def with_execute(rules: Iterable[tuple[str, frozenset[str]]],
                 paths: Iterable[str]) -> list[tuple[str, frozenset[str]]]:
    """``rules`` with execute granted beneath each of ``paths``: added to the rule on that very
    path, or as a rule of its own (rights add up down a tree: /tmp/bin with execute under /tmp
    with write is a directory whose files may be written and run)."""
    out = [(path, frozenset(access)) for path, access in rules]
    for path in dict.fromkeys(paths):
        at = next((i for i, (p, _) in enumerate(out) if p == path), None)
        if at is None:
            out.append((path, frozenset({"execute"})))
        else:
            out[at] = (path, out[at][1] | {"execute"})
    return out

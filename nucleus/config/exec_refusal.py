"""Why the workload's command could not be executed, as the one line nucleus prints: the cause
and its fix. Pure: what the process that tried found on looking (nucleus.effects.setup) comes
in as `Looked` values, with the Landlock rules nucleus applied and the places --allow-exec may
name.

The causes, in the order the kernel checks them for each file it opens to execute (the file
named, then the interpreter its `#!` line names; may_open, then the LSM's file_open):

- its mount is noexec: "blocked: /tmp/a.out cannot be executed: /tmp is mounted noexec; run it
  from /context or /home/agent, or pass --allow-exec /tmp";
- it has no execute bit for the caller: "cannot run './run.sh': /context/run.sh is not
  executable (mode 0644, owner 0); ...";
- Landlock's rules grant no execute there: "blocked: ... Landlock's rules allow no execute in
  /context; ...";
- (not found) its `#!` interpreter is missing: "cannot run './run.sh': its interpreter
  /usr/bin/foo is not in the container".

"blocked:" opens the line only when a policy (a mount flag, Landlock) refused. Anything else
keeps the kernel's word: "cannot run 'x': Permission denied".
"""

from __future__ import annotations

from typing import NamedTuple

from nucleus.config.workspace import FLAG, place_of

INTERPRETER_LINE = 256  # how much of a file the kernel reads for its #! line (BINPRM_BUF_SIZE)


class Looked(NamedTuple):
    """What looking at one file found: its path with every symlink resolved, its kind ("file",
    "dir", "other", or "" when nothing is there), permission bits and owner, the mount holding
    it and whether that mount is noexec, and the interpreter its #! line names ("" for none)."""

    path: str
    kind: str = ""
    mode: int = 0
    owner: tuple[int, int] = (0, 0)
    mount: str = "/"
    noexec: bool = False
    interpreter: str = ""


class Caller(NamedTuple):
    """Who tried: the ids the kernel checked permissions against."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()


# A writable place the workload could run from instead: (path, whether its mount is noexec).
Place = tuple[str, bool]


def interpreter_of(head: bytes) -> str:
    """The interpreter a file's first bytes name on a #! line, or ""."""
    if not head.startswith(b"#!"):
        return ""
    words = head[2:].split(b"\n", 1)[0].split()
    return words[0].decode(errors="replace") if words else ""


def may_execute(looked: Looked, caller: Caller) -> bool:
    """Whether the file's permission bits let the caller execute it (owner, group, others)."""
    if looked.owner[0] == caller.uid:
        return bool(looked.mode & 0o100)
    if looked.owner[1] == caller.gid or looked.owner[1] in caller.groups:
        return bool(looked.mode & 0o010)
    return bool(looked.mode & 0o001)


def landlock_allows(path: str, rules: tuple[tuple[str, tuple[str, ...]], ...]) -> bool:
    """Whether a rule on `path` or a directory above it grants execute (rights add up down the
    tree). `rules`: as applied, their paths with every symlink resolved."""
    return any("execute" in access and place_of(path, (rule,)) for rule, access in rules)


def _runnable(places: tuple[Place, ...], rules: tuple[tuple[str, tuple[str, ...]], ...] | None,
              but: str) -> list[str]:
    return [p for p, noexec in places
            if not noexec and p != but and (rules is None or landlock_allows(p, rules))]


def _blocked(looked: Looked, why: str, where: str, places: tuple[Place, ...],
             rules: tuple[tuple[str, tuple[str, ...]], ...] | None, allowable: tuple[str, ...]) -> str:
    fixes = []
    elsewhere = _runnable(places, rules, but=where)
    if elsewhere:
        fixes.append("run it from " + " or ".join(elsewhere))
    place = place_of(looked.path, allowable)
    if place is not None:
        fixes.append(f"pass {FLAG} {place}")
    fix = f"; {', or '.join(fixes)}" if fixes else ""
    return f"blocked: {looked.path} cannot be executed: {why}{fix}"


NOT_FOUND = "not found"  # ENOENT, ENOTDIR
DENIED = "denied"  # EACCES, EPERM


def reason(command: str, failure: str, strerror: str, looked: tuple[Looked, ...], caller: Caller,
           rules: tuple[tuple[str, tuple[str, ...]], ...] | None = None,
           places: tuple[Place, ...] = (), allowable: tuple[str, ...] = ()) -> str:
    """The line for a failed exec of `command` (`failure`: NOT_FOUND, DENIED or another word;
    `strerror`: the kernel's): `looked` holds the file the exec named, then the interpreter of
    its #! line when it has one; `rules` the Landlock rules applied (None: none were); `places`
    the writable places with their mounts' noexec flag; `allowable` the places --allow-exec may
    name."""
    plain = f"cannot run {command!r}: {strerror}"
    if not looked or not looked[0].kind:
        return plain
    named = looked[0]
    if failure == NOT_FOUND:
        if named.interpreter and (len(looked) < 2 or not looked[1].kind):
            return f"cannot run {command!r}: its interpreter {named.interpreter} is not in the container"
        return plain
    if failure != DENIED:
        return plain
    if named.kind == "dir":
        return f"cannot run {command!r}: {named.path} is a directory"
    for file in looked:
        if not file.kind:
            break
        if file.kind != "file":
            return f"cannot run {command!r}: {file.path} is not a regular file"
        if file.noexec:
            return _blocked(file, f"{file.mount} is mounted noexec", file.mount, places, rules, allowable)
        if not may_execute(file, caller):
            subject = file.path if file is named else f"its interpreter {file.path}"
            return (f"cannot run {command!r}: {subject} is not executable "
                    f"(mode {file.mode & 0o7777:04o}, owner {file.owner[0]}); make it executable "
                    f"(chmod +x) or run it through its interpreter")
        if rules is not None and not landlock_allows(file.path, rules):
            where = place_of(file.path, tuple(p for p, _ in places)) or file.path.rsplit("/", 1)[0] or "/"
            return _blocked(file, f"Landlock's rules allow no execute in {where}", where, places,
                            rules, allowable)
    return plain

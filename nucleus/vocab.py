"""Events and intents: the plain-data vocabulary shared by machines, effects and the driver.

Events are what happens (a request, an observation, a failure); intents are what a machine asks
the effects layer to do. Both are immutable records (see `_Record`: frozen-dataclass behaviour without the per-class
code generation that made this module the slowest import of `nucleus run`); their class names are the TLA+ action names
(events) and effect names (intents). They travel over the sync pipe as JSON (`to_wire`/`from_wire`).
"""

from __future__ import annotations

from typing import Any, ClassVar


def dataclass(frozen: bool = True):  # noqa: ARG001 - the records are always frozen
    """Make a `_Record` subclass from its annotations (fields with defaults, ClassVars skipped)."""

    def make(cls: Any) -> Any:
        names: list[str] = []
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name, kind in klass.__dict__.get("__annotations__", {}).items():
                if str(kind).startswith("ClassVar"):
                    continue
                if name not in names:
                    names.append(name)
                if name in klass.__dict__:
                    defaults[name] = klass.__dict__[name]
        cls._fields = tuple(names)
        cls._defaults = defaults
        cls.__match_args__ = tuple(names)
        return cls

    return make


class _Record:
    """Immutable, compared and hashed by type and field values, like a frozen dataclass."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self._fields
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} fields, got {len(args)}")
        values = dict(self._defaults)
        values.update(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{type(self).__name__} has no field {key!r}")
            values[key] = value
        for name in names:
            if name not in values:
                raise TypeError(f"{type(self).__name__} needs field {name!r}")
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"


def fields(obj: Any) -> tuple[Any, ...]:
    """The fields of a record (objects with a `name`, as dataclasses.fields gives)."""
    return tuple(_Field(name) for name in obj._fields)


class _Field:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

# ---------------------------------------------------------------------------------------------
# Events. `machine` names the machine that consumes the event; `tla_arg` is the event's one
# argument as the specs see it (a string).


@dataclass(frozen=True)
class Event(_Record):
    machine: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return type(self).__name__

    def tla_arg(self) -> str:
        return ""


# Lifecycle ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Create(Event):
    machine: ClassVar[str] = "lc"


@dataclass(frozen=True)
class Prepared(Event):
    machine: ClassVar[str] = "lc"
    level: str = "enforced"  # "enforced" | "degraded"

    def tla_arg(self) -> str:
        return self.level


@dataclass(frozen=True)
class SetupFailed(Event):
    machine: ClassVar[str] = "lc"
    reason: str = ""


@dataclass(frozen=True)
class Start(Event):
    machine: ClassVar[str] = "lc"


@dataclass(frozen=True)
class Abort(Event):
    machine: ClassVar[str] = "lc"
    reason: str = ""


@dataclass(frozen=True)
class Exit(Event):
    machine: ClassVar[str] = "lc"
    code: int = 0


@dataclass(frozen=True)
class Kill(Event):
    machine: ClassVar[str] = "lc"
    signal: str = "TERM"

    def tla_arg(self) -> str:
        return self.signal


@dataclass(frozen=True)
class Lost(Event):
    """The supervisor is gone while the container was not stopped."""

    machine: ClassVar[str] = "lc"


@dataclass(frozen=True)
class Attach(Event):
    """A command joins the running container (nothing in its lifecycle changes)."""

    machine: ClassVar[str] = "lc"


@dataclass(frozen=True)
class CleanupDone(Event):
    machine: ClassVar[str] = "lc"


@dataclass(frozen=True)
class Remove(Event):
    machine: ClassVar[str] = "lc"


# Sub-machine events shared in shape: Begin, StepDone(step), StepFailed(step, errno, message).
@dataclass(frozen=True)
class _Begin(Event):
    pass


@dataclass(frozen=True)
class _StepDone(Event):
    step: str = ""
    detail: str = ""

    def tla_arg(self) -> str:
        return self.step


@dataclass(frozen=True)
class _StepFailed(Event):
    step: str = ""
    errno: int = 0
    message: str = ""

    def tla_arg(self) -> str:
        return self.step


# Isolation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IsoBegin(_Begin):
    machine: ClassVar[str] = "iso"


@dataclass(frozen=True)
class IsoDone(_StepDone):
    machine: ClassVar[str] = "iso"


@dataclass(frozen=True)
class IsoFailed(_StepFailed):
    machine: ClassVar[str] = "iso"


@dataclass(frozen=True)
class IsoResume(Event):
    """Isolation may pass its gate: before "unshare" once the setup process is in its cgroup; in
    the privileged order before "enter_user" once the root filesystem is sealed."""

    machine: ClassVar[str] = "iso"


# Filesystem -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FsBegin(_Begin):
    machine: ClassVar[str] = "fs"


@dataclass(frozen=True)
class FsDone(_StepDone):
    """A plan step finished: step is "mount" (one planned operation), "pivot", "chroot" or "detach"."""

    machine: ClassVar[str] = "fs"


@dataclass(frozen=True)
class FsFailed(_StepFailed):
    machine: ClassVar[str] = "fs"


# Security -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SecBegin(_Begin):
    machine: ClassVar[str] = "sec"


@dataclass(frozen=True)
class SecDone(_StepDone):
    """A control is in force: step is "caps", "seccomp" or "landlock"."""

    machine: ClassVar[str] = "sec"


@dataclass(frozen=True)
class SecFailed(_StepFailed):
    machine: ClassVar[str] = "sec"


# Resources (the container's cgroup) ------------------------------------------------------------
@dataclass(frozen=True)
class ResBegin(_Begin):
    machine: ClassVar[str] = "res"


@dataclass(frozen=True)
class ResAttach(Event):
    """The setup process exists: move it into the cgroup before it creates any namespace."""

    machine: ClassVar[str] = "res"


@dataclass(frozen=True)
class ResRelease(Event):
    machine: ClassVar[str] = "res"


@dataclass(frozen=True)
class ResDone(_StepDone):
    machine: ClassVar[str] = "res"


@dataclass(frozen=True)
class ResFailed(_StepFailed):
    machine: ClassVar[str] = "res"


EVENTS: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        Create, Prepared, SetupFailed, Start, Abort, Exit, Kill, Lost, Attach, CleanupDone, Remove,
        IsoBegin, IsoDone, IsoFailed, IsoResume,
        FsBegin, FsDone, FsFailed,
        SecBegin, SecDone, SecFailed,
        ResBegin, ResAttach, ResRelease, ResDone, ResFailed,
    )
}

# The TLA+ action name of each event (a spec names an action once per machine).
TLA_ACTION: dict[str, str] = {
    "IsoBegin": "Begin", "IsoDone": "Done", "IsoFailed": "Fail", "IsoResume": "Resume",
    "FsBegin": "Begin", "FsDone": "Done", "FsFailed": "Fail",
    "SecBegin": "Begin", "SecDone": "Done", "SecFailed": "Fail",
    "ResBegin": "Begin", "ResAttach": "Attach", "ResRelease": "Release", "ResDone": "Done",
    "ResFailed": "Fail",
}


def action_name(event: Event) -> str:
    return TLA_ACTION.get(event.name, event.name)


def event_from_tla(machine: str, action: str, arg: str) -> Event:
    """Build the event a trace step names (machine, action, argument)."""
    for cls in EVENTS.values():
        if cls.machine == machine and TLA_ACTION.get(cls.__name__, cls.__name__) == action:
            break
    else:
        raise KeyError(f"no event for action {machine}.{action}")
    names = [f.name for f in fields(cls)]
    if not names or arg == "":
        return cls()
    first = names[0]
    if first == "code":
        return cls(int(arg))  # type: ignore[call-arg]
    return cls(**{first: arg})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Intents. `where` says which process carries one out: the supervisor on the host, or the
# container's setup process inside the new namespaces.


@dataclass(frozen=True)
class Intent(_Record):
    where: ClassVar[str] = "host"

    @property
    def name(self) -> str:
        return type(self).__name__


# Isolation intents
@dataclass(frozen=True)
class SpawnChild(Intent):
    """Fork the setup process (host side) and connect the sync pipe."""


@dataclass(frozen=True)
class Unshare(Intent):
    where: ClassVar[str] = "child"
    namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class ForkInit(Intent):
    """Fork the process that becomes PID 1 of the new PID namespace; the parent reports and exits."""

    where: ClassVar[str] = "child"


@dataclass(frozen=True)
class SetHostname(Intent):
    where: ClassVar[str] = "child"
    hostname: str = ""


@dataclass(frozen=True)
class LoopbackUp(Intent):
    where: ClassVar[str] = "child"


@dataclass(frozen=True)
class EnterUserNamespace(Intent):
    """Clear supplementary groups, then unshare a user namespace (privileged order)."""

    where: ClassVar[str] = "child"


@dataclass(frozen=True)
class WriteIdMaps(Intent):
    """Host side: write setgroups=deny, uid_map and gid_map of the setup process."""

    uid_map: tuple[tuple[int, int, int], ...] = ()
    gid_map: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True)
class BecomeRoot(Intent):
    where: ClassVar[str] = "child"


# Filesystem intents: the mount plan's operations.
@dataclass(frozen=True)
class FsOp(Intent):
    where: ClassVar[str] = "child"


@dataclass(frozen=True)
class SetPropagation(FsOp):
    """Change the propagation of a mount tree ("private", "slave")."""

    target: str = "/"
    mode: str = "private"
    recursive: bool = True


@dataclass(frozen=True)
class MountFs(FsOp):
    """Mount a new filesystem (tmpfs, proc, devpts, mqueue) at target."""

    fstype: str = ""
    target: str = ""
    flags: tuple[str, ...] = ()
    data: str = ""


@dataclass(frozen=True)
class BindMount(FsOp):
    """Bind source onto target (created as a file or directory to match), then apply flags."""

    source: str = ""
    target: str = ""
    flags: tuple[str, ...] = ()
    recursive: bool = False
    optional: bool = False


@dataclass(frozen=True)
class RemountFs(FsOp):
    target: str = ""
    flags: tuple[str, ...] = ()
    bind: bool = False


@dataclass(frozen=True)
class MakeDirs(FsOp):
    root: str = ""
    paths: tuple[str, ...] = ()
    mode: int = 0o755
    owner: tuple[int, int] | None = None


@dataclass(frozen=True)
class MakeSymlinks(FsOp):
    root: str = ""
    links: tuple[tuple[str, str], ...] = ()  # (link path, target)


@dataclass(frozen=True)
class CopyTree(FsOp):
    source: str = ""
    target: str = ""
    exclude: tuple[str, ...] = ()
    owner: tuple[int, int] | None = None


@dataclass(frozen=True)
class VerifyTree(FsOp):
    """Check a populated tree against the manifest taken from its source before the copy."""

    target: str = ""
    manifest: tuple[tuple[str, str], ...] = ()  # (relative path, sha256 | "dir" | "symlink:..")
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class MaskPaths(FsOp):
    """Hide files (bind /dev/null, read-only) and directories (empty read-only tmpfs)."""

    root: str = ""
    paths: tuple[str, ...] = ()
    readonly: tuple[str, ...] = ()


@dataclass(frozen=True)
class WriteFile(FsOp):
    path: str = ""
    content: str = ""
    mode: int = 0o644


@dataclass(frozen=True)
class PivotRoot(Intent):
    where: ClassVar[str] = "child"
    new_root: str = ""


@dataclass(frozen=True)
class Chroot(Intent):
    where: ClassVar[str] = "child"
    new_root: str = ""


@dataclass(frozen=True)
class DetachOldRoot(Intent):
    where: ClassVar[str] = "child"


@dataclass(frozen=True)
class AuditMounts(Intent):
    """Inside the sealed root: every rule's path must sit on a mount carrying its flags."""

    where: ClassVar[str] = "child"
    rules: tuple[tuple[str, tuple[str, ...], bool], ...] = ()


# Security intents
@dataclass(frozen=True)
class DropCapabilities(Intent):
    where: ClassVar[str] = "child"
    keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadSeccomp(Intent):
    where: ClassVar[str] = "child"
    program_sha256: str = ""
    log_denied: bool = False


@dataclass(frozen=True)
class ApplyLandlock(Intent):
    where: ClassVar[str] = "child"
    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    min_abi: int = 0


@dataclass(frozen=True)
class Warn(Intent):
    message: str = ""


# Resources intents (host side; the executor holds the limits and the cgroup handle)
@dataclass(frozen=True)
class CreateCgroup(Intent):
    parent: str = "nucleus"
    cgroup: str = ""


@dataclass(frozen=True)
class SetCgroupLimits(Intent):
    pass


@dataclass(frozen=True)
class AttachCgroup(Intent):
    pass


@dataclass(frozen=True)
class RemoveCgroup(Intent):
    """Kill whatever is left in the cgroup, then remove it."""


# Lifecycle intents
@dataclass(frozen=True)
class ExecWorkload(Intent):
    """Inside: fork the workload from PID 1 and exec it; PID 1 becomes its minimal init."""

    where: ClassVar[str] = "child"


@dataclass(frozen=True)
class SendSignal(Intent):
    signal: str = "TERM"


@dataclass(frozen=True)
class Cleanup(Intent):
    """Host side: end the container's processes and release what was set up for it."""


INTENTS: dict[str, type[Intent]] = {
    cls.__name__: cls
    for cls in (
        SpawnChild, Unshare, ForkInit, SetHostname, LoopbackUp, EnterUserNamespace, WriteIdMaps,
        BecomeRoot, SetPropagation, MountFs, BindMount, RemountFs, MakeDirs, MakeSymlinks, CopyTree, VerifyTree, MaskPaths,
        WriteFile, PivotRoot, Chroot, DetachOldRoot, AuditMounts, DropCapabilities, LoadSeccomp, ApplyLandlock,
        Warn, ExecWorkload, SendSignal, Cleanup, CreateCgroup, SetCgroupLimits, AttachCgroup,
        RemoveCgroup,
    )
}


# ---------------------------------------------------------------------------------------------
# Wire format: {"t": ClassName, "f": {field: value}} with tuples turned into lists.


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuple(v) for v in value)
    return value


def to_wire(obj: Event | Intent) -> dict[str, Any]:
    return {"t": type(obj).__name__, "f": {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}}


def from_wire(data: dict[str, Any]) -> Event | Intent:
    name = data["t"]
    cls = EVENTS.get(name) or INTENTS.get(name)
    if cls is None:
        raise ValueError(f"unknown message type {name!r}")
    return cls(**{k: _tuple(v) for k, v in data.get("f", {}).items()})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# What each intent reports when it has been carried out: (done event, failed event, step name).
# Intents that report nothing (Warn, SendSignal, ExecWorkload, Cleanup) are absent: their
# consequences arrive as events of their own (Exit, CleanupDone).

_ISO = (IsoDone, IsoFailed)
_FS = (FsDone, FsFailed)
_SEC = (SecDone, SecFailed)
_RES = (ResDone, ResFailed)
OUTCOME: dict[str, tuple[type[Event], type[Event], str]] = {
    "SpawnChild": (*_ISO, "spawn"),
    "Unshare": (*_ISO, "unshare"),
    "ForkInit": (*_ISO, "fork_init"),
    "SetHostname": (*_ISO, "hostname"),
    "LoopbackUp": (*_ISO, "loopback"),
    "EnterUserNamespace": (*_ISO, "enter_user"),
    "WriteIdMaps": (*_ISO, "map_ids"),
    "BecomeRoot": (*_ISO, "become_root"),
    **{name: (*_FS, "mount") for name in (
        "SetPropagation", "MountFs", "BindMount", "RemountFs", "MakeDirs", "MakeSymlinks", "CopyTree", "VerifyTree", "MaskPaths",
        "WriteFile",
    )},
    "PivotRoot": (*_FS, "pivot"),
    "Chroot": (*_FS, "chroot"),
    "DetachOldRoot": (*_FS, "detach"),
    "AuditMounts": (*_FS, "audit"),
    "DropCapabilities": (*_SEC, "caps"),
    "LoadSeccomp": (*_SEC, "seccomp"),
    "ApplyLandlock": (*_SEC, "landlock"),
    "CreateCgroup": (*_RES, "create"),
    "SetCgroupLimits": (*_RES, "limits"),
    "AttachCgroup": (*_RES, "attach"),
    "RemoveCgroup": (*_RES, "release"),
}


def done(intent: Intent, detail: str = "") -> Event | None:
    outcome = OUTCOME.get(intent.name)
    if outcome is None:
        return None
    return outcome[0](step=outcome[2], detail=detail)  # type: ignore[call-arg]


def failed(intent: Intent, errno: int, message: str) -> Event:
    ok, bad, step_name = OUTCOME[intent.name]
    return bad(step=step_name, errno=errno, message=message)  # type: ignore[call-arg]

"""An OCI bundle's config.json (runtime-spec 1.0 to 1.2), read into nucleus's own container
configuration. Pure: it never probes the host; every error names config.json, the dotted field
path and the bad value.

What the config asks for is mapped onto a run's configuration; where it is weaker than nucleus's
defaults, nucleus's hardening stays on top (no capabilities kept, no_new_privs, nucleus's seccomp
profile and Landlock rules, a user namespace of its own, a minimal /dev, masked /proc): the
config's capabilities, seccomp profile, masked and read-only paths are checked for form and
reported as replaced. A pod's network, ipc, uts and pid namespaces named by path are joined
(the host's own only when the runtime's operator allows it). What nucleus cannot do as asked
(joining a mount, user, cgroup or time namespace, extra device nodes, hooks, a terminal without a
console socket) is refused, not ignored.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import replace
from typing import Any

from nucleus.config import sysctl, users
from nucleus.config.capabilities import capability_number
from nucleus.config.container import ContainerConfig, env_key_refused, home_refusal
from nucleus.config.context import SHARED_ROOTS
from nucleus.config.landlock_default import SYSTEM_EXEC_PATHS
from nucleus.config.resources import MAX_NOFILE, Limits, parse_size
from nucleus.config.tmpfs import Tmpfs
from nucleus.config.volumes import Volume, under
from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

FILE = "config.json"
VERSION_RE = re.compile(r"^1\.[0-2]\.\d+(-[0-9A-Za-z.+-]+)?$")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
# The namespaces a config may name by path, as a pod's containers name their sandbox's: joined in
# place of the new one nucleus would make (the pid namespace's for the container's init on).
JOINABLE = ("network", "ipc", "uts", "pid")
UNJOINABLE = {
    "mount": "nucleus builds the container's root in a mount namespace of its own",
    "user": "nucleus gives each container a user namespace of its own, mapped to a range of host ids "
            "no other container has",
    "cgroup": "nucleus roots the container's cgroup namespace at the cgroup it makes for it",
    "time": "nucleus makes a time namespace only when asked, never shares one",
}
NS_NAME = {"network": "net"}  # an OCI namespace type as /proc/<pid>/ns names it
HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
RLIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
           "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
           "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK")
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
SECCOMP_ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
                   "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY")
# The kernel file systems nucleus mounts itself (a fresh /proc with hidepid, a minimal /dev of
# its own, a read-only /sys, private tmpfs for shared memory): the config's are replaced.
OWN_MOUNTS = frozenset({"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"})
# The private tmpfs nucleus mounts itself, and the files it writes in /etc (a config's mounts
# there, as containerd's CRI plugin binds them, give way).
OWN_TMPFS = frozenset({"/tmp", "/run"})
OWN_FILES = frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"})
CFS_PERIOD = 100_000
# process.rlimits' values are uint64; the largest is RLIM_INFINITY, unlimited (-1 to setrlimit).
RLIM_INFINITY = (1 << 64) - 1
MAX_RLIMIT = (1 << 63) - 1
# linux.rootfsPropagation: the new root's propagation, "r" for its whole tree (nucleus.effects.fs).
PROPAGATIONS = ("shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable")
# A root's top-level entries that nucleus lays out itself: the system directories, read-only from
# the root (as --rootfs takes them), and its own mounts.
LAID_OUT = frozenset({"bin", "sbin", "usr", "lib", "lib32", "lib64", "libx32", "etc", "nix",
                      "proc", "dev", "sys", "tmp", "run"})
# Where the container's seccomp profile comes from: nucleus's own, or the config's
# linux.seccomp. The runtime's operator chooses (nucleus-oci --seccomp), never the bundle.
SECCOMP_SOURCES = ("nucleus", "bundle")
# Default actions that let through every system call a profile does not name.
ALLOW_ALL = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
DEGRADED = "--allow-degraded-security"
DEGRADED_ENV = "NUCLEUS_OCI_ALLOW_DEGRADED_SECURITY"
SECCOMP_ENV = "NUCLEUS_OCI_SECCOMP"
HINT_DEGRADED = f"only the runtime's operator can allow it: nucleus-oci {DEGRADED} (or {DEGRADED_ENV}=1)"


@frozen
class Runtime:
    """What the runtime's operator decides for every bundle (nucleus-oci's global flags): where
    the seccomp profile comes from, and whether a bundle may weaken nucleus's hardening (the
    host's network, a profile that allows every call it does not name)."""

    seccomp: str = "nucleus"
    degraded: bool = False


STRICT = Runtime()  # the runtime's defaults: nucleus's profile, no weakening


# A bind mount's options that make it read-only (rro: recursively, as a bind is here).
READ_ONLY = frozenset({"ro", "rro"})
TMPFS_VALUES = ("size", "mode", "uid", "gid")
TMPFS_FLAGS = ("rw", "nosuid", "nodev", "noexec", "strictatime", "relatime", "noatime", "nodiratime")
# What a container's root is never, nor anything below it (an absolute root.path is the
# spec's; nucleus takes it where it is not the host's own).
SYSTEM_ROOTS = ("/proc", "/sys", "/dev", "/etc", "/boot", "/root", *SYSTEM_EXEC_PATHS)
HOME = "/root"  # the home of a process whose HOME is unset or not one nucleus gives
HINT_HOOKS = "nucleus runs no hooks from a bundle; remove them, or run the bundle with runc"


@frozen
class Bundle:
    """A bundle's config.json as nucleus will run it: the container configuration, what the
    config asked that nucleus replaces with something stricter (said as warnings), and the
    parts the runtime itself needs (the annotations, the terminal)."""

    config: ContainerConfig
    warnings: tuple[str, ...]
    annotations: tuple[tuple[str, str], ...]
    terminal: bool
    version: str
    seccomp: dict[str, Any] | None = None  # the config's profile, to load instead of nucleus's


def where(path: str) -> str:
    return f"{FILE}: {path}"


def _bad(path: str, value: object, why: str, hint: str | None = None) -> InvalidInput:
    return InvalidInput(f"{where(path)} {value!r}: {why}", hint=hint)


def obj(data: Any, path: str, required: bool = False) -> dict[str, Any]:
    if data is None and not required:
        return {}
    if not isinstance(data, dict):
        raise _bad(path, data, "must be an object" if data is not None else "is required")
    return data


def _list(data: Any, path: str) -> list[Any]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise _bad(path, data, "must be an array")
    return data


def _str(data: Any, path: str, required: bool = False) -> str:
    if data is None and not required:
        return ""
    if not isinstance(data, str):
        raise _bad(path, data, "must be a string" if data is not None else "is required")
    return data


def _int(data: Any, path: str, low: int = 0) -> int | None:
    if data is None:
        return None
    if isinstance(data, bool) or not isinstance(data, int) or data < low:
        raise _bad(path, data, f"must be an integer of at least {low}")
    return data


def _bool(data: Any, path: str) -> bool:
    if data is None:
        return False
    if not isinstance(data, bool):
        raise _bad(path, data, "must be true or false")
    return data


def _absolute(data: Any, path: str) -> str:
    text = _str(data, path, required=True)
    if not text.startswith("/") or "\0" in text:
        raise _bad(path, text, "must be an absolute path")
    return posixpath.normpath(text)


def container_id(text: str) -> str:
    """The container's id as runc's contract passes it; InvalidInput when nucleus cannot name a
    container so."""
    if not ID_RE.fullmatch(text):
        raise InvalidInput(f"container id {text!r}: must be 1 to 64 letters, digits, '_', '.' or '-', "
                           "starting with a letter or digit")
    return text


def load(data: Any, bundle: str, cid: str, runtime: Runtime = STRICT) -> Bundle:
    """The bundle (`data` is config.json parsed, `bundle` its absolute directory), as the
    runtime's operator allows it."""
    top = obj(data, "(top level)", required=True)
    version = _str(top.get("ociVersion"), "ociVersion", required=True)
    if not VERSION_RE.fullmatch(version):
        raise _bad("ociVersion", version, "nucleus reads runtime-spec 1.0 to 1.2",
                   hint="for example \"1.0.2\"")
    warnings: list[str] = []
    process = obj(top.get("process"), "process", required=True)
    argv, env, cwd, user, terminal = process_fields(process, warnings)
    root = obj(top.get("root"), "root", required=True)
    root_path = _str(root.get("path"), "root.path", required=True)
    if not root_path or "\0" in root_path:
        raise _bad("root.path", root_path, "must name the root file system")
    rootfs = check_root(root_path, "/" + posixpath.normpath(posixpath.join(bundle, root_path)).lstrip("/"), bundle)
    _bool(root.get("readonly"), "root.readonly")
    hostname = _str(top.get("hostname"), "hostname") or None
    hooks = obj(top.get("hooks"), "hooks")
    for name, value in hooks.items():
        if name not in HOOKS:
            raise _bad(f"hooks.{name}", value, f"is not a hook (one of {', '.join(HOOKS)})")
        if _list(value, f"hooks.{name}"):
            raise _bad(f"hooks.{name}", [h.get("path") if isinstance(h, dict) else h for h in value],
                       "hooks are not run by nucleus", hint=HINT_HOOKS)
    volumes, tmpfs = _mounts(_list(top.get("mounts"), "mounts"), warnings)
    linux = obj(top.get("linux"), "linux")
    network, cgroup_ns, joins = _namespaces(_list(linux.get("namespaces"), "linux.namespaces"), warnings, runtime)
    if hostname is not None and _joins(joins, "uts"):
        warnings.append(f"hostname {hostname!r} is not set: the container joins a uts namespace, "
                        "whose hostname its maker sets")
        hostname = None
    for key in ("uidMappings", "gidMappings"):
        for i, m in enumerate(_list(linux.get(key), f"linux.{key}")):
            entry = obj(m, f"linux.{key}[{i}]", required=True)
            for field_name in ("containerID", "hostID", "size"):
                _int(entry.get(field_name), f"linux.{key}[{i}].{field_name}")
        if linux.get(key):
            warnings.append(f"linux.{key}: nucleus maps the container's ids to a range of its own")
    for i, dev in enumerate(_list(linux.get("devices"), "linux.devices")):
        entry = obj(dev, f"linux.devices[{i}]", required=True)
        raise _bad(f"linux.devices[{i}].path", entry.get("path"), "extra device nodes are not created by nucleus",
                   hint="the container gets nucleus's minimal /dev (null, zero, full, random, urandom, tty)")
    limits = _resources(obj(linux.get("resources"), "linux.resources"), process)
    sysctls = tuple(sysctl.check(key, value, where("linux.sysctl"), network != "host" and not _joins(joins, "net"))
                    for key, value in obj(linux.get("sysctl"), "linux.sysctl").items())
    propagation = _str(linux.get("rootfsPropagation"), "linux.rootfsPropagation")
    if propagation and propagation not in PROPAGATIONS:
        raise _bad("linux.rootfsPropagation", propagation, f"is not a propagation (one of {', '.join(PROPAGATIONS)})")
    annotations = obj(top.get("annotations"), "annotations")
    for key, value in annotations.items():
        _str(value, f"annotations.{key}", required=True)
    seccomp = obj(linux.get("seccomp"), "linux.seccomp")
    _seccomp(seccomp, warnings, runtime)
    for key in ("maskedPaths", "readonlyPaths"):
        for i, p in enumerate(_list(linux.get(key), f"linux.{key}")):
            _absolute(p, f"linux.{key}[{i}]")
    if process.get("apparmorProfile"):
        warnings.append(f"process.apparmorProfile {process['apparmorProfile']!r} is ignored "
                        "(nucleus confines with Landlock and seccomp)")
    if process.get("selinuxLabel") or linux.get("mountLabel"):
        warnings.append("SELinux labels are ignored")
    home = dict(env).get("HOME") or HOME
    refusal = home_refusal(home)
    if refusal is not None:
        warnings.append(f"process.env HOME {home!r} {refusal}: the container's home is {HOME} instead")
        home = HOME
        env = [(key, HOME if key == "HOME" else value) for key, value in env]
    config = ContainerConfig(
        argv=tuple(argv), name=container_id(cid), hostname=hostname, env=tuple(env), workdir=cwd,
        home=home, user=user, rootfs=rootfs, limits=limits, interactive=True, volumes=volumes,
        tmpfs=tmpfs, cgroup_namespace=cgroup_ns, network=network,
        allow_host_network=network == "host", sysctls=sysctls, groups=additional_gids(process),
        rlimits=rlimits(process), root_propagation=propagation, namespace_paths=joins,
        join_host_namespaces=runtime.degraded)
    return Bundle(config, tuple(warnings), tuple(sorted(annotations.items())), terminal, version,
                  seccomp if seccomp and runtime.seccomp == "bundle" else None)


def with_root_entries(config: ContainerConfig, entries: tuple[str, ...]) -> ContainerConfig:
    """The rest of the bundle's root: `entries` are its top-level names (directories and files;
    symlinks are left out by the caller, a bind would follow them on the host). Those nucleus
    does not lay out itself (/app, /opt, /srv, a program at the top) are bound where they are,
    read-only as the system directories are (the container's root is not the host's uid 0 that
    owns them), and executable: the image's programs are what the container runs."""
    placed = {v.target for v in config.volumes} | {t.target for t in config.tmpfs} | {config.home}
    extra = tuple(Volume(posixpath.join(config.rootfs or "/", name), "/" + name, False) for name in entries
                  if name not in LAID_OUT and "/" + name not in placed)
    return replace(config, volumes=config.volumes + extra, allow_exec=config.allow_exec + tuple(v.target for v in extra))


def process_fields(process: dict[str, Any], warnings: list[str]
             ) -> tuple[list[str], list[tuple[str, str]], str, str | None, bool]:
    args = _list(process.get("args"), "process.args")
    if not args:
        raise _bad("process.args", process.get("args"), "must name the command to run")
    for i, arg in enumerate(args):
        _str(arg, f"process.args[{i}]", required=True)
    env: list[tuple[str, str]] = []
    for i, item in enumerate(_list(process.get("env"), "process.env")):
        text = _str(item, f"process.env[{i}]", required=True)
        key, sep, value = text.partition("=")
        if not sep or env_key_refused(key):
            raise _bad(f"process.env[{i}]", text, "is not NAME=value with a name nucleus passes",
                       hint="names start with a letter or underscore; the loader's variables (LD_*) are refused")
        env.append((key, value))
    cwd = _absolute(process.get("cwd"), "process.cwd")
    user_obj = obj(process.get("user"), "process.user")
    uid = _int(user_obj.get("uid"), "process.user.uid") or 0
    gid = _int(user_obj.get("gid"), "process.user.gid") or 0
    additional_gids(process)
    user = None if (uid, gid) == (0, 0) else f"{uid}:{gid}"
    terminal = _bool(process.get("terminal"), "process.terminal")
    if "noNewPrivileges" in process and not _bool(process["noNewPrivileges"], "process.noNewPrivileges"):
        warnings.append("process.noNewPrivileges false: nucleus sets no_new_privs all the same")
    caps = obj(process.get("capabilities"), "process.capabilities")
    for key, names in caps.items():
        if key not in CAP_SETS:
            raise _bad(f"process.capabilities.{key}", names, f"is not a capability set (one of {', '.join(CAP_SETS)})")
        for i, name in enumerate(_list(names, f"process.capabilities.{key}")):
            try:
                capability_number(_str(name, f"process.capabilities.{key}[{i}]", required=True))
            except ValueError as e:
                raise _bad(f"process.capabilities.{key}[{i}]", name, str(e)) from None
    if any(caps.values()):
        warnings.append("process.capabilities: nucleus keeps no capabilities in the container")
    rlimits(process)
    _int(process.get("oomScoreAdj"), "process.oomScoreAdj", low=-1000)
    return [str(a) for a in args], env, cwd, user, terminal


def nofile(process: dict[str, Any]) -> int | None:
    """The RLIMIT_NOFILE soft limit the config asks for (checked by _process), if any and finite."""
    for rl in process.get("rlimits") or ():
        if rl.get("type") == "RLIMIT_NOFILE" and isinstance(rl.get("soft"), int) and 0 < rl["soft"] <= MAX_NOFILE:
            return int(rl["soft"])
    return None


def additional_gids(process: dict[str, Any]) -> tuple[int, ...]:
    """process.user.additionalGids: the container's gids the process also has (whether the
    container's user namespace maps them is the plan's to say)."""
    user = obj(process.get("user"), "process.user")
    path = "process.user.additionalGids"
    gids = [_int(g, f"{path}[{i}]") for i, g in enumerate(_list(user.get("additionalGids"), path))]
    for i, gid in enumerate(gids):
        if gid is None or gid > users.MAX_ID:
            raise _bad(f"{path}[{i}]", gid, f"must be a gid from 0 to {users.MAX_ID}")
    return tuple(dict.fromkeys(g for g in gids if g is not None))


def _rlimit_value(data: Any, path: str) -> int:
    """A soft or hard limit: RLIM_INFINITY is -1 (unlimited) to setrlimit."""
    value = _int(data, path)
    if value is None or (value > MAX_RLIMIT and value != RLIM_INFINITY):
        raise _bad(path, data, f"must be an integer from 0 to {MAX_RLIMIT}, or {RLIM_INFINITY} (unlimited)")
    return -1 if value == RLIM_INFINITY else value


def rlimits(process: dict[str, Any]) -> tuple[tuple[str, int, int], ...]:
    """process.rlimits as (RLIMIT_*, soft, hard), -1 unlimited: each resource once, soft at most
    hard. Whether the host lets the container have a hard limit is told at create."""
    out: dict[str, tuple[str, int, int]] = {}
    for i, rl in enumerate(_list(process.get("rlimits"), "process.rlimits")):
        entry = obj(rl, f"process.rlimits[{i}]", required=True)
        kind = _str(entry.get("type"), f"process.rlimits[{i}].type", required=True)
        if kind not in RLIMITS:
            raise _bad(f"process.rlimits[{i}].type", kind, "is not a resource limit", hint="for example RLIMIT_NOFILE")
        if kind in out:
            raise _bad(f"process.rlimits[{i}].type", kind, "is given twice")
        soft, hard = (_rlimit_value(entry.get(bound), f"process.rlimits[{i}].{bound}") for bound in ("soft", "hard"))
        if hard != -1 and (soft == -1 or soft > hard):
            raise _bad(f"process.rlimits[{i}].soft", entry["soft"], f"is above the hard limit {entry['hard']}")
        out[kind] = (kind, soft, hard)
    return tuple(out.values())


def _mounts(mounts: list[Any], warnings: list[str]) -> tuple[tuple[Volume, ...], tuple[Tmpfs, ...]]:
    volumes: list[Volume] = []
    tmpfs: list[Tmpfs] = []
    for i, m in enumerate(mounts):
        entry = obj(m, f"mounts[{i}]", required=True)
        target = _absolute(entry.get("destination"), f"mounts[{i}].destination")
        kind = _str(entry.get("type"), f"mounts[{i}].type")
        options = [_str(o, f"mounts[{i}].options[{j}]", required=True)
                   for j, o in enumerate(_list(entry.get("options"), f"mounts[{i}].options"))]
        if target in OWN_MOUNTS or (target.startswith("/dev/") and kind in ("devpts", "mqueue", "tmpfs")
                                    and posixpath.dirname(target) == "/dev") or (target in OWN_TMPFS and kind == "tmpfs"):
            continue
        if target in OWN_FILES:
            warnings.append(f"mounts[{i}]: nucleus writes the container's {target} itself")
            continue
        if kind == "bind" or "bind" in options or "rbind" in options:
            source = _absolute(entry.get("source"), f"mounts[{i}].source")
            volumes.append(Volume(source, target, not READ_ONLY & set(options)))
        elif kind == "tmpfs":
            tmpfs.append(_tmpfs(target, options, f"mounts[{i}]"))
        else:
            raise _bad(f"mounts[{i}].type", kind, f"a {kind or 'typeless'} mount at {target!r} is not made by nucleus",
                       hint="nucleus mounts bind mounts and tmpfs; /proc, /dev and /sys are its own")
    return tuple(volumes), tuple(tmpfs)


def _tmpfs(target: str, options: list[str], path: str) -> Tmpfs:
    """A tmpfs mount: its size, mode and owner (uid=, gid=, the container's ids) as asked; an
    option nucleus would not honour is refused."""
    found: dict[str, str] = {}
    for j, option in enumerate(options):
        key, sep, value = option.partition("=")
        if (key if sep else "") not in TMPFS_VALUES and option not in TMPFS_FLAGS:
            raise _bad(f"{path}.options[{j}]", option, "is not a tmpfs option nucleus honours",
                       hint=f"nucleus takes {', '.join(f'{k}=' for k in TMPFS_VALUES)} and "
                            f"{', '.join(TMPFS_FLAGS)} (a tmpfs is always nosuid and nodev)")
        if sep:
            found[key] = value
    size = parse_size(found["size"], where(f"{path}.options size")) if "size" in found else Tmpfs(target).size
    mode = int(found.get("mode", "0"), 8) if re.fullmatch(r"[0-7]{1,4}", found.get("mode", "0")) else -1
    if "mode" in found and not 0 <= mode <= 0o7777:
        raise _bad(f"{path}.options mode", found["mode"], "is not an octal mode", hint="for example mode=1777")
    for key in ("uid", "gid"):
        if not found.get(key, "0").isdigit():
            raise _bad(f"{path}.options {key}", found[key], "must be a number (the container's id)")
    owner = f"{found.get('uid', '0')}:{found.get('gid', '0')}" if "uid" in found or "gid" in found else None
    return Tmpfs(target, size, mode if "mode" in found else Tmpfs(target).mode, owner, given=where(path))


def check_root(text: str, path: str, bundle: str) -> str:
    """`path`, the container's root that root.path `text` names (`bundle`: the bundle's
    directory): InvalidInput when a relative root.path leaves the bundle, or when the root is
    the host's own root, a shared root like /home, or a system tree."""
    if not text.startswith("/") and not under(path, bundle):
        raise _bad("root.path", text, f"leads out of the bundle {bundle!r} (to {path!r})",
                   hint="name the root file system inside the bundle")
    tree = next((t for t in SYSTEM_ROOTS if under(path, t)), path if path in SHARED_ROOTS else None)
    if tree is not None:
        raise _bad("root.path", text, f"is {'on' if path == tree else 'below'} {tree}, the host's own: "
                   "never a container's root", hint="give the container a root file system of its own")
    return path


def _namespaces(entries: list[Any], warnings: list[str], runtime: Runtime
                ) -> tuple[str, bool, tuple[tuple[str, str, str], ...]]:
    """The network mode ("none", a namespace of the container's own or one it joins; "host"
    when the config shares the host's, which only the runtime's operator can allow), whether a
    cgroup namespace is made, and the namespaces the config names by path: (kind as
    /proc/<pid>/ns names it, path, the field), joined instead of made. Whether a path is a
    namespace of that kind, and not the host's own, is the kernel's to say when it is opened
    (nucleus.effects.namespaces.join)."""
    kinds = set()
    joins: list[tuple[str, str, str]] = []
    for i, ns in enumerate(entries):
        entry = obj(ns, f"linux.namespaces[{i}]", required=True)
        kind = _str(entry.get("type"), f"linux.namespaces[{i}].type", required=True)
        if kind not in NAMESPACES:
            raise _bad(f"linux.namespaces[{i}].type", kind, f"is not a namespace (one of {', '.join(NAMESPACES)})")
        if kind in kinds:
            raise _bad(f"linux.namespaces[{i}].type", kind, "is given twice")
        if entry.get("path") not in (None, ""):  # an empty path is none, as runc reads it
            field = f"linux.namespaces[{i}].path"
            path = _absolute(entry["path"], field)
            if kind not in JOINABLE:
                raise _bad(field, entry["path"], f"a {kind} namespace is not joined by nucleus: {UNJOINABLE[kind]}",
                           hint="remove the path: the container makes its own")
            joins.append((NS_NAME.get(kind, kind), path, where(field)))
        kinds.add(kind)
    missing = [k for k in ("pid", "mount", "ipc", "uts", "user") if k not in kinds]
    if missing:
        warnings.append(f"linux.namespaces: nucleus makes {', '.join(missing)} namespaces all the same")
    if "network" not in kinds:
        if not runtime.degraded:
            raise _bad("linux.namespaces", sorted(kinds), "has no network namespace: the container would "
                       "share the host's network", hint=HINT_DEGRADED)
        warnings.append(f"linux.namespaces: the container shares the host's network ({DEGRADED})")
    if joins and runtime.degraded:
        warnings.append(f"linux.namespaces: a path may name the host's own namespace ({DEGRADED})")
    return ("none" if "network" in kinds else "host"), "cgroup" in kinds, tuple(joins)


def _joins(joins: tuple[tuple[str, str, str], ...], kind: str) -> bool:
    return any(k == kind for k, _path, _field in joins)


def _resources(res: dict[str, Any], process: dict[str, Any]) -> Limits:
    memory = obj(res.get("memory"), "linux.resources.memory")
    cpu = obj(res.get("cpu"), "linux.resources.cpu")
    pids = obj(res.get("pids"), "linux.resources.pids")
    limit = _int(memory.get("limit"), "linux.resources.memory.limit", low=-1)
    quota = _int(cpu.get("quota"), "linux.resources.cpu.quota", low=-1)
    period = _int(cpu.get("period"), "linux.resources.cpu.period", low=1) or CFS_PERIOD
    shares = _int(cpu.get("shares"), "linux.resources.cpu.shares", low=0)
    pid_limit = _int(pids.get("limit"), "linux.resources.pids.limit", low=-1)
    limits = Limits()
    if limit is not None and limit > 0:
        limits = replace(limits, memory=limit, memory_high=None)
        limits = replace(limits, memory_high=Limits(memory=limit).memory_high)
    if quota is not None and quota > 0:
        limits = replace(limits, cpus=quota / period)
    if shares:
        # cgroup v2's weight from v1's shares, as runc converts them.
        limits = replace(limits, cpu_weight=1 + ((max(2, min(shares, 262144)) - 2) * 9999) // 262142)
    if pid_limit is not None and pid_limit > 0:
        limits = replace(limits, pids=pid_limit)
    soft = nofile(process)
    if soft is not None:
        limits = replace(limits, nofile=soft)
    return limits


def _seccomp(seccomp: dict[str, Any], warnings: list[str], runtime: Runtime) -> None:
    if not seccomp:
        return
    action = _str(seccomp.get("defaultAction"), "linux.seccomp.defaultAction", required=True)
    if action not in SECCOMP_ACTIONS:
        raise _bad("linux.seccomp.defaultAction", action, "is not a seccomp action", hint="for example SCMP_ACT_ERRNO")
    for i, rule in enumerate(_list(seccomp.get("syscalls"), "linux.seccomp.syscalls")):
        entry = obj(rule, f"linux.seccomp.syscalls[{i}]", required=True)
        for j, name in enumerate(_list(entry.get("names"), f"linux.seccomp.syscalls[{i}].names")):
            _str(name, f"linux.seccomp.syscalls[{i}].names[{j}]", required=True)
        act = _str(entry.get("action"), f"linux.seccomp.syscalls[{i}].action", required=True)
        if act not in SECCOMP_ACTIONS:
            raise _bad(f"linux.seccomp.syscalls[{i}].action", act, "is not a seccomp action")
    if runtime.seccomp != "bundle":
        warnings.append("linux.seccomp: nucleus's own seccomp profile is loaded instead "
                        "(nucleus-oci --seccomp bundle loads the config's)")
    elif action in ALLOW_ALL:
        if not runtime.degraded:
            raise _bad("linux.seccomp.defaultAction", action, "lets through every system call the profile "
                       "does not name", hint=HINT_DEGRADED)
        warnings.append(f"linux.seccomp.defaultAction {action}: every system call the profile does not name "
                        f"is allowed ({DEGRADED})")

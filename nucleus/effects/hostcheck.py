"""What this host offers a container: gathered for ``nucleus check`` and for a run's host checks.

``probe()`` looks and changes nothing on the host: it reads /proc and /sys, asks the kernel
(seccomp's SECCOMP_GET_ACTION_AVAIL, Landlock's ABI version), and runs ``runsc`` and ``criu`` if
they are on PATH, each with a timeout. When securityfs is not mounted, the lockdown mode is read
from a securityfs mounted in a child's private mount namespace, which vanishes with the child.

What each service mode would refuse is decided by ``nucleus.config.modes``; ``report`` and
``report_data`` only print it. ``mode_facts`` adds the few cheap facts a run's checks need.
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import replace
from typing import TYPE_CHECKING

from nucleus import linux
from nucleus.config import mode_host, modes
from nucleus.effects import abi, libc
from nucleus.facts import CgroupLayout, HostFacts

if TYPE_CHECKING:  # the shapes of probe()'s JSON-ready answer; plain dicts at run time
    from typing import TypedDict

    class RunResult(TypedDict):
        rc: int | None
        stdout: str
        stderr: str
        error: str | None

    # The facts and their parts are total=False: probe() fills every key, but host_facts and
    # report read a part of a probe too (a missing key reads as None).
    class KernelFacts(TypedDict, total=False):
        release: str
        version: str
        machine: str

    class NamespaceFacts(TypedDict, total=False):
        available: list[str]
        max: dict[str, int | None]
        max_user_namespaces: int | None

    class CgroupFacts(TypedDict, total=False):
        backend: str
        hybrid: bool
        controllers: list[str]
        mounts: dict[str, str]
        root_enabled: list[str]
        unified: str | None
        unified_controllers: list[str]
        reason: str
        delegated: str  # for a caller that is not root: the cgroup delegated to it ("" for none)
        delegation: str  # why there is none

    class SeccompFacts(TypedDict, total=False):
        available: bool
        filter: bool
        self_mode: str | None
        actions: dict[str, bool | None]
        actions_avail: list[str] | None
        filter_flag_log: bool

    class LandlockFacts(TypedDict, total=False):
        abi: int | None
        error: str | None
        audit: int | None  # the kernel's audit_enabled (Landlock logs its denials only when on)
        audit_error: str | None

    class LockdownFacts(TypedDict, total=False):
        line: str | None
        mode: str | None
        source: str
        error: str | None

    class RunscFacts(TypedDict, total=False):
        present: bool
        path: str | None
        version: str | None
        spec: str | None
        platforms: list[str]
        kvm_device: bool  # when runsc is present
        error: str | None

    class CriuCheck(TypedDict, total=False):
        ok: bool
        rc: int | None
        first_error: str | None
        last_error: str | None

    class CriuFacts(TypedDict, total=False):
        present: bool
        path: str | None
        version: str | None
        check: CriuCheck | None
        error: str | None

    class NetworkFacts(TypedDict, total=False):
        nft: str | None  # the path of each NAT tool --nat-backend may use, None when missing
        iptables: str | None
        backend: str  # what --nat-backend auto chooses ("" for none)
        pyroute2: str | None  # its version, None when it is not installed

    class Facts(TypedDict, total=False):
        kernel: KernelFacts
        euid: int
        namespaces: NamespaceFacts
        cgroups: CgroupFacts
        seccomp: SeccompFacts
        landlock: LandlockFacts
        lockdown: LockdownFacts
        runsc: RunscFacts
        criu: CriuFacts
        network: NetworkFacts
        pid_max: int | None

    class FindingData(TypedDict):
        row: str
        status: str
        detail: str

    class ModeData(TypedDict):
        refuses: list[str]
        findings: list[FindingData]

    class PendingData(TypedDict):
        row: str
        rule: str
        reason: str

    class ReportData(TypedDict):
        host: Facts
        modes: dict[str, ModeData]
        not_enforced_yet: list[PendingData]

NS_DIR = "/proc/self/ns"
USER_SYSCTL_DIR = "/proc/sys/user"
PID_MAX = "/proc/sys/kernel/pid_max"
ACTIONS_AVAIL = "/proc/sys/kernel/seccomp/actions_avail"
LOCKDOWN_PATH = modes.LOCKDOWN_PATH
COMMAND_TIMEOUT = 10.0
CRIU_CHECK_TIMEOUT = 30.0

# seccomp return actions (linux/seccomp.h), in the kernel's actions_avail order.
SECCOMP_ACTIONS = (
    ("kill_process", 0x80000000),
    ("kill_thread", 0x00000000),
    ("trap", 0x00030000),
    ("errno", 0x00050000),
    ("user_notif", 0x7FC00000),
    ("trace", 0x7FF00000),
    ("log", 0x7FFC0000),
    ("allow", 0x7FFF0000),
)
MODES = modes.SERVICE_MODES


# --- small readers ------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(path: str) -> int | None:
    text = _read(path)
    try:
        return None if text is None else int(text.strip())
    except ValueError:
        return None


def _error(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno is not None and not isinstance(e, abi.SyscallError):
        name = _errno.errorcode.get(e.errno, str(e.errno))
        return f"{getattr(e, 'filename', None) or ''}: {name} ({e.strerror})".lstrip(": ")
    return str(e)


def _run(argv: list[str], timeout: float) -> RunResult:
    """Run a command, capturing its output; never raises."""
    import subprocess

    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired:
        return {"rc": None, "stdout": "", "stderr": "", "error": f"timed out after {timeout:g}s"}
    except OSError as e:
        return {"rc": None, "stdout": "", "stderr": "", "error": _error(e)}
    return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "error": None}


# --- one probe per subsystem --------------------------------------------------------------------


def kernel() -> KernelFacts:
    u = os.uname()
    return {"release": u.release, "version": u.version, "machine": u.machine}


def namespaces() -> NamespaceFacts:
    """The namespace types this kernel offers (/proc/self/ns) and the user.max_*_namespaces
    limits."""
    try:
        available = sorted(n for n in os.listdir(NS_DIR) if not n.endswith("_for_children"))
    except OSError:
        available = []
    limits: dict[str, int | None] = {}
    try:
        names = sorted(os.listdir(USER_SYSCTL_DIR))
    except OSError:
        names = []
    for name in names:
        if name.startswith("max_") and name.endswith("_namespaces"):
            limits[name[len("max_"):-len("_namespaces")]] = _int(os.path.join(USER_SYSCTL_DIR, name))
    return {"available": available, "max": limits,
            "max_user_namespaces": limits.get("user")}


def cgroups() -> CgroupFacts:
    from nucleus.effects import probe

    try:
        layout = probe.cgroup_layout()
    except OSError as e:
        return {"backend": "none", "hybrid": False, "controllers": [], "mounts": {}, "root_enabled": [],
                "unified": None, "unified_controllers": [], "reason": _error(e)}
    unified_controllers: list[str] = []
    if layout.unified:
        unified_controllers = sorted((_read(os.path.join(layout.unified, "cgroup.controllers")) or "").split())
    return {
        "backend": layout.backend,
        "hybrid": layout.backend == "v1" and layout.unified is not None,
        "controllers": sorted(layout.controllers),
        "mounts": dict(sorted(layout.mounts)),
        "root_enabled": list(layout.root_enabled),
        "unified": layout.unified,
        "unified_controllers": unified_controllers,
        "reason": layout.reason,
        **({} if os.geteuid() == 0 else _delegation(layout)),
    }


def _delegation(layout: CgroupLayout) -> CgroupFacts:
    """Where a rootless run would make its group (see nucleus.effects.probe.delegation)."""
    from nucleus.effects import probe

    found = probe.delegation(layout, os.geteuid())
    return {"delegated": found.delegated, "delegation": found.delegation}


def seccomp_action_available(value: int) -> bool | None:
    """seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &action): True if the kernel knows the action,
    False if not (EOPNOTSUPP), None if the question itself failed."""
    try:
        libc.seccomp_get_action_avail(value)
    except abi.SyscallError as e:
        return False if e.errno == _errno.EOPNOTSUPP else None
    return True


def seccomp() -> SeccompFacts:
    """Seccomp in this kernel: filter support, each return action (asked of the kernel), the
    actions_avail sysctl and whether SECCOMP_FILTER_FLAG_LOG can be used (needs the log
    action)."""
    status = _read("/proc/self/status") or ""
    mode = next((line.split(":", 1)[1].strip() for line in status.splitlines()
                 if line.startswith("Seccomp:")), None)
    actions = {name: seccomp_action_available(value) for name, value in SECCOMP_ACTIONS}
    avail_text = _read(ACTIONS_AVAIL)
    avail = avail_text.split() if avail_text is not None else None
    filters = actions.get("kill_process") is True or (avail is not None and "kill_process" in avail)
    return {
        "available": mode is not None,
        "filter": bool(filters),
        "self_mode": mode,  # this process's own Seccomp: field (0 none, 1 strict, 2 filter)
        "actions": actions,
        "actions_avail": avail,
        "filter_flag_log": avail is not None and "log" in avail,
    }


def landlock() -> LandlockFacts:
    from nucleus.effects import audit
    from nucleus.effects import landlock as ll

    facts: LandlockFacts
    try:
        facts = {"abi": ll.abi_version(), "error": None}
    except OSError as e:
        facts = {"abi": None, "error": _error(e)}
    try:
        facts["audit"], facts["audit_error"] = audit.status().enabled, None
    except OSError as e:
        facts["audit"], facts["audit_error"] = None, _error(e)
    return facts


def violations_line(sc: SeccompFacts, ll: LandlockFacts) -> str:
    """What the violation stream (nucleus violations) records on this host."""
    notify = (sc.get("actions") or {}).get("user_notif")
    parts = ["seccomp refusals (user notification)" if notify else
             "no seccomp refusals (the kernel lacks user notification)"]
    if ll.get("audit"):
        parts.append(f"Landlock denials (audit is on: {'; '.join(_landlock_audit_needs(ll))})")
    elif ll.get("audit") == 0:
        parts.append("no Landlock denials: the kernel's audit is off (auditctl -e 1, or audit=1 on "
                     "the kernel command line, turns it on; nucleus never does)")
    else:
        parts.append(f"no Landlock denials: audit cannot be read ({ll.get('audit_error')})")
    return "records " + "; ".join(parts)


def _landlock_audit_needs(ll: LandlockFacts) -> list[str]:
    needs = ["read as root (CAP_AUDIT_READ)"]
    if (ll.get("abi") or 0) < 7:
        needs.append("ABI 7 logs the workload's denials; this kernel logs those of nucleus's init only")
    return needs


def _lockdown_private(path: str) -> str:
    """Read ``path`` (under /sys/kernel/security) from a securityfs mounted over its directory
    in a forked child's private mount namespace. Raises OSError naming what failed."""
    directory, name = os.path.split(path)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 1
        try:
            os.close(r)
            try:
                libc.unshare(linux.CLONE_NEWNS)
                libc.mount(None, "/", None, abi.MS_REC | abi.MS_PRIVATE)
                libc.mount("securityfs", directory, "securityfs",
                        abi.MS_NOSUID | abi.MS_NODEV | abi.MS_NOEXEC | abi.MS_RDONLY)
                with open(os.path.join(directory, name), "rb") as f:
                    os.write(w, b"0" + f.read(4096))
                code = 0
            except BaseException as e:  # noqa: BLE001 - a forked child: reported to the parent as text
                os.write(w, b"1" + str(e).encode(errors="replace")[:4000])
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    try:
        while True:
            chunk = os.read(r, 8192)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    data = b"".join(chunks)
    if data[:1] == b"0":
        return data[1:].decode(errors="replace")
    raise OSError(f"reading {path} from a private securityfs mount: "
                  f"{data[1:].decode(errors='replace') or 'the child died'}")


def read_lockdown(path: str = LOCKDOWN_PATH, private_mount: bool = True) -> LockdownFacts:
    """The kernel's lockdown: {"line", "mode", "source", "error"}. ``line`` is the file's text
    (e.g. "none [integrity] confidentiality"), None when unreadable, with ``error`` saying why.

    When the file is absent because securityfs is not mounted (common in containers), and we
    are root, the default path is read from a private securityfs mount (``private_mount``)."""
    try:
        with open(path) as f:
            line = f.read().strip()
        source = path
    except FileNotFoundError as e:
        first = _error(e)
        usable = (private_mount and path == LOCKDOWN_PATH and os.geteuid() == 0
                  and os.path.isdir(os.path.dirname(path))
                  and "securityfs" in (_read("/proc/filesystems") or ""))
        if not usable:
            why = first
            if path == LOCKDOWN_PATH:
                why += " (securityfs is not mounted there, or the kernel has no lockdown LSM)"
            return {"line": None, "mode": None, "source": path, "error": why}
        try:
            line = _lockdown_private(path).strip()
        except OSError as e2:
            return {"line": None, "mode": None, "source": path, "error": f"{first}; {e2}"}
        source = "securityfs mounted in a private mount namespace (not mounted on the host)"
    except OSError as e:
        return {"line": None, "mode": None, "source": path, "error": _error(e)}
    try:
        mode = modes.parse_lockdown(line)
        error = None
    except ValueError as e:
        mode, error = None, str(e)
    return {"line": line, "mode": mode, "source": source, "error": error}


def runsc() -> RunscFacts:
    """gVisor's runsc: its path, version and the platforms it was built with."""
    import shutil  # not at the top: a run checks neither runsc nor criu

    path = shutil.which("runsc")
    if path is None:
        return {"present": False, "path": None, "version": None, "spec": None, "platforms": [],
                "error": "runsc is not on PATH"}
    out: RunscFacts = {"present": True, "path": path, "version": None, "spec": None, "platforms": [],
                 "kvm_device": os.path.exists("/dev/kvm"), "error": None}
    version = _run([path, "--version"], COMMAND_TIMEOUT)
    for line in version["stdout"].splitlines():
        if line.startswith("runsc version"):
            out["version"] = line[len("runsc version"):].strip()
        elif line.startswith("spec:"):
            out["spec"] = line[len("spec:"):].strip()
    if version["error"] or version["rc"]:
        out["error"] = version["error"] or _first_line(version["stderr"]) or f"exit {version['rc']}"
        return out
    plats = _run([path, "help", "platforms"], COMMAND_TIMEOUT)
    if plats["rc"] == 0:
        out["platforms"] = [p.strip() for p in plats["stdout"].splitlines() if p.strip()]
    else:
        out["error"] = "runsc help platforms: " + (plats["error"] or _first_line(plats["stderr"])
                                                    or f"exit {plats['rc']}")
    return out


def _first_line(text: str) -> str | None:
    return next((line.strip() for line in text.splitlines() if line.strip()), None)


def criu() -> CriuFacts:
    """CRIU: its path, version, and whether ``criu check`` passes (with its first error line)."""
    import shutil

    path = shutil.which("criu")
    if path is None:
        return {"present": False, "path": None, "version": None, "check": None,
                "error": "criu is not on PATH"}
    version = _run([path, "--version"], COMMAND_TIMEOUT)
    ver = None
    for line in version["stdout"].splitlines():
        if line.startswith("Version:"):
            ver = line.split(":", 1)[1].strip()
    check = _run([path, "check"], CRIU_CHECK_TIMEOUT)
    text = check["stdout"] + check["stderr"]
    errors = [line.strip() for line in text.splitlines() if line.lstrip().startswith("Error")]
    ok = check["rc"] == 0 and check["error"] is None
    return {
        "present": True, "path": path, "version": ver,
        "check": {
            "ok": ok,
            "rc": check["rc"],
            "first_error": None if ok else (check["error"] or (errors[0] if errors else _first_line(text))),
            "last_error": None if ok or not errors else errors[-1],
        },
        "error": version["error"],
    }


def network() -> NetworkFacts:
    """What --network bridge needs: a NAT tool, and pyroute2 (looked for, not imported)."""
    from importlib import metadata

    from nucleus.effects import nat

    try:
        version: str | None = metadata.version("pyroute2")
    except metadata.PackageNotFoundError:
        version = None
    return {"nft": nat.tool("nft"), "iptables": nat.tool("iptables"), "backend": nat.chosen(None),
            "pyroute2": version}


def probe() -> Facts:
    """Every host fact ``nucleus check`` reports. Changes nothing on the host."""
    return {
        "kernel": kernel(),
        "euid": os.geteuid(),
        "namespaces": namespaces(),
        "cgroups": cgroups(),
        "seccomp": seccomp(),
        "landlock": landlock(),
        "lockdown": read_lockdown(),
        "runsc": runsc(),
        "criu": criu(),
        "network": network(),
        "pid_max": _int(PID_MAX),
    }


# --- facts for the decisions in nucleus.config.modes ----------------------------------------------


def host_facts(facts: Facts, rootfs_realpath: str | None = None) -> HostFacts:
    """The HostFacts of a ``probe()`` result."""
    lock: LockdownFacts = facts.get("lockdown") or {}
    cg: CgroupFacts = facts.get("cgroups") or {}
    sc: SeccompFacts = facts.get("seccomp") or {}
    ll: LandlockFacts = facts.get("landlock") or {}
    ns: NamespaceFacts = facts.get("namespaces") or {}
    return HostFacts(
        euid=facts.get("euid"),
        cgroups=CgroupLayout(
            backend=cg.get("backend") or "none", mounts=tuple(sorted((cg.get("mounts") or {}).items())),
            controllers=tuple(cg.get("controllers") or ()), root_enabled=tuple(cg.get("root_enabled") or ()),
            unified=cg.get("unified"), reason=cg.get("reason") or "",
            delegated=cg.get("delegated") or "", delegation=cg.get("delegation") or "") if cg else None,
        landlock_abi=ll.get("abi"),
        lockdown=lock.get("line"),
        lockdown_error=(lock.get("error") or "") if lock.get("line") is None else "",
        seccomp_filter=sc.get("filter"),
        max_user_namespaces=ns.get("max_user_namespaces"),
        rootfs_realpath=rootfs_realpath,
    )


def mode_facts(facts: HostFacts, lockdown: bool) -> HostFacts:
    """`facts` with the cheap facts a run's mode checks need (no command is run): Landlock's
    ABI, seccomp filter support, user namespaces, and the lockdown mode when the run requires
    one."""
    from nucleus.effects import landlock as ll

    avail = _read(ACTIONS_AVAIL)
    lock = read_lockdown() if lockdown else None
    return replace(
        facts,
        landlock_abi=ll.abi_version(),
        lockdown=None if lock is None else lock["line"],
        lockdown_error="" if lock is None or lock["line"] is not None else (lock["error"] or "unreadable"),
        seccomp_filter=None if avail is None else "kill_process" in avail.split(),
        max_user_namespaces=_int(os.path.join(USER_SYSCTL_DIR, "max_user_namespaces")),
    )


# --- the report ---------------------------------------------------------------------------------


def report_data(facts: Facts, modes_: tuple[str, ...] = MODES) -> ReportData:
    """The report as data (``nucleus check --format json``): the facts, each mode's findings,
    and the rows nucleus does not enforce yet."""
    host = host_facts(facts)
    return {
        "host": facts,
        "modes": {
            mode: {
                "refuses": [f.row for f in mode_host.assess(mode, host) if f.status == "refused"],
                "findings": [{"row": f.row, "status": f.status, "detail": f.detail}
                             for f in mode_host.assess(mode, host)],
            }
            for mode in modes_
        },
        "not_enforced_yet": [{"row": p.row, "rule": p.rule, "reason": p.reason}
                             for p in modes.NOT_ENFORCED_YET],
    }


def _yes(value: object) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def report(facts: Facts, modes_: tuple[str, ...] = MODES) -> str:
    """The report as text (``nucleus check``)."""
    data = report_data(facts, modes_)
    lines = ["host"]

    def add(label: str, value: object) -> None:
        lines.append(f"  {label + ':':<20}{value}")

    kern: KernelFacts = facts.get("kernel") or {}
    add("kernel", f"{kern.get('release')} ({kern.get('machine')})")
    ns: NamespaceFacts = facts.get("namespaces") or {}
    add("namespaces", " ".join(ns.get("available") or []) or "none found")
    limits = ns.get("max") or {}
    if limits:
        add("namespace limits", " ".join(f"{name}={value}" for name, value in limits.items()))
    add("pid_max", facts.get("pid_max"))
    cg: CgroupFacts = facts.get("cgroups") or {}
    backend = cg.get("backend")
    if backend == "v1" and cg.get("hybrid"):
        backend = "v1 (hybrid: cgroup2 also mounted at " + str(cg.get("unified")) + ")"
    add("cgroups", backend)
    add("cgroup controllers", " ".join(cg.get("controllers") or []) or "none")
    if cg.get("reason"):
        add("cgroup detail", cg["reason"])
    sc: SeccompFacts = facts.get("seccomp") or {}
    acts = sc.get("actions") or {}
    add("seccomp", "filters" if sc.get("filter") else "no filters")
    add("seccomp actions", " ".join(n for n, ok in acts.items() if ok) or "none")
    missing = [n for n, ok in acts.items() if ok is False]
    if missing:
        add("seccomp missing", " ".join(missing))
    add("seccomp log flag", _yes(sc.get("filter_flag_log")))
    ll: LandlockFacts = facts.get("landlock") or {}
    add("landlock ABI", ll.get("abi") if ll.get("abi") is not None else f"unknown ({ll.get('error')})")
    add("violations", violations_line(sc, ll))
    lock: LockdownFacts = facts.get("lockdown") or {}
    if lock.get("line") is not None:
        text = f"{lock.get('mode') or 'unknown'} ({lock['line']})"
        if lock.get("source") != LOCKDOWN_PATH:
            text += f" via {lock.get('source')}"
        add("lockdown", text)
    else:
        add("lockdown", f"unknown ({lock.get('error')})")
    rs: RunscFacts = facts.get("runsc") or {}
    if rs.get("present"):
        text = f"{rs.get('path')} version {rs.get('version') or 'unknown'}"
        if rs.get("platforms"):
            text += f", platforms {' '.join(rs['platforms'])}"
        if rs.get("error"):
            text += f" ({rs['error']})"
        add("runsc", text)
    else:
        add("runsc", "not found")
    cr: CriuFacts = facts.get("criu") or {}
    if cr.get("present"):
        check = cr.get("check") or {}
        text = f"{cr.get('path')} version {cr.get('version') or 'unknown'}, criu check "
        text += "passes" if check.get("ok") else f"fails: {check.get('first_error')}"
        if check.get("last_error") and check.get("last_error") != check.get("first_error"):
            text += f" ... {check['last_error']}"
        add("criu", text)
    else:
        add("criu", "not found")
    net: NetworkFacts = facts.get("network") or {}
    tools = [f"{name} {path}" for name, path in (("nft", net.get("nft")), ("iptables", net.get("iptables")))
             if path]
    add("bridge", (f"--network bridge makes its NAT rules with {net.get('backend')} (--nat-backend auto); "
                   if net.get("backend") else "no nft or iptables: --network bridge is refused; ")
        + (", ".join(tools) or "no NAT tool") + "; pyroute2 " + (net.get("pyroute2") or "missing"))

    for mode, result in data["modes"].items():
        refused = result["refuses"]
        lines.append("")
        lines.append(f"{mode} mode: " + (f"refused on this host ({', '.join(refused)})"
                                         if refused else "runs on this host"))
        for f in result["findings"]:
            lines.append(f"  {f['status']:<8}{f['row'] + ':':<20}{f['detail']}")
        for row, column in modes.rules_of(mode):
            if row.enforced in ("validation", "runtime", "always") and row.name != "Service mode":
                lines.append(f"  {'rule':<8}{row.name + ':':<20}{column}")
    lines.append("")
    lines.append("not enforced yet")
    for p in modes.NOT_ENFORCED_YET:
        lines.append(f"  {p.row}: {p.rule}")
        lines.append(f"    why: {p.reason}")
    return "\n".join(lines) + "\n"

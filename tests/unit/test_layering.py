"""The import rules of the architecture, checked on the source (every import, including those
inside functions):

* the pure layers (nucleus.machines, .config, .plan, and the vocabulary, facts, errors and
  plain-data modules they build on) import only the standard library's pure data modules and
  each other: deciding and planning never touch the host;
* nucleus.effects.* never imports the machines, the plan or the application: effects carry out
  intents, they don't decide;
* only nucleus.effects.libc imports ctypes: one seam for every raw syscall;
* the application layer (nucleus.app.*) reaches the kernel only through the effects layer's entry
  points (the executor, the process supervision, the probe, the preparation, the state store,
  a service's checks and signals), and imports no module that talks to the kernel itself;
* only nucleus.cli.* imports click;
* nothing imports pyroute2 or asyncio (the default path stays light), except the modules of the
  egress process, forked only for a bridged container with an egress policy, which serve on
  asyncio and read DNS with dnspython, and nucleus.effects.netlink, imported only for a bridge
  (``HEAVY_ALLOWED``);
* the TLA+ evaluator (nucleus.tla: `nucleus trace check` needs it) imports only the standard
  library and itself, and only nucleus.trace.check imports it; the tooling around the model
  checkers (TLC, Apalache, simulation, `make verify`) lives outside the runtime package.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "nucleus"

PURE_STDLIB = frozenset(
    {
        "__future__",
        "dataclasses",
        "typing",
        "enum",
        "re",
        "fnmatch",
        "functools",
        "itertools",
        "collections",
        "json",
        "hashlib",
        "math",
        "string",
        "abc",
        "tomllib",  # parsing policy files: data in, data out
        "ipaddress",
        "posixpath",
        "types",
        "operator",
    }
)
PURE_NUCLEUS = ("nucleus.machines", "nucleus.config", "nucleus.plan", "nucleus.vocab",
                "nucleus.errors", "nucleus.facts", "nucleus.plain", "nucleus.linux", "nucleus.frozen")
PURE_PACKAGES = PURE_NUCLEUS
FORBIDDEN_EVERYWHERE = ("pyroute2", "asyncio", "dns")
EGRESS_PROCESS = ("nucleus.effects.egress", "nucleus.effects.egress_dns", "nucleus.effects.egress_proxy")
HEAVY_ALLOWED = {"asyncio": EGRESS_PROCESS, "dns": ("nucleus.effects.egress_dns",),
                 "pyroute2": ("nucleus.effects.netlink",)}
# What the application layer may use of the effects layer, and the kernel-facing standard
# modules it may not import at all.
APP_ENTRY_POINTS = ("nucleus.effects.executor", "nucleus.effects.process", "nucleus.effects.probe",
                    "nucleus.effects.prepare", "nucleus.effects.store", "nucleus.effects.transfer",
                    "nucleus.effects.changes", "nucleus.effects.auditlog", "nucleus.effects.service",
                    "nucleus.effects.serve", "nucleus.effects.gvisor", "nucleus.effects.ocistate")
KERNEL_MODULES = ("os", "signal", "ctypes", "fcntl", "socket", "subprocess", "select", "resource",
                  "mmap", "pty", "termios", "tty", "shutil", "tempfile")
LIBC = "nucleus.effects.libc"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted and absolute
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.module} imports {self.target} ({self.path}:{self.line})"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(path: Path, module: str | None = None) -> list[Import]:
    """Every import in the file at `path`, which is the module `module` (by default: from its path)."""
    module = module or module_name(path)
    is_package = path.name == "__init__.py"
    rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    tree = ast.parse(path.read_text(), filename=rel)
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(Import(module, alias.name, rel, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            # `from nucleus import vocab` imports the module nucleus.vocab; `from x import name` imports x.
            if base == "nucleus" or base.startswith("nucleus."):
                out.extend(
                    Import(module, f"{base}.{alias.name}", rel, node.lineno) for alias in node.names
                )
            else:
                out.append(Import(module, base, rel, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            out.append(Import(module, node.args[0].value, rel, node.lineno))
    return out


def _within(target: str, prefixes: tuple[str, ...] | frozenset[str]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def pure_violations(imports: list[Import]) -> list[str]:
    return [
        str(i)
        for i in imports
        if _within(i.module, PURE_PACKAGES)
        and not (i.target.split(".")[0] in PURE_STDLIB or _within(i.target, PURE_NUCLEUS))
    ]


def effects_violations(imports: list[Import]) -> list[str]:
    return [
        str(i)
        for i in imports
        if _within(i.module, ("nucleus.effects",))
        and _within(i.target, ("nucleus.machines", "nucleus.plan", "nucleus.app", "nucleus.cli"))
    ]


def ctypes_violations(imports: list[Import]) -> list[str]:
    return [str(i) for i in imports if _within(i.target, ("ctypes",)) and i.module != LIBC]


def app_violations(imports: list[Import]) -> list[str]:
    return [
        str(i)
        for i in imports
        if _within(i.module, ("nucleus.app",))
        and (_within(i.target, KERNEL_MODULES)
             or (_within(i.target, ("nucleus.effects",)) and not _within(i.target, APP_ENTRY_POINTS)))
    ]


def click_violations(imports: list[Import]) -> list[str]:
    return [
        str(i)
        for i in imports
        if _within(i.target, ("click",)) and not _within(i.module, ("nucleus.cli",))
    ]


def heavy_violations(imports: list[Import], forbidden: str) -> list[str]:
    allowed = HEAVY_ALLOWED.get(forbidden, ())
    return [str(i) for i in imports if _within(i.target, (forbidden,)) and i.module not in allowed]


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
ALL_IMPORTS = [imp for p in SOURCES for imp in imports_of(p)]


def test_the_walk_sees_the_package():
    names = {module_name(p) for p in SOURCES}
    for expected in (
        "nucleus.vocab",
        "nucleus.machines.lifecycle",
        "nucleus.machines.system",
        "nucleus.machines.join",
        "nucleus.plan.run",
        "nucleus.app.run",
        "nucleus.effects.executor",
        "nucleus.driver",
    ):
        assert expected in names, f"{expected} not found under {PACKAGE}"
    assert any(i.target == "nucleus.vocab" for i in ALL_IMPORTS)


def test_resolution_of_relative_imports():
    assert _resolve("nucleus.machines.system", False, 1, "base") == "nucleus.machines.base"
    assert _resolve("nucleus.machines", True, 1, "base") == "nucleus.machines.base"
    assert _resolve("nucleus.machines.system", False, 2, "vocab") == "nucleus.vocab"
    assert _resolve("nucleus.machines.system", False, 1, None) == "nucleus.machines"


def test_machines_and_spec_import_only_pure_modules():
    bad = pure_violations(ALL_IMPORTS)
    assert not bad, (
        "pure modules (machines, spec, vocab, errors) may import only "
        f"{sorted(PURE_STDLIB)} and {list(PURE_NUCLEUS)}:\n  " + "\n  ".join(bad)
    )


def test_effects_never_import_machines():
    bad = effects_violations(ALL_IMPORTS)
    assert not bad, (
        "effects carry out intents and import the vocabulary, never the machines, the plan or "
        "the application:\n  " + "\n  ".join(bad)
    )


def test_only_the_libc_seam_imports_ctypes():
    assert any(i.module == LIBC and i.target == "ctypes" for i in ALL_IMPORTS), "the seam itself"
    bad = ctypes_violations(ALL_IMPORTS)
    assert not bad, "only nucleus.effects.libc may import ctypes:\n  " + "\n  ".join(bad)


def test_the_application_reaches_the_kernel_only_through_the_effects_entry_points():
    assert any(_within(i.module, ("nucleus.app",)) for i in ALL_IMPORTS), "the layer exists"
    bad = app_violations(ALL_IMPORTS)
    assert not bad, (
        f"nucleus.app may use only {list(APP_ENTRY_POINTS)} of the effects layer and none of "
        f"{list(KERNEL_MODULES)}:\n  " + "\n  ".join(bad)
    )


def test_the_tla_evaluator_is_reached_only_by_trace_check():
    assert (ROOT / "tools" / "tla" / "__init__.py").exists()
    assert not any(module_name(p).startswith("tools") for p in SOURCES)
    users = {i.module for i in ALL_IMPORTS if _within(i.target, ("nucleus.tla",))}
    assert users - {m for m in users if _within(m, ("nucleus.tla",))} == {"nucleus.trace.check"}
    outside = [str(i) for i in ALL_IMPORTS if _within(i.module, ("nucleus.tla",))
               and i.target.startswith("nucleus") and not _within(i.target, ("nucleus.tla",))]
    assert not outside, "nucleus.tla imports only itself and the standard library:\n  " + "\n  ".join(outside)


def test_only_the_cli_imports_click():
    bad = click_violations(ALL_IMPORTS)
    assert not bad, "only nucleus.cli may import click:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("forbidden", FORBIDDEN_EVERYWHERE)
def test_nothing_imports_heavy_modules(forbidden):
    bad = heavy_violations(ALL_IMPORTS, forbidden)
    assert not bad, f"{forbidden} must not be imported anywhere in nucleus:\n  " + "\n  ".join(bad)


def test_the_rules_catch_violations(tmp_path):
    """The checker is not vacuous: offending imports, nested or relative, are reported by name."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "from . import base\n"
        "from ..machines import lifecycle\n"
        "def f():\n"
        "    import click\n"
        "    import asyncio.subprocess\n"
        "    importlib.import_module('pyroute2')\n"
    )
    machine = imports_of(sample, "nucleus.machines.sample")
    assert [i.target for i in machine] == [
        "os",
        "nucleus.machines.base",
        "nucleus.machines.lifecycle",
        "click",
        "asyncio.subprocess",
        "pyroute2",
    ]
    assert [b.split(" (")[0] for b in pure_violations(machine)] == [
        "nucleus.machines.sample imports os",
        "nucleus.machines.sample imports click",
        "nucleus.machines.sample imports asyncio.subprocess",
        "nucleus.machines.sample imports pyroute2",
    ]
    assert len(click_violations(machine)) == 1
    assert (
        len(heavy_violations(machine, "asyncio")) == 1
        and len(heavy_violations(machine, "pyroute2")) == 1
    )
    # the egress process may serve on asyncio; nothing else may, in the effects layer either
    assert heavy_violations(imports_of(sample, "nucleus.effects.egress_proxy"), "asyncio") == []
    assert len(heavy_violations(imports_of(sample, "nucleus.effects.sample"), "asyncio")) == 1
    effect = imports_of(sample, "nucleus.effects.sample")
    assert [b.split(" (")[0] for b in effects_violations(effect)] == [
        "nucleus.effects.sample imports nucleus.machines.lifecycle",
    ]
    assert effects_violations(machine) == []
    assert click_violations(imports_of(sample, "nucleus.cli.sample")) == []
    app = imports_of(sample, "nucleus.app.sample")
    assert [b.split(" (")[0] for b in app_violations(app)] == ["nucleus.app.sample imports os"]


def test_the_seam_and_app_rules_catch_violations(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import ctypes\n"
        "from nucleus.effects import fs, store\n"
        "from nucleus.effects.cgroups import stats\n"
        "import subprocess\n"
    )
    app = imports_of(sample, "nucleus.app.sample")
    assert [b.split(" (")[0] for b in app_violations(app)] == [
        "nucleus.app.sample imports ctypes",
        "nucleus.app.sample imports nucleus.effects.fs",
        "nucleus.app.sample imports nucleus.effects.cgroups.stats",
        "nucleus.app.sample imports subprocess",
    ]
    assert len(ctypes_violations(app)) == 1
    assert ctypes_violations(imports_of(sample, LIBC)) == []

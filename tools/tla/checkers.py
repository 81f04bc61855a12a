"""The model checkers, run as subprocesses: TLC (java and tla2tools.jar) and Apalache (apalache-mc)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.tla.errors import ToolError, die
from tools.tla.specs import FORMAL


@dataclass(frozen=True)
class Tlc:
    jar: Path
    java: str

    def command(self, *args: str, props: dict[str, str] | None = None) -> list[str]:
        defines = [f"-D{k}={v}" for k, v in (props or {}).items()]
        return [self.java, "-XX:+UseParallelGC", *defines, "-cp", str(self.jar), "tlc2.TLC", *args]

    def run(self, *args: str, props: dict[str, str] | None = None,
            directory: Path = FORMAL) -> subprocess.CompletedProcess[str]:
        """Run TLC in formal/ (or a copy of it) with its metadata (states/) in a temporary directory."""
        with tempfile.TemporaryDirectory(prefix="nucleus-tlc-") as meta:
            return subprocess.run(
                self.command(*args, "-metadir", meta, "-noGenerateSpecTE", props=props),
                cwd=directory, capture_output=True, text=True, check=False,
            )

    def version(self) -> str:
        with tempfile.TemporaryDirectory(prefix="nucleus-tlc-") as cwd:
            proc = subprocess.run(
                self.command("-version"), cwd=cwd, capture_output=True, text=True, check=False
            )
        m = re.search(r"TLC2 Version [^\n]*", proc.stdout + proc.stderr)
        if not m:
            raise ToolError(f"cannot tell the TLC version of {self.jar}:\n{proc.stdout}{proc.stderr}")
        return m.group(0).strip()


def find_tlc(jar: str | None, required: bool = False) -> Tlc | None:
    path = jar or os.environ.get("TLA2TOOLS") or ""
    if not path:
        if required:
            die("TLC is needed: pass --tla2tools path/to/tla2tools.jar (or set TLA2TOOLS)")
        return None
    if not Path(path).is_file():
        die(f"tla2tools.jar not found: {path}")
    java = shutil.which("java")
    if java is None:
        die("TLC needs a Java runtime: no `java` on PATH")
    return Tlc(Path(path).resolve(), java)


def find_apalache(path: str | None) -> str | None:
    if path:
        found = shutil.which(path) or (path if Path(path).is_file() else None)
        if found is None:
            die(f"apalache-mc not found: {path}")
        return str(Path(found).resolve())
    return shutil.which("apalache-mc")


def apalache_version(apalache: str) -> str:
    proc = subprocess.run([apalache, "version"], capture_output=True, text=True, check=False)
    lines = [ln.strip() for ln in (proc.stdout or proc.stderr).splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown version"


def error_part(out: str) -> str:
    """TLC's report from its first error on (the violated property and the behaviour)."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Error") or "is violated" in line or line.startswith("***"):
            return "\n".join(lines[i:])
    return "\n".join(lines[-40:])

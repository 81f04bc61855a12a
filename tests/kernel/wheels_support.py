"""Wheels for a sandbox's offline `pip install --no-index --find-links`: a distribution this
test environment has installed, packed again as the wheel it came from, with the ones it
requires; and a small wheel made from source files. Nothing is downloaded."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import re
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _write(path: Path, files: dict[str, bytes], dist_info: str) -> Path:
    record = f"{dist_info}/RECORD"
    lines = [_record_line(name, data) for name, data in files.items()] + [f"{record},,"]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(record, "\n".join(lines) + "\n")
    return path


def wheel_of_installed(name: str, dest: Path) -> Path:
    """The installed distribution `name` as a pure-Python wheel in `dest` (its files as RECORD
    lists them, byte code and installer notes left out)."""
    dist = md.distribution(name)
    top = f"{_normal(dist.metadata['Name'])}-{dist.version}"
    files: dict[str, bytes] = {}
    for entry in dist.files or ():
        text = str(entry)
        if text.startswith("..") or "__pycache__" in text or text.endswith(
                (".dist-info/RECORD", ".dist-info/INSTALLER", ".dist-info/REQUESTED", ".dist-info/direct_url.json")):
            continue
        files[text] = entry.locate().read_bytes()
    dist_info = next(f.split("/")[0] for f in files if f.split("/")[0].endswith(".dist-info"))
    return _write(dest / f"{top}-py3-none-any.whl", files, dist_info)


def wheels_with_requirements(names: list[str], dest: Path) -> list[Path]:
    """`names` and everything they require on this interpreter, each as a wheel in `dest`."""
    environment = default_environment()
    made: dict[str, Path] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        if _normal(name) in made:
            continue
        made[_normal(name)] = wheel_of_installed(name, dest)
        for text in md.requires(name) or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({**environment, "extra": ""}):
                pending.append(requirement.name)
    return sorted(made.values())


def wheel_from_source(name: str, version: str, modules: dict[str, str], dest: Path) -> Path:
    """A wheel of `modules` (path inside the wheel: source text)."""
    dist_info = f"{_normal(name)}-{version}.dist-info"
    files = {path: text.encode() for path, text in modules.items()}
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: nucleus-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    return _write(dest / f"{_normal(name)}-{version}-py3-none-any.whl", files, dist_info)

"""A rootfs closure made from this machine's own binaries, laid out as lib.mkRootfs lays one out:
store paths for dash, a few coreutils, mount and unshare, python3 with its standard library, and the shared objects
they load (found with ldd); an environment whose bin, lib and lib64 link into them, as buildEnv
links each file; and the rootfs, a store path of its own whose bin, lib, lib64 and usr/{bin,lib}
lead into the environment, with its own etc (a service user `app`, uid 1000), its store paths
listed and attested by `nucleus attest`.

``python_closure()`` makes it under /nix/store/<hash>-<name> (with /nix/store itself where it was
missing) and removes all of it afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benches.host import shared_objects
from tests.helpers import describe, run_nucleus, store_name, store_paths

COREUTILS = ("cat", "chroot", "cut", "echo", "env", "false", "head", "id", "ls", "mkdir", "mknod", "rm", "sleep",
             "stat", "touch", "tr", "true", "wc")
UTIL_LINUX = ("mount", "unshare")
PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"
# What a service never imports: the test suite, GUI toolkits, the 2to3 and pip bootstraps, the
# files to build against libpython, and Debian's sitecustomize (a link into the host's /etc).
STDLIB_LEFT_OUT = ("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
                   "config-*", "sitecustomize.py")

APP_UID = 1000
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          f"app:x:{APP_UID}:{APP_UID}:app:/home/app:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = f"root:x:0:\napp:x:{APP_UID}:\nnogroup:x:65534:\n"


@dataclass(frozen=True)
class Closure:
    """The rootfs (what --rootfs names) and the store paths it leads into, by name."""

    rootfs: str
    packages: dict[str, str]


def _package(name: str, made: list[str]) -> Path:
    path = Path(store_name(name))
    made.append(str(path))
    path.mkdir(mode=0o755)
    return path


def _link_each(package: Path, env: Path, below: str) -> None:
    """Link every file of ``package/below`` into ``env/below`` (buildEnv's way)."""
    for source in sorted((package / below).rglob("*")):
        if source.is_dir() and not source.is_symlink():
            continue
        target = env / below / source.relative_to(package / below)
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.symlink(source, target)


def _build(made: list[str]) -> Closure:
    dash = _package("dash", made)
    (dash / "bin").mkdir()
    shutil.copy("/bin/dash", dash / "bin" / "dash")
    os.symlink("dash", dash / "bin" / "sh")

    coreutils = _package("coreutils", made)
    (coreutils / "bin").mkdir()
    for tool in COREUTILS:
        shutil.copy(shutil.which(tool) or f"/usr/bin/{tool}", coreutils / "bin" / tool)
    shutil.copy(shutil.which("grep") or "/usr/bin/grep", coreutils / "bin" / "grep")

    util_linux = _package("util-linux", made)
    (util_linux / "bin").mkdir()
    for tool in UTIL_LINUX:
        shutil.copy(shutil.which(tool) or f"/usr/bin/{tool}", util_linux / "bin" / tool)

    python = _package("python3", made)
    (python / "bin").mkdir()
    shutil.copy(f"/usr/bin/{PYTHON}", python / "bin" / PYTHON)
    os.symlink(PYTHON, python / "bin" / "python3")
    stdlib = Path(f"/usr/lib/{PYTHON}")
    shutil.copytree(stdlib, python / "lib" / PYTHON, symlinks=True,
                    ignore=shutil.ignore_patterns(*STDLIB_LEFT_OUT))

    binaries = [str(p) for p in (*(dash / "bin").iterdir(), *(coreutils / "bin").iterdir(),
                                 *(util_linux / "bin").iterdir(), python / "bin" / PYTHON) if not p.is_symlink()]
    binaries += glob.glob(str(python / "lib" / PYTHON / "lib-dynload" / "*.so"))
    libs = _package("glibc-and-libraries", made)
    for shared in shared_objects(binaries):
        where = "lib64" if os.path.basename(shared).startswith("ld-linux") else "lib/x86_64-linux-gnu"
        (libs / where).mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.copy(shared, libs / where / os.path.basename(shared))  # the file, under the link's name

    env = _package("rootfs-env", made)
    for package, below in ((dash, "bin"), (coreutils, "bin"), (util_linux, "bin"), (python, "bin"), (libs, "lib"),
                           (libs, "lib64")):
        _link_each(package, env, below)

    rootfs = _package("rootfs", made)
    for entry in ("bin", "lib", "lib64"):
        os.symlink(env / entry, rootfs / entry)
    (rootfs / "usr").mkdir()
    for entry in ("bin", "lib"):
        os.symlink(env / entry, rootfs / "usr" / entry)
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    (rootfs / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
    (rootfs / "etc" / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    packages = {"dash": dash, "coreutils": coreutils, "util-linux": util_linux, "python3": python, "libraries": libs,
                "env": env}
    (rootfs / ".nucleus-rootfs-store-paths").write_text("".join(f"{p}\n" for p in sorted(map(str, packages.values()))))
    for top in made:
        for directory, _dirs, files in os.walk(top):
            os.chmod(directory, 0o755)
            for name in files:
                path = os.path.join(directory, name)
                if not os.path.islink(path):
                    runs = "/bin" in directory or "/lib64" in directory or ".so" in name
                    os.chmod(path, 0o755 if runs else 0o644)
    attested = run_nucleus(["attest", str(rootfs)], timeout=120)
    assert attested.returncode == 0, describe(attested)
    return Closure(str(rootfs), {name: str(path) for name, path in packages.items()})


@contextlib.contextmanager
def python_closure() -> Iterator[Closure]:
    """The closure described above, removed with every store path afterwards."""
    with store_paths() as made:
        yield _build(made)

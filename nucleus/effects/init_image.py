"""The container's compiled init (nucleus/init/init.c): read into a sealed memory file before
anything is forked, and executed by PID 1 once the workload runs, in place of the interpreter.

PID 1 cannot name the binary once it has pivoted into the container's root, and Landlock would
refuse a host file there anyway; a memory file is outside every mount the container sees and
outside Landlock's rules (the kernel's own internal mount). The default seccomp profile refuses
execveat with AT_EMPTY_PATH (executing a descriptor passed in), and PID 1 runs under it, so PID 1
executes the file as /proc/self/fd/N (execve, which the profile allows): the magic link leads to
the memory file itself, so the container's /proc being noexec does not matter and no file of the
container is executed. The memory file is sealed (no write, no resize) and mode 0111: executable,
unreadable to a process not privileged over its owner, so the init is non-dumpable from the exec
on, before its first instruction makes it so for good.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

import nucleus

# Where `make setup` (and the package build) put the binary; NUCLEUS_INIT names another.
BINARY = os.path.join(os.path.dirname(nucleus.__file__), "init", "nucleus-init")
ENVIRONMENT = "NUCLEUS_INIT"
# A freestanding init is a few KiB; anything larger is not the file `make setup` builds.
MAX_SIZE = 1 << 20
MFD_EXEC = 0x0010  # Linux 6.3: an executable memory file where vm.memfd_noexec asks to be told
SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def path(environ: dict[str, str] | None = None) -> str:
    return (environ if environ is not None else os.environ).get(ENVIRONMENT) or BINARY


def load(binary: str) -> int:
    """The binary's bytes in a sealed, close-on-exec memory file of mode 0111 (its descriptor).
    Raises OSError naming the file and why it cannot serve: missing, not a regular file (a
    symlink is not followed), too large, or a host that refuses executable memory files
    (vm.memfd_noexec = 2)."""
    fd = os.open(binary, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", binary)
        if st.st_size > MAX_SIZE:
            raise OSError(errno.EFBIG, f"larger than {MAX_SIZE >> 10} KiB", binary)
        data = os.read(fd, MAX_SIZE + 1)
    finally:
        os.close(fd)
    if not data.startswith(b"\x7fELF"):
        raise OSError(errno.ENOEXEC, "not an executable", binary)
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        image = os.memfd_create("init", flags | MFD_EXEC)
    except OSError as e:
        if e.errno != errno.EINVAL:  # EACCES: vm.memfd_noexec = 2
            raise OSError(e.errno, f"cannot make an executable memory file ({e.strerror}; vm.memfd_noexec)",
                          binary) from e
        image = os.memfd_create("init", flags)  # before Linux 6.3 every memory file may execute
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(image, view):]
        os.fchmod(image, 0o111)
        fcntl.fcntl(image, fcntl.F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(image)
        raise
    return image


def become(image: int, workload: int) -> OSError:
    """In PID 1, once the workload's exec has succeeded: execute the init (see the module's
    docstring), telling it the workload's pid. Returns only when the exec failed, with why."""
    argv = ["init", str(workload)]
    try:
        os.execve(f"/proc/self/fd/{image}", argv, {})
    except FileNotFoundError:
        pass  # no /proc here: the descriptor itself (execveat), where the profile allows it
    except OSError as e:
        return e
    try:
        os.execve(image, argv, {})
    except OSError as e:
        return e
    raise AssertionError("execve returned")  # pragma: no cover - it returns only by raising

"""Kernel control files (/proc/<pid>/uid_map, cgroupfs files): a value is written with one
write(2), since the kernel parses each write on its own, to a file that must exist (a control
file is never created)."""

from __future__ import annotations

import os


def write_once(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)

"""The compiled init loaded for PID 1: a sealed, close-on-exec memory file of mode 0111 holding
the binary's bytes; what is not the binary (missing, a symlink, not an ELF file, too large) is
refused naming the file."""

from __future__ import annotations

import fcntl
import os
import stat

import pytest

from nucleus.effects import init_image

pytestmark = pytest.mark.requires("mini-init")


def test_the_binary_in_a_sealed_memory_file():
    image = init_image.load(init_image.BINARY)
    try:
        st = os.fstat(image)
        assert stat.S_IMODE(st.st_mode) == 0o111
        assert fcntl.fcntl(image, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert fcntl.fcntl(image, fcntl.F_GET_SEALS) == init_image.SEALS
        with open(init_image.BINARY, "rb") as f:
            want = f.read()
        assert os.pread(image, len(want) + 1, 0) == want
        with pytest.raises(PermissionError):
            os.write(image, b"x")
    finally:
        os.close(image)


def test_what_is_not_the_binary_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        init_image.load(str(tmp_path / "missing"))
    link = tmp_path / "link"
    link.symlink_to(init_image.BINARY)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        init_image.load(str(link))
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(OSError, match="not an executable"):
        init_image.load(str(script))
    big = tmp_path / "big"
    big.write_bytes(b"\x7fELF" + bytes(init_image.MAX_SIZE))
    with pytest.raises(OSError, match="larger than 1024 KiB"):
        init_image.load(str(big))


def test_nucleus_init_names_another_binary():
    assert init_image.path({}) == init_image.BINARY
    assert init_image.path({"NUCLEUS_INIT": "/opt/init"}) == "/opt/init"

"""nflog.bind_in: an NFLOG socket of another process's network namespace, made by a child that
enters it, while the caller stays where it is."""

from __future__ import annotations

import errno
import os
import socket
import subprocess

import pytest

from nucleus.effects import nflog
from tests.helpers import wait_for

pytestmark = pytest.mark.requires("root", "netns")


def _namespace(pid: int | str) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/net")
    return st.st_dev, st.st_ino


def test_the_socket_is_the_other_namespaces_and_the_caller_stays():
    other = subprocess.Popen(["unshare", "--net", "--user", "--map-root-user", "sleep", "30"])
    try:
        assert wait_for(lambda: _namespace(other.pid) != _namespace("self"), timeout=10)
        before = _namespace("self")
        sock = nflog.bind_in(other.pid, nflog.FIRST_GROUP)
        try:
            assert _namespace("self") == before
            assert sock.family == socket.AF_NETLINK and not sock.getblocking()
            assert not os.get_inheritable(sock.fileno())
            # The group is held there now: a second socket for it there is refused.
            with pytest.raises(OSError) as raised:
                nflog.bind_in(other.pid, nflog.FIRST_GROUP).close()
            assert raised.value.errno in nflog.BUSY
        finally:
            sock.close()
    finally:
        other.kill()
        other.wait()


def test_a_process_that_is_gone_is_an_error_naming_the_group():
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(OSError) as raised:
        nflog.bind_in(child.pid, nflog.FIRST_GROUP)
    assert raised.value.errno == errno.ENOENT
    assert f"nflog group {nflog.FIRST_GROUP} in the network namespace of process {child.pid}" in str(raised.value)


def test_a_process_in_this_network_namespace_is_refused():
    # Binding here would read the host's drops in the container's stead.
    with pytest.raises(OSError) as raised:
        nflog.bind_in(os.getpid(), nflog.FIRST_GROUP)
    assert raised.value.errno == errno.EINVAL
    assert "is in this network namespace" in str(raised.value)

"""What the tests of Landlock's logged denials share: the kernel's audit switch, and a policy
that denies a write a shell makes.

Landlock logs its denials only while the kernel's audit is enabled. nucleus never changes that
setting; where a host has it off, a test that needs it turns it on for its own duration and
restores it (``audit_on``), as an administrator would with ``auditctl -e 1``.
"""

from __future__ import annotations

import json
import os
import socket
import struct

import pytest

from nucleus.effects import audit

AUDIT_SET = 1001
AUDIT_STATUS_ENABLED = 1


def _set_audit(enabled: int) -> None:
    """AUDIT_SET with only the enabled flag (what `auditctl -e` sends)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, audit.NETLINK_AUDIT) as s:
        body = struct.pack("=11I", AUDIT_STATUS_ENABLED, enabled, *([0] * 9))
        s.send(struct.pack("=IHHII", 16 + len(body), AUDIT_SET, 1 | 4, 1, 0) + body)
        code = struct.unpack_from("=i", s.recv(4096), 16)[0]
        assert code == 0, f"AUDIT_SET enabled={enabled}: {os.strerror(-code)}"


@pytest.fixture
def audit_on():
    before = audit.status().enabled
    if before == 0:
        _set_audit(1)
    try:
        yield
    finally:
        if before == 0:
            _set_audit(0)
    assert audit.status().enabled == before


# /tmp's files read-only for Landlock (they may be made, not written; its mode bits, 1777, let
# anyone write); and what a shell and Python need.
RULES = [("/", ["readdir"]), *((p, ["read", "execute"]) for p in ("/usr", "/lib", "/lib64", "/bin")),
         ("/etc", ["read"]), ("/proc", ["read"]), ("/dev/null", ["read", "write", "ioctl_dev"]),
         ("/tmp", ["read", "create"])]
POLICY = "".join(f'[[rules]]\npath = "{path}"\naccess = {json.dumps(access)}\n' for path, access in RULES)

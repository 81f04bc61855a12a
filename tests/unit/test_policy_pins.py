"""The sha256 pins of policy files: a pin that is not a sha256, and a file that is not the one
pinned, are refused with both hashes shown (tests/unit/policy_support.py says why the text is
pinned)."""

from __future__ import annotations

import hashlib

import pytest

from nucleus.config.policy import pins
from tests.unit.policy_support import error

FLAG = "--seccomp-profile-sha256"


def test_sha256_of_is_sha256sum():
    assert pins.sha256_of(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_pin_match_returns_the_digest_and_accepts_upper_case():
    data = b'{"defaultAction": "SCMP_ACT_ALLOW"}'
    digest = hashlib.sha256(data).hexdigest()
    assert pins.check_pin("x.json", data, digest, FLAG) == digest
    assert pins.check_pin("x.json", data, f" {digest.upper()}\n", FLAG) == digest


@pytest.mark.parametrize(
    "pin, shown",
    [
        ("abc123", "'abc123'"),
        ("g" * 64, "'" + "g" * 64 + "'"),
        ("0" * 63, "'" + "0" * 63 + "'"),
        ("0" * 65, "'" + "0" * 65 + "'"),
        ("0" * 100, "'" + "0" * 76 + "..."),
        ("", "''"),
    ],
)
def test_pin_that_is_not_hex_is_refused(pin, shown):
    e = error(pins.check_pin, "x.json", b"{}", pin, FLAG)
    assert e.message == f"{FLAG} {shown}: not a sha256 (64 hexadecimal characters)"
    assert e.hint == "compute it with: sha256sum x.json"


def test_pin_mismatch_prints_both_hashes():
    data = b"{}"
    actual = hashlib.sha256(data).hexdigest()
    pinned = "ab" * 32
    e = error(pins.check_pin, "x.json", data, pinned.upper(), "--caps-policy-sha256")
    assert e.message == f"--caps-policy-sha256: 'x.json' has sha256 {actual}, expected {pinned}"
    assert e.hint == (
        "the file is not the one that was pinned: review what changed, then pin the new hash "
        "(sha256sum x.json)"
    )

"""What the workload sees of /etc, on the real kernel: exactly the files nucleus generates and the
host's entries the allowlist names (nucleus.config.host_etc) that this host has, each bound
read-only, nosuid and nodev or made again as the same symlink; never a shadow file, sudoers, an
ssh host key, /etc/ssl/private, a tool's configuration that may hold credentials, or a private
key; and the tools that read them work (CA certificates, time zone)."""

from __future__ import annotations

import fnmatch
import os
import stat
import subprocess

import pytest

from nucleus import vocab as v
from nucleus.config.container import ContainerConfig
from nucleus.config.host_etc import ALLOWLIST
from nucleus.plan import mounts
from tests.helpers import SANDBOX, describe, run_nucleus

pytestmark = SANDBOX

SECRETS = ("shadow", "gshadow", "shadow-", "gshadow-", "sudoers", "sudoers.d", "ssh", "ssl/private",
           "gitconfig", "pip.conf", "npmrc", "subuid", "subgid", "machine-id", "security", "pki/tls/private")


def generated() -> set[str]:
    """The files the mount plan writes into the container's /etc."""
    layout = mounts.HostLayout(system=(("/usr", ""),), rootfs_dir="/r", owner=(0, 0))
    return {op.path.split("/")[3] for op in mounts.plan(ContainerConfig(argv=("true",)), layout, "h")
            if isinstance(op, v.WriteFile) and op.path.startswith("/r/etc/")}


def host_entries() -> dict[str, str]:
    """The allowlisted entries this host has, reached without a symlink on the way: path
    relative to /etc -> "link", "dir" or "file"."""
    found = {}
    for pattern, _ in ALLOWLIST:
        *parents, last = pattern.split("/")
        if any(not stat.S_ISDIR(os.lstat(os.path.join("/etc", *parents[:i + 1])).st_mode)
               if os.path.lexists(os.path.join("/etc", *parents[:i + 1])) else True
               for i in range(len(parents))):
            continue
        where = os.path.join("/etc", *parents)
        for name in sorted(os.listdir(where)):
            if fnmatch.fnmatchcase(name, last):
                mode = os.lstat(os.path.join(where, name)).st_mode
                kind = "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "file"
                found["/".join([*parents, name])] = kind
    return found


def inside(script: str) -> str:
    result = run_nucleus(["run", "--", "sh", "-c", script])
    assert result.returncode == 0 and result.stderr == "", describe(result)
    return result.stdout


def test_etc_holds_exactly_the_generated_files_and_the_allowlisted_entries_the_host_has():
    entries = host_entries()
    assert "alternatives" in entries and "ssl/certs" in entries  # a Debian host has both
    listed = inside("ls -A /etc; echo --; ls -A /etc/ssl 2>/dev/null").split("--\n")
    top, ssl = set(listed[0].split()), set(listed[1].split())
    assert top == generated() | {rel.split("/")[0] for rel in entries}
    assert ssl == {rel.split("/")[1] for rel in entries if rel.startswith("ssl/")}


def test_each_entry_is_bound_read_only_or_made_again_as_its_symlink():
    entries = host_entries()
    mountinfo = inside("cat /proc/self/mountinfo")
    options = {f[4]: set(f[5].split(",")) for f in map(str.split, mountinfo.splitlines())}
    for rel, kind in entries.items():
        if kind == "link":
            target = inside(f"readlink /etc/{rel}").strip()
            assert target == os.readlink(f"/etc/{rel}"), rel
        else:
            assert {"ro", "nosuid", "nodev"} <= options[f"/etc/{rel}"], rel


def test_no_host_secret_is_in_etc():
    script = "; ".join(f"test -e /etc/{s} && echo present: {s}" for s in SECRETS)
    script += "; find /etc -type f -iname '*.key' -print"
    script += "; grep -rls 'PRIVATE KEY-----' /etc; true"
    assert inside(script) == ""


@pytest.mark.requires("bin:/usr/bin/python3")
def test_ca_certificates_and_the_time_zone_are_read():
    out = inside("python3 -c 'import ssl; print(ssl.create_default_context().cert_store_stats()[\"x509_ca\"])';"
                 " date +%Z")
    cas, zone = out.split()
    host = subprocess.run(["date", "+%Z"], capture_output=True, text=True, check=True,
                          env={k: val for k, val in os.environ.items() if k != "TZ"})
    assert int(cas) > 0  # /etc/ssl/certs: the CA bundle OpenSSL reads
    assert zone == host.stdout.strip()  # /etc/localtime, as the host reads it


@pytest.fixture
def planted():
    """Two secrets in a tree the allowlist binds (/etc/vim): one by its name, one by its first
    bytes. Removed afterwards."""
    if not os.path.isdir("/etc/vim") or os.path.islink("/etc/vim"):
        pytest.skip("this host has no /etc/vim to plant a secret in")
    token = os.urandom(4).hex()
    paths = {f"/etc/vim/nucleus-test-{token}.key": "not a key, but named like one\n",
             f"/etc/vim/nucleus-test-{token}": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"}
    try:
        for path, text in paths.items():
            with open(path, "x") as f:
                f.write(text)
        yield sorted(paths)
    finally:
        for path in paths:
            if os.path.exists(path):
                os.unlink(path)


def test_a_secret_inside_a_bound_tree_is_masked(planted):
    out = inside("; ".join(f"echo \"$(wc -c < {p}) $(stat -c %F {p})\"" for p in planted))
    assert out.splitlines() == ["0 character special file"] * 2  # /dev/null in its place
    assert inside("ls /etc/vim").split() == sorted(os.listdir("/etc/vim"))

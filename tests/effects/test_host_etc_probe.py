"""Which pieces of a host's /etc enter the container (nucleus.effects.probe.host_etc over
nucleus.config.host_etc's allowlist), on fake /etc trees; and the mount plan they become."""

from __future__ import annotations

import os

from nucleus import vocab as v
from nucleus.config.container import ContainerConfig
from nucleus.config.host_etc import ALLOWLIST
from nucleus.effects.probe import host_etc
from nucleus.plan import mounts

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def make(root, files: dict[str, str], links: dict[str, str] = {}) -> str:  # noqa: B006 - read only
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            path.mkdir(exist_ok=True)
        else:
            path.write_text(content)
    for rel, target in links.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / rel)
    return str(root)


def test_only_the_allowlist_enters_each_entry_as_itself(tmp_path):
    root = make(tmp_path, {
        "shadow": "root:*:1::", "gshadow": "x", "sudoers": "x", "passwd": "x", "gitconfig": "x",
        "pip.conf": "x", "npmrc": "x", "ssh/ssh_host_ed25519_key": KEY, "ssl/private/host.key": KEY,
        "ssl/certs/ca-certificates.crt": "-----BEGIN CERTIFICATE-----\n", "ssl/openssl.cnf": "x",
        "java-17-openjdk/jvm-amd64.cfg": "-server KNOWN\n", "java-21-openjdk/net.properties": "x",
        "java.conf": "x", "mime.types": "x", "ld.so.cache": "x", "vim/vimrc": "x",
    }, links={
        "alternatives/awk": "/usr/bin/mawk", "localtime": "/usr/share/zoneinfo/Etc/UTC",
        "os-release": "../usr/lib/os-release",
    })
    entries, masked = host_etc(root)
    assert sorted(entries) == [
        ("alternatives", ""), ("java-17-openjdk", ""), ("java-21-openjdk", ""), ("ld.so.cache", ""),
        ("localtime", "/usr/share/zoneinfo/Etc/UTC"), ("mime.types", ""),
        ("os-release", "../usr/lib/os-release"), ("ssl/certs", ""), ("ssl/openssl.cnf", ""),
        ("vim", ""),
    ]
    assert masked == ()


def test_secrets_inside_a_chosen_tree_are_masked_by_name_and_by_content(tmp_path):
    root = make(tmp_path, {
        "ssl/certs/ca.pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "ssl/certs/server.key": "anything", "ssl/certs/bundle.pem": "-----BEGIN CERTIFICATE-----\n" + KEY,
        "ssl/certs/java/cacerts": "keystore", "java-17-openjdk/management/jmxremote.password": "monitorRole x",
        "java-17-openjdk/management/jmxremote.access": "monitorRole readonly",
        "vim/.secrets/": "", "vim/vimrc": "set nocompatible", "vim/plain": KEY,
    }, links={"ssl/certs/link.key": "/usr/share/ca-certificates/x.crt"})
    entries, masked = host_etc(root)
    assert ("ssl/certs", "") in entries and ("vim", "") in entries
    assert masked == (
        "java-17-openjdk/management/jmxremote.password", "ssl/certs/bundle.pem", "ssl/certs/server.key",
        "vim/.secrets", "vim/plain",
    )  # a symlink is never masked: inside, it reaches only what is bound


def test_a_key_written_after_a_scan_is_masked_by_the_next(tmp_path):
    """A resident server keeps what each file held, by identity and change time: a file changed
    in place, or replaced, is read again."""
    root = make(tmp_path, {"vim/vimrc": "set nocompatible", "vim/other": "syntax on"})
    assert host_etc(root)[1] == ()
    assert host_etc(root)[1] == ()  # from what was kept
    with open(tmp_path / "vim/vimrc", "a") as f:
        f.write("\n" + KEY)
    (tmp_path / "vim/new").write_text(KEY)
    os.replace(tmp_path / "vim/new", tmp_path / "vim/other")
    assert host_etc(root)[1] == ("vim/other", "vim/vimrc")


def test_an_entry_behind_a_symlink_is_left_out(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    make(elsewhere, {"certs/ca.crt": "x", "openssl.cnf": "x"})
    root = make(tmp_path / "etc", {"vim/vimrc": "x"}, links={
        "ssl": str(elsewhere), "services": str(elsewhere / "openssl.cnf")})
    entries, _ = host_etc(root)
    # /etc/ssl is a symlink: ssl/certs and ssl/openssl.cnf are not followed through it; an
    # allowlisted symlink itself is made again as the same symlink.
    assert sorted(entries) == [("services", str(elsewhere / "openssl.cnf")), ("vim", "")]


def test_the_allowlist_names_no_secret_place():
    named = {pattern for pattern, _ in ALLOWLIST}
    for secret in ("shadow", "gshadow", "sudoers", "ssh", "ssl/private", "ssl", "gitconfig", "pip.conf",
                   "npmrc", "passwd", "group", "security", "pki", "pki/tls"):
        assert secret not in named


def test_the_plan_binds_links_and_masks_under_the_generated_etc():
    layout = mounts.HostLayout(system=(("/usr", ""),), rootfs_dir="/r", owner=(1, 1),
                               etc=(("alternatives", ""), ("localtime", "/usr/share/zoneinfo/UTC"),
                                    ("ssl/openssl.cnf", "")),
                               etc_masked=("alternatives/x.key",))
    ops = mounts.plan(ContainerConfig(argv=("true",)), layout, "h")
    at = next(i for i, op in enumerate(ops) if isinstance(op, v.MakeSymlinks) and op.root == "/r/etc")
    ro = ("rdonly", "nosuid", "nodev")
    assert ops[at:at + 4] == (
        v.MakeSymlinks("/r/etc", (("localtime", "/usr/share/zoneinfo/UTC"),)),
        v.BindMount("/etc/alternatives", "/r/etc/alternatives", ro, recursive=True, beneath="/etc"),
        v.BindMount("/etc/ssl/openssl.cnf", "/r/etc/ssl/openssl.cnf", ro, recursive=True, beneath="/etc"),
        v.MaskPaths("/r/etc", ("alternatives/x.key",)),
    )
    # A --rootfs with its own /etc takes nothing of the host's.
    own = mounts.HostLayout(system=(("/usr", ""), ("/etc", "")), rootfs_dir="/r", owner=(1, 1),
                            rootfs="/nix/store/x", etc=layout.etc)
    assert not [op for op in mounts.plan(ContainerConfig(argv=("true",)), own, "h")
                if isinstance(op, v.BindMount) and op.source.startswith("/etc/")]

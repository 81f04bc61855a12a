"""The pieces of the host's /etc that common tools need and that hold no secret: an explicit
allowlist, bound read-only into the container's generated /etc. Pure data and decisions; the
probe (nucleus.effects.probe.host_etc) looks at the host, the plan (nucleus.plan.mounts) binds.

Only what is named here enters, each entry as itself: a directory or file is bound read-only,
nosuid and nodev (with every mount below it), a symlink is made again as the same symlink (it
resolves inside the container, where only what is bound can be reached), and an entry behind a
symlink on the host is left out. Never the host's users, groups or their shadows, sudoers, ssh
host keys, /etc/ssl/private, nor a tool's configuration that may carry credentials
(/etc/gitconfig's credential helpers, /etc/pip.conf's and /etc/npmrc's index tokens): git, pip
and npm work without them. Inside a bound tree, an entry the context's secret rules leave out
(nucleus.config.context: private keys such as `*.key`, credential and token files, by name or a
private key by its first bytes) is masked: an empty file or directory in its place.

With `--rootfs` the closure's own /etc is used, unchanged, and nothing of the host's.
"""

from __future__ import annotations

import fnmatch
import functools

from nucleus.config.context import SECRET_KINDS, Matcher, exclusion_list, kind_of

ETC = "/etc"

# (path relative to /etc, a glob on its last component allowed; what needs it)
ALLOWLIST: tuple[tuple[str, str], ...] = (
    ("alternatives", "Debian's choice of awk, editor, java, vi, ... (links into /usr)"),
    ("ssl/certs", "CA certificates: links into /usr/share/ca-certificates, the bundle, Java's cacerts"),
    ("ssl/openssl.cnf", "OpenSSL's configuration (curl, python's ssl, git over https)"),
    ("ca-certificates", "which CA certificates are trusted, and their update hooks"),
    ("ca-certificates.conf", "which CA certificates are trusted"),
    ("pki/tls/certs", "CA certificates on Fedora and its kin"),
    ("pki/ca-trust/extracted", "the CA bundles /etc/pki/tls/certs links to"),
    ("ld.so.cache", "where the dynamic loader finds libraries outside its default directories"),
    ("localtime", "the time zone (a link into /usr/share/zoneinfo)"),
    ("timezone", "the time zone's name"),
    ("java-*", "the JDK's configuration, which /usr/lib/jvm links into (java will not start without it)"),
    ("vim", "vim's system vimrc"),
    ("mime.types", "file types by extension (python's mimetypes, web servers)"),
    ("protocols", "protocol names (getprotobyname)"),
    ("services", "service names and ports (getservbyname)"),
    ("os-release", "the distribution's name (a link into /usr/lib)"),
    ("static", "NixOS: where /etc's links lead (into /nix/store, which is bound)"),
)



@functools.cache
def _secrets() -> Matcher:
    return Matcher(exclusion_list())  # compiled on first use: a run with --rootfs needs none


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def chosen(names: list[str] | tuple[str, ...], pattern: str) -> list[str]:
    """The names of a directory an allowlist entry's last component chooses, sorted."""
    if not is_glob(pattern):
        return [pattern] if pattern in names else []
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def secret(rel: str, name: str, is_dir: bool) -> str | None:
    """The secret rule that masks the entry at `rel` (inside a bound tree), or None."""
    rule = _secrets().why(rel, name, is_dir)
    return rule if rule is not None and kind_of(rule) in SECRET_KINDS else None


def content_bytes(rel: str, name: str, size: int) -> int:
    """How many of a regular file's first bytes the private-key check reads (0: none)."""
    return _secrets().checks_content(rel, name, size)


def secret_content(header: bytes) -> str | None:
    """The rule that masks a file with these first bytes (a private key), or None."""
    return _secrets().content(header)

"""--secret SRC:DEST: files the workload reads from an in-memory tmpfs at /run/secrets, never
from its environment; and the environment names production refuses because they look like
secrets.

A secret's source is a host file read once by the supervisor before anything is forked (see
nucleus.effects.secrets for what a source must be); its DEST is where the workload finds it:
a file directly in /run/secrets (``--secret /path/to/api-key:/run/secrets/api_key``), or a file
anywhere else (``--secret /run/secrets/tls-cert:/etc/tls/cert.pem``), which is the tmpfs's file
of the same name bound there read-only. /run/secrets is mode 0500 and every file 0400, owned
by the workload's user (-u), and the tmpfs is read-only once filled.

Pure: parsing and validation only.
"""

from __future__ import annotations

import posixpath
import re

from nucleus.config.volumes import FLAG as VOLUME_FLAG
from nucleus.config.volumes import Volume, under
from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

FLAG = "--secret"
SECRETS_DIR = "/run/secrets"
EXAMPLE = "--secret /path/to/api-key:/run/secrets/api_key"
HINT = f"--secret SRC:DEST, e.g. {EXAMPLE}"
MAX_SECRETS = 64
MAX_SECRET_SIZE = 1 << 20  # a secret larger than 1 MiB is not a credential
MAX_TOTAL_SIZE = 15 << 20  # all of them: /run/secrets is a tmpfs of 16 MiB (the reference's)
TMPFS_SIZE = 16 << 20
# Where no secret may be bound: the kernel's filesystems, and /run/secrets itself.
RESERVED = ("/proc", "/sys", "/dev")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@=-]*$")

# Words of an environment name (split at "_") that make it look like a secret in production;
# a name ending in _FILE, _PATH or _DIR names where a secret is (POSTGRES_PASSWORD_FILE) and is
# allowed.
SECRET_WORDS = frozenset({"PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "SECRETS", "TOKEN", "APIKEY",
                          "CREDENTIAL", "CREDENTIALS", "PRIVATEKEY", "ACCESSKEY"})
SECRET_PAIRS = frozenset({("API", "KEY"), ("PRIVATE", "KEY"), ("ACCESS", "KEY"), ("SECRET", "KEY"),
                          ("AUTH", "KEY"), ("SIGNING", "KEY"), ("ENCRYPTION", "KEY")})
LOCATION_SUFFIXES = ("_FILE", "_PATH", "_DIR")


@frozen
class Secret:
    """One --secret: the host file, where the workload reads it, and its file's name in
    /run/secrets."""

    source: str
    dest: str

    @property
    def name(self) -> str:
        return posixpath.basename(self.dest)

    @property
    def bound(self) -> bool:
        """Whether DEST is outside /run/secrets (bound there from the tmpfs)."""
        return posixpath.dirname(self.dest) != SECRETS_DIR


def parse(values: tuple[str, ...]) -> tuple[Secret, ...]:
    """Every --secret SRC:DEST, validated: DEST an absolute, normalized path naming a file
    directly in /run/secrets or outside /proc, /sys and /dev; no two at the same DEST or with
    the same file name; at most MAX_SECRETS."""
    if len(values) > MAX_SECRETS:
        raise InvalidInput(f"{FLAG}: {len(values)} secrets, at most {MAX_SECRETS}")
    out: list[Secret] = []
    for value in values:
        source, sep, dest = value.rpartition(":")
        if not sep or not source or not dest:
            raise InvalidInput(f"{FLAG} {value!r}: expected SRC:DEST", hint=HINT)
        if "\0" in value:
            raise InvalidInput(f"{FLAG} {value!r}: not a usable path")
        if not dest.startswith("/"):
            raise InvalidInput(f"{FLAG} {value!r}: DEST {dest!r} must be an absolute path inside the container",
                               hint=f"for example {SECRETS_DIR}/{posixpath.basename(dest) or 'name'}")
        if posixpath.normpath(dest) != dest or "/../" in f"{dest}/" or dest.endswith("/"):
            raise InvalidInput(f"{FLAG} {value!r}: DEST {dest!r} is not a normalized path (no '..', '.', "
                               "'//' or trailing '/')")
        secret = Secret(source, dest)
        if dest == SECRETS_DIR or dest.startswith(SECRETS_DIR + "/") and secret.bound:
            raise InvalidInput(f"{FLAG} {value!r}: DEST {dest!r} must name a file directly in {SECRETS_DIR}",
                               hint=f"for example {SECRETS_DIR}/{secret.name}")
        for place in RESERVED:
            if dest == place or dest.startswith(place + "/"):
                raise InvalidInput(f"{FLAG} {value!r}: DEST {dest!r} is in {place}, where nothing is bound")
        if dest == "/" or not _NAME.match(secret.name):
            raise InvalidInput(f"{FLAG} {value!r}: DEST {dest!r} must end in a file name of letters, digits "
                               "and . _ + @ = - (not starting with . or -)")
        for other in out:
            if other.dest == dest:
                raise InvalidInput(f"{FLAG} {value!r}: {other.source!r} is already at {dest!r}")
            if other.name == secret.name:
                raise InvalidInput(f"{FLAG} {value!r}: {other.dest!r} is already {SECRETS_DIR}/{secret.name}",
                                   hint="give each secret a file name of its own")
        out.append(secret)
    return tuple(out)


def place_refusal(secrets: tuple[Secret, ...], volumes: tuple[Volume, ...],
                  context: str | None) -> InvalidInput | None:
    """Why a DEST outside /run/secrets cannot be bound where it says: its mount point (its
    directories and an empty file) would be made in a tree that is not the container's own: a
    volume's host directory (DEST on, below or above the volume's path), or the context (the
    host's tree when bound, a copy that --changes takes back when copied). `context`: where it
    is mounted, if there is one."""
    hint = f"put the secret in {SECRETS_DIR} (or elsewhere of the container's own) and point the workload there"
    for secret in secrets:
        if not secret.bound:
            continue
        shown = f"{FLAG} '{secret.source}:{secret.dest}': DEST {secret.dest!r}"
        for volume in volumes:
            if under(secret.dest, volume.target) or under(volume.target, secret.dest):
                where = "on" if secret.dest == volume.target else "below" if under(secret.dest, volume.target) else "above"
                return InvalidInput(f"{shown} is {where} the path of {VOLUME_FLAG} {volume.given!r}: its mount point "
                                    f"would be made in the host's {volume.host!r}", hint=hint)
        if context and under(secret.dest, context):
            return InvalidInput(f"{shown} is below {context}, the context: its mount point would be made "
                                "there", hint=hint)
    return None


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name looks like it holds a secret (see SECRET_WORDS)."""
    upper = name.upper()
    if upper.endswith(LOCATION_SUFFIXES):
        return False
    words = [w for w in upper.split("_") if w]
    return any(w in SECRET_WORDS for w in words) or any(pair in SECRET_PAIRS for pair in zip(words, words[1:], strict=False))


def refuse_secret_environment(production: bool, names: tuple[tuple[str, str], ...]) -> None:
    """In production, refuse an environment variable (given as (flag, name)) whose name looks
    like a secret, naming the flag and the name, with the --secret to use instead."""
    if not production:
        return
    for flag, name in names:
        if looks_secret(name):
            file = name.lower()
            raise InvalidInput(
                f"{flag} {name!r}: a variable that looks like a secret is refused in production mode "
                f"(row \"Secrets\": secrets go on the in-memory tmpfs at {SECRETS_DIR}, never in the "
                "environment)",
                hint=f"put the value in a file and pass --secret FILE:{SECRETS_DIR}/{file} "
                     f"(the workload reads it there; {name}_FILE={SECRETS_DIR}/{file} may tell it where)")


def landlock_rules(secrets: tuple[Secret, ...]) -> tuple[tuple[str, bool], ...]:
    """(path, writable) for the default Landlock rules, as volumes give them: /run/secrets and
    every DEST bound elsewhere, read-only."""
    if not secrets:
        return ()
    return ((SECRETS_DIR, False), *((s.dest, False) for s in secrets if s.bound))

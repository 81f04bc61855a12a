"""The context (`--context DIR`): which directories may be one, whose permissions a copy reads
with, what a copy leaves out and how big it may be. Pure data and decisions: resolving and
opening the directory is the probe's (nucleus.effects.probe), the walk, the copy and the manifest
are effects (nucleus.effects.tree, .fs, .integrity), and all three leave out what the one
`Matcher` here says.

The rules, as README.md's "The context" states them:

* **Which directories.** The path is resolved once, before anything changes on the host, and the
  directory opened then is the one used: the copy walks it by descriptor, never by path again.
  A symlink on the path is followed only when it belongs to the caller or root and sits in a
  directory the caller or root owns; any other is refused (the hint names where it points).
  Never a context, in any mode: the host's root, system trees (`/proc`, `/sys`, `/dev`, `/etc`,
  `/root`, `/boot`, `/run`, services' state and logs under `/var`, and anything below them),
  directories holding other users' files (`/home`, `/var`, `/tmp`, `/var/tmp` themselves),
  another user's home (a directory right under `/home` owned by someone else), a directory
  holding credentials (`.ssh`, `.gnupg`, `.aws`, ... anywhere on the path), a directory that is
  one of these under another name (a bind mount), and a path through a directory anyone may
  write (world-writable without the sticky bit).
* **Whose permissions.** An ordinary caller copies with its own identity (its setup process is
  root only in a user namespace that maps the caller). Root copying a tree that root owns reads
  as root. Below a directory owned by another user (the context itself, or a directory on its
  path), root reads as that user: the file-system ids (setfsuid/setfsgid) and groups of the
  directory's owner are taken around every lookup and open of an entry, so whoever controls a
  directory cannot make the copy read anything they could not read themselves. A file that
  owner cannot read stops the run, naming it. A `--rootless` run as root, whose setup process
  has only root mapped, refuses such a tree.
* **What is left out** (case-insensitively, as the file systems users share with macOS and
  Windows fold case): version-control metadata and build junk; private keys, by name and by
  their first bytes (PEM, OpenSSH, PuTTY, PGP, a service account's JSON key; a `*.pem` file is
  read whole, so a certificate bundle is copied and a key after a chain is not); credential and
  token files; shell and REPL history; environment files (not `.env.example` and its kin).
  Names that hold "secret", "credential", "password" or "token" as a word are left out unless
  they are source code or documentation (`secrets_manager.py` is copied, `client_secret.json`
  is not). A `.nucleusignore` at the context's root (`.gitignore` syntax, case-sensitive as
  git's) leaves out more; `--context-include PATTERN` (same syntax) keeps what a rule would
  leave out. Devices, sockets and FIFOs are never copied; symlinks are copied as links.
* **How big.** The tree is measured before the copy: what it would take on the context's tmpfs
  (data rounded up to pages; a sparse file only its data, since the copy keeps its holes) must
  fit `--context-size` (default 1 GiB, also the tmpfs's size), or the run is refused with the
  total, the largest files and the flag.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from typing import NamedTuple

from nucleus.errors import InvalidInput

FLAG = "--context"
IGNORE_FILE = ".nucleusignore"
DEFAULT_CONTEXT_SIZE = 1 << 30
PAGE = 4096  # the tmpfs's allocation unit on the architectures nucleus supports
HEADER_BYTES = 4096  # how much of a file the private-key check reads
KEY_FILE_MAX = 1 << 20  # larger files are not private keys
PEM_GLOB = "*.pem"  # PEM files are read whole (up to KEY_FILE_MAX): a key may follow certificates
SHOWN = 5  # entries named in a summary line

# --- what a copy leaves out -------------------------------------------------------------------

# Kinds of rule, and how a message names them. The secret kinds are the ones a run mentions.
KINDS = {
    "vcs": "version-control metadata",
    "junk": "build output or editor leftovers",
    "key": "private key",
    "credential": "credentials or token",
    "history": "shell or REPL history",
    "env": "environment file",
    "special": "not a file, directory or symlink",
    "ignore": IGNORE_FILE,
}
SECRET_KINDS = frozenset({"key", "credential", "history", "env"})

# The built-in rules, as (rule, kind). A rule is matched against an entry's name, case-folded:
#   NAME         the name itself, or a glob (*, ?, [...]) on it;
#   !NAME        never left out by the built-in rules (an exception to a glob);
#   word:WORD    a file whose name holds WORD as a word (split at '.', '_', '-', ' ' and case
#                changes), unless its extension marks source code or documentation;
#   content:private-key   a file whose first bytes are a private key, unless source code.
RULES: tuple[tuple[str, str], ...] = (
    # exceptions first: examples and templates of environment files are documentation
    *((f"!{n}", "env") for n in (".env.example", ".env.sample", ".env.template", ".env.dist",
                                  ".env.defaults")),
    *((n, "vcs") for n in (".git", ".hg", ".svn", ".bzr")),
    *((n, "junk") for n in ("node_modules", "__pycache__", ".DS_Store", "target", "*.swp",
                            "*.swo")),
    # private keys: ssh's default names, key and keystore formats, key directories
    *((n, "key") for n in ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk",
                           "id_ed25519_sk", "id_xmss", "*.key", "*.p12", "*.pfx", "*.jks",
                           "*.keystore", "*.ppk", "*.kdbx", ".ssh", ".gnupg")),
    # any other data file whose first bytes are a private key; a *.pem file read whole (a
    # certificate bundle such as certifi's cacert.pem is copied, a key after a chain is not)
    ("content:private-key", "key"),
    # credentials and tokens: tools' credential files and directories, state with secrets in it
    *((n, "credential") for n in (
        ".aws", ".azure", ".gcloud", ".docker", ".kube", ".password-store", ".terraform",
        ".netrc", "_netrc", ".npmrc", ".pypirc", ".git-credentials", ".gitcookies", ".pgpass",
        ".my.cnf", ".vault-token", ".dockercfg", ".htpasswd", ".terraformrc", "terraform.rc",
        ".s3cfg", ".boto", "secrets", ".secrets", "credentials", "*.tfstate", "*.tfstate.*", "service-account*.json",
        "service_account*.json", "kubeconfig", "kubeconfig.*", "*.kubeconfig", ".token")),
    *((f"word:{w}", "credential") for w in ("secret", "secrets", "credential", "credentials",
                                            "password", "passwords", "passwd", "token")),
    # history: every shell's and REPL's, and the editors' records of what was typed
    *((n, "history") for n in ("*_history", ".history", ".zhistory", ".lesshst", ".viminfo")),
    *((n, "env") for n in (".env", ".env.*", "*.env")),
)
KIND_OF = dict(RULES)

# Extensions of source code and documentation: a name that holds a secret word is a secret only
# when it is data (`secrets_manager.py` is code; `secrets.json`, `db_password` are not).
SOURCE_EXTENSIONS = frozenset("""
    py pyi pyx pxd ipynb js mjs cjs jsx ts tsx mts cts vue svelte go rs java kt kts scala groovy
    gradle rb erb php c h cc cpp cxx hh hpp hxx cs fs swift m mm sh bash zsh fish ps1 psm1 bat
    cmd pl pm lua r jl ex exs erl hrl hs ml mli clj cljs dart nim zig sql proto graphql gql tf
    hcl nix html htm css scss sass less md markdown rst adoc tex org j2 jinja tmpl tpl
""".split())

# Private keys by their first bytes: a PEM or ssh.com armour line at the start of a line, a
# PuTTY key file, a service account's JSON key.
_KEY_HEADER = (rb"(?m)^[ \t]*-{4,5} ?BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}"
               rb"|\APuTTY-User-Key-File-\d+:"
               rb'|"private_key"\s*:\s*"-----BEGIN')
_WORDS = r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])"  # where a name's words meet
_GLOB = r"[*?\[]"
# (Patterns as strings: re compiles and caches them on first use, so a run without a context
# compiles none.)

# An ignore or include pattern, compiled: (the pattern as written, its regex, negated). The
# regex (pathspec's translation of the gitignore syntax) is matched against the entry's path
# relative to the context, with a trailing '/' for a directory.
Pattern = tuple[str, str, bool]


def exclusion_list() -> tuple[str, ...]:
    """The built-in rules, as data for the CopyTree intent (and Matcher)."""
    return tuple(rule for rule, _ in RULES)


def is_source(name: str) -> bool:
    """Whether a name's extension marks source code or documentation."""
    _, dot, ext = name.rpartition(".")
    return bool(dot) and ext.lower() in SOURCE_EXTENSIONS


def words_of(name: str) -> list[str]:
    split = re.sub(_WORDS, "_", name).lower()
    return [w for w in re.split(r"[^a-z0-9]+", split) if w]


def private_key(header: bytes) -> bool:
    """Whether a file's first bytes (HEADER_BYTES of them) are a private key."""
    return re.search(_KEY_HEADER, header) is not None


class _BuiltIn:
    """The built-in rules of a Matcher, parsed once."""

    def __init__(self, rules: tuple[str, ...]) -> None:
        keep: set[str] = set()
        self.names: dict[str, str] = {}
        self.globs: list[tuple[str, re.Pattern[str]]] = []
        self.words: set[str] = set()
        self.content = False
        for rule in rules:
            if rule.startswith("!"):
                keep.add(rule[1:].casefold())
            elif rule.startswith("word:"):
                self.words.add(rule[5:].casefold())
            elif rule.startswith("content:"):
                self.content = True
            elif re.search(_GLOB, rule):
                self.globs.append((rule, re.compile(fnmatch.translate(rule.casefold()))))
            else:
                self.names[rule.casefold()] = rule
        self.keep = frozenset(keep)
        self.combined = (re.compile("|".join(f"(?:{rx.pattern})" for _, rx in self.globs))
                         if self.globs else None)

    def why(self, name: str, is_dir: bool) -> str | None:
        low = name.casefold()
        if low in self.keep:
            return None
        rule = self.names.get(low)
        if rule is not None:
            return rule
        if self.combined is not None and self.combined.fullmatch(low):
            return next(rule for rule, rx in self.globs if rx.fullmatch(low))
        if self.words and not is_dir and not is_source(name):
            for word in words_of(name):
                if word in self.words:
                    return f"word:{word}"
        return None


class Matcher:
    """What a copy leaves out: the one decision of the measurement, the copy and the manifest.

    `exclude`: built-in rules (`exclusion_list()`); `ignore`: the .nucleusignore's patterns, in
    order, the last matching one deciding (a negated one keeps what an earlier one left out;
    it cannot keep what a built-in rule leaves out); `include`: `--context-include` patterns,
    which keep what any rule would leave out (for a directory, the directory and everything in
    it)."""

    __slots__ = ("exclude", "ignore", "include", "_built_in", "_ignore", "_include")

    def __init__(self, exclude: tuple[str, ...] = (), ignore: tuple[Pattern, ...] = (),
                 include: tuple[Pattern, ...] = ()) -> None:
        self.exclude = exclude
        self.ignore = ignore
        self.include = include
        self._built_in = _BuiltIn(exclude)
        self._ignore = tuple((p, re.compile(rx), neg) for p, rx, neg in reversed(ignore))
        self._include = tuple(re.compile(rx) for _, rx, negated in include if not negated)

    def included(self, rel: str, is_dir: bool) -> bool:
        path = rel + "/" if is_dir else rel
        return any(rx.match(path) for rx in self._include)

    def why(self, rel: str, name: str, is_dir: bool) -> str | None:
        """The rule that leaves the entry at `rel` (its name `name`) out, or None to keep it.
        An ignore pattern is named as ".nucleusignore:PATTERN"."""
        if self._include and self.included(rel, is_dir):
            return None
        if self._ignore:
            path = rel + "/" if is_dir else rel
            for pattern, rx, negated in self._ignore:  # the last matching line decides
                if rx.match(path):
                    if not negated:
                        return f"{IGNORE_FILE}:{pattern}"
                    break
        return self._built_in.why(name, is_dir)

    def checks_content(self, rel: str, name: str, size: int) -> int:
        """How many of its first bytes the private-key check reads of the file at `rel`: 0 for
        none (no content rule, empty, large, source code, kept by --context-include),
        HEADER_BYTES, or all of a PEM file."""
        if not (self._built_in.content and 0 < size <= KEY_FILE_MAX and not is_source(name)):
            return 0
        if self._include and self.included(rel, False):
            return 0
        return size if fnmatch.fnmatch(name.casefold(), PEM_GLOB) else HEADER_BYTES

    def content(self, header: bytes) -> str | None:
        """The content rule that leaves a file with these first bytes out, or None."""
        return "content:private-key" if private_key(header) else None


def kind_of(rule: str) -> str:
    """The kind of a rule `Matcher.why` named."""
    if rule.startswith(f"{IGNORE_FILE}:"):
        return "ignore"
    if rule == "special":
        return "special"
    return KIND_OF.get(rule, "credential" if rule.startswith("word:") else "junk")


def describe_rule(rule: str) -> str:
    """A rule as a message names it: 'private key (id_rsa)'."""
    kind = kind_of(rule)
    if kind in ("ignore", "special"):
        return KINDS[kind] if kind == "special" else f"{IGNORE_FILE} ({rule.split(':', 1)[1]})"
    shown = {"content:private-key": "by its content"}.get(rule, rule)
    return f"{KINDS[kind]} ({shown})"


# --- which directories are a context --------------------------------------------------------------

# Trees never used as a context, with everything below them: what each holds.
SYSTEM_TREES = {
    "/proc": "the host's processes",
    "/sys": "the kernel's objects",
    "/dev": "the host's devices",
    "/etc": "the host's configuration",
    "/root": "root's home",
    "/boot": "the kernel and its initramfs",
    "/run": "runtime state and other users' sockets",
    "/var/run": "runtime state and other users' sockets",
    "/var/lib": "services' state",
    "/var/log": "the host's logs",
    "/var/spool": "queued mail and jobs",
    "/var/mail": "users' mail",
    "/var/cache": "services' caches",
    "/var/backups": "the host's backups",
}
# Directories that hold other users' files: refused themselves, their subdirectories are fine.
SHARED_ROOTS = {
    "/": "the host's whole file system",
    "/home": "every user's home",
    "/var": "services' state and logs",
    "/tmp": "every user's temporary files",
    "/var/tmp": "every user's temporary files",
}
HOME_ROOTS = ("/home",)
# Directories that hold credentials: never a context, nor anything inside them.
SECRET_DIRS = frozenset({".ssh", ".gnupg", ".aws", ".azure", ".gcloud", ".kube", ".docker",
                         ".password-store"})
# What the probe compares the context's identity (device, inode) with: a bind mount of one of
# these elsewhere is refused as the tree itself.
ALIASED = tuple(sorted({*SYSTEM_TREES, *SHARED_ROOTS} - {"/var/run"}))


class PathDir(NamedTuple):
    """A directory on the context's resolved path, from "/" down to the context itself."""

    path: str
    uid: int
    mode: int  # st_mode


class FollowedLink(NamedTuple):
    """A symlink the resolution followed."""

    path: str  # the link itself (its directory resolved)
    target: str
    uid: int
    dir_uid: int  # the owner of the directory holding it


class Resolved(NamedTuple):
    """What the probe found resolving --context, before opening it for good."""

    given: str  # as the user wrote it
    path: str  # the real path
    chain: tuple[PathDir, ...]
    links: tuple[FollowedLink, ...] = ()
    aliases: tuple[str, ...] = ()  # trees of ALIASED that are this very directory


def _under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def refusal(resolved: Resolved, caller: int) -> InvalidInput | None:
    """Why the resolved context may not be used by uid `caller`, or None (see the module's
    rules)."""
    given, path = resolved.given, resolved.path
    head = f"{FLAG} {given!r}"
    for link in resolved.links:
        if link.uid not in (0, caller) or link.dir_uid not in (0, caller):
            owner = link.uid if link.uid not in (0, caller) else link.dir_uid
            what = "is a symlink" if owner == link.uid else "is a symlink in a directory"
            return InvalidInput(
                f"{head}: {link.path!r} {what} of uid {owner}: a context's path follows only "
                f"symlinks that the caller (uid {caller}) or root owns, in directories they own",
                hint=f"if {path!r} is the directory you mean, name it: {FLAG} {path}")
    shown = f"{head}" if given == path else f"{head} (that is {path!r})"
    return place_refusal(shown, path, resolved.chain, resolved.aliases, caller)


def place_refusal(shown: str, path: str, chain: tuple[PathDir, ...], aliases: tuple[str, ...],
                  caller: int, what: str = "context") -> InvalidInput | None:
    """Why the host path `path` (real, resolved through `chain`, the very directory of the
    trees in `aliases`) is never a `what` for uid `caller`: the rules of "Which directories" but
    the symlinks' (a context and a volume share them). `shown` opens the message."""
    for tree, holds in SYSTEM_TREES.items():
        if _under(path, tree):
            return InvalidInput(f"{shown}: {tree} holds {holds}; system trees are never a {what}",
                                hint="copy what the workload needs into a directory of its own")
    if path in SHARED_ROOTS:
        return InvalidInput(f"{shown}: {path} holds {SHARED_ROOTS[path]}; it is never a {what}",
                            hint="name the project directory inside it")
    for alias in aliases:
        holds = SYSTEM_TREES.get(alias) or SHARED_ROOTS.get(alias, "")
        return InvalidInput(f"{shown}: it is {alias} under another name (a bind mount), which "
                            f"holds {holds}; it is never a {what}",
                            hint="copy what the workload needs into a directory of its own")
    parts = [p for p in path.split("/") if p]
    for part in parts:
        if part.casefold() in SECRET_DIRS:
            return InvalidInput(f"{shown}: {part!r} holds credentials; it is never a {what}, "
                                "nor anything inside it",
                                hint="copy what the workload needs into a directory of its own")
    home = next((d for d in chain if posixpath.dirname(d.path) in HOME_ROOTS and d.path == path), None)
    if home is not None and home.uid != caller:
        return InvalidInput(f"{shown}: {home.path} is the home of uid {home.uid}, not the "
                            f"caller's (uid {caller}); another user's home is never a {what}",
                            hint="name the project directory inside it")
    for d in chain[:-1]:
        if d.mode & 0o002 and not d.mode & 0o1000:
            return InvalidInput(f"{shown}: {d.path} is writable by anyone (mode "
                                f"{d.mode & 0o7777:04o}, no sticky bit), so anyone could swap the "
                                f"{what} while it is read",
                                hint=f"chmod o-w {d.path}, or use a directory elsewhere")
    return None


def reader(resolved: Resolved, caller: int) -> int:
    """Whose identity reads the context's top directory: -1 for the caller's own (an ordinary
    caller: no switching, ever); for root, the last owner other than root on the path (0: root
    reads, switching below for directories other users own)."""
    if caller != 0:
        return -1
    uid = 0
    for d in resolved.chain:
        if d.uid != 0:
            uid = d.uid
    return uid


def reader_below(current: int, dir_uid: int) -> int:
    """Whose identity reads a directory's entries: its owner, unless that is root (then whoever
    reads its parent's). -1 (the caller's own identity) stays."""
    if current == -1:
        return -1
    return dir_uid if dir_uid != 0 else current


# --- the opened, measured context, as the plan takes it ----------------------------------------

Identity = tuple[int, int, tuple[int, ...]]  # (uid, gid, supplementary groups)


class ContextSource(NamedTuple):
    """The context as opened before any host change: the descriptor the supervisor holds (the
    setup process inherits it; the copy reads it and the bind verifies against it, neither looks
    `path` up to decide what to read) and how the copy reads it."""

    path: str  # the real path it was opened from (what a trace shows)
    fd: int
    read_as: int = -1  # see reader(); -1: the setup process's own identity, never switched
    identities: tuple[Identity, ...] = ()  # of each uid other than root the copy reads as
    ignore: tuple[Pattern, ...] = ()
    include: tuple[Pattern, ...] = ()


class Measured(NamedTuple):
    """What a copy of the context would hold, as the walk before it found."""

    files: int = 0
    bytes: int = 0  # what the copy takes on the context's tmpfs
    largest: tuple[tuple[str, int], ...] = ()  # (path, bytes), the largest first
    left_out: tuple[tuple[str, str], ...] = ()  # (path, rule); a directory's path ends in '/'
    identities: tuple[Identity, ...] = ()  # whose identities the walk read with


def footprint(size: int, blocks: int) -> int:
    """What a regular file takes on the tmpfs once copied: its data in whole pages; a sparse
    file (fewer 512-byte blocks allocated than its size) only its allocated data."""
    data = min(size, blocks * 512) if sparse(size, blocks) else size
    return -(-data // PAGE) * PAGE


def sparse(size: int, blocks: int) -> bool:
    return blocks * 512 < size


def human(n: int) -> str:
    """1536 -> '1.5 KiB'; whole units without a fraction: '1 GiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "B" or value == int(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def size_refusal(given: str, measured: Measured, limit: int) -> InvalidInput | None:
    """The refusal of a context whose copy would not fit `limit` bytes, naming the total, the
    largest files and the flag that raises the limit."""
    if measured.bytes <= limit:
        return None
    largest = ", ".join(f"{rel!r} ({human(size)})" for rel, size in measured.largest)
    suggest = -(-measured.bytes * 5 // 4 // (1 << 20))  # MiB, with a quarter to spare
    return InvalidInput(
        f"{FLAG} {given!r}: its copy takes {human(measured.bytes)} ({measured.files} files), "
        f"more than the {human(limit)} of --context-size; the largest: {largest}",
        hint=f"raise the limit (--context-size {suggest}M), leave files out in a {IGNORE_FILE} "
             "at the context's root, or bind the tree read-only (--context-mode bind)")


def rootless_refusal(given: str, read_as: int, measured: Measured) -> InvalidInput | None:
    """A --rootless run as root copies inside a user namespace that maps only root: it cannot
    take the identity of another user, so a tree that needs one is refused."""
    uids = sorted({uid for uid, _, _ in measured.identities} | ({read_as} if read_as > 0 else set()))
    if not uids:
        return None
    return InvalidInput(
        f"{FLAG} {given!r}: holds directories of uid {', '.join(map(str, uids))}, which a copy "
        "by root reads as their owner; a --rootless run as root copies in a user namespace that "
        "maps only root, so it cannot",
        hint="drop --rootless (root then reads them as their owner), or run nucleus as that user")


def left_out_note(measured: Measured) -> str | None:
    """One line naming what the secret rules left out (the first few), or None."""
    secrets = [rel for rel, rule in measured.left_out if kind_of(rule) in SECRET_KINDS]
    if not secrets:
        return None
    shown = ", ".join(repr(rel) for rel in secrets[:SHOWN])
    more = f" and {len(secrets) - SHOWN} more" if len(secrets) > SHOWN else ""
    plural = "y" if len(secrets) == 1 else "ies"
    return (f"{FLAG}: left out {len(secrets)} secret entr{plural}: {shown}{more} "
            "(--show-excluded lists every entry left out, with its rule; --context-include "
            "keeps one)")


def left_out_lines(measured: Measured) -> list[str]:
    """Every entry left out, with its rule (--show-excluded)."""
    return [f"{FLAG}: left out {rel!r}: {describe_rule(rule)}" for rel, rule in measured.left_out]


def validate(context: str | None, mode: str, size: int | None, include: tuple[str, ...],
             show_excluded: bool) -> None:
    """The context flags that need no host fact (the caller checks --context's own value)."""
    copy_only = [(flag, given) for flag, given in (("--context-size", size is not None),
                                                   ("--context-include", bool(include)),
                                                   ("--show-excluded", show_excluded)) if given]
    for flag, _ in copy_only:
        if context is None:
            raise InvalidInput(f"{flag} needs {FLAG}", hint=f"give the directory to copy: {FLAG} DIR")
        if mode != "copy":
            raise InvalidInput(f"{flag} applies to a copied context, not --context-mode {mode}",
                               hint=f"drop {flag}, or copy the context (--context-mode copy)")
    if size is not None and size < PAGE:
        raise InvalidInput(f"--context-size {size}: less than a page ({PAGE} bytes)",
                           hint="give a size such as 512M or 2G")
    for pattern in include:
        if not pattern.strip() or pattern.lstrip().startswith(("#", "!")) or "\n" in pattern \
                or "\0" in pattern:
            raise InvalidInput(f"--context-include {pattern!r}: not a pattern to keep",
                               hint="give a .gitignore-style pattern such as '.env.test' or 'keys/'")

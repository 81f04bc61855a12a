"""Which directories are a context, and whose identity a copy reads with
(nucleus.config.context.refusal, reader, reader_below): pure decisions over what the probe
resolved."""

from __future__ import annotations

import pytest

from nucleus.config.context import (
    FollowedLink,
    PathDir,
    Resolved,
    reader,
    reader_below,
    refusal,
)

DIR = 0o040755
ALICE, BOB = 1000, 1001


def resolved(path: str, owners: dict[str, int] | None = None, modes: dict[str, int] | None = None,
             links: tuple[FollowedLink, ...] = (), aliases: tuple[str, ...] = (),
             given: str | None = None) -> Resolved:
    owners = owners or {}
    modes = modes or {}
    parts = [p for p in path.split("/") if p]
    paths = ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    chain = tuple(PathDir(p, owners.get(p, 0), modes.get(p, DIR)) for p in paths)
    return Resolved(given or path, path, chain, links, aliases)


def message(r: Resolved, caller: int = 0) -> str | None:
    problem = refusal(r, caller)
    return None if problem is None else problem.message


@pytest.mark.parametrize(("path", "holds"), [
    ("/proc", "/proc holds the host's processes"),
    ("/proc/1/root", "/proc holds the host's processes"),
    ("/sys/fs/cgroup", "/sys holds the kernel's objects"),
    ("/dev", "/dev holds the host's devices"),
    ("/dev/shm/x", "/dev holds the host's devices"),
    ("/etc", "/etc holds the host's configuration"),
    ("/etc/ssl", "/etc holds the host's configuration"),
    ("/root", "/root holds root's home"),
    ("/root/project", "/root holds root's home"),
    ("/boot", "/boot holds the kernel and its initramfs"),
    ("/run/user/1000", "/run holds runtime state and other users' sockets"),
    ("/var/lib/postgresql", "/var/lib holds services' state"),
    ("/var/log", "/var/log holds the host's logs"),
])
def test_system_trees_and_everything_below_them_are_refused(path, holds):
    for caller in (0, ALICE):
        assert message(resolved(path), caller) == (
            f"--context {path!r}: {holds}; system trees are never a context")


@pytest.mark.parametrize("path", ["/", "/home", "/var", "/tmp", "/var/tmp"])
def test_directories_holding_other_users_files_are_refused_themselves(path):
    assert message(resolved(path)).startswith(f"--context {path!r}: {path} holds ")
    assert message(resolved(path)).endswith("; it is never a context")


@pytest.mark.parametrize("path", ["/tmp/project", "/var/tmp/x", "/var/www/site", "/srv/app",
                                  "/usr/share/doc", "/opt/data", "/home/me/work"])
def test_ordinary_directories_are_contexts(path):
    assert message(resolved(path, {"/home/me": 0, "/home/me/work": 0})) is None


def test_the_real_path_is_named_when_it_differs_from_what_was_given():
    r = resolved("/etc", given="./etc-link", links=(FollowedLink("/work/etc-link", "/etc", 0, 0),))
    assert message(r) == ("--context './etc-link' (that is '/etc'): /etc holds the host's "
                          "configuration; system trees are never a context")


def test_a_bind_mount_of_a_system_tree_is_refused_as_the_tree():
    r = resolved("/mnt/hostroot", aliases=("/",))
    assert message(r) == ("--context '/mnt/hostroot': it is / under another name (a bind mount), "
                          "which holds the host's whole file system; it is never a context")


def test_another_users_home_is_refused_the_callers_own_is_not():
    home = resolved("/home/alice", {"/home/alice": ALICE})
    assert message(home, 0) == ("--context '/home/alice': /home/alice is the home of uid 1000, "
                                "not the caller's (uid 0); another user's home is never a context")
    assert message(home, BOB) is not None
    assert message(home, ALICE) is None
    # A project inside it is a context (root reads it as its owner, see reader()).
    assert message(resolved("/home/alice/proj", {"/home/alice": ALICE, "/home/alice/proj": ALICE})) is None


@pytest.mark.parametrize("path", ["/home/me/.ssh", "/home/me/.ssh/keys", "/srv/.aws", "/x/.GnuPG/y",
                                  "/home/me/.docker", "/home/me/.kube/cache"])
def test_directories_holding_credentials_are_never_a_context(path):
    r = resolved(path, {"/home/me": ALICE})
    assert "holds credentials; it is never a context, nor anything inside it" in message(r, ALICE)


def test_a_symlink_of_another_user_on_the_path_is_refused():
    """The repro of issue 9: an ordinary user's symlink to a root-only tree, named by root."""
    link = FollowedLink("/home/alice/ctx", "/srv/root-only", uid=ALICE, dir_uid=ALICE)
    r = resolved("/srv/root-only", {"/home/alice": ALICE}, links=(link,), given="/home/alice/ctx")
    problem = refusal(r, 0)
    assert problem is not None
    assert problem.message == (
        "--context '/home/alice/ctx': '/home/alice/ctx' is a symlink of uid 1000: a context's path "
        "follows only symlinks that the caller (uid 0) or root owns, in directories they own")
    assert problem.hint == ("if '/srv/root-only' is the directory you mean, name it: "
                            "--context /srv/root-only")
    # The same link is the caller's own when alice names it.
    assert refusal(r, ALICE) is None


def test_a_link_of_root_or_the_caller_in_a_directory_of_another_user_is_refused():
    link = FollowedLink("/home/alice/ctx", "/srv/x", uid=0, dir_uid=ALICE)
    r = resolved("/srv/x", links=(link,), given="/home/alice/ctx")
    assert "is a symlink in a directory of uid 1000" in message(r, 0)


def test_links_of_root_are_followed():
    link = FollowedLink("/bin", "usr/bin", uid=0, dir_uid=0)
    assert message(resolved("/usr/bin", links=(link,), given="/bin"), ALICE) is None


def test_a_world_writable_directory_on_the_path_is_refused_unless_sticky():
    shared = resolved("/srv/shared/proj", modes={"/srv/shared": 0o040777})
    assert message(shared) == ("--context '/srv/shared/proj': /srv/shared is writable by anyone "
                               "(mode 0777, no sticky bit), so anyone could swap the context "
                               "while it is read")
    assert message(resolved("/tmp/proj", modes={"/tmp": 0o041777})) is None


def test_whose_identity_reads_the_context():
    # An ordinary caller: its own, never switched.
    assert reader(resolved("/home/alice/proj", {"/home/alice": ALICE}), ALICE) == -1
    # Root: the last owner other than root on the path, the context included.
    assert reader(resolved("/srv/app"), 0) == 0
    assert reader(resolved("/home/alice/proj", {"/home/alice": ALICE, "/home/alice/proj": ALICE}), 0) == ALICE
    # A root-owned directory in alice's: alice controls what it is, so alice reads it.
    assert reader(resolved("/home/alice/rootdir", {"/home/alice": ALICE}), 0) == ALICE
    assert reader(resolved("/srv/alice/bobs", {"/srv/alice": ALICE, "/srv/alice/bobs": BOB}), 0) == BOB


def test_whose_identity_reads_a_directorys_entries():
    assert reader_below(-1, ALICE) == -1  # the caller's own identity stays
    assert reader_below(0, ALICE) == ALICE
    assert reader_below(ALICE, 0) == ALICE  # root's directory in alice's tree: still alice
    assert reader_below(ALICE, BOB) == BOB
    assert reader_below(0, 0) == 0

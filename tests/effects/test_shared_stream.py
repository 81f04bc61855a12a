"""A violation stream written by more than one monitor (a container's, and one for each command
joined into it by `nucleus exec`): the shared writer (nucleus.effects.logs.Writer with `shared`)
writes to whichever file is current and rotates it once, whoever fills it; the exec command reads
back only what was written while its command ran (nucleus.app.violations.Since) to say which
refusal killed it; the joined command's monitor describes its records as the container's does
(nucleus.app.violations.join_setup). Plain files in a temporary directory."""

from __future__ import annotations

import os

from nucleus.app import violations as app_violations
from nucleus.config import violations as vi
from nucleus.effects import logs
from nucleus.effects.store import Store
from nucleus.plan.run import JoinPolicy

CID = "0123456789abcdef0123456789abcdef"


def sink(tmp_path, max_size: int, max_files: int = 2) -> logs.Sink:
    (tmp_path / "c.json").write_text("{}")
    return logs.Sink(str(tmp_path / "c.violations"), max_size, max_files, str(tmp_path / "c.json"))


def kept(s: logs.Sink) -> list[bytes]:
    reader = logs.Reader(s.path)
    try:
        return reader.snapshot().splitlines()
    finally:
        reader.close()


def test_two_writers_rotate_once_and_lose_no_line(tmp_path):
    s = sink(tmp_path, 40)
    container, joined = logs.Writer(s, shared=True), logs.Writer(s, shared=True)
    lines = [f"line {i:02d}\n".encode() for i in range(7)]  # 8 bytes each: five fit in a file
    for i, line in enumerate(lines):
        (container if i % 2 else joined).write(line)
    container.close()
    joined.close()
    # One rotation at the sixth line, by whichever writer had it; the other wrote on in the new file.
    assert (tmp_path / "c.violations.1").read_bytes() == b"".join(lines[:5])
    assert (tmp_path / "c.violations").read_bytes() == b"".join(lines[5:])
    assert kept(s) == [line.rstrip(b"\n") for line in lines]


def test_a_writer_that_waited_finds_the_file_rotated_and_does_not_rotate_again(tmp_path):
    """Both writers held the full file; the first rotated it: the second writes to the new one
    (rotating again would push the lines just rotated out of the kept files)."""
    s = sink(tmp_path, 16)
    first, second = logs.Writer(s, shared=True), logs.Writer(s, shared=True)
    first.write(b"aaaaaaa\nbbbbbbb\n")
    first.write(b"ccccccc\n")  # rotates
    second.rotate()  # as if it had found the file full before the rotation
    second.write(b"ddddddd\n")
    first.close()
    second.close()
    assert (tmp_path / "c.violations.1").read_bytes() == b"aaaaaaa\nbbbbbbb\n"
    assert (tmp_path / "c.violations").read_bytes() == b"ccccccc\nddddddd\n"


def test_a_shared_writer_makes_no_new_file_once_the_stream_is_removed(tmp_path):
    s = sink(tmp_path, 1000)
    writer = logs.Writer(s, shared=True)
    writer.write(b"before\n")
    os.unlink(s.record)
    logs.remove(s.path)
    writer.write(b"after\n")
    writer.close()
    assert not [n for n in os.listdir(tmp_path) if n.startswith("c.violations")]


UNSHARE = (272, (0x10000000,))  # unshare(CLONE_NEWUSER)
NETLINK = (41, (16, 3, 9))  # socket(AF_NETLINK, SOCK_RAW, 9)


def record(pid: int, call: tuple[int, tuple[int, ...]] = NETLINK, action: str = "kill",
           joined: bool = True) -> bytes:
    """A seccomp record as a monitor writes it: a joined command's (the default), or one of the
    container's own processes'."""
    name = {272: "unshare", 41: "socket"}[call[0]]
    return vi.line(vi.seccomp_violation(vi.Context(CID, "box", joined=joined), when="2025-06-01T12:00:00.125Z",
                                        pid=pid, executable="/usr/bin/python3.11", syscall=name, args=call[1],
                                        ret_action=action, errno=1))


def blocked(call: tuple[int, tuple[int, ...]]) -> str:
    return vi.blocked(vi.parse(record(0, call))[0]) + "\n"


def stream_of(tmp_path) -> tuple[Store, logs.Writer]:
    store = Store(str(tmp_path))
    os.makedirs(tmp_path / "containers", exist_ok=True)
    path = store.violations_path(CID)
    return store, logs.Writer(logs.Sink(path, vi.MAX_STREAM_SIZE, vi.STREAM_FILES, path), shared=True)


def test_the_exec_command_says_which_refusal_killed_its_command(tmp_path, capsys):
    store, writer = stream_of(tmp_path)
    writer.write(record(21, NETLINK))  # an earlier exec's
    with app_violations.Since(store, CID) as since:
        writer.write(record(22, UNSHARE))  # this command's
        writer.write(record(10, NETLINK, joined=False))  # the container's workload, meanwhile
        writer.write(record(30, NETLINK))  # another command joined meanwhile
        since.explain_death(128 + vi.SIGSYS, 22)
    writer.close()
    assert capsys.readouterr().err == blocked(UNSHARE)
    assert blocked(UNSHARE).startswith("blocked: unshare(CLONE_NEWUSER) is not allowed by the seccomp policy; ")


def test_without_its_own_a_joined_kill_written_meanwhile_explains_it(tmp_path, capsys):
    """The kill of a process the command started (its shell passes the status on)."""
    store, writer = stream_of(tmp_path)
    with app_violations.Since(store, CID) as since:
        writer.write(record(23, UNSHARE, action="errno"))
        writer.write(record(24, NETLINK))
        writer.write(record(10, UNSHARE, joined=False))
        since.explain_death(128 + vi.SIGKILL, 22)
    writer.close()
    assert capsys.readouterr().err == blocked(NETLINK)


def test_nothing_is_said_of_a_command_that_was_not_killed_or_of_an_earlier_kill(tmp_path, capsys):
    store, writer = stream_of(tmp_path)
    writer.write(record(22, NETLINK))  # a kill before the exec started
    with app_violations.Since(store, CID) as since:
        since.explain_death(0, 22)
        since.explain_death(128 + vi.SIGSYS, 22)
    writer.close()
    assert capsys.readouterr().err == (
        "nucleus: the command died of SIGSYS, a seccomp kill no record names (the kernel kills a call of "
        "another architecture, such as i386's int 0x80, itself)\n")


def test_a_run_is_never_told_that_a_joined_command_s_kill_killed_its_workload(tmp_path, capsys):
    """A workload killed (nucleus kill) after a command joined into it was killed by a refusal:
    the run names its own processes' kills only."""
    for name, written, said in (("own", [record(10, UNSHARE, joined=False), record(22, NETLINK)], blocked(UNSHARE)),
                                ("joined only", [record(22, NETLINK)], "")):
        os.mkdir(tmp_path / name)
        store, writer = stream_of(tmp_path / name)
        for line in written:
            writer.write(line)
        writer.close()
        app_violations.explain_death(store, CID, 128 + vi.SIGKILL)
        assert capsys.readouterr().err == said, name


def test_a_joined_command_s_record_says_so():
    (joined,) = vi.parse(record(22, NETLINK))
    (own,) = vi.parse(record(10, NETLINK, joined=False))
    assert joined.pop("joined") is True and joined == own | {"pid": 22}
    assert "joined" not in own


def policy() -> JoinPolicy:
    return JoinPolicy(rootless=False, namespaces=("user", "pid", "mnt"), seccomp_sha256="ab" * 32,
                      seccomp_log_denied=False, seccomp_mode="enforce", caps_keep=(),
                      landlock_rules=(("/tmp", ("read",)),), landlock_min_abi=1, env=(), cwd="/",
                      rlimits=(1024, 512, 65536), cgroup_procs=())


def test_the_joined_command_s_records_are_described_as_the_container_s():
    described = {"seccomp_profile": "/etc/p.json", "landlock_policy": "/etc/l.toml", "seccomp_default_action": "kill"}
    setup = app_violations.join_setup({"id": CID, "name": "box", app_violations.DESCRIBED: described}, policy())
    assert setup.context == vi.Context(CID, "box", seccomp_profile="/etc/p.json", seccomp_default_action="kill",
                                       landlock_rules=(("/tmp", ("read",)),), landlock_policy="/etc/l.toml",
                                       joined=True)
    assert setup.copy_fd is None


def test_a_record_without_a_description_or_with_a_bad_one_describes_the_default_profile():
    for described in (None, "the profile", {"seccomp_profile": 5, "landlock_policy": ["x"]}):
        record = {"id": CID, "name": "box"} | ({} if described is None else {app_violations.DESCRIBED: described})
        context = app_violations.join_setup(record, policy()).context
        assert (context.seccomp_profile, context.landlock_policy) == (None, None)
        assert context.seccomp_default_action == vi.Context(CID, "box").seccomp_default_action

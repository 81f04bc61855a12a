"""The state directory (nucleus.effects.store) and what is read back from it
(nucleus.app.records.problem): a directory or a record that is not the caller's, or that others
may write, is refused or passed over, never trusted; the per-user fallback under /tmp is made
private; a record whose content has the wrong shape is passed over with a warning. Plain files
in a temporary directory (changing an owner needs root)."""

from __future__ import annotations

import json
import os
import secrets
import stat
import time

import pytest

from nucleus.app import records
from nucleus.effects import probe
from nucleus.effects.store import Store
from nucleus.errors import RuntimeFailure
from nucleus.machines import filesystem, isolation, security, system

OTHER_UID = 65534
AS_ROOT = pytest.mark.requires("root")


def machines(status: str = "stopped") -> dict:
    state = system.initial(isolation.initial(), filesystem.initial((), "/new"), security.initial())
    from dataclasses import replace

    state = replace(state, lc=replace(state.lc, status=status, security="enforced", cleaned=True),
                    res=replace(state.res, phase="released"))
    return {k: sorted(val) if isinstance(val, frozenset) else val for k, val in system.to_tla(state).items()}


def good_record(cid: str, **fields) -> dict:
    return {"id": cid, "name": "web", "status": "stopped", "argv": ["true"], "created_at": time.time(),
            "creator_uid": os.getuid(), "supervisor_pid": None, "supervisor_start": None,
            "detached": True, "cgroup_parent": "nucleus", "machines": machines(), **fields}


def put(store: Store, cid: str, content: object, mode: int = 0o600) -> str:
    store.ensure()
    path = store.path(cid)
    text = content if isinstance(content, str) else json.dumps(content)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(str(tmp_path / "state"), check=records.problem)


# --- the directory ----------------------------------------------------------------------------


def test_a_state_directory_is_made_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        Store(str(tmp_path / "a" / "state")).ensure()
    finally:
        os.umask(old)
    for path in ("a/state", "a/state/containers", "a/state/rootfs"):
        assert stat.S_IMODE(os.lstat(tmp_path / path).st_mode) == 0o700, path


def test_the_fallback_directory_is_the_users_own_under_tmp():
    assert probe.state_root(1000, {}) == "/tmp/nucleus-1000"
    assert probe.state_root(1000, {"XDG_RUNTIME_DIR": "/run/user/1000"}) == "/run/user/1000/nucleus"
    assert probe.state_root(0, {}) == "/run/nucleus"
    assert probe.state_root(1000, {"NUCLEUS_STATE_DIR": "/x"}) == "/x"


def refusal(path, why: str) -> str:
    return f"the state directory {str(path)!r} {why}"


@AS_ROOT
def test_a_directory_someone_else_made_is_refused_by_every_use(tmp_path):
    """As /tmp/nucleus-<uid> made first by another user would be."""
    made = tmp_path / f"nucleus-{os.geteuid()}"
    made.mkdir(mode=0o700)
    os.chown(made, OTHER_UID, OTHER_UID)
    s = Store(str(made))
    for use in (s.ensure, s.all, lambda: s.read("0" * 32), lambda: s.write({"id": "0" * 32})):
        with pytest.raises(RuntimeFailure) as caught:
            use()
        assert caught.value.message == refusal(made, f"belongs to uid {OTHER_UID}, not to the caller (uid 0)")
    assert os.listdir(made) == []


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702, 0o1777])
def test_a_directory_others_may_write_is_refused(tmp_path, mode):
    made = tmp_path / "state"
    made.mkdir()
    os.chmod(made, mode)
    with pytest.raises(RuntimeFailure) as caught:
        Store(str(made)).ensure()
    assert caught.value.message == refusal(made, f"may be written by others (mode {mode:04o})")


def test_a_readable_directory_is_the_callers_to_use(tmp_path):
    made = tmp_path / "state"
    made.mkdir()
    os.chmod(made, 0o755)
    Store(str(made)).ensure()


def test_a_link_or_a_file_in_place_of_the_directory_is_refused(tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "file").write_text("")
    for path, why in ((tmp_path / "link", "is not a directory"), (tmp_path / "file", "is not a directory"),
                      (tmp_path / "file" / "sub", "is not a directory (a part of its path is a file)")):
        with pytest.raises(RuntimeFailure) as caught:
            Store(str(path)).all()
        assert caught.value.message == refusal(path, why)
    assert os.listdir(tmp_path / "real") == []


def test_a_directory_that_cannot_be_made_is_a_clear_error():
    path = f"/proc/nucleus-test-{secrets.token_hex(4)}/state"
    with pytest.raises(RuntimeFailure) as caught:
        Store(path).ensure()
    assert caught.value.message.startswith("cannot create the state directory '/proc/nucleus-test-")


def test_listing_a_missing_directory_makes_nothing(tmp_path):
    assert Store(str(tmp_path / "none")).all() == []
    assert not (tmp_path / "none").exists()


# --- records ----------------------------------------------------------------------------------


def test_a_good_record_is_read(store):
    cid = secrets.token_hex(16)
    put(store, cid, good_record(cid))
    assert store.read(cid)["name"] == "web"
    assert [r["id"] for r in store.all()] == [cid]


@AS_ROOT
def test_a_record_of_another_user_is_passed_over(store, capsys):
    cid = secrets.token_hex(16)
    path = put(store, cid, good_record(cid))
    os.chown(path, OTHER_UID, OTHER_UID)
    assert store.read(cid) is None and store.all() == []
    assert capsys.readouterr().err == (
        f"warning: {path} belongs to uid {OTHER_UID}, not to the caller (uid 0): passed over\n" * 2)


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_a_record_others_may_write_is_passed_over(store, capsys, mode):
    cid = secrets.token_hex(16)
    path = put(store, cid, good_record(cid), mode)
    assert store.read(cid) is None
    assert capsys.readouterr().err == f"warning: {path} may be written by others (mode {mode:04o}): passed over\n"


def test_a_fifo_in_place_of_a_record_does_not_hang_the_reader(store, capsys):
    cid = secrets.token_hex(16)
    store.ensure()
    os.mkfifo(store.path(cid), 0o600)
    assert store.read(cid) is None
    assert capsys.readouterr().err == f"warning: {store.path(cid)} is not a regular file: passed over\n"


def test_a_link_in_place_of_a_record_is_passed_over(store, tmp_path, capsys):
    cid = secrets.token_hex(16)
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps(good_record(cid)))
    store.ensure()
    os.symlink(target, store.path(cid))
    assert store.read(cid) is None
    assert capsys.readouterr().err == f"warning: {store.path(cid)} is a link: passed over\n"


def test_a_huge_record_is_passed_over(store, capsys):
    cid = secrets.token_hex(16)
    path = put(store, cid, " " * (2 << 20))
    assert store.read(cid) is None
    assert capsys.readouterr().err == f"warning: {path} is too large for a record ({2 << 20} bytes): passed over\n"


def test_names_that_are_not_container_ids_are_never_read(store):
    store.ensure()
    for name in ("..json", "x.json", "../escape", "ABCDEF" + "0" * 26):
        assert store.read(name) is None
    with open(os.path.join(store.dir, "..json"), "w") as f:
        f.write("{}")
    assert store.all() == []


@pytest.mark.parametrize("content,problem", [
    ("[]", "is not the record of container"),
    ("not json", None),
    ({"id": "../../../etc/passwd"}, "is not the record of container"),
    ({"name": "web"}, "is not the record of container"),
])
def test_content_that_is_no_record_is_passed_over(store, capsys, content, problem):
    cid = secrets.token_hex(16)
    path = put(store, cid, content)
    assert store.read(cid) is None
    err = capsys.readouterr().err
    assert err == ("" if problem is None else f"warning: {path} {problem} {cid}: passed over\n")


SHAPES = [
    (lambda r: r.pop("machines"), "no 'machines'"),
    (lambda r: r.update(status=3), "'status' is int"),
    (lambda r: r.update(argv="rm -rf /"), "'argv' is str"),
    (lambda r: r.update(argv=[["x"]]), "'argv' holds more than strings"),
    (lambda r: r.update(init_pid="../../etc/passwd"), "'init_pid' is str"),
    (lambda r: r.update(init_pid=True), "'init_pid' is bool"),
    (lambda r: r.update(supervisor_start=1.5), "'supervisor_start' is float"),
    (lambda r: r.update(detached="yes"), "'detached' is str"),
    (lambda r: r.update(creator_uid=None), "'creator_uid' is NoneType"),
    (lambda r: r.update(name="../../x"), "the name '../../x' is not a container name"),
    (lambda r: r.update(name="web\x1b[2J"), "the name 'web\\x1b[2J' is not a container name"),
    (lambda r: r.update(cgroup_parent="../.."), "'..' is not allowed"),
    (lambda r: r.update(cgroup_parent="/"), "is the hierarchy root"),
    (lambda r: r.update(cgroup_parent="process_api"), "refused: 'process_api' belongs to the machine's supervisor"),
    (lambda r: r["machines"].pop("lc_status"), "its machines do not rebuild (KeyError: 'lc_status')"),
    (lambda r: r["machines"].update(lc_status="exploded"), "its machines' variables are out of range"),
    (lambda r: r["machines"].update(res_phase="gone"), "its machines' variables are out of range"),
    (lambda r: r.update(status="running"), "its status 'running' is not its lifecycle's ('stopped')"),
    (lambda r: r.update(plan={"join": {"rootless": "maybe"}}), "its machines do not rebuild (ValueError: "),
]


@pytest.mark.parametrize("change,problem", SHAPES, ids=[p for _, p in SHAPES])
def test_a_record_of_the_wrong_shape_is_passed_over(store, capsys, change, problem):
    cid = secrets.token_hex(16)
    record = good_record(cid)
    change(record)
    path = put(store, cid, record)
    assert store.read(cid) is None and store.all() == []
    err = capsys.readouterr().err
    prefix = f"warning: {path} is not a record nucleus can use ("
    assert err.startswith(prefix) and problem in err and err.endswith("): passed over\n" * 1), err


def test_the_log_is_named_after_the_id_and_goes_with_the_record(store):
    cid = secrets.token_hex(16)
    put(store, cid, good_record(cid, log_path="/etc/passwd"))
    base = os.path.join(store.dir, f"{cid}.log")
    assert store.log_path(cid) == base
    for name in (base, base + ".1", base + ".2"):
        with open(name, "w") as f:
            f.write("x\n")
    assert store.log_size(cid) == 6
    store.delete(cid)
    assert os.listdir(store.dir) == []
    with pytest.raises(ValueError):
        store.log_path("../../etc/passwd")

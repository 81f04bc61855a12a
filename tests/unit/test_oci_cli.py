"""`nucleus oci` / `nucleus-oci`'s command line as runc's callers see it, without running a
container: features, version, the global flags (--systemd-cgroup refused, --log in text and
JSON), exit codes and messages, and bad input leaving nothing behind."""

from __future__ import annotations

import json

import pytest

from nucleus.cli import oci as cli
from nucleus.errors import InvalidInput


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.run_cli(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write_bundle(path, **process) -> str:
    config = {"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "linux": {"namespaces": [{"type": "network"}]},
              "process": {"args": ["sh"], "cwd": "/", **process}}
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_features_say_what_nucleus_reads_of_a_bundle(capsys):
    code, out, _ = run(capsys, "features")
    features = json.loads(out)
    assert code == 0 and features["ociVersionMin"] == "1.0.0" and features["ociVersionMax"] == "1.2.0"
    assert features["linux"]["cgroup"]["systemd"] is False and features["linux"]["apparmor"]["enabled"] is False
    assert "user" in features["linux"]["namespaces"] and features["hooks"] == []


def test_version_names_the_runtime_spec(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("nucleus-oci version ") and "spec: 1.2.0" in out


def test_systemd_cgroup_is_refused_clearly(capsys, tmp_path):
    log = tmp_path / "log.json"
    code, _, err = run(capsys, "--systemd-cgroup", "--log", str(log), "--log-format", "json", "features")
    assert code == 125
    assert err.startswith("error: --systemd-cgroup: nucleus manages the container's cgroups through cgroupfs, "
                          "not through systemd\nhint: set SystemdCgroup = false")
    assert json.loads(log.read_text().splitlines()[-1])["level"] == "error"


def test_a_missing_container_is_named_and_logged_as_text(capsys, tmp_path):
    log = tmp_path / "log"
    code, _, err = run(capsys, "--root", str(tmp_path / "root"), "--log", str(log), "state", "web")
    assert code == 125
    assert err == f"error: container 'web' does not exist (in '{tmp_path}/root')\n"
    assert log.read_text().rstrip().endswith(f"level=error msg=\"container 'web' does not exist (in '{tmp_path}/root')\"")


def test_bad_input_is_named_and_leaves_no_state(capsys, tmp_path):
    root = tmp_path / "root"
    code, _, err = run(capsys, "--root", str(root), "create", "--bundle", str(tmp_path / "none"), "c1")
    assert code == 125 and err.startswith(f"error: --bundle '{tmp_path}/none/config.json': no such file")
    bundle = write_bundle(tmp_path / "tty", terminal=True)
    code, _, err = run(capsys, "--root", str(root), "create", "--bundle", bundle, "c1")
    assert code == 125 and err.startswith("error: config.json: process.terminal true: a terminal needs "
                                          "--console-socket\nhint: pass --console-socket")
    code, _, err = run(capsys, "--root", str(root), "create", "--bundle", bundle, "../c1")
    assert code == 125 and err.startswith("error: container id '../c1': must be 1 to 64 letters")
    assert not root.exists()


def test_preserved_descriptors_are_refused(capsys, tmp_path):
    code, _, err = run(capsys, "--root", str(tmp_path), "create", "--preserve-fds", "2", "c1")
    assert code == 125 and "--preserve-fds 2: no descriptor beyond 0-2 reaches the container" in err


@pytest.mark.parametrize(("text", "number"), [("TERM", 15), ("SIGKILL", 9), ("hup", 1), ("10", 10)])
def test_signals_by_name_or_number(text, number):
    assert cli.parse_signal(text) == number


@pytest.mark.parametrize("text", ["NOPE", "0", "999"])
def test_a_signal_that_is_none_is_refused(text):
    with pytest.raises(InvalidInput, match=f"signal '{text}': not a signal"):
        cli.parse_signal(text)


def test_the_bundle_is_checked_as_nucleus_run_checks_its_flags(capsys, tmp_path):
    bundle = write_bundle(tmp_path / "b")
    (tmp_path / "b" / "rootfs").mkdir()
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    config["mounts"] = [{"destination": "/usr/lib/x", "type": "bind", "source": str(tmp_path), "options": ["rbind"]}]
    (tmp_path / "b" / "config.json").write_text(json.dumps(config))
    code, _, err = run(capsys, "--root", str(tmp_path / "root"), "create", "--bundle", bundle, "c1")
    assert code == 125
    assert err.startswith(f"error: config.json: -v/--volume '{tmp_path}:/usr/lib/x:rw': /usr/lib/x is below /usr, which "
                          "nucleus mounts itself")
    assert not (tmp_path / "root").exists()

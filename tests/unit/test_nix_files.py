"""The Nix files: each parses; the flake's outputs, evaluated against a stand-in nixpkgs, patch
what the sources really contain and fetch the sdists whose hashes they name; every command line the
NixOS module makes passes `nucleus run`'s own parsing and validation."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NIX = shutil.which("nix-instantiate")
STRICT = os.environ.get("NUCLEUS_TESTS_STRICT") == "1"

if NIX is None and not STRICT:
    pytest.skip("nix-instantiate is not installed (Debian: apt-get install nix-bin)", allow_module_level=True)


def evaluate(expression: str) -> object:
    assert NIX is not None, "nix-instantiate is required (Debian: apt-get install nix-bin)"
    proc = subprocess.run([NIX, "--eval", "--strict", "--json", "-E", expression], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


NIX_FILES = sorted(str(p.relative_to(ROOT)) for p in [ROOT / "flake.nix", *ROOT.glob("nix/*.nix"),
                                                        *ROOT.glob("tests/nix/*.nix")])


@pytest.mark.parametrize("path", NIX_FILES)
def test_every_nix_file_parses(path):
    assert NIX is not None
    proc = subprocess.run([NIX, "--parse", path], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def flake():
    return evaluate("import ./tests/nix/eval-flake.nix")


def test_the_flake_offers_the_package_its_library_and_module_for_x86_64(flake):
    assert flake["systems"] == ["x86_64-linux"]
    assert set(flake["outputs"]) == {"apps", "checks", "devShells", "lib", "nixosModules", "packages"}
    assert flake["mkRootfs"] and flake["module"]
    assert re.fullmatch(r"github:NixOS/nixpkgs/[0-9a-f]{40}", flake["inputs"]["nixpkgs"]["url"])
    assert "tests/unit tests/model tests/replay" in flake["nucleus"]["checkPhase"]
    assert flake["devShell"].startswith("export TLA2TOOLS=/nix/store/")


def _replaced(post_patch: str) -> str:
    """The text a `substituteInPlace --replace-fail OLD NEW` replaces."""
    m = re.search(r"--replace-fail '([^']*)'", post_patch)
    assert m, post_patch
    return m.group(1)


def test_the_package_patches_the_library_path_nucleus_really_loads(flake):
    old = _replaced(flake["nucleus"]["postPatch"])
    assert old in (ROOT / "nucleus/effects/abi.py").read_text()
    from nucleus.effects import abi

    assert old == f'LIBSECCOMP = "{abi.LIBSECCOMP}"'
    assert "/lib/libseccomp.so.2" in flake["nucleus"]["postPatch"].split("' '", 1)[1]


def _sdist(tmp_path: Path, name: str, version: str) -> bytes:
    """The sdist from the package index (pip's configuration), or a skip where it is unreachable."""
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                           "--disable-pip-version-check", "-d", str(tmp_path), f"{name}=={version}"],
                          capture_output=True, text=True, timeout=300)
    found = list(tmp_path.glob(f"{name}-{version}.tar.gz"))
    if proc.returncode != 0 or not found:
        if STRICT:
            pytest.fail(f"cannot download the {name} {version} sdist: {proc.stderr[-500:]}")
        pytest.skip(f"the package index is unreachable: {proc.stderr.strip()[-200:]}")
    return found[0].read_bytes()


@pytest.mark.parametrize("package", ["pyseccomp", "pathspec"])
def test_each_fetched_sdist_has_the_hash_the_flake_names(flake, tmp_path, package):
    src = flake[package]["src"]
    data = _sdist(tmp_path, src["pname"], src["version"])
    assert src["hash"] == "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()
    if package == "pyseccomp":  # and its patch finds what it replaces
        import tarfile

        with tarfile.open(next(tmp_path.glob("pyseccomp-*.tar.gz"))) as tar:
            member = tar.extractfile(f"pyseccomp-{src['version']}/pyseccomp.py")
            assert member is not None
            assert _replaced(flake["pyseccomp"]["postPatch"]) in member.read().decode()


# --- the NixOS module's command lines ------------------------------------------------------------

ROOTFS = "/nix/store/" + "a" * 32 + "-service"
CONTAINERS = {
    "plain": {"rootfs": ROOTFS, "command": ["/bin/service"]},
    "web": {"rootfs": ROOTFS, "command": ["/bin/web", "--port", "8080"], "network": "bridge",
            "dns": ["192.0.2.53"], "ports": ["8080:8080", "127.0.0.1:9090:9090/udp"],
            "egressAllow": ["192.0.2.0/24"], "egressTcpPorts": [5432], "egressDomains": ["pkgs.example.org"],
            "user": "1000:1000", "memory": "1G", "cpus": "2", "pids": 64,
            "environment": {"LOG_LEVEL": "debug", "LANG": "C.UTF-8"}},
    "db": {"rootfs": ROOTFS, "command": ["/bin/postgres", "-D", "/var/lib/pg"], "user": "postgres",
           "secrets": [{"source": "/run/keys/db", "dest": "/run/secrets/db"},
                       {"source": "/run/keys/tls.pem", "dest": "/etc/tls/cert.pem"}],
           "healthCheck": "pg_isready", "healthInterval": 10, "healthRetries": 5, "healthStartPeriod": 30,
           "readinessTcp": 5432, "sdNotify": True, "restart": "always"},
    "job": {"rootfs": ROOTFS, "command": ["/bin/job"], "serviceMode": "agent",
            "verifyRootfsAttestation": False, "readinessExec": "test -e /tmp/ready"},
}


def _nix_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[ " + " ".join(_nix_value(v) for v in value) + " ]"
    assert isinstance(value, dict)
    return "{ " + " ".join(f"{json.dumps(k)} = {_nix_value(v)};" for k, v in value.items()) + " }"


def _exec_args(line: str) -> list[str]:
    """A systemd command line as nixpkgs' escapeSystemdExecArgs writes it: JSON strings, % and $
    doubled."""
    decoder = json.JSONDecoder()
    args, at = [], 0
    while at < len(line):
        value, at = decoder.raw_decode(line, at)
        args.append(value.replace("%%", "%").replace("$$", "$"))
        at += len(line[at:]) - len(line[at:].lstrip(" "))
    return args


@pytest.fixture(scope="module")
def units():
    return evaluate(f"import ./tests/nix/eval-module.nix {{ containers = {_nix_value(CONTAINERS)}; "
                    'topologies.app.configFile = "/etc/nucleus/app.toml"; }')


def _validated(argv: list[str]):
    """`nucleus run ARGV`'s parsing and validation, as the command itself does them, without
    running anything."""
    from nucleus.cli import run_options
    from nucleus.cli.main import cli

    command = cli.commands["run"]  # type: ignore[attr-defined]
    ctx = command.make_context("run", list(argv))
    params = dict(ctx.params)
    return run_options.to_config(tuple(params.pop("command")), params, "xterm")


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_every_container_unit_runs_a_command_line_nucleus_accepts(units, name):
    unit = units[f"nucleus-{name}"]
    args = _exec_args(unit["ExecStart"])
    assert args[0].endswith("/bin/nucleus") and args[1] == "run"
    config = _validated(args[2:])
    spec = CONTAINERS[name]
    assert config.argv == tuple(spec["command"])
    assert config.name == name
    assert config.service_mode == spec.get("serviceMode", "production")
    assert config.rootfs == ROOTFS
    assert unit["Type"] == ("notify" if spec.get("sdNotify") else "simple")
    assert unit["Restart"] == spec.get("restart", "on-failure")
    assert unit["Delegate"] is True
    assert _exec_args(unit["ExecStopPost"].removeprefix("-"))[1:] == ["rm", "--force", name]


def test_the_topology_unit_brings_the_topology_up_and_down(units):
    unit = units["nucleus-topology-app"]
    assert _exec_args(unit["ExecStart"])[1:] == ["compose", "up", "-f", "/etc/nucleus/app.toml"]
    assert _exec_args(unit["ExecStop"])[1:] == ["compose", "down", "-f", "/etc/nucleus/app.toml"]
    assert (unit["Type"], unit["RemainAfterExit"]) == ("oneshot", True)


def test_the_readme_nixos_example_makes_units_nucleus_accepts(tmp_path):
    """README's ```nix block, evaluated with the flake's outputs standing in: its containers'
    command lines pass `nucleus run`'s validation."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```nix\n(.*?)```", readme, re.S)
    assert len(blocks) == 1, "README's NixOS example is one ```nix block"
    (tmp_path / "host.nix").write_text(blocks[0])
    rootfs = "/nix/store/" + "b" * 32 + "-web-rootfs"
    units = evaluate(
        f'let conf = import {tmp_path / "host.nix"} {{ pkgs = {{ busybox = "busybox"; python3 = "python3"; }}; '
        f'nucleus = {{ lib.mkRootfs = _: "{rootfs}"; nixosModules.default = "module"; }}; }}; '
        "in import ./tests/nix/eval-module.nix { inherit (conf.services.nucleus) containers topologies; }")
    assert set(units) == {"nucleus-web", "nucleus-topology-app"}  # type: ignore[arg-type]
    args = _exec_args(units["nucleus-web"]["ExecStart"])  # type: ignore[index]
    config = _validated(args[2:])
    assert config.rootfs == rootfs and config.network == "bridge"
    assert units["nucleus-web"]["Type"] == "notify"  # type: ignore[index]

"""--network user run by an ordinary user, no root anywhere in the run: the supervisor, the
user-mode stack (pasta, slirp4netns), the egress proxy and the rules inside the container's
namespace all belong to uid 65534.

The stacks open /dev/net/tun, which many hosts (this one too) keep at 0600. The host's node is
left as it is: each run happens in a private mount namespace (`unshare -m`) where a 0666 node
of the test's own (mknod 10:200) is bound over /dev/net/tun, and that namespace ends with the
run. The network is the lab's of tests/kernel/test_user_network.py: nucleus runs in the lab's
"host" namespace, whose only link leads to the lab's "upstream" namespace and its servers."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, describe, nucleus_env
from tests.kernel.bridge_lab import NSENTER, UPSTREAM_ADDRESS, UPSTREAM_PORT
from tests.kernel.test_user_network import GET, lab  # noqa: F401 - `lab` is a fixture

pytestmark = [SANDBOX_WITH_PYTHON, pytest.mark.requires("root", "netns", "bin:nft", "bin:nsenter", "bin:setpriv")]

STACKS = [pytest.param(stack, marks=pytest.mark.requires(f"bin:{stack}")) for stack in ("pasta", "slirp4netns")]
ORDINARY = ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")
# In a private mount namespace, a node of the test's own bound over /dev/net/tun, then the command.
TUN_BOUND = ("unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
             'mount --bind "$0" /dev/net/tun && exec "$@"')
# Loopback inside: a listener on 127.0.0.1 and a connection to it, in one process.
LOOPBACK = ("/usr/bin/python3 -c \"import socket\ns = socket.create_server(('127.0.0.1', 0))\n"
            "c = socket.create_connection(s.getsockname(), timeout=5)\na, _ = s.accept()\nc.sendall(b'ping')\n"
            "print('loopback', a.recv(4).decode())\"")


def tun_for_everyone(folder: Path) -> list[str]:
    """The prefix that runs a command where /dev/net/tun is open to every user: a character
    device 10:200 of mode 0666 made in `folder`, bound over /dev/net/tun in a private mount
    namespace that ends with the command. Skips, saying why, where even that is impossible."""
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("requires /dev/net/tun (the tun driver)")
    node = folder / "tun"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(10, 200))
        os.chmod(node, 0o666)  # past the umask
    except OSError as e:
        pytest.skip(f"requires a tun device node of the test's own: mknod {node}: {e.strerror}")
    prefix = [*TUN_BOUND, str(node)]
    probe = subprocess.run([*prefix, *ORDINARY, "/usr/bin/python3", "-c", "open('/dev/net/tun', 'rb')"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"requires /dev/net/tun open to an ordinary user, even through a node of the "
                    f"test's own in a private mount namespace: {probe.stderr.strip()[-200:]}")
    return prefix


def test_the_hosts_tun_node_is_left_as_it_was(tmp_path):
    """The bound node is seen only inside the run's mount namespace."""
    before = os.stat("/dev/net/tun") if os.path.exists("/dev/net/tun") else None
    prefix = tun_for_everyone(tmp_path)
    inside = subprocess.run([*prefix, "stat", "-c", "%a", "/dev/net/tun"], capture_output=True, text=True,
                            timeout=30)
    assert inside.stdout.strip() == "666", describe(inside)
    after = os.stat("/dev/net/tun")
    assert before is not None and (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


@pytest.mark.parametrize("stack", STACKS)
def test_an_ordinary_user_runs_with_a_user_mode_network_and_its_egress_rules(lab, stack, nobody_pythonpath, request, tmp_path):  # noqa: F811
    tun = tun_for_everyone(tmp_path)
    state = Path(tempfile.mkdtemp(prefix="nucleus-user-net-"))  # not below root's 0700 tmp_path
    request.addfinalizer(lambda: shutil.rmtree(state, ignore_errors=True))
    os.chown(state, 65534, 65534)
    env = nucleus_env({"PYTHONPATH": nobody_pythonpath, "NUCLEUS_STATE_DIR": str(state), "HOME": "/nonexistent"})
    script = "; ".join([
        LOOPBACK,
        f"{GET} http://{UPSTREAM_ADDRESS}:{UPSTREAM_PORT}/ allowed-port",
        # through the proxy: a name the policy does not allow gets its 403
        f"{GET} http://other.test/ proxied-other",
        # around the proxy: the rules inside the container's namespace drop a port not allowed
        f"NO_PROXY='*' no_proxy='*' {GET} http://{UPSTREAM_ADDRESS}:{UPSTREAM_PORT + 1}/ direct-port",
    ])
    argv = [*tun, NSENTER, f"--net=/run/netns/{lab.host}", *ORDINARY, "/usr/bin/python3", "-m", "nucleus",
            "run", "--network", "user", "--user-net", stack,
            "--egress-allow", f"{UPSTREAM_ADDRESS}/32", "--egress-tcp-port", str(UPSTREAM_PORT),
            "--", "/bin/sh", "-c", script]
    done = subprocess.run(argv, env=env, cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, describe(done)
    lines = done.stdout.splitlines()
    assert "loopback ping" in lines, describe(done)
    assert "allowed-port 200" in lines, describe(done)
    assert "proxied-other refused 403" in lines, describe(done)
    assert any(line.startswith("direct-port refused") for line in lines), describe(done)
    # Nothing of the run is left: no lease, no link or rule in the lab's host namespace.
    network = state / "network"
    assert not network.exists() or not [n for n in os.listdir(network) if n.endswith(".json")]
    lab.assert_clean()

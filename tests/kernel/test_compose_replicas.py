"""`nucleus compose` with `replicas` and a tmpfs volume, on the real kernel, in a bridge test's
own "host" network namespace (tests/kernel/bridge_lab.py). A backend of two replicas, each an
HTTP server answering with its host name, run as uid 65534 with a tmpfs volume of 1 MiB it
owns; a client that depends on the backend. Both replicas run as containers of their own
(S-1, S-2) with addresses of their own; the client's `backend` resolves to both, and each
answers; the tmpfs is each container's own, of its size, owner and mode, noexec, and refuses
what would overflow it. Scaled down to one replica (named after the service again), `up`
replaces the replicas and leaves the unchanged client running; `down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from tests.helpers import SANDBOX_PYTHON, SANDBOX_WITH_PYTHON, Scope, describe
from tests.kernel.bridge_lab import Lab
from tests.kernel.test_compose_run import SERVE as BACKEND
from tests.kernel.test_compose_run import compose, init_pid, services

pytestmark = [SANDBOX_WITH_PYTHON, pytest.mark.requires("bin:nft", "bin:nsenter")]

# The backend of tests/kernel/test_compose_run.py, answering with its host name.
SERVE = "import socket\n" + BACKEND.replace("b'backend says hello'", "socket.gethostname().encode()")
RESOLVE = ("import socket, urllib.request\n"
           "found = sorted({a[4][0] for a in socket.getaddrinfo('backend', 8080, socket.AF_INET, socket.SOCK_STREAM)})\n"
           "print(' '.join(found))\n"
           "print(' '.join(sorted(urllib.request.urlopen(f'http://{a}:8080/', timeout=5).read().decode()"
           " for a in found)))\n")
FILL = ("import os\n"
        "st = os.stat('/scratch'); print(st.st_uid, st.st_gid, oct(st.st_mode & 0o7777))\n"
        "try:\n"
        "    with open('/scratch/big', 'wb') as f: f.write(b'x' * (2 << 20))\n"
        "    print('wrote 2 MiB')\n"
        "except OSError as e:\n"
        "    print('refused:', os.strerror(e.errno))\n")


def topology(name: str, cgroup_parent: str, replicas: int) -> str:
    return f"""
name = "{name}"

[networks.internal]
subnet = "203.0.113.0/25"

[volumes.scratch]
volume_type = "tmpfs"
size = "1M"
owner = "65534:65534"

[services.backend]
command = {json.dumps([SANDBOX_PYTHON, "-c", SERVE])}
networks = ["internal"]
volumes = ["scratch:/scratch"]
user = "65534:65534"
cgroup_parent = "{cgroup_parent}"
replicas = {replicas}

[services.client]
command = ["sleep", "3600"]
networks = ["internal"]
cgroup_parent = "{cgroup_parent}"

[[services.client.depends_on]]
service = "backend"
"""


@pytest.fixture
def replicas_lab():
    with Scope() as scope, Lab(scope) as made:
        yield made


def test_replicas_each_get_a_container_and_an_address_and_the_name_resolves_to_all(replicas_lab: Lab):
    lab = replicas_lab
    name = f"rep{lab.scope.marker[-8:]}"
    with tempfile.TemporaryDirectory(prefix="nucleus-test-compose-") as d:
        path = os.path.join(d, "nucleus.toml")
        with open(path, "w") as f:
            f.write(topology(name, lab.scope.cgroup_parent, 2))
        try:
            done = compose(lab, path, "up")
            assert done.returncode == 0, describe(done)
            progress = done.stderr.splitlines()
            assert progress.index(f"backend-2: starting {name}-backend-2") < next(
                i for i, line in enumerate(progress) if line.startswith("client: starting")), describe(done)
            rows = services(lab, path)
            assert {s: (r["name"], r["status"]) for s, r in rows.items()} == {
                "backend-1": (f"{name}-backend-1", "running"), "backend-2": (f"{name}-backend-2", "running"),
                "client": (f"{name}-client", "running")}
            addresses = sorted(rows[s]["addresses"][0] for s in ("backend-1", "backend-2"))
            assert len(set(addresses)) == 2

            resolved = compose(lab, path, "exec", "client", "--", SANDBOX_PYTHON, "-c", RESOLVE)
            assert resolved.returncode == 0, describe(resolved)
            assert resolved.stdout.splitlines() == [" ".join(addresses), "backend-1 backend-2"], describe(resolved)

            for replica in ("backend-1", "backend-2"):
                filled = compose(lab, path, "exec", replica, "--", SANDBOX_PYTHON, "-c", FILL)
                assert filled.stdout.splitlines() == ["65534 65534 0o755", "refused: No space left on device"], \
                    describe(filled)
            mounts = compose(lab, path, "exec", "backend-1", "--", "grep", " /scratch ", "/proc/self/mountinfo")
            assert "tmpfs" in mounts.stdout and "size=1024k" in mounts.stdout, describe(mounts)
            assert "noexec" in mounts.stdout.split(" - ")[0], describe(mounts)
            # Each replica's tmpfs is its own: what one writes, the other does not see.
            wrote = compose(lab, path, "exec", "backend-1", "--", "sh", "-c", "rm -f /scratch/big; echo one > /scratch/f")
            assert wrote.returncode == 0, describe(wrote)
            seen = compose(lab, path, "exec", "backend-2", "--", "ls", "/scratch")
            assert seen.returncode == 0 and "f" not in seen.stdout.split(), describe(seen)

            before = {s: init_pid(lab, r["id"]) for s, r in rows.items()}
            with open(path, "w") as f:
                f.write(topology(name, lab.scope.cgroup_parent, 1))
            again = compose(lab, path, "up")
            assert again.returncode == 0, describe(again)
            after = services(lab, path)
            assert {s: r["status"] for s, r in after.items()} == {"backend": "running", "client": "running"}, after
            assert [line for line in again.stderr.splitlines() if line.startswith("client:")] == [], again.stderr
            assert init_pid(lab, after["client"]["id"]) == before["client"]
        finally:
            compose(lab, path, "down")
    lab.assert_clean()

"""A volume's `owner=` (-v HOST:CONTAINER:rw,owner=USER[:GROUP]) through `nucleus run`, as root,
on the real kernel: the id-mapped bind shows the host owner's files as that user's inside, so a
workload run as that user (-u) writes there, and what it makes belongs on the host to the
volume's owner; without owner= that user cannot create anything there (its ids are outside the
mapping); an owner the container's /etc/passwd does not name is refused before anything starts.
"""

from __future__ import annotations

import pytest

from tests.helpers import describe
from tests.kernel.outputs_support import host_dir, scope_fixture  # noqa: F401 - the scope fixture

pytestmark = pytest.mark.requires("root", "userns", "seccomp", "landlock")


@pytest.fixture
def owned_dir():
    with host_dir("nucleus-test-volume-owner-") as top:
        yield top


def test_a_volume_owned_by_the_workloads_user_is_written_by_it(scope, owned_dir):
    out = owned_dir / "data"
    out.mkdir()
    write = "ls -ldn /data | cut -d' ' -f3,4; id -u; echo made > /data/f"
    done = scope.nucleus(*scope.run_args("-u", "1000", "-v", f"{out}:/data:rw,owner=1000:1000"),
                         "--", *scope.sh(write))
    assert done.returncode == 0, describe(done)
    assert done.stdout == "1000 1000\n1000\n"
    st = (out / "f").lstat()
    assert (st.st_uid, st.st_gid) == (0, 0) and (out / "f").read_text() == "made\n"

    plain = scope.nucleus(*scope.run_args("-u", "1000", "-v", f"{out}:/data"), "--",
                          *scope.sh("echo again > /data/g"))
    assert plain.returncode != 0 and not (out / "g").exists(), describe(plain)
    scope.assert_clean()


def test_an_owner_the_container_does_not_name_is_refused_before_anything(scope, owned_dir):
    done = scope.nucleus(*scope.run_args("-v", f"{owned_dir}:/data:rw,owner=nosuch"), "--", "true")
    assert (done.returncode, done.stdout) == (125, ""), describe(done)
    assert done.stderr.startswith(f"error: -v/--volume '{owned_dir}:/data:rw,owner=nosuch': owner 'nosuch': "
                                  "no user 'nosuch' in the container's generated /etc/passwd"), describe(done)
    scope.assert_clean()

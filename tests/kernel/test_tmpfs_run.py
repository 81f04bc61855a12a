"""`nucleus run --tmpfs PATH:size=,mode=,owner=` on the real kernel: inside, PATH is a tmpfs of
its own of that size (a write past it fails with ENOSPC), its root directory of that mode and
owned by that user (named as -u names it), nosuid, nodev and noexec, writable by its owner
under Landlock; a second run finds it empty again; nothing is left on the host. An owner the
container's /etc/passwd does not name is refused before anything starts."""

from __future__ import annotations

import pytest

from tests.helpers import describe
from tests.kernel.outputs_support import scope_fixture  # noqa: F401 - the scope fixture

pytestmark = pytest.mark.requires("root", "userns", "seccomp", "landlock")

INSPECT = ("stat -c '%u %g %a' /scratch; id -u; ls -A /scratch | wc -l; "
           "grep ' /scratch ' /proc/self/mountinfo; "
           "echo kept > /scratch/note && cat /scratch/note; "
           "if head -c 2097152 /dev/zero > /scratch/big 2>/dev/null; then echo wrote; else echo refused; fi")


def test_a_tmpfs_has_its_size_mode_and_owner_inside(scope):
    args = scope.run_args("-u", "1000", "--tmpfs", "/scratch:size=1M,mode=0700,owner=1000:1000")
    done = scope.nucleus(*args, "--", *scope.sh(INSPECT))
    assert done.returncode == 0, describe(done)
    owner, uid, entries, mountinfo, note, overflow = done.stdout.splitlines()
    assert (owner, uid, entries) == ("1000 1000 700", "1000", "0"), describe(done)
    options, _, fs = mountinfo.partition(" - ")
    assert fs.startswith("tmpfs ") and "size=1024k" in fs and "mode=700" in fs, mountinfo
    assert {"nosuid", "nodev", "noexec"} <= set(options.split()[5].split(",")), mountinfo
    assert (note, overflow) == ("kept", "refused"), describe(done)

    again = scope.nucleus(*args, "--", *scope.sh("ls -A /scratch | wc -l"))
    assert (again.returncode, again.stdout) == (0, "0\n"), describe(again)
    scope.assert_clean()


def test_a_tmpfs_owner_the_container_does_not_name_is_refused_before_anything(scope):
    done = scope.nucleus(*scope.run_args("--tmpfs", "/scratch:owner=nosuch"), "--", "true")
    assert (done.returncode, done.stdout) == (125, ""), describe(done)
    assert done.stderr.startswith("error: --tmpfs /scratch owner 'nosuch': no user 'nosuch' in the "
                                  "container's generated /etc/passwd"), describe(done)
    scope.assert_clean()

"""The setup process makes the container's mount points as host root before pivot_root: a
home path that climbs out of the new root with '..' (an OCI bundle's HOME reaches
ContainerConfig.home as written) is refused there, and nothing is made on the host's tree.
Validation refuses such a home first; the run below goes around it to reach the setup process's
own check, the last line of defence."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nucleus.config.container import ContainerConfig, validate
from nucleus.errors import InvalidInput
from tests.helpers import describe
from tests.kernel.outputs_support import scope_fixture  # noqa: F401 - the scope fixture

pytestmark = pytest.mark.requires("root", "userns", "seccomp", "landlock")

RUN = """
import sys
from nucleus.app import run
from nucleus.config.container import ContainerConfig
from nucleus.config.resources import Limits
from nucleus.errors import NucleusError
home, parent, marker = sys.argv[1:]
config = ContainerConfig(argv=("/bin/true", marker), home=home, limits=Limits(cgroup_parent=parent))
try:
    sys.exit(run.run(config))
except NucleusError as e:
    print(e.render(), file=sys.stderr)
    sys.exit(e.exit_code)
"""


def test_a_home_that_climbs_out_of_the_root_makes_nothing_on_the_host(scope, tmp_path):
    escape = tmp_path / "made-by-the-setup-process"
    home = "/.." * 16 + str(escape)
    done = subprocess.run([sys.executable, "-c", RUN, home, scope.cgroup_parent, scope.marker], env={
        **scope.env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 125, describe(done)
    assert "holds '.' or '..', which is not followed here" in done.stderr, describe(done)
    assert not escape.exists()
    scope.assert_clean()


def test_validation_refuses_that_home_first():
    with pytest.raises(InvalidInput) as info:
        validate(ContainerConfig(argv=("/bin/true",), home="/.." * 4 + "/tmp/x"))
    assert info.value.message == f"HOME {'/..' * 4 + '/tmp/x'!r}: must be an absolute path without '..' or '//'"

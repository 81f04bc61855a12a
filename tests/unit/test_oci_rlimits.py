"""process.rlimits: every RLIMIT_* name, each once, soft at most hard, 2^64-1 unlimited
(nucleus.config.oci); set exactly as given in place of nucleus's own for the same resource, and
a hard limit above the runtime's own found before anything is made (nucleus.effects.rlimits)."""

from __future__ import annotations

import copy
import errno
import resource

import pytest

from nucleus.config import oci
from nucleus.effects import abi, rlimits
from nucleus.errors import InvalidInput
from tests.fakes.libc import fake_libc_fixture  # noqa: F401 - the fake_libc fixture
from tests.unit.test_oci_config import RUNC_SPEC

UNLIMITED = (1 << 64) - 1


def load(*entries: dict) -> tuple[tuple[str, int, int], ...]:
    data = copy.deepcopy(RUNC_SPEC)
    data["process"]["rlimits"] = list(entries)
    return oci.load(data, "/srv/bundle", "c1").config.rlimits


def test_every_resource_is_kept_as_given_unlimited_as_minus_one():
    given = load(*({"type": name, "soft": 1, "hard": 2} for name in oci.RLIMITS))
    assert given == tuple((name, 1, 2) for name in oci.RLIMITS)
    assert load({"type": "RLIMIT_CORE", "soft": UNLIMITED, "hard": UNLIMITED},
                {"type": "RLIMIT_STACK", "soft": 8 << 20, "hard": UNLIMITED}) == (
        ("RLIMIT_CORE", -1, -1), ("RLIMIT_STACK", 8 << 20, -1))
    assert set(oci.RLIMITS) <= set(abi.RLIMITS)  # each has its number for setrlimit


def test_nofile_still_sets_nucleuss_own_limit():
    data = copy.deepcopy(RUNC_SPEC)
    data["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": UNLIMITED, "hard": UNLIMITED}]
    assert oci.load(data, "/srv/bundle", "c1").config.limits.nofile == 1024  # the default, not 2^64-1


@pytest.mark.parametrize("entries, message", [
    ([{"type": "RLIMIT_CORE", "soft": 5, "hard": 4}], "process.rlimits[0].soft 5: is above the hard limit 4"),
    ([{"type": "RLIMIT_CORE", "soft": UNLIMITED, "hard": 4}],
     f"process.rlimits[0].soft {UNLIMITED}: is above the hard limit 4"),
    ([{"type": "RLIMIT_CORE", "soft": 1, "hard": 1}, {"type": "RLIMIT_CORE", "soft": 1, "hard": 1}],
     "process.rlimits[1].type 'RLIMIT_CORE': is given twice"),
    ([{"type": "RLIMIT_CORE", "soft": 1}], "process.rlimits[0].hard None: must be an integer"),
    ([{"type": "RLIMIT_CORE", "soft": -1, "hard": 1}], "process.rlimits[0].soft -1: must be an integer"),
    ([{"type": "RLIMIT_CORE", "soft": 1, "hard": 1 << 63}],
     f"process.rlimits[0].hard {1 << 63}: must be an integer from 0 to {(1 << 63) - 1}, or {UNLIMITED}"),
    ([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}], "process.rlimits[0].type 'RLIMIT_BOGUS': is not a"),
])
def test_bad_limits_are_refused_naming_the_entry(entries, message):
    with pytest.raises(InvalidInput) as e:
        load(*entries)
    assert e.value.message.startswith(f"config.json: {message}"), e.value.message


def test_given_limits_replace_nucleuss_own_and_are_set_exactly(fake_libc):
    fake_libc.answer("getrlimit", lambda res: (1024, 4096))
    applied = rlimits.apply(1024, 512, 65536, exact=(("RLIMIT_NOFILE", 100, 200), ("RLIMIT_CORE", 0, -1),
                                                     ("RLIMIT_LOCKS", 3, 4)))
    assert fake_libc.calls == [
        ("getrlimit", (resource.RLIMIT_NPROC,)), ("setrlimit", (resource.RLIMIT_NPROC, 512, 512)),
        ("getrlimit", (resource.RLIMIT_MEMLOCK,)), ("setrlimit", (resource.RLIMIT_MEMLOCK, 4096, 4096)),
        ("setrlimit", (resource.RLIMIT_NOFILE, 100, 200)), ("setrlimit", (resource.RLIMIT_CORE, 0, -1)),
        ("setrlimit", (10, 3, 4)),
    ]
    assert applied["RLIMIT_CORE"] == (0, -1) and "nofile" not in applied


def test_a_given_limit_the_kernel_refuses_fails_naming_it(fake_libc):
    fake_libc.answer("getrlimit", lambda res: (1024, resource.RLIM_INFINITY))
    fake_libc.fail("setrlimit", errno.EPERM, nth=4)
    with pytest.raises(abi.SyscallError) as e:
        rlimits.apply(1024, 512, 65536, exact=(("RLIMIT_LOCKS", 3, 4),))
    assert str(e.value) == "setrlimit(RLIMIT_LOCKS, {3, 4}) failed: EPERM (Operation not permitted)"


def test_a_hard_limit_above_the_runtimes_own_is_found_first(fake_libc):
    hard = {resource.RLIMIT_NOFILE: 4096, resource.RLIMIT_CORE: resource.RLIM_INFINITY,
            resource.RLIMIT_STACK: 1 << 20}
    fake_libc.answer("getrlimit", lambda res: (0, hard[res]))
    given = (("RLIMIT_NOFILE", 10, 4096), ("RLIMIT_CORE", -1, -1), ("RLIMIT_STACK", 10, -1))
    assert rlimits.over_host(given) == [("RLIMIT_STACK", -1, 1 << 20)]
    assert rlimits.over_host((("RLIMIT_NOFILE", 10, 4097),)) == [("RLIMIT_NOFILE", 4097, 4096)]

"""Which host ids a privileged container maps to: a range no one else owns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nucleus.errors import InvalidInput
from nucleus.facts import SubordinateRange
from nucleus.plan.ids import COUNT, FIRST, HIGHEST, LOWEST, choose


def sub(owner: str, start: int, count: int = 65536, file: str = "/etc/subuid") -> SubordinateRange:
    return SubordinateRange(file, owner, start, count)


def test_without_entries_the_range_starts_at_100000():
    assert choose(None, ()) == FIRST == 100000


def test_the_first_users_range_from_useradd_is_stepped_over():
    """Debian's useradd gives the first new user 100000-165535: a container there would be that
    user's own rootless containers' ids."""
    assert choose(None, (sub("alice", 100000),)) == 196608  # the next multiple of 65536


def test_subgid_entries_count_as_subuid_entries():
    taken = (sub("alice", 100000), sub("bob", 196608, file="/etc/subgid"))
    assert choose(None, taken) == 262144


def test_a_range_asked_for_that_an_entry_owns_is_refused_naming_it():
    with pytest.raises(InvalidInput) as e:
        choose(150000, (sub("alice", 100000),))
    assert e.value.message == ("--id-range 150000: the range 150000-215535 overlaps /etc/subuid's "
                               "range 100000-165535 of user 'alice'")


@pytest.mark.parametrize("start", [0, 1000, LOWEST - 1, HIGHEST - COUNT + 2])
def test_a_range_asked_for_outside_the_unprivileged_ids_is_refused(start):
    with pytest.raises(InvalidInput, match=r"^--id-range \d+: the range \d+-\d+ is outside 65536-4294967294$"):
        choose(start, ())


def test_no_free_range_left_is_refused():
    with pytest.raises(InvalidInput, match="no free range of 65536 host ids"):
        choose(None, (sub("everyone", 0, HIGHEST),))


ranges = st.lists(st.builds(sub, st.sampled_from(["a", "b"]), st.integers(0, 1 << 31),
                            st.integers(1, 1 << 20)), max_size=6)


@given(ranges)
def test_a_chosen_range_is_free_and_unprivileged(taken):
    start = choose(None, tuple(taken))
    assert LOWEST <= start and start + COUNT - 1 <= HIGHEST
    assert all(not (r.start < start + COUNT and start < r.start + r.count) for r in taken)

"""Which host ids a privileged container's root and users map to.

Run as root, a container's ids 0-65535 map to 65536 consecutive host ids that no one else uses:
never the host's own users (below 65536), and never a range that /etc/subuid or /etc/subgid
gives a user (for that user's own rootless containers: `useradd` hands out 100000-165535 to the
first new user on Debian). Without `--id-range` the first free range from 100000 up is taken, in
steps of 65536; with it, the range must be free or the run is refused naming the owner.
"""

from __future__ import annotations

from nucleus.errors import InvalidInput
from nucleus.facts import SubordinateRange

COUNT = 65536
FIRST = 100000
LOWEST = 65536  # ids below belong to the host's own users and groups
HIGHEST = (1 << 32) - 2  # 4294967295 is the invalid id (uid_t)(-1)


def _clash(start: int, taken: tuple[SubordinateRange, ...]) -> list[SubordinateRange]:
    return [r for r in taken if r.start < start + COUNT and start < r.start + r.count]


def choose(asked: int | None, taken: tuple[SubordinateRange, ...]) -> int:
    """The first host id of the container's range."""
    if asked is not None:
        if asked < LOWEST or asked + COUNT - 1 > HIGHEST:
            raise InvalidInput(
                f"--id-range {asked}: the range {asked}-{asked + COUNT - 1} is outside "
                f"{LOWEST}-{HIGHEST}", hint=f"ids below {LOWEST} are the host's own users")
        clash = _clash(asked, taken)
        if clash:
            r = clash[0]
            raise InvalidInput(
                f"--id-range {asked}: the range {asked}-{asked + COUNT - 1} overlaps "
                f"{r.file}'s range {r.start}-{r.start + r.count - 1} of user {r.owner!r}",
                hint="pick a range that no entry of /etc/subuid or /etc/subgid owns, or leave "
                     "--id-range out to have one chosen")
        return asked
    start = FIRST
    while clash := _clash(start, taken):
        end = max(r.start + r.count for r in clash)
        start = -(-end // COUNT) * COUNT  # the next multiple of 65536 past the clash
        if start + COUNT - 1 > HIGHEST:
            raise InvalidInput("no free range of 65536 host ids for the container: /etc/subuid "
                               "and /etc/subgid give them all away",
                               hint="pass --id-range START with a range you keep free")
    return start

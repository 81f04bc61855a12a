"""`--add-host NAME:ADDR` and `--label KEY=VALUE` (nucleus.config.hosts): what /etc/hosts adds
and what the record keeps; a malformed value is refused naming the flag and the value."""

from __future__ import annotations

import pytest

from nucleus.config.hosts import parse_add_hosts, parse_labels
from nucleus.errors import InvalidInput
from nucleus.plan.mounts import _hosts


def test_add_host_lines_follow_the_container_own():
    extra = parse_add_hosts(("db:10.42.0.2", "db.internal:2001:db8::5"))
    assert extra == (("db", "10.42.0.2"), ("db.internal", "2001:db8::5"))
    assert _hosts("web", extra).endswith("127.0.1.1\tweb\n10.42.0.2\tdb\n2001:db8::5\tdb.internal\n")


@pytest.mark.parametrize("value,why", [
    ("db", "expected NAME:ADDRESS"), ("db:", "expected NAME:ADDRESS"),
    ("-db:10.0.0.1", "'-db' is not a host name"), ("db:10.0.0.300", "'10.0.0.300' is not an IP address"),
])
def test_a_malformed_add_host_is_refused(value, why):
    with pytest.raises(InvalidInput) as e:
        parse_add_hosts((value,))
    assert e.value.message == f"--add-host {value!r}: {why}"


def test_labels_keep_the_last_value_of_a_key():
    assert parse_labels(("a=1", "b=", "a=2")) == (("a", "2"), ("b", ""))
    with pytest.raises(InvalidInput) as e:
        parse_labels(("novalue",))
    assert e.value.message == "--label 'novalue': expected KEY=VALUE"

"""Names the container's /etc/hosts adds (`--add-host NAME:ADDR`, repeatable), as `nucleus
compose` gives each service the addresses of the others on its network; and a container's
labels (`--label KEY=VALUE`), kept in its record. Pure."""

from __future__ import annotations

import ipaddress
import re

from nucleus.config.container import HOSTNAME_LABEL_RE
from nucleus.errors import InvalidInput

_LABEL_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MAX_LABEL = 1024


def parse_add_hosts(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(name, address) of each --add-host NAME:ADDR (an IPv6 address keeps its colons)."""
    out = []
    for text in values:
        name, sep, address = text.partition(":")
        if not sep or not name or not address:
            raise InvalidInput(f"--add-host {text!r}: expected NAME:ADDRESS", hint="for example --add-host db:10.42.0.2")
        if len(name) > 253 or not all(HOSTNAME_LABEL_RE.match(label) for label in name.split(".")):
            raise InvalidInput(f"--add-host {text!r}: {name!r} is not a host name")
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise InvalidInput(f"--add-host {text!r}: {address!r} is not an IP address") from None
        out.append((name, str(ip)))
    return tuple(out)


def parse_labels(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(key, value) of each --label KEY=VALUE, the last of a key winning."""
    labels: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not _LABEL_KEY_RE.fullmatch(key) or len(value) > MAX_LABEL or "\0" in value:
            raise InvalidInput(f"--label {text!r}: expected KEY=VALUE",
                               hint="a key of letters, digits, '_', '.' and '-'; a value of at most "
                                    f"{MAX_LABEL} characters")
        labels[key] = value
    return tuple(labels.items())

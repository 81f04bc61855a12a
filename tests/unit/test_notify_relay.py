"""--readiness-sd-notify: what the supervisor passes on from the workload's notifications
(nucleus.config.notify: READY=1 and a printable, capped STATUS=, nothing that steers the unit),
and where the relay's socket may not be hidden (a volume or a secret's DEST at it)."""

from __future__ import annotations

import pytest

from nucleus.app.run import notify_socket_inside
from nucleus.config import notify
from nucleus.config import secrets as secret_rules
from nucleus.config import volumes as volume_rules
from nucleus.config.container import ContainerConfig
from nucleus.errors import InvalidInput


def test_ready_and_status_are_passed_on_and_nothing_else():
    got = notify.sort(b"READY=1\nSTATUS=serving\nWATCHDOG=trigger\nMAINPID=1\nSTOPPING=1\n"
                      b"EXTEND_TIMEOUT_USEC=99999999\nFDSTORE=1\nREADY=0\n")
    assert got.passed == (("READY", "1"), ("STATUS", "serving"))
    assert got.dropped == ("WATCHDOG=trigger", "MAINPID=1", "STOPPING=1", "EXTEND_TIMEOUT_USEC=99999999",
                           "FDSTORE=1", "READY=0")


def test_status_is_printable_and_capped():
    got = notify.sort(b"STATUS=a\x1b[2Jb\tc" + b"x" * 1000 + b"\n")
    (key, value), = got.passed
    assert key == "STATUS" and value.startswith("a[2Jbcx") and len(value) == notify.STATUS_MAX
    assert notify.sort(b"STATUS=one\nSTATUS=two\n").passed == (("STATUS", "one"),)
    assert notify.sort(b"\xff\xfe garbage without a key\n").passed == ()


def test_the_workload_gets_the_relay_s_path_and_needs_a_service_manager():
    config = ContainerConfig(argv=("true",))
    assert notify_socket_inside(config, {"NOTIFY_SOCKET": "@abstract"}).env[-1] == ("NOTIFY_SOCKET",
                                                                                   "/run/nucleus/notify")
    with pytest.raises(InvalidInput, match="NOTIFY_SOCKET is '', neither a socket's path nor '@name'"):
        notify_socket_inside(config, {})


@pytest.mark.parametrize(("volume", "secret"), [
    ("/srv:/run/nucleus", None), ("/srv:/run/nucleus/notify/x", None), (None, "/k:/run/nucleus/notify")])
def test_nothing_may_hide_the_relay_s_socket(volume, secret):
    config = ContainerConfig(argv=("true",), volumes=(volume_rules.parse(volume),) if volume else (),
                             secrets=secret_rules.parse((secret,)) if secret else ())
    with pytest.raises(InvalidInput) as e:
        notify_socket_inside(config, {"NOTIFY_SOCKET": "/run/systemd/notify"})
    flag = "-v/--volume" if volume else "--secret"
    assert e.value.message.startswith(flag)
    assert e.value.message.endswith("--readiness-sd-notify binds the workload's NOTIFY_SOCKET at /run/nucleus/notify")

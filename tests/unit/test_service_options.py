"""The service flags (nucleus.config.service): durations as the reference writes them and with
units, the defaults, and refusals that name the flag and the value."""

from __future__ import annotations

import pytest

from nucleus.config import service
from nucleus.errors import InvalidInput


@pytest.mark.parametrize(("text", "seconds"), [
    ("30", 30.0), ("0.5", 0.5), ("30s", 30.0), ("1m", 60.0), ("500ms", 0.5), ("1h", 3600.0),
    ("1m30s", 90.0), ("2s500ms", 2.5), ("0", 0.0),
])
def test_durations_in_seconds_or_with_units(text, seconds):
    assert service.parse_duration(text, "--health-interval") == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1", "1x", "s", "30s1m", "1s1s", "1e3", "8d", "1000h"])
def test_nonsense_durations_are_refused_naming_the_flag_and_value(text):
    with pytest.raises(InvalidInput) as e:
        service.parse_duration(text, "--health-timeout")
    assert e.value.message.startswith(f"--health-timeout {text!r}: ")


def test_an_interval_below_a_tenth_of_a_second_is_refused():
    with pytest.raises(InvalidInput, match=r"--health-interval '50ms': out of range"):
        service.parse("true", "50ms", None, None, None, None, None, None, None, False, False)


def _parse(**given):
    args = dict(health_cmd=None, interval=None, timeout=None, retries=None, start_period=None,
                on_unhealthy=None, restart=None, readiness_exec=None, readiness_tcp=None,
                sd_notify=False, readiness_sd_notify=False)
    args.update(given)
    return service.parse(**args)


def test_no_service_flag_means_no_service():
    assert _parse() is None


def test_the_reference_defaults():
    options = _parse(health_cmd="curl -sf http://localhost:8080/health")
    assert options.health == service.HealthCheck("curl -sf http://localhost:8080/health", 30.0, 5.0, 3, 5.0)
    assert options.on_unhealthy == "stop" and options.restart == service.RestartPolicy("no")


def test_a_restart_policy_restarts_an_unhealthy_service_by_default():
    assert _parse(health_cmd="true", restart="always").on_unhealthy == "restart"
    assert _parse(health_cmd="true", restart="on-failure:2").restart == service.RestartPolicy("on-failure", 2)


@pytest.mark.parametrize(("given", "message"), [
    (dict(restart="sometimes"), "--restart 'sometimes': expected no, on-failure[:N] or always"),
    (dict(restart="always:3"), "--restart 'always:3': expected no, on-failure[:N] or always"),
    (dict(restart="on-failure:0"), "--restart on-failure:N '0': expected a whole number from 1 to 10000"),
    (dict(health_cmd="true", retries="x"), "--health-retries 'x': expected a whole number from 1 to 1000"),
    (dict(interval="30"), "--health-interval '30': there is no --health-cmd to apply it to"),
    (dict(health_cmd=" "), "--health-cmd ' ': not a command"),
    (dict(readiness_tcp="0"), "--readiness-tcp '0': expected a whole number from 1 to 65535"),
    (dict(readiness_tcp="80", readiness_exec="true"), "--readiness-tcp '80': --readiness-exec is given too"),
    (dict(health_cmd="true", on_unhealthy="restart"), "--health-on-unhealthy 'restart': --restart is no"),
    (dict(health_cmd="true", on_unhealthy="reboot"),
     "--health-on-unhealthy 'reboot': expected restart, stop or none"),
    (dict(restart="always", tty=True), "-t: a service (--health-cmd, --restart, readiness, --sd-notify) runs "
                                       "without a terminal"),
])
def test_refusals_name_the_flag_and_value(given, message):
    with pytest.raises(InvalidInput) as e:
        _parse(**given)
    assert e.value.message == message

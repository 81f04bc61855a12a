"""A long-running service's options: the health check (--health-*), the restart policy
(--restart, --health-on-unhealthy), readiness (--readiness-exec, --readiness-tcp) and systemd's
notification protocol (--sd-notify, --readiness-sd-notify). Validation is pure.

Durations are written as the reference writes them, in seconds (`30`, `0.5`), or with a unit:
`500ms`, `30s`, `1m`, `1h`, `1m30s`.
"""

from __future__ import annotations

import re

from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

# The reference's defaults (seconds).
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 3
DEFAULT_START_PERIOD = 5.0
MAX_DURATION = 7 * 24 * 3600.0
MIN_INTERVAL = 0.1
MAX_RETRIES = 1000
MAX_RESTARTS = 10000
MAX_COMMAND = 4096

RESTART_POLICIES = ("no", "on-failure", "always")
ON_UNHEALTHY = ("restart", "stop", "none")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_BARE = re.compile(r"\d+(?:\.\d+)?")
DURATION_HINT = "write seconds (30, 0.5) or a number with a unit: 500ms, 30s, 1m, 1h, 1m30s"


def parse_duration(text: str, flag: str, minimum: float = 0.0) -> float:
    """Seconds from `text`; InvalidInput naming `flag` and the value when it is none, or below
    `minimum`, or above a week."""
    raw = text.strip()
    seconds: float | None = None
    if _BARE.fullmatch(raw):
        seconds = float(raw)
    elif raw and _PART.sub("", raw) == "":
        parts = _PART.findall(raw)
        units = [unit for _, unit in parts]
        if len(set(units)) == len(units) and units == sorted(units, key=lambda u: -_UNITS[u]):
            seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds is None:
        raise InvalidInput(f"{flag} {text!r}: not a duration", hint=DURATION_HINT)
    if seconds < minimum or seconds > MAX_DURATION:
        low = f"{minimum:g}s" if minimum else "0"
        raise InvalidInput(f"{flag} {text!r}: out of range (from {low} to one week)", hint=DURATION_HINT)
    return seconds


def parse_count(text: str, flag: str, low: int, high: int) -> int:
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise InvalidInput(f"{flag} {text!r}: expected a whole number from {low} to {high}")
    return int(text)


def _command(text: str, flag: str) -> str:
    if not text.strip() or "\0" in text or len(text) > MAX_COMMAND:
        raise InvalidInput(f"{flag} {text!r}: not a command",
                           hint=f"a shell command line (run by /bin/sh -c inside), at most {MAX_COMMAND} bytes")
    return text


@frozen
class HealthCheck:
    """--health-cmd and its timing: run by /bin/sh -c inside the container every `interval`
    seconds once `start_period` has passed (failures before then do not count); `retries`
    failures in a row make the container unhealthy; a check running past `timeout` fails and
    its processes are killed."""

    command: str
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    start_period: float = DEFAULT_START_PERIOD


@frozen
class RestartPolicy:
    """--restart: `no`, `on-failure` (a status other than 0; at most `limit` restarts when
    given) or `always` (until stop, kill or rm)."""

    mode: str = "no"
    limit: int | None = None


@frozen
class Readiness:
    """When the service is ready: a command that succeeds (`exec`, checked like the health
    check), a TCP port that accepts a connection inside the container's network namespace
    (`tcp`), or the workload's own READY=1 (`workload`, with --readiness-sd-notify)."""

    exec: str | None = None
    tcp: int | None = None
    workload: bool = False


@frozen
class ServiceOptions:
    health: HealthCheck | None = None
    on_unhealthy: str = "none"
    restart: RestartPolicy = RestartPolicy()
    readiness: Readiness = Readiness()
    sd_notify: bool = False

    @property
    def supervised(self) -> bool:
        """Whether the supervisor does more than wait for the workload."""
        r = self.readiness
        return (self.health is not None or self.restart.mode != "no" or self.sd_notify
                or r.exec is not None or r.tcp is not None)


def parse_restart(text: str) -> RestartPolicy:
    mode, sep, count = text.partition(":")
    if mode not in RESTART_POLICIES or (sep and mode != "on-failure"):
        raise InvalidInput(f"--restart {text!r}: expected no, on-failure[:N] or always")
    if not sep:
        return RestartPolicy(mode)
    return RestartPolicy(mode, parse_count(count, "--restart on-failure:N", 1, MAX_RESTARTS))


def parse(health_cmd: str | None, interval: str | None, timeout: str | None, retries: str | None,
          start_period: str | None, on_unhealthy: str | None, restart: str | None,
          readiness_exec: str | None, readiness_tcp: str | None, sd_notify: bool,
          readiness_sd_notify: bool, *, tty: bool = False) -> ServiceOptions | None:
    """The service options of `nucleus run`'s flags (None when none is given)."""
    timing = (("--health-interval", interval), ("--health-timeout", timeout),
              ("--health-retries", retries), ("--health-start-period", start_period),
              ("--health-on-unhealthy", on_unhealthy))
    if health_cmd is None:
        for flag, value in timing:
            if value is not None:
                raise InvalidInput(f"{flag} {value!r}: there is no --health-cmd to apply it to")
    health = None
    if health_cmd is not None:
        health = HealthCheck(
            _command(health_cmd, "--health-cmd"),
            DEFAULT_INTERVAL if interval is None else parse_duration(interval, "--health-interval", MIN_INTERVAL),
            DEFAULT_TIMEOUT if timeout is None else parse_duration(timeout, "--health-timeout", MIN_INTERVAL),
            DEFAULT_RETRIES if retries is None else parse_count(retries, "--health-retries", 1, MAX_RETRIES),
            DEFAULT_START_PERIOD if start_period is None else parse_duration(start_period, "--health-start-period"))
    if on_unhealthy is not None and on_unhealthy not in ON_UNHEALTHY:
        raise InvalidInput(f"--health-on-unhealthy {on_unhealthy!r}: expected restart, stop or none")
    policy = RestartPolicy() if restart is None else parse_restart(restart)
    if readiness_exec is not None and readiness_tcp is not None:
        raise InvalidInput(f"--readiness-tcp {readiness_tcp!r}: --readiness-exec is given too",
                           hint="choose one way to tell when the service is ready")
    if readiness_sd_notify and (readiness_exec is not None or readiness_tcp is not None):
        raise InvalidInput("--readiness-sd-notify: the workload says it is ready itself, so "
                           "--readiness-exec and --readiness-tcp do not apply")
    readiness = Readiness(
        None if readiness_exec is None else _command(readiness_exec, "--readiness-exec"),
        None if readiness_tcp is None else parse_count(readiness_tcp, "--readiness-tcp", 1, 65535),
        readiness_sd_notify)
    if on_unhealthy is None:  # the reference stops an unhealthy service; a restart policy restarts it
        on_unhealthy = "none" if health is None else "stop" if policy.mode == "no" else "restart"
    options = ServiceOptions(health, on_unhealthy, policy, readiness, sd_notify or readiness_sd_notify)
    if not options.supervised:
        return None
    if tty:
        raise InvalidInput("-t: a service (--health-cmd, --restart, readiness, --sd-notify) runs without "
                           "a terminal", hint="leave out -t, or run the service with --detach")
    if options.on_unhealthy == "restart" and policy.mode == "no":
        raise InvalidInput("--health-on-unhealthy 'restart': --restart is no",
                           hint="add --restart always or --restart on-failure[:N]")
    return options

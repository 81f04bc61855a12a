"""A long-running service's supervisor: while the workload runs it runs the health checks and
the readiness probe, says READY=1 to systemd, and ends the workload when the Service machine
(nucleus.machines.service) says it is unhealthy; when the workload ends the machine decides
whether the container is set up again, and after which delay. With --audit-log or an OTLP
endpoint, what a step changes (ready, healthy or unhealthy, the workload ended for it, a restart
coming: nucleus.config.audit.service_notes) is an audit line of the layer ``health`` and a span.

Waiting is as `process.wait_forwarding` waits (signals taken with sigtimedwait, forwarded to the
workload when sent on purpose, every child reaped), with a deadline: the next check, probe or
escalation. A SIGTERM, SIGINT or SIGQUIT sent to the supervisor (or stop, kill and rm, which
leave a stop mark in the state directory before they signal) means no restart.

With --readiness-sd-notify the wait wakes for the workload's notifications too (a
nucleus.effects.notify.Relay): READY=1 makes the service ready, and READY=1 (once) and STATUS=
are passed on to NOTIFY_SOCKET; what else it says, or what comes from outside its PID namespace,
is dropped with a warning (once per kind).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from nucleus.app import health as checks
from nucleus.config import audit
from nucleus.config import notify as notify_rules
from nucleus.config.service import ServiceOptions
from nucleus.effects import service as host
from nucleus.effects.auditlog import AuditRecorder
from nucleus.effects.service import Check, Relay
from nucleus.effects.store import Store
from nucleus.machines import service as machine
from nucleus.machines.base import Refused
from nucleus.vocab import service as sv

PROBE_INTERVAL = 0.1  # seconds between readiness probes
TERM_GRACE = 10.0  # seconds an unhealthy workload has between SIGTERM and SIGKILL


class Supervisor:
    """The Service machine and what carries out its intents, for one container (every run of
    it: the record is the same across restarts)."""

    def __init__(self, options: ServiceOptions, store: Store, record: dict[str, Any],
                 environ: dict[str, str], relay: Relay | None = None,
                 auditor: AuditRecorder | None = None) -> None:
        self.options, self.store, self.record = options, store, record
        self.relay = relay
        self.auditor = auditor  # --audit-log and OTLP, when either is given
        self.dropped: set[str] = set()  # the kinds of notification warned about
        self.state = machine.initial(options)
        self.notify_socket = environ.get("NOTIFY_SOCKET") if options.sd_notify else None
        self.again = False  # the last run ended and the container starts again
        self.delay = 0.0
        self.check: Check | None = None
        self.probe: Check | None = None
        self.executor: Any = None
        self.kill_at: float | None = None

    # --- the machine ------------------------------------------------------------------------------
    def feed(self, event: object) -> None:
        result = machine.step(self.state, event)
        if isinstance(result, Refused):
            return
        before, self.state = self.state, result.state
        self._publish()  # the record says it before anyone is told (READY=1)
        if self.auditor is not None:
            for kind, error, detail in audit.service_notes(before, self.state, result.intents):
                self.auditor.note("health", kind, detail, error)
        for intent in result.intents:
            self._perform(intent)

    def _perform(self, intent: object) -> None:
        match intent:
            case sv.NotifyReady(status=status):
                if self.notify_socket:
                    failed = host.notify_ready(self.notify_socket, f"service {status}")
                    if failed is not None:
                        sys.stderr.write(f"warning: {failed}\n")
            case sv.Terminate(reason=reason):
                sys.stderr.write(f"nucleus: {reason}; ending the workload\n")
                if self.executor is not None:
                    self.executor.send_signal("TERM")
                self.kill_at = time.monotonic() + TERM_GRACE
            case sv.RestartAfter(delay=delay):
                self.again, self.delay = True, delay
            case sv.Finish():
                self.again = False

    def _publish(self) -> None:
        """The service's part of the record, for ps and inspect."""
        s = self.state
        self.record["service"] = {
            "phase": s.phase, "health": s.health, "failing_streak": s.streak, "restarts": s.restarts,
            "ready": s.ready, "restart_policy": self._policy_text(),
            "log": [{"time": r.finished, "exit_code": r.code, "output": r.output, "timed_out": r.timed_out}
                    for r in s.log]}
        with self.store.locked():
            if self.store.read(self.record["id"]) is not None:
                self.store.write(self.record)

    def _policy_text(self) -> str:
        policy = self.options.restart
        return policy.mode + (f":{policy.limit}" if policy.limit is not None else "")

    # --- one run ---------------------------------------------------------------------------------
    def wait(self, executor: Any, target: int, forward: Callable[[host.Taken], None] | None = None) -> int:
        """Wait for the workload `target` (the container's init), running checks meanwhile;
        its exit status. The caller has blocked process.WAITED. `forward` passes a signal on
        (to `target` without it)."""
        self.executor, self.kill_at = executor, None
        started = time.monotonic()
        self.feed(sv.Started())
        health = self.options.health
        next_check = started + health.interval if health is not None else None
        next_probe = started if self._probing() else None
        try:
            while True:
                now = time.monotonic()
                if self.store.stop_marked(self.record["id"]) and not self.state.stopping:
                    self.feed(sv.StopAsked())
                if health is not None and next_check is not None and self.check is None and now >= next_check:
                    self.check = checks.start(self.record["id"], health.command, health.timeout, now)
                    next_check = None
                if next_probe is not None and self.probe is None and now >= next_probe and self._probing():
                    self.probe = self._start_probe(target, now)
                    next_probe = None
                for running in (self.check, self.probe):
                    if running is not None and not running.timed_out and now >= running.deadline:
                        running.timed_out = True
                        host.kill_group(running.pid)
                if self.kill_at is not None and now >= self.kill_at:
                    self.kill_at = None
                    executor.send_signal("KILL")
                deadlines = [d for d in (next_check, next_probe, self.kill_at,
                                         *(c.deadline for c in (self.check, self.probe) if c and not c.timed_out))
                             if d is not None]
                timeout = max(0.0, min(deadlines) - now) if deadlines else 1.0
                if self.relay is not None:
                    for message, sender in self.relay.wait(min(timeout, 1.0)):
                        self._relayed(message, sender, target)
                    taken = host.take_signal(0)
                else:
                    taken = host.take_signal(min(timeout, 1.0))
                if taken is None:
                    continue
                if not taken.child:
                    if taken.stopping:  # ^C on a terminal too: no restart after it
                        self.feed(sv.StopAsked())
                    if forward is not None:
                        forward(taken)
                    else:
                        host.forward(target, taken)
                    continue
                for pid, status in host.reap_all((self.check, self.probe)):
                    if pid == target:
                        return status
                    now = time.monotonic()
                    if self.check is not None and pid == self.check.pid:
                        self._check_done(self.check, status, started, now)
                        self.check = None
                        next_check = now + health.interval if health is not None else None
                    elif self.probe is not None and pid == self.probe.pid:
                        if status == 0 and not self.probe.timed_out:
                            self.feed(sv.Ready())
                        self._close_probe()
                        next_probe = now + PROBE_INTERVAL if self._probing() else None
        finally:
            for running in (self.check, self.probe):
                if running is not None:
                    host.end_check(running)
            self.check = self.probe = None
            self.executor = None

    def _relayed(self, message: bytes, sender: int, target: int) -> None:
        """A notification from the workload: passed on as far as nucleus.config.notify allows."""
        if host.same_pid_namespace(sender, target) is False:
            self._drop("outside", f"a notification from pid {sender}, outside the container, was dropped")
            return
        if not message:
            self._drop("long", f"a notification longer than {notify_rules.MESSAGE_MAX} bytes was dropped")
            return
        passed, dropped = notify_rules.sort(message)
        for line in dropped:
            self._drop(line.partition("=")[0], f"the workload's sd_notify {line!r} was not passed on "
                                                "(only READY=1 and STATUS= are)")
        fields = dict(passed)
        if "READY" in fields:
            if self.state.ready:
                del fields["READY"]  # said once per service, as the supervisor says it
            self.feed(sv.Ready())
        if fields and self.notify_socket:
            failed = host.tell(self.notify_socket, fields)
            if failed is not None:
                sys.stderr.write(f"warning: {failed}\n")

    def _drop(self, kind: str, warning: str) -> None:
        if kind not in self.dropped:
            self.dropped.add(kind)
            sys.stderr.write(f"warning: {warning}\n")

    def _probing(self) -> bool:
        r = self.options.readiness
        return not self.state.ready and (r.exec is not None or r.tcp is not None)

    def _start_probe(self, target: int, now: float) -> Check:
        r = self.options.readiness
        if r.tcp is not None:
            return host.tcp_probe(target, r.tcp, now)
        assert r.exec is not None
        timeout = self.options.health.timeout if self.options.health is not None else 5.0
        return checks.start(self.record["id"], r.exec, timeout, now)

    def _close_probe(self) -> None:
        assert self.probe is not None
        host.close_output(self.probe)
        self.probe = None

    def _check_done(self, check: Check, status: int, started: float, now: float) -> None:
        output = host.output_of(check)
        if check.timed_out:
            output = f"the check ran past its timeout ({self.options.health.timeout:g}s) and was killed\n" \
                if self.options.health is not None else output
        early = self.options.health is not None and now - started < self.options.health.start_period
        self.feed(sv.CheckDone(status, early, check.timed_out, output, time.time()))

    # --- between runs ----------------------------------------------------------------------------
    def ended(self, code: int, ran_for: float) -> bool:
        """The workload ended: whether the container is set up again."""
        if self.store.stop_marked(self.record["id"]):
            self.feed(sv.StopAsked())
        self.feed(sv.Ended(code, ran_for))
        return self.again

    def backoff(self) -> bool:
        """Wait for the restart's delay; False when a stop was asked meanwhile (the service is
        over). Signals asking to stop are taken as in `wait`."""
        deadline = time.monotonic() + self.delay
        while True:
            if self.store.stop_marked(self.record["id"]):
                self.feed(sv.StopAsked())
            if self.state.phase == "finished":
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            taken = host.take_signal(min(left, PROBE_INTERVAL))
            if taken is None:
                continue
            if taken.stopping:
                self.feed(sv.StopAsked())
            elif taken.child:
                host.reap_all()

    def fresh_record(self) -> None:
        """The record as a new run starts it: what the last run ended with is gone."""
        for key in ("started_at", "finished_at", "exit_code", "reason", "init_pid", "init_start"):
            self.record.pop(key, None)


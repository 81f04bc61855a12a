"""The violation monitor's reading of audit records (nucleus.effects.audit, nucleus.effects.monitor):
the records parsed as the kernel writes them (texts seen on kernel 6.18), a Landlock denial
attributed to the container whose init made the domain and to no other, the records of one event
put together. The round trip with the kernel is in tests/kernel/test_violation_stream.py."""

from __future__ import annotations

import json
import os
import struct

from nucleus.config import violations as vi
from nucleus.effects import audit, refusals

CID = "0123456789abcdef0123456789abcdef"
ACCESS = ('audit(1796219656.416:214): domain=16d50d678 blockers=fs.write_file path="/tmp/x" dev="vda" '
          'ino=2269543')
DOMAIN = ('audit(1796219656.416:214): domain=16d50d678 status=allocated mode=enforcing pid={pid} uid=0 '
          'exe="/usr/bin/python3.11" comm="init"')
SYSCALL = ('audit(1796219656.416:214): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c '
           'a1=7f47b2503c80 items=0 ppid=1 pid=4321 auid=4294967295 uid=0 comm="sh" exe="/usr/bin/dash" key=(null)')
EOE = "audit(1796219656.416:214): "


def datagram(*messages: tuple[int, str]) -> bytes:
    out = b""
    for kind, text in messages:
        body = text.encode() + b"\0"
        length = 16 + len(body)
        out += struct.pack("=IHHII", length, kind, 0, 0, 0) + body + b"\0" * ((length + 3 & ~3) - length)
    return out


def test_records_are_parsed_as_the_kernel_writes_them():
    got = audit.parse_messages(datagram((1423, ACCESS), (1320, EOE)))
    assert [(r.type, r.serial) for r in got] == [(1423, 214), (1320, 214)]
    access = got[0]
    assert access.time == 1796219656.416
    assert access.fields == {"domain": "16d50d678", "blockers": "fs.write_file", "path": "/tmp/x", "dev": "vda",
                             "ino": "2269543"}
    # An untrusted string with a space, a quote or a control character comes in hex.
    hexed = audit.parse_record(1423, 'audit(1.5:9): domain=1 blockers=scope.abstract_unix_socket '
                                     'path=006E75636C657573 exe=2F746D702F6120622E7368')
    assert hexed is not None
    assert hexed.fields["path"] == "\0nucleus" and hexed.fields["exe"] == "/tmp/a b.sh"
    assert audit.parse_record(1423, "no header here") is None


class Collected:
    def __init__(self, tmp_path):
        self.path = tmp_path / "stream"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def records(self):
        os.close(self.fd)
        return [json.loads(line) for line in self.path.read_text().splitlines()]


def make_monitor(tmp_path, init_pid, joined=False):
    tmp_path.mkdir(exist_ok=True)
    out = Collected(tmp_path)
    ctx = vi.Context(CID, "web", landlock_rules=(("/tmp", ("read",)),), joined=joined)
    m = refusals.Monitor(ctx, {}, refusals.Sinks(None, out.fd))
    m.init_pid, m.pidns = init_pid, refusals._pidns(os.getpid())
    return m, out


def feed(m, *messages):
    m.audit(audit.parse_messages(datagram(*messages)))


def test_a_denial_in_a_domain_the_init_made_is_recorded_once(tmp_path):
    m, out = make_monitor(tmp_path, init_pid=999_999)  # no such process: only the pid matches
    feed(m, (1423, ACCESS), (1424, DOMAIN.format(pid=999_999)), (1300, SYSCALL), (1327, EOE), (1320, EOE))
    (record,) = out.records()
    assert (record["layer"], record["operation"], record["object"]) == ("landlock", "write_file", "/tmp/x")
    assert (record["pid"], record["executable"]) == (4321, "/usr/bin/dash")
    assert record["time"] == "2026-12-02T13:54:16.416Z"
    assert record["rule"] == "the default Landlock rules grant read beneath /tmp, not write"


def test_a_domain_made_in_the_container_s_pid_namespace_is_the_container_s(tmp_path):
    m, out = make_monitor(tmp_path, init_pid=999_999)
    feed(m, (1423, ACCESS), (1424, DOMAIN.format(pid=os.getpid())), (1320, EOE))
    (record,) = out.records()
    assert (record["pid"], record["executable"]) == (0, "")  # no syscall record in this event


def test_another_container_s_denials_are_not_recorded(tmp_path):
    m, out = make_monitor(tmp_path, init_pid=999_999)
    m.pidns = None  # the container's namespace is gone: only its init's pid counts
    feed(m, (1423, ACCESS), (1424, DOMAIN.format(pid=888_888)), (1320, EOE))
    # A later denial in that domain is not the container's either; one in no known domain neither.
    feed(m, (1423, ACCESS.replace(":214)", ":215)")), (1320, EOE.replace(":214)", ":215)")))
    feed(m, (1423, ACCESS.replace("16d50d678", "77").replace(":214)", ":216)")), (1320, EOE.replace(":214)", ":216)")))
    assert out.records() == []


def test_an_event_without_its_end_is_written_by_the_sweep(tmp_path, monkeypatch):
    m, out = make_monitor(tmp_path, init_pid=999_999)
    feed(m, (1424, DOMAIN.format(pid=999_999)), (1423, ACCESS))
    assert m.events  # waiting for its end
    monkeypatch.setattr(refusals, "IDLE", -1.0)  # older than a sweep's idle time at once
    m.sweep()
    assert not m.events
    assert [r["object"] for r in out.records()] == ["/tmp/x"]


def test_a_deallocated_domain_is_forgotten(tmp_path, monkeypatch):
    m, out = make_monitor(tmp_path, init_pid=999_999)
    feed(m, (1423, ACCESS), (1424, DOMAIN.format(pid=999_999)), (1320, EOE))
    assert m.domains == {"16d50d678": True}
    # Outside any syscall: no end of event follows, the sweep writes it.
    feed(m, (1424, "audit(1796219657.0:300): domain=16d50d678 status=deallocated denials=1"),)
    monkeypatch.setattr(refusals, "IDLE", -1.0)
    m.sweep()
    assert m.domains == {}
    assert len(out.records()) == 1


def namespaces(monkeypatch, ns: dict[int, str], parents: dict[int, int]):
    """A made-up process table: each pid's PID namespace and parent."""
    monkeypatch.setattr(refusals, "_pidns", ns.get)
    monkeypatch.setattr(refusals, "_status", lambda pid: {"PPid": f"\t{parents[pid]}"} if pid in parents else {})


def test_a_domain_a_joined_command_made_is_its_own_monitor_s_not_the_container_s(tmp_path, monkeypatch):
    """The command's process is in the container's PID namespace, its parent (the exec command)
    outside it: the container's monitor leaves its domain to the command's monitor, which knows
    it by pid (alive or not), marks its record and claims no other process's domain."""
    # 500: the joined command, child of the exec command (700); 600: a child of the init (400).
    namespaces(monkeypatch, {400: "container", 500: "container", 600: "container", 700: "host"},
               {500: 700, 600: 400})
    container, container_out = make_monitor(tmp_path / "c", init_pid=400)
    joined, joined_out = make_monitor(tmp_path / "j", init_pid=500, joined=True)
    for m in (container, joined):
        m.pidns = "container"
        feed(m, (1423, ACCESS), (1424, DOMAIN.format(pid=500)), (1320, EOE))
        feed(m, (1423, ACCESS.replace("16d50d678", "77").replace(":214)", ":215)")),
                 (1424, DOMAIN.replace("16d50d678", "77").replace(":214)", ":215)").format(pid=600)),
                 (1320, EOE.replace(":214)", ":215)")))
    assert [(r["object"], r.get("joined")) for r in joined_out.records()] == [("/tmp/x", True)]
    assert container.domains == {"16d50d678": False, "77": True}  # 600 is the workload's
    assert [r.get("joined") for r in container_out.records()] == [None]

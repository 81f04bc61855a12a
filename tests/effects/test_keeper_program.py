"""The keeper (nucleus/init/keeper.c) on its own, with a shell standing in for the supervisor that
executes it (so the "init" is its child) and shell commands for the monitor and the teardown: it
passes the init's status to the teardown, forwards the signals sent to it, starts the monitor
when a watched descriptor is readable (once per burst, again after the monitor has ended), backs
off watching the audit reader while its monitors find nothing of the container's, closes
them when a monitor fails, and refuses a command line it does not understand. Its second form
waits for a descriptor to be readable, then executes the command.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

from nucleus.effects.monitor import NOTHING_OURS
from nucleus.effects.process import KEEPER
from tests.helpers import wait_for

pytestmark = pytest.mark.requires("keeper")

# The teardown: prints the status the keeper appends.
TEARDOWN = ["--", "/bin/sh", "-c", 'echo "status $1"', "teardown"]


def kept(init: str, fds: str = "-", monitor: tuple[str, ...] = ("/bin/false",), **kw) -> subprocess.Popen:
    """A shell (bash: descriptors above 9 are named) that starts `init` in the background and
    becomes the keeper of it."""
    script = f'{init} & exec {KEEPER} $! {fds} -- "$@"'
    return subprocess.Popen(["/bin/bash", "-c", script, "bash", *monitor, *TEARDOWN],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# An init that goes on once its parent is the keeper (bash reaps a child that ends before its exec).
KEPT = f'until [ "$(readlink /proc/$PPID/exe)" = {KEEPER} ]; do sleep 0.01; done; '


@pytest.mark.parametrize(("init", "status"), [("exit 3", 3), ("kill -KILL $$", 137), ("true", 0)])
def test_the_teardown_gets_the_init_s_status(init, status):
    proc = kept(f"sh -c '{KEPT}{init}'")
    out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (0, f"status {status}\n", "")


def test_signals_sent_to_it_reach_the_init():
    proc = kept("""sh -c 'trap "exit 7" TERM; echo up; while :; do sleep 0.05; done'""")
    assert proc.stdout.readline() == "up\n"
    assert wait_for(lambda: os.readlink(f"/proc/{proc.pid}/exe") == KEEPER)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert (out, err) == ("status 7\n", "")


def test_a_readable_descriptor_starts_the_monitor_again_after_each_burst(tmp_path):
    r, w = os.pipe()
    log = tmp_path / "monitor.log"
    log.write_text("")
    # The monitor reads one line from the watched pipe and ends; the init ends on its third line.
    monitor = ("/bin/bash", "-c", f'read line <&{r}; echo "$line" >> {log}')
    proc = kept(f"sh -c 'while [ $(wc -l < {log}) -lt 2 ]; do sleep 0.05; done'",
                fds=str(r), monitor=monitor, pass_fds=(r,))
    os.close(r)
    try:
        os.write(w, b"first\n")
        assert wait_for(lambda: log.exists() and log.read_text() == "first\n")
        os.write(w, b"second\n")
        out, err = proc.communicate(timeout=10)
    finally:
        os.close(w)
    assert (out, err, log.read_text()) == ("status 0\n", "", "first\nsecond\n")


def test_the_audit_reader_is_watched_less_while_monitors_find_nothing_of_the_container_s(tmp_path):
    # A socket stands in for the audit reader, a pipe for the listener. Each monitor leaves the
    # socket's record unread and says it found nothing of its container's, unless a call waits.
    host, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    host.send(b"a record of another container's")
    r, w = os.pipe()
    log = tmp_path / "monitor.log"
    log.write_text("")
    monitor = ("/bin/bash", "-c", f'echo start >> {log}; read -t 0 <&{r} || exit {NOTHING_OURS}; '
               f'read line <&{r}; echo "$line" >> {log}')
    proc = kept(f"sh -c 'until grep -q call {log}; do sleep 0.05; done'", fds=f"{reader.fileno()},{r}",
                monitor=monitor, pass_fds=(reader.fileno(), r))
    reader.close()
    os.close(r)
    try:
        assert wait_for(lambda: log.read_text().startswith("start\n"))
        os.write(w, b"call\n")  # the listener is watched meanwhile: its monitor starts
        out, err = proc.communicate(timeout=10)
    finally:
        os.close(w)
        host.close()
    lines = log.read_text().splitlines()
    assert (out, err, lines[-2:]) == ("status 0\n", "", ["start", "call"])
    # Watched without a pause, the unread record would start a monitor after each one ended.
    assert lines.count("start") <= 3


def test_a_failing_monitor_closes_what_it_watched():
    r, w = os.pipe()
    # The init ends once the keeper has closed the pipe's reading end (a write then fails).
    proc = kept(f"sleep 30 {r}<&-", fds=str(r), pass_fds=(r,))
    os.close(r)
    try:
        os.write(w, b"x")
        with pytest.raises(BrokenPipeError):
            wait_for(lambda: os.write(w, b"x") and False, timeout=10)
    finally:
        os.close(w)
        os.kill(proc.pid, signal.SIGTERM)  # forwarded: the init (sleep) ends
    out, err = proc.communicate(timeout=10)
    assert out == "status 143\n"
    assert err == "nucleus: keeper: the violation monitor failed; refusals are no longer recorded\n"


def test_a_monitor_still_running_once_the_init_has_ended_is_killed_and_the_teardown_runs():
    r, w = os.pipe()
    os.write(w, b"x")  # readable from the start: the monitor starts at once, and never ends by itself
    proc = kept(f"sh -c '{KEPT}sleep 0.2'", fds=str(r), monitor=("/bin/sleep", "600"), pass_fds=(r,))
    os.close(r)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(w)
    assert (out, err) == ("status 0\n", "")


def test_a_descriptor_it_was_not_given_is_refused_and_the_init_killed():
    script = f'sleep 600 & echo $!; exec {KEEPER} $! 3,250 -- /bin/false -- /bin/true'
    proc = subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stderr) == (125, "nucleus: keeper: a descriptor to watch: Bad file descriptor\n")
    init = int(proc.stdout)
    assert wait_for(lambda: not os.path.exists(f"/proc/{init}") or read_state(init) == "Z", timeout=10)


def read_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"


@pytest.mark.parametrize("argv", [[], ["x", "-", "--", "a", "--", "b"], ["1", "3,x", "--", "a", "--", "b"],
                                  ["1", "-", "-", "a", "--", "b"], ["1", "-", "--", "a"]])
def test_a_command_line_it_does_not_understand_is_refused(argv):
    result = subprocess.run([KEEPER, *argv], capture_output=True, text=True, timeout=10)
    assert (result.returncode, result.stdout) == (125, "")
    assert result.stderr.startswith("usage: keeper ")


def test_when_readable_executes_the_command_once_its_descriptor_is(tmp_path):
    r, w = os.pipe()
    proc = subprocess.Popen([KEEPER, "--when-readable", str(r), "--", "/bin/bash", "-c", f"cat <&{r}"],
                            stdout=subprocess.PIPE, text=True, pass_fds=(r,))
    os.close(r)
    assert wait_for(lambda: os.readlink(f"/proc/{proc.pid}/exe") == KEEPER)
    os.write(w, b"more\n")
    os.close(w)
    assert proc.communicate(timeout=10) == ("more\n", None)

"""Re-record traces/recorded/: real runs of nucleus, each recording its own trace.

    python -m tools.record [--out traces/recorded]      (as root; `make record`)

A recorded trace keeps the inputs of its plan and, for every step, the event as it was fed and
the intents it issued. `nucleus trace replay` plans the run again from those inputs and compares
every intent, so these traces catch a change in what the plan writes (a cgroup value, a mount
flag, a capability kept). Re-record them when such a change is intended.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUCLEUS = [sys.executable, "-m", "nucleus"]


def nucleus(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*NUCLEUS, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=ROOT, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"nucleus {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def record(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="nucleus-record-") as state:
        env = {"NUCLEUS_STATE_DIR": state}
        # A run with limits: the cgroup files and values it writes.
        limits = out / "run-limits.itf.json"
        nucleus("run", "--memory", "64M", "--swap", "0", "--pids", "20", "--cpus", "0.5",
                "--trace", str(limits), "--", "true", env=env)
        written.append(limits)
        # A setup failure: the seccomp filter cannot be loaded, and what the machine cleans up.
        failure = out / "run-seccomp-failure.itf.json"
        nucleus("run", "--trace", str(failure), "--", "true",
                env={**env, "NUCLEUS_FAIL_AT": "LoadSeccomp"}, check=False)
        written.append(failure)
        # Seccomp trace mode: a filter that refuses nothing, so the security level is "traced".
        traced = out / "run-seccomp-trace.itf.json"
        nucleus("run", "--seccomp-mode", "trace", "--seccomp-log", str(Path(state) / "trace.ndjson"),
                "--trace", str(traced), "--", "true", env=env)
        written.append(traced)
        # A bridged run, with a published port, a resolver and one more bridge (--attach): the
        # network's steps and rules. In a network namespace of its own, which takes whatever it
        # made with it.
        bridged = out / "run-bridge.itf.json"
        done = subprocess.run(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *NUCLEUS,
                               "run", "--network", "bridge", "-p", "8080:80", "--dns", "192.0.2.53",
                               "--attach", "backend=10.89.0.0/16", "--trace",
                               str(bridged), "--", "true"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env}, cwd=ROOT, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the bridged run failed ({done.returncode}):\n{done.stderr}")
        written.append(bridged)
        # A join: attach to a detached container with a caps policy.
        caps = Path(state) / "chown.caps.toml"
        caps.write_text('[bounding]\nkeep = ["CHOWN"]\n')
        joined = out / "attach.itf.json"
        nucleus("run", "-d", "--name", "recorded", "--caps-policy", str(caps), "--",
                "/bin/sh", "-c", "while :; do sleep 1; done", env=env)
        try:
            time.sleep(0.5)
            nucleus("attach", "--trace", str(joined), "recorded", "--", "true", env=env)
            written.append(joined)
            # exec as another user, elsewhere, with a terminal: the switch the caps step makes.
            executed = out / "exec.itf.json"
            nucleus("exec", "--trace", str(executed), "-t", "-u", "nobody", "-w", "/tmp", "-e", "MODE=exec",
                    "recorded", "--", "true", env=env)
            written.append(executed)
        finally:
            nucleus("rm", "--force", "recorded", env=env)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.record", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "traces" / "recorded"))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("tools.record: run as root (the runs use cgroups and a privileged id map)", file=sys.stderr)
        return 2
    for path in record(Path(args.out)):
        replayed = nucleus("trace", "replay", str(path), check=False)
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
              f"{'replays' if replayed.returncode == 0 else 'DIVERGED: ' + replayed.stderr.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

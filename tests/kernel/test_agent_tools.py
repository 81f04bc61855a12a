"""What agents run, in the default agent mode with no extra flag: pip, node and npm, a loopback
HTTP server fetched with Python's urllib and with curl, git. Each runs to its end with status 0
(the seccomp profile refuses with an error, never with SIGSYS, and allows what these need), and
nucleus says nothing of a blocked call.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, describe, run_nucleus

pytestmark = SANDBOX_WITH_PYTHON


def run_ok(*argv: str, timeout: float = 60):
    result = run_nucleus(["run", "--", *argv], timeout=timeout)
    assert result.returncode == 0, describe(result)
    assert "blocked:" not in result.stderr, describe(result)
    return result


def test_pip_runs():
    result = run_ok("python3", "-m", "pip", "--version")
    assert result.stdout.startswith("pip "), describe(result)


@pytest.mark.requires("bin:node", "bin:npm")
def test_node_and_npm_run():
    assert run_ok("node", "-e", "console.log(1)").stdout == "1\n"
    assert run_ok("npm", "--version").stdout.strip()[:1].isdigit()


SERVE_AND_FETCH = textwrap.dedent("""\
    set -e
    cd /tmp && echo hello > index.txt
    python3 -m http.server --bind 127.0.0.1 8000 >/dev/null 2>&1 &
    server=$!
    for i in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:8000/index.txt && break; sleep 0.05; done
    python3 -c 'import urllib.request; print("urllib", urllib.request.urlopen("http://127.0.0.1:8000/index.txt").read().decode().strip())'
    echo "curl $(curl -sf http://127.0.0.1:8000/index.txt)"
    kill $server
""")


@pytest.mark.requires("bin:curl")
def test_a_loopback_http_server_is_fetched_with_urllib_and_curl():
    assert run_ok("sh", "-c", SERVE_AND_FETCH).stdout == "urllib hello\ncurl hello\n"


@pytest.mark.requires("bin:git")
def test_git_init_commit_log():
    script = ("set -e; cd /tmp && git init -q repo && cd repo && echo x > f && git add f && "
              "git -c user.name=agent -c user.email=agent@example.com commit -q -m first && "
              "git log --format=%s")
    assert run_ok("sh", "-c", script).stdout == "first\n"

"""The work an agent does, in one sandbox of the default agent mode with no flag but the ones
that bring results out: a venv made in /context takes a local package and pytest from a
read-only directory of wheels (`pip install --no-index --find-links`) and runs the project's
tests; node runs an npm script with a local dependency; git commits in /context; gcc compiles a
program that runs from /context; a loopback HTTP server answers curl and Python's urllib; awk,
sed and find do their part. Each step succeeds with no SIGSYS and no word of a refusal; what the
agent wrote comes back through a `-v` directory and `--changes`. Then a terminal (`-t`) and
another user (`-u 1000`)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe
from tests.kernel.outputs_support import host_dir, scope_fixture  # noqa: F401 - the scope fixture
from tests.kernel.wheels_support import wheel_from_source, wheels_with_requirements

pytestmark = [SANDBOX_WITH_PYTHON, pytest.mark.requires("bin:node", "bin:npm", "bin:git", "bin:curl", "bin:cc")]

GREET = {"greet/__init__.py": 'def hello(name):\n    return f"hello, {name}"\n'}

AGENT = textwrap.dedent("""\
    set -e
    cd /context
    python3 -m venv .venv
    .venv/bin/pip install -q --no-index --find-links /wheels greet pytest
    .venv/bin/python -m pytest -q -p no:cacheprovider tests | tail -n 1 | sed 's/ in .*//'
    npm install --offline --no-audit --no-fund --loglevel=error >/dev/null
    npm run -s hello
    git init -q -b main .
    git add -A && git -c user.name=agent -c user.email=agent@example.com commit -q -m 'first commit'
    git log --format='git: %s'
    cc -o hello hello.c && ./hello
    mkdir -p /tmp/site && echo served > /tmp/site/index.txt
    python3 -m http.server --bind 127.0.0.1 --directory /tmp/site 8000 >/dev/null 2>&1 &
    server=$!
    for i in $(seq 200); do curl -sf -o /dev/null http://127.0.0.1:8000/index.txt && break; sleep 0.05; done
    echo "curl: $(curl -sf http://127.0.0.1:8000/index.txt)"
    python3 -c 'import urllib.request as u; print("urllib:", u.urlopen("http://127.0.0.1:8000/index.txt").read().decode().strip())'
    kill $server
    echo 'alpha 1' | awk '{print "awk:", $2}'
    echo 'sed: before' | sed 's/before/after/'
    echo "find: $(find . -name hello.c)"
    echo 'fixed the greeting' >> NOTES.md
    .venv/bin/python -m pytest -q -p no:cacheprovider tests > /out/report.txt
    """)


@pytest.fixture
def workspace():
    with host_dir("nucleus-test-agent-") as top:
        project = top / "project"
        (project / "tests").mkdir(parents=True)
        (project / "tests" / "test_greet.py").write_text(
            "from greet import hello\n\n\ndef test_hello():\n    assert hello('agent') == 'hello, agent'\n")
        (project / "NOTES.md").write_text("# notes\n")
        (project / ".gitignore").write_text(".venv/\nnode_modules/\nhello\n")
        (project / "hello.c").write_text('#include <stdio.h>\nint main(void) { puts("compiled: ran"); return 0; }\n')
        (project / "package.json").write_text(json.dumps({
            "name": "app", "version": "1.0.0", "private": True,
            "scripts": {"hello": "node -e \"console.log('npm: ' + require('lib').word)\""},
            "dependencies": {"lib": "file:./lib"}}))
        (project / "lib").mkdir()
        (project / "lib" / "package.json").write_text(json.dumps({"name": "lib", "version": "1.0.0", "main": "index.js"}))
        (project / "lib" / "index.js").write_text("module.exports = { word: 'from a local package' };\n")
        wheels = top / "wheels"
        wheels.mkdir()
        wheels_with_requirements(["pytest"], wheels)
        wheel_from_source("greet", "1.0", GREET, wheels)
        (top / "out").mkdir()
        yield top


def test_an_agents_work_runs_and_its_results_come_back(scope: Scope, workspace: Path):
    result = scope.nucleus(*scope.run_args(
        "--context", str(workspace / "project"), "--changes", str(workspace / "review"),
        "-v", f"{workspace / 'wheels'}:/wheels:ro", "-v", f"{workspace / 'out'}:/out"),
        "--", *scope.sh(AGENT), timeout=600)
    assert result.returncode == 0, describe(result)
    assert result.stdout.splitlines() == [
        "1 passed", "npm: from a local package", "git: first commit", "compiled: ran",
        "curl: served", "urllib: served", "awk: 1", "sed: after", "find: ./hello.c"], describe(result)
    assert "blocked:" not in result.stderr and "SIGSYS" not in result.stderr, describe(result)
    # Out through the volume, as the caller's file:
    report = workspace / "out" / "report.txt"
    assert "1 passed" in report.read_text() and report.stat().st_uid == 0
    # Out through --changes: the agent's edit, reviewable, with what it built.
    manifest = json.loads((workspace / "review" / "manifest.json").read_text())
    changes = {c["path"]: c["change"] for c in manifest["changes"]}
    assert changes["NOTES.md"] == "modified" and changes["hello"] == "added", sorted(changes)[:20]
    assert any(path.startswith(".venv/") for path in changes) and any(path.startswith(".git/") for path in changes)
    patch = (workspace / "review" / "changes.patch").read_text()
    assert "diff --git a/NOTES.md b/NOTES.md" in patch and "+fixed the greeting\n" in patch
    assert (workspace / "project" / "NOTES.md").read_text() == "# notes\n"  # the user's tree untouched
    scope.assert_clean()


def test_a_terminal_and_another_user(scope: Scope):
    tty = scope.nucleus(*scope.run_args("-t"), "--", "tty")
    assert (tty.returncode, tty.stdout) == (0, "/dev/pts/0\n"), describe(tty)  # CR LF, read as text
    user = scope.nucleus(*scope.run_args("-u", "1000"), "--", "sh", "-c", 'id -u; id -g; touch "$HOME/x" && echo home')
    assert (user.returncode, user.stdout) == (0, "1000\n1000\nhome\n"), describe(user)
    scope.assert_clean()


"""The README's commands, run as written, so the README cannot go stale.

Blocks marked `<!-- readme-test: NAME -->` are the quick start: `run` is started as is
(from the repository root, on a temporary SQLite file and a free port), the commands it
prints and the `demo` block are then run against it, and `test` must be what CI runs.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from modelbus.broker import free_port
from modelbus.cli import main
from modelbus.cli.reference import readme_section, reference

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def block(name: str) -> list[str]:
    """The shell commands of the block marked `name`, continuation lines joined."""
    match = re.search(rf"<!-- readme-test: {name} -->\s*```sh\n(.*?)```", README, re.S)
    assert match, f"README has no block marked readme-test: {name}"
    return [c.strip() for c in match.group(1).replace("\\\n", " ").splitlines() if c.strip()]


def test_ci_runs_exactly_the_readme_test_command():
    (command,) = block("test")
    assert command == "make test"
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == f"exec {command}"


def run_shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def test_make_run_serves_the_demo_and_its_printed_commands_work(tmp_path):
    (command,) = block("run")
    assert command == "make run"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    env.update(MODELBUS_DATABASE_URL=f"sqlite:///{tmp_path / 'readme.db'}", PYTHONUNBUFFERED="1")
    # The port override the README documents for `make run`.
    proc = subprocess.Popen([*shlex.split(command), f"PORT={port}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    printed: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                assert proc.poll() is None, "make run exited:\n" + "".join(printed)
                continue
            printed.append(line)
            if line.strip() == "try:":
                break
        else:
            pytest.fail("make run printed no examples:\n" + "".join(printed))
        for _ in range(7):
            printed.append(proc.stdout.readline())
        shown = "".join(printed)
        assert "demo: build_mlp -> version 1" in shown and "demo: build_linear -> version 1" in shown
        assert re.search(r"demo: 200 mlp predictions answered over HTTP \(\d+ right\), 200 feedback events sent", shown)
        examples = [line.strip() for line in printed[printed.index("try:\n") + 1 :] if line.startswith("  ")]
        assert len(examples) == 7

        # The dashboard is where `make run` says it is, and `modelbus open` finds it there.
        dashboard = re.search(r"^dashboard: (http://localhost:\d+/)", shown, re.M)
        assert dashboard, shown
        page = run_shell(f"curl -s -i {dashboard.group(1)}", env)
        assert page.stdout.startswith("HTTP/1.1 200") and "Content-Security-Policy" in page.stdout, page.stdout[:500]
        how = re.search(r"\(or: (.* open --port \d+)\)", shown).group(1)
        opened = run_shell(f"{how} --no-browser", env)
        assert opened.returncode == 0 and opened.stdout.strip() == f"http://127.0.0.1:{port}/", opened.stdout + opened.stderr

        # What `make run` printed works as printed.
        for example in examples:
            done = run_shell(example, env)
            assert done.returncode == 0, f"{example}\n{done.stdout}\n{done.stderr}"
            if example.startswith("curl"):
                answer = json.loads(done.stdout)
                assert "result" in answer and answer["version"] == 1, done.stdout

        # The README's demo block works too (it names the default port).
        for example in block("demo"):
            done = run_shell(example.replace("localhost:8080", f"localhost:{port}"), env)
            assert done.returncode == 0, f"{example}\n{done.stdout}\n{done.stderr}"
            if example.startswith("curl"):
                assert "result" in json.loads(done.stdout)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_cli_reference_is_the_commands_own_help():
    assert readme_section(ROOT / "README.md") == reference(main), (
        "README's CLI reference is stale: run scripts/update-cli-reference.py"
    )

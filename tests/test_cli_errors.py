"""What an operator gets wrong, as real processes meet it: one line naming the problem, never a traceback."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from modelbus.db import positions
from modelbus.db.engine import make_engine
from modelbus.db.events import EventStore
from modelbus.broker import free_port
from modelbus.cli import main

MODELBUS = str(Path(sys.executable).with_name("modelbus"))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A clean environment pointing the CLI at a fresh SQLite file."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    base["MODELBUS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    return base


def run(env, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([MODELBUS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


def run_all(env, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Run the commands side by side (each is a short-lived process that fails at start)."""
    procs = [subprocess.Popen([MODELBUS, *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in commands]
    done = []
    for args, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def one_line_error(done: subprocess.CompletedProcess, *fragments: str, usage: bool = False) -> str:
    """The single stderr line of a failed command (after click's usage lines if `usage`), checked for the fragments."""
    assert done.returncode != 0, (done.args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, (done.args, done.stderr)
    lines = done.stderr.strip().splitlines()
    if usage:
        assert lines[0].startswith("Usage: ") and lines[1].startswith("Try ") and not lines[2], lines
        lines = lines[3:]
    assert len(lines) == 1, (done.args, done.stderr)
    for fragment in fragments:
        assert fragment in lines[0], (done.args, lines[0])
    return lines[0]


def stored(env) -> EventStore:
    return EventStore(make_engine(env["MODELBUS_DATABASE_URL"]))


# -- send: files, stdin, CSV headers ----------------------------------------------------------


def test_send_names_a_file_it_cannot_read(env, tmp_path):
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"type":"training","payload":"3,4,5,6","id":"caf\xe9"}\n')
    runs = run_all(env, [["send", "-f", "nope.json"], ["send", "--csv", "nope.csv"], ["send", "-f", str(tmp_path)],
                         ["send", "-f", str(latin1)]])
    one_line_error(runs[0], "cannot read nope.json: No such file or directory")
    one_line_error(runs[1], "cannot read nope.csv: No such file or directory")
    one_line_error(runs[2], f"cannot read {tmp_path}: Is a directory")
    one_line_error(runs[3], f"{latin1} is not UTF-8 text")


def test_send_dash_reads_stdin(env):
    lines = '{"type":"training","payload":"1,2,3,4"}\n{"type":"command","payload":"build_slr"}\n'
    done = run(env, "send", "-", stdin=lines)
    assert done.returncode == 0, done.stderr
    assert "2 events: 2 accepted" in done.stdout
    assert [r.name for r in stored(env).read()] == ["training", "build_slr"]
    one_line_error(run(env, "send", "-", '{"type":"command","payload":"build_slr"}'), "'-' reads the events from stdin", usage=True)


def test_a_number_the_store_cannot_hold_is_rejected_and_dead_lettered(env):
    huge = '{"type":"training","payload":[1,2,' + "1" * 400 + ',4]}'
    promote = '{"type":"command","payload":"promote","model":"linear","version":2147483648}'
    done = run(env, "send", huge, promote, '{"type":"training","payload":"3,4,5,6"}')
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "event 1: rejected: payload value 3 is 111111111111...1111 (400 characters), outside the signed 64-bit" in done.stderr
    assert "event 2: rejected: field 'version' must be at most 2147483647, got 2147483648" in done.stderr
    assert "3 events: 1 accepted, 2 rejected" in done.stdout
    store = stored(env)
    assert [(d["code"], d["raw"]) for d in store.dead_letters()] == [("out_of_range", huge.encode()),
                                                                      ("out_of_range", promote.encode())]
    assert store.count() == 1


def test_a_csv_header_is_skipped_only_when_no_value_is_numeric(env, tmp_path):
    header = tmp_path / "header.csv"
    header.write_text("craig,len,bruno,darcey\n3,4,5,6\n7,8,9,10\n")
    done = run(env, "send", "--csv", str(header), "--dataset", "h")
    assert done.returncode == 0, done.stderr
    assert "2 events: 2 accepted" in done.stdout
    assert "row 1 has no numeric value, skipped as the header: craig,len,bruno,darcey" in done.stderr

    # A first row with a number in it is data: sent, and rejected with its reason if bad.
    for name, first, code in [("mixed", "3,x,5,6", "not_numeric"), ("nan", "NaN,4,5,6", "not_finite"),
                              ("huge", "1," + "9" * 30 + ",5,6", "out_of_range"), ("numbers", "3,4,5,6", None)]:
        path = tmp_path / f"{name}.csv"
        path.write_text(f"{first}\n1,2,3,4\n")
        done = run(env, "send", "--csv", str(path), "--dataset", name, "--json")
        outcomes = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(outcomes) == 2 and outcomes[1]["status"] == "accepted", done.stdout
        assert "header" not in done.stderr
        if code is None:
            assert done.returncode == 0 and outcomes[0]["status"] == "accepted"
        else:
            assert done.returncode == 1 and outcomes[0]["error"]["code"] == code
    letters = stored(env).dead_letters()
    assert [(d["source"], d["code"]) for d in letters] == [("cli", "not_numeric"), ("cli", "not_finite"),
                                                            ("cli", "out_of_range")]
    assert letters[0]["raw"] == b'{"dataset":"mixed","payload":"3,x,5,6","type":"training"}'


def test_a_json_array_file_goes_through_the_strict_parser(env, tmp_path):
    cases = {
        "nan.json": ('[{"type":"training","payload":[1,2,3,4]},{"type":"training","payload":[1,NaN,3,4]}]',
                     "not_finite: NaN is not a finite number"),
        "huge.json": ('[{"type":"training","payload":[1,2,3,4]},{"type":"training","payload":[1,' + "9" * 5000 + ",3,4]}]",
                      "out_of_range: field '[1].payload[1]' is 999999999999...9999 (5000 characters)"),
        "twice.json": ('[{"type":"training","payload":"1,2,3,4","payload":"5,6,7,8"}]', "bad_field: field 'payload' appears twice"),
    }
    for name, (text, _) in cases.items():
        (tmp_path / name).write_text(text)
    runs = run_all(env, [["send", "-f", str(tmp_path / name)] for name in cases])
    for done, (name, (_, message)) in zip(runs, cases.items()):
        one_line_error(done, f"{tmp_path / name}: nothing sent: {message}")
    assert not (tmp_path / "cli.db").exists()  # refused before the database was opened


# -- numbers on the command line --------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["events", "--after", "9" * 30],
        ["events", "--after", "-1"],
        ["events", "--limit", "0"],
        ["events", "--limit", "9" * 5000],
        ["events", "--last", "9223372036854775808"],
        ["errors", "--after", "9223372036854775808"],
        ["errors", "--limit", "9" * 30],
        ["lineage", "mlp", "2147483648"],
        ["lineage", "mlp", "1", "--limit", "9" * 30],
        ["verify", "mlp", "9" * 30],
        ["demo", "csv", "--rows", "9" * 30],
        ["demo", "csv", "--seed", "9" * 30],
        ["demo", "load", "--seed", "-1"],
        ["scheduler", "--check", "--next", "9" * 30],
        ["api", "--port", "65536"],
        ["api", "--threads", "0"],
        ["up", "--port", "-1"],
        ["broker", "--port", "9" * 30],
        ["broker", "--partitions", "0"],
        ["topics", "create", "--partitions", "9" * 30],
        ["replay", "--wait", "-1"],
        ["replay", "--wait", "nan"],
        ["build", "mlp", "--params", '{"epochs":' + "9" * 30 + "}"],
        ["build", "mlp", "--params", '{"lr":NaN}'],
    ],
    ids=lambda args: " ".join(a if len(a) < 12 else a[:8] + "..." for a in args),
)
def test_a_number_out_of_range_is_a_usage_error(tmp_path, args):
    # Usage errors come before any command runs, so click's runner in this process sees them all.
    result = CliRunner().invoke(main, args, env={"MODELBUS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.db").exists()


# -- the database -----------------------------------------------------------------------------


# Every way a command opens the database: cli._app (with and without migrations), the
# model commands' own _app, the long-running processes and the status report.
DB_COMMANDS = [
    ["events"], ["send", '{"type":"training","payload":"3,4,5,6"}'], ["db", "current"], ["models"], ["verify", "mlp", "1"],
    ["replay"], ["status"], ["worker"], ["api"], ["up"],
]


def test_an_unknown_mysql_database_is_named_with_how_to_create_it(env, mysql_url):
    name = f"modelbus_missing_{uuid.uuid4().hex[:8]}"
    url = make_url(mysql_url).set(database=name).render_as_string(hide_password=False)
    server = make_url(mysql_url)
    for done in run_all(dict(env, MODELBUS_DATABASE_URL=url), DB_COMMANDS):
        one_line_error(done, f"database '{name}' does not exist on the MySQL server at {server.host}:{server.port or 3306}",
                       f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")


def test_an_unreachable_database_server_is_named(env):
    port = free_port()
    url = f"mysql+pymysql://modelbus:secret@127.0.0.1:{port}/modelbus"
    for done in run_all(dict(env, MODELBUS_DATABASE_URL=url), DB_COMMANDS[::2]):
        line = one_line_error(done, f"cannot reach the MySQL server at 127.0.0.1:{port}", "Connection refused")
        assert "secret" not in line
    missing_dir = dict(env, MODELBUS_DATABASE_URL="sqlite:////nonexistent-dir/modelbus.db")
    one_line_error(run(missing_dir, "events"), "cannot open the SQLite database '/nonexistent-dir/modelbus.db'")


# -- ports ------------------------------------------------------------------------------------


def test_a_busy_port_is_named_with_the_setting_that_changes_it(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runs = run_all(env, [["api", "--port", str(port)], ["up", "--port", str(port), "--no-scheduler"],
                             ["broker", "--port", str(port)]])
        from_setting = run(dict(env, MODELBUS_API_PORT=str(port)), "api")
    busy = f"cannot listen on 127.0.0.1:{port}: the port is in use by another process; choose another with --port"
    for done in (*runs[:2], from_setting):
        one_line_error(done, busy + " or MODELBUS_API_PORT")
    one_line_error(runs[2], busy, "MODELBUS_KAFKA_BOOTSTRAP")


def test_make_run_takes_a_port_override():
    # Under `make test` the outer make's flags and overrides would reach this one.
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}

    def command(*args: str, **extra: str) -> str:
        shown = subprocess.run(["make", "-n", "run", *args], cwd=ROOT, env=dict(env, **extra), capture_output=True,
                               text=True)
        (line,) = [line for line in shown.stdout.splitlines() if "modelbus up" in line]
        return line.rstrip()

    assert command("PORT=8081").endswith("modelbus up --demo --port 8081")
    # Only a PORT given to make counts: one in the environment is often some other program's.
    assert command(PORT="3000").endswith("modelbus up --demo")
    assert command("PORT=").endswith("modelbus up --demo")


# -- replay -----------------------------------------------------------------------------------


def test_replay_while_a_worker_runs_says_so_at_once_naming_it(env):
    assert run(env, "send", '{"type":"training","payload":"3,4,5,6"}').returncode == 0
    worker = subprocess.Popen([MODELBUS, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        engine = make_engine(env["MODELBUS_DATABASE_URL"])
        deadline = time.monotonic() + 30
        while not all(s.owner for s in positions.states(engine)) or len(positions.states(engine)) < 2:
            assert time.monotonic() < deadline and worker.poll() is None, "the worker never took its leases"
            time.sleep(0.1)
        started = time.monotonic()
        done = run(env, "replay")
        # It used to wait 60 s for the lease before saying anything.
        assert time.monotonic() - started < 20
        one_line_error(done, "is running in another process (lease owner ", f":{worker.pid}:",
                       "stop `modelbus worker` / `modelbus up` there first, or wait for it with --wait SECONDS")
        # With --wait, replay takes over once the worker stops (it releases its leases on SIGTERM).
        waiting = subprocess.Popen([MODELBUS, "replay", "--wait", "30"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert waiting.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, err
        assert "training_records: replayed 1 events" in out
    finally:
        if worker.poll() is None:
            worker.kill()

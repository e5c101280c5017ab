"""The example messages, the seed schedule example and scripts/create-topics.sh."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from click.testing import CliRunner

from modelbus.commands.kafka import KafkaConfig
from modelbus.commands.kafka import admin
from modelbus.messages.types import Command, Feedback, Raw, Training
from modelbus.messages.parse import check_record, parse_event, parse_request
from modelbus.cli import main
from modelbus.cron.schedule import plan
from modelbus.settings import Settings, Topics, load_settings
from tests.conftest import ROOT

MESSAGES = ROOT / "messages"
# The typed examples belong to messages/penguins.toml's dataset (test_the_typed_examples_fit_penguins_toml).
EXAMPLES = sorted(p for p in MESSAGES.glob("*.json") if not p.name.startswith("typed_"))


def test_the_seed_message_files_are_there():
    names = {p.name for p in EXAMPLES}
    # The seed's three files plus one example of every other message shape.
    assert {"build_mlp.json", "build_dtr.json", "build_slr.json", "build_linear.json", "training.json",
            "predict.json"} <= names
    assert json.loads((MESSAGES / "build_mlp.json").read_text()) == {"type": "command", "payload": "build_mlp"}
    assert json.loads((MESSAGES / "training.json").read_text()) == {"type": "training", "payload": "3,4,5,6"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_message_parses(path):
    raw = path.read_bytes()
    if path.name.startswith("predict"):
        request = parse_request(raw)
        assert request.model == "mlp" and request.features == (3.0, 4.0, 5.0)
        return
    event = parse_event(raw)
    if path.name.startswith("raw"):
        assert isinstance(event, Raw) and event.ts_ms == 1795428003000 and event.fields
        return
    if isinstance(event, Feedback):
        assert (event.prediction_id, event.label) == ("r1", 7)
        return
    assert isinstance(event, (Training, Command))
    if isinstance(event, Training):
        assert event.features == (3.0, 4.0, 5.0) and event.label == 6.0
    elif event.kind is not None:
        assert path.stem.startswith(event.name)
    else:
        assert event.name == "promote" and event.model == "mlp" and event.version == 1


def test_the_typed_examples_fit_penguins_toml(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELBUS_CONFIG", str(MESSAGES / "penguins.toml"))
    schema = load_settings().input_schemas["penguins"]
    event = parse_event((MESSAGES / "typed_training.json").read_bytes())
    check_record(event, None, schema)
    assert event.features == ("Biscoe", 39.1, 18.7, 181.0, 3750.0, "male") and event.label == "Adelie"
    request = parse_request((MESSAGES / "typed_predict.json").read_bytes())
    assert schema.features_of(request.fields) == event.features


def test_the_seed_schedule_example_loads_and_validates(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELBUS_CONFIG", str(MESSAGES / "schedule.toml"))
    settings = load_settings()
    planned = plan(settings.schedule)
    assert [(p.name, p.job.cron, p.job.command) for p in planned] == [
        ("nightly-dtr", "0 1 * * *", "build_dtr"),
        ("nightly-slr", "30 1 * * *", "build_slr"),
        ("nightly-mlp", "45 1 * * *", "build_mlp"),
    ]
    assert planned[2].job.params == {"hidden": [32, 32], "epochs": 300, "lr": 0.01, "seed": 6, "split": 0.65}


def test_the_seed_crontab_runs_unchanged_under_scheduler_check(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELBUS_CONFIG", str(MESSAGES / "schedule.toml"))
    result = CliRunner().invoke(main, ["scheduler", "--check", "--next", "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines] == ["nightly-dtr", "nightly-slr", "nightly-mlp"]
    for line, (cron, command, at) in zip(lines, [("0 1 * * *", "build_dtr", "T01:00:00Z"),
                                                 ("30 1 * * *", "build_slr", "T01:30:00Z"),
                                                 ("45 1 * * *", "build_mlp", "T01:45:00Z")]):
        assert f"'{cron}' (UTC) {command} dataset default" in line and at in line


@pytest.mark.parametrize("name, windows", [
    ("windows_bots.toml", [("views_10m", "hopping", ["main_page_views", "listing_views", "product_views", "gallery_views"])]),
    ("windows_sessions.toml", [("sessions_15m", "session", ["activities", "duration", "courses"])]),
])
def test_the_seed_window_examples_load(monkeypatch, tmp_path, name, windows):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELBUS_CONFIG", str(MESSAGES / name))
    assert [(w.name, w.kind, w.columns) for w in load_settings().windows] == windows


def test_create_topics_script_against_the_local_broker(kafka_bootstrap, topics):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELBUS_")}
    for field in Topics.model_fields:
        env[f"MODELBUS_TOPICS__{field.upper()}"] = getattr(topics, field)
    script = str(ROOT / "scripts" / "create-topics.sh")
    first = subprocess.run([script, kafka_bootstrap], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"{topics.events}: created" in first.stdout
    # Running it again is harmless.
    again = subprocess.run([script, kafka_bootstrap], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"{topics.events}: exists" in again.stdout
    client = admin(KafkaConfig(bootstrap=kafka_bootstrap))
    try:
        names = [getattr(topics, f) for f in Topics.model_fields]
        described = {t["name"]: t for t in client.describe_topics(names)}
    finally:
        client.close()
    assert set(described) == set(names)
    assert len(described[topics.model_updates]["partitions"]) == 1
    assert len(described[topics.events]["partitions"]) == 3


def test_the_example_alert_rules_load_as_settings(monkeypatch):
    monkeypatch.setenv("MODELBUS_CONFIG", str(MESSAGES / "alerts.toml"))
    rules = Settings().alerts
    assert [(r.name, r.on, r.action) for r in rules] == [
        ("withdrawal-risk", "prediction", "alert"), ("likely-5", "prediction", "alert"),
        ("mlp-accuracy", "live_accuracy", "alert"), ("mlp-drift", "drift", "rebuild")]
    assert rules[1].class_ == "5" and rules[1].describe() == "probability of class 5 above 0.5"


def test_alert_rules_from_the_environment_and_their_errors(monkeypatch):
    monkeypatch.setenv("MODELBUS_ALERTS", '[{"name":"r","model":"mlp","on":"prediction","class":"5","above":0.5}]')
    assert Settings().alerts[0].class_ == "5"
    monkeypatch.setenv("MODELBUS_ALERTS", '[{"name":"r","model":"mlp","on":"live_accuracy","class":"5","below":0.5}]')
    with pytest.raises(ValueError, match="'class' and 'equals' belong to prediction rules"):
        Settings()

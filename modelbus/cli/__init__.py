"""The `modelbus` command line: every command, registered here and nowhere else."""
from __future__ import annotations

from modelbus.cli import alerts, dashboard, db, demo, events, kafka, models, predict, run, status
from modelbus.cli.group import main

for command in (
    db.db,
    demo.demo,
    events.send, events.events, events.errors, events.replay,
    kafka.broker, kafka.topics,
    models.build, models.models, models.verify, models.lineage,
    predict.predict, dashboard.open_dashboard,
    run.worker, run.up, run.api, run.predictor, run.scheduler,
    status.status,
    alerts.alerts,
):
    main.add_command(command)

__all__ = ["main"]

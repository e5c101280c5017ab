"""The SQL schema: the event log, dead letters, projections and handler positions."""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from modelbus.db.dialect import MYSQL_TABLE as _MYSQL
from modelbus.db.dialect import AutoId, Double, LongBlob, LongText, Timestamp

metadata = MetaData()


def _source_columns() -> list[Column]:
    # A Kafka coordinate names the topic incarnation too: offsets restart at 0 when a
    # topic is recreated (or a memory-only broker restarts), and a new message at an
    # old offset must not be taken for a re-delivery.
    return [
        Column("source", String(16), nullable=False),
        Column("source_topic", String(249)),
        Column("source_topic_id", String(36)),
        Column("source_partition", Integer),
        Column("source_offset", BigInteger),
    ]


events = Table(
    "events",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(128), nullable=False),
    Column("type", String(16), nullable=False),
    Column("name", String(32), nullable=False),
    Column("dataset", String(64), nullable=False),
    Column("payload", LongText, nullable=False),
    *_source_columns(),
    Column("received_at", Timestamp, nullable=False),
    UniqueConstraint("event_id", name="uq_events_event_id"),
    UniqueConstraint(
        "source_topic", "source_topic_id", "source_partition", "source_offset", name="uq_events_source"
    ),
    Index("ix_events_dataset_name_position", "dataset", "name", "position"),
    **_MYSQL,
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("code", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", LongBlob, nullable=False),
    *_source_columns(),
    Column("received_at", Timestamp, nullable=False),
    UniqueConstraint(
        "source_topic", "source_topic_id", "source_partition", "source_offset", name="uq_dead_letters_source"
    ),
    **_MYSQL,
)

# One row holding the last assigned log position. Every append locks it first, so
# positions are handed out in commit order and a follower never skips a late commit.
log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False),
    **_MYSQL,
)

datasets = Table(
    "datasets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("n_values", Integer, nullable=False),
    Column("first_position", BigInteger),
    Column("created_at", Timestamp, nullable=False),
    **_MYSQL,
)

handler_positions = Table(
    "handler_positions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("owner", String(128)),
    Column("lease_expires", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
    **_MYSQL,
)

# One row per log event a handler could not apply and moved past (bad data, not an outage):
# keyed by handler and position, so a replay of the same log records the same failures.
handler_failures = Table(
    "handler_failures",
    metadata,
    Column("handler", String(64), primary_key=True),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(128), nullable=False),
    Column("error", String(64), nullable=False),
    Column("code", String(32)),
    Column("message", Text, nullable=False),
    Column("failed_at", Timestamp, nullable=False),
    **_MYSQL,
)

training_records = Table(
    "training_records",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("dataset", String(64), nullable=False),
    Column("features", LongText, nullable=False),
    # A number label; a category label (a typed dataset's) is in label_category instead.
    Column("label", Double),
    Column("label_category", String(255)),
    Index("ix_training_records_dataset_position", "dataset", "position"),
    **_MYSQL,
)

# --- windows over raw events (issue 13) ----------------------------------------------------

# One row per window handler (a shard of the keys): the streams' largest ts, late and closed
# counts per window, and a token that changes with every batch, so a handler that finds another
# token than its own knows its in-memory windows are stale and reloads them.
window_shards = Table(
    "window_shards",
    metadata,
    Column("handler", String(64), primary_key=True),
    Column("token", BigInteger, nullable=False),
    Column("watermarks", Text, nullable=False),
    Column("counters", Text, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    **_MYSQL,
)

# The open windows of one key, as JSON: {window: [[start, end, [accumulators]], ...]}.
window_open = Table(
    "window_open",
    metadata,
    Column("handler", String(64), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("state", LongText, nullable=False),
    **_MYSQL,
)

# One row per closed window: key, bounds (epoch ms) and the aggregates in declared order (JSON).
# Keyed in close order (a window's end only grows as its watermark does), so inserts append.
window_rows = Table(
    "window_rows",
    metadata,
    Column("window", String(64), primary_key=True),
    Column("end_ms", BigInteger, primary_key=True, autoincrement=False),
    Column("key", String(128), primary_key=True),
    Column("start_ms", BigInteger, primary_key=True, autoincrement=False),
    Column("handler", String(64), nullable=False),
    Column("aggregates", LongText, nullable=False),
    Index("ix_window_rows_key", "window", "key", "start_ms"),
    **_MYSQL,
)

# --- the model registry (issue 3) ---------------------------------------------------------


# One row per successful build; keyed by the build command's log position, so a replay
# of the same log writes the same keys.
model_versions = Table(
    "model_versions",
    metadata,
    Column("build_position", BigInteger, primary_key=True, autoincrement=False),
    Column("model", String(16), nullable=False),
    Column("dataset", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("uuid", String(36), nullable=False),
    Column("params", Text, nullable=False),
    Column("metrics", LongText, nullable=False),
    Column("main_metric", Double, nullable=False),
    Column("artifact", LongBlob, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("first_position", BigInteger),
    Column("last_position", BigInteger),
    Column("n_events", BigInteger, nullable=False),
    Column("lineage_digest", String(64), nullable=False),
    Column("versions", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    # Each feature's distribution over the version's training rows, the reference of drift.
    Column("profile", LongText),
    UniqueConstraint("model", "dataset", "version", name="uq_model_versions_version"),
    UniqueConstraint("uuid", name="uq_model_versions_uuid"),
    **_MYSQL,
)

# One row per build command, successful or not: what the user asked for and what came of it.
builds = Table(
    "builds",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(128), nullable=False),
    Column("model", String(16), nullable=False),
    Column("dataset", String(64), nullable=False),
    Column("status", String(8), nullable=False),
    Column("reason", Text),
    Column("version", Integer),
    Column("params", Text),
    Column("n_events", BigInteger),
    Column("requested_at", Timestamp, nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp, nullable=False),
    Column("load_seconds", Double),
    Column("fit_seconds", Double),
    UniqueConstraint("event_id", name="uq_builds_event_id"),
    Index("ix_builds_model_dataset", "model", "dataset"),
    **_MYSQL,
)

# Where each alias (only "production" so far) of a model and dataset points.
aliases = Table(
    "aliases",
    metadata,
    Column("model", String(16), primary_key=True),
    Column("dataset", String(64), primary_key=True),
    Column("alias", String(16), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("moved_at_position", BigInteger, nullable=False),
    **_MYSQL,
)

# One row per promote command: the alias history, including refused and kept promotions.
promotions = Table(
    "promotions",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("model", String(16), nullable=False),
    Column("dataset", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("previous_version", Integer),
    Column("automatic", Boolean, nullable=False),
    Column("status", String(8), nullable=False),
    Column("reason", Text),
    Column("created_at", Timestamp, nullable=False),
    # An automatic promotion compares the newcomer and production on the newcomer's test rows.
    Column("candidate_score", Double),
    Column("production_score", Double),
    Column("test_rows", Integer),
    **_MYSQL,
)

# The seed's tables, column for column as its MySQL schema defined them; filled on every build.
linear_model = Table(
    "linear_model",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String(255), nullable=False, server_default=text("''")),
    Column("createdate", DateTime),
    Column("slope", Double),
    Column("intercept", Double),
    Column("rsq", Double),
    Column("logoutput", Text),
    **_MYSQL,
)

training_log = Table(
    "training_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String(100), nullable=False, server_default=text("''")),
    Column("training_date", DateTime),
    Column("train_eval_split", Double, nullable=False, server_default=text("0.65")),
    Column("execution_time", Integer, nullable=False, server_default=text("-1")),
    Column("model_accuracy", Double, nullable=False, server_default=text("0")),
    Column("training_output", Text),
    Column("model_type", String(50), nullable=False, server_default=text("''")),
    **_MYSQL,
)


# --- after deployment (issue 12) ----------------------------------------------------------

# One row per answered prediction, written in batches off the answer's path and kept for
# prediction_retention_days. The first answer under an id is the one feedback joins.
predictions = Table(
    "predictions",
    metadata,
    Column("seq", AutoId, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False),
    Column("model", String(16), nullable=False),
    Column("dataset", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("features", LongText, nullable=False),
    Column("result", Text, nullable=False),
    Column("probabilities", LongText),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("id", name="uq_predictions_id"),
    Index("ix_predictions_version", "model", "dataset", "version", "seq"),
    Index("ix_predictions_created_at", "created_at"),
    **_MYSQL,
)

# One row per feedback event (the projection of the feedback handler): whether and how it
# joined its prediction, and for a joined one whether the answer was right.
feedback = Table(
    "feedback",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("prediction_id", String(128), nullable=False),
    Column("dataset", String(64), nullable=False),
    Column("label", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("model", String(16)),
    Column("version", Integer),
    Column("correct", Boolean),
    Column("error", Double),
    Column("received_at", Timestamp, nullable=False),
    Column("joined_at", Timestamp),
    Index("ix_feedback_prediction_id", "prediction_id"),
    Index("ix_feedback_version", "model", "dataset", "version", "status", "position"),
    Index("ix_feedback_status", "status", "position"),
    **_MYSQL,
)

# One row per firing of an alert rule, unique per rule and subject (a prediction id, or a
# version's window of feedback or predictions), so a rule fires once per subject.
alerts = Table(
    "alerts",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("subject", String(191), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("model", String(16), nullable=False),
    Column("dataset", String(64), nullable=False),
    Column("version", Integer),
    Column("prediction_id", String(128)),
    Column("value", Double),
    Column("detail", Text, nullable=False),
    Column("action", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("rule", "subject", name="uq_alerts_rule_subject"),
    Index("ix_alerts_created_at", "created_at"),
    **_MYSQL,
)

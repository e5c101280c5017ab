"""Settings from environment variables (MODELBUS_*) and an optional TOML file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from modelbus.commands.kafka import KafkaConfig, Topics
from modelbus.cron.schedule import ScheduleJob
from modelbus.messages.alerts import AlertRule
from modelbus.messages.datasets import DEFAULT_LABEL, FIELD_TYPES, NUMBER, InputSchema
from modelbus.messages.windows import WindowSpec, check_unique

CONFIG_ENV = "MODELBUS_CONFIG"
DEFAULT_CONFIG_FILE = "modelbus.toml"


class LabelField(BaseModel):
    """A typed dataset's label: its field name and type."""

    model_config = ConfigDict(extra="forbid")

    name: str = DEFAULT_LABEL
    type: Literal[FIELD_TYPES] = NUMBER  # type: ignore[valid-type]


class DatasetSchema(BaseModel):
    """A declared dataset: how many features a row has, and optional names and labels; or its
    named, typed features ({"island": "category", "bill_length_mm": "number"}) and typed label."""

    features: Annotated[int, Field(ge=1, le=10_000)] | dict[str, Literal[FIELD_TYPES]]  # type: ignore[valid-type]
    feature_names: list[str] | None = None
    # Maps a label value (as written in the payload) to a display name, as seed 004's
    # output label mapping; predictions then carry the name beside the value.
    labels: dict[str, str] | None = None
    label: LabelField | None = None

    @model_validator(mode="after")
    def _typed(self) -> DatasetSchema:
        if isinstance(self.features, dict):
            self.input_schema  # noqa: B018 - raises ValueError on a bad declaration
        elif self.label is not None:
            raise ValueError("a typed label needs typed features: features = { name = \"number\", ... }")
        return self

    @property
    def width(self) -> int:
        """Values (features plus label) of a training record."""
        return (len(self.features) if isinstance(self.features, dict) else self.features) + 1

    @property
    def input_schema(self) -> InputSchema | None:
        """The typed fields, when the features are declared by name and type."""
        if not isinstance(self.features, dict):
            return None
        label = self.label or LabelField()
        return InputSchema(features=tuple(self.features.items()), label=(label.name, label.type))


class Settings(BaseSettings):
    """Every setting of a modelbus process; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="MODELBUS_", env_nested_delimiter="__", extra="forbid"
    )

    database_url: str = "sqlite:///modelbus.db"
    kafka_bootstrap: str | None = None
    topics: Topics = Topics()
    ingest_group: str = "modelbus-ingest"
    predictor_group: str = "modelbus-predictor"
    ingest_batch: int = Field(default=2000, ge=1)
    max_message_bytes: int = Field(default=64 * 1024, ge=256)
    auto_datasets: bool = True
    datasets: dict[str, DatasetSchema] = {"default": DatasetSchema(features=3)}
    handler_poll_seconds: float = Field(default=0.2, gt=0)
    # MySQL timeouts in seconds (modelbus/app.py says why the API has its own). Workers, the
    # CLI and migrations: a silent database is waited out up to db_timeout between packets,
    # longer than any one statement of theirs takes on a healthy server (the migration lock
    # waits 120 s, an InnoDB lock wait 50 s; reading a large lineage streams, so it never goes
    # quiet for long); a freeze shorter than that is only a pause.
    db_connect_timeout: float = Field(default=5.0, gt=0, le=31_536_000)
    db_timeout: float = Field(default=300.0, gt=0)
    db_pool_timeout: float = Field(default=30.0, gt=0)
    # HTTP requests: a healthy server answers them in milliseconds (a 2000-row append in well
    # under a second), so a few seconds of silence means it is down: answer 503 then.
    api_db_timeout: float = Field(default=5.0, gt=0)
    api_db_pool_timeout: float = Field(default=1.0, gt=0)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    api_threads: int = Field(default=8, ge=1)
    api_workers: int = Field(default=1, ge=1, le=64)
    api_token: str | None = None
    predict_batch: int = Field(default=256, ge=1)
    # An automatic promotion needs the newcomer tested on at least this many rows.
    promotion_min_test_rows: int = Field(default=30, ge=1)
    predict_wait_ms: int = Field(default=10, ge=0)
    schedule: list[ScheduleJob] = []
    # After deployment (issue 12): every answer recorded, feedback joined, live metrics, alerts.
    record_predictions: bool = True
    prediction_retention_days: float = Field(default=30.0, gt=0)
    feedback_to_training: bool = True
    feedback_join_window_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)
    live_window: int = Field(default=500, ge=1)
    monitor_interval: float = Field(default=2.0, gt=0)
    alerts: list[AlertRule] = []
    # Windows over raw events ([[windows]] in TOML, a JSON list in MODELBUS_WINDOWS).
    windows: list[WindowSpec] = []
    # Keys are split into this many shards (crc32 of the key); each shard is a handler of its own.
    window_shards: int = Field(default=1, ge=1, le=256)
    # The shards this process follows (default: all); several processes split the shards between them.
    window_shard_ids: list[int] | None = None
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_ms: int = Field(default=2_000, ge=100)
    kafka_fetch_wait_ms: int = Field(default=100, ge=1)
    kafka_send_timeout_ms: int = Field(default=5_000, ge=100)
    topic_partitions: int = Field(default=3, ge=1)

    @field_validator("windows")
    @classmethod
    def _unique_windows(cls, value: list[WindowSpec]) -> list[WindowSpec]:
        return check_unique(value)

    @model_validator(mode="after")
    def _shards_known(self) -> "Settings":
        for shard in self.window_shard_ids or []:
            if not 0 <= shard < self.window_shards:
                raise ValueError(f"window_shard_ids: shard {shard} is not in 0..{self.window_shards - 1}")
        return self

    @property
    def owned_window_shards(self) -> list[int]:
        """The window shards this process follows."""
        if self.window_shard_ids is None:
            return list(range(self.window_shards))
        return sorted(set(self.window_shard_ids))

    @field_validator("kafka_bootstrap", "api_token")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @property
    def kafka(self) -> KafkaConfig:
        """The Kafka part of the settings, for the Kafka plumbing (Kafka mode only)."""
        if self.kafka_bootstrap is None:
            raise ValueError("no Kafka bootstrap configured (set MODELBUS_KAFKA_BOOTSTRAP)")
        return KafkaConfig(
            bootstrap=self.kafka_bootstrap,
            topics=self.topics,
            session_timeout_ms=self.kafka_session_timeout_ms,
            heartbeat_ms=self.kafka_heartbeat_ms,
            fetch_wait_ms=self.kafka_fetch_wait_ms,
            send_timeout_ms=self.kafka_send_timeout_ms,
            topic_partitions=self.topic_partitions,
        )

    @property
    def declared_widths(self) -> dict[str, int]:
        """Values (features plus label) of each declared dataset's training records."""
        return {name: schema.width for name, schema in self.datasets.items()}

    @property
    def input_schemas(self) -> dict[str, InputSchema]:
        """The typed fields of each dataset that declares them."""
        return {name: schema.input_schema for name, schema in self.datasets.items() if schema.input_schema}

    @property
    def kafka_mode(self) -> bool:
        """True when a bootstrap address makes every topic a real Kafka topic."""
        return self.kafka_bootstrap is not None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then the environment, then the TOML file.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def config_path() -> Path | None:
    """The TOML file to read: $MODELBUS_CONFIG, else ./modelbus.toml when it exists."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"{CONFIG_ENV}={explicit}: no such file")
        return path
    local = Path(DEFAULT_CONFIG_FILE)
    return local if local.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Settings from overrides, the environment and the TOML file, in that order."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})

#!/usr/bin/env bash
# Create the topics modelbus uses (the seed's names: event_topic, prediction_request_topic,
# prediction_response_topic, error_topic, model_update_topic, build_outcome_topic, window_topic; MODELBUS_TOPICS__*
# rename them).
# Uses `modelbus topics create` when modelbus is installed, else Kafka's kafka-topics(.sh).
#
#   scripts/create-topics.sh [bootstrap]    default $MODELBUS_KAFKA_BOOTSTRAP, else 127.0.0.1:9092
#   PARTITIONS=6 REPLICATION=3 scripts/create-topics.sh broker1:9092   (REPLICATION: kafka-topics only)
set -euo pipefail

bootstrap="${1:-${MODELBUS_KAFKA_BOOTSTRAP:-127.0.0.1:9092}}"
partitions="${PARTITIONS:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"

modelbus=""
if [ -x "$root/.venv/bin/modelbus" ]; then
  modelbus="$root/.venv/bin/modelbus"
elif command -v modelbus >/dev/null 2>&1; then
  modelbus="$(command -v modelbus)"
fi
if [ -n "$modelbus" ]; then
  exec "$modelbus" --kafka-bootstrap "$bootstrap" topics create --partitions "$partitions"
fi

kafka_topics="$(command -v kafka-topics.sh || command -v kafka-topics || true)"
if [ -z "$kafka_topics" ]; then
  echo "create-topics: neither modelbus nor kafka-topics(.sh) is on PATH" >&2
  exit 1
fi
create() {
  "$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "$1" --partitions "$2" --replication-factor "${REPLICATION:-1}"
}
create "${MODELBUS_TOPICS__EVENTS:-event_topic}" "$partitions"
create "${MODELBUS_TOPICS__PREDICTION_REQUESTS:-prediction_request_topic}" "$partitions"
create "${MODELBUS_TOPICS__PREDICTION_RESPONSES:-prediction_response_topic}" "$partitions"
create "${MODELBUS_TOPICS__ERRORS:-error_topic}" "$partitions"
create "${MODELBUS_TOPICS__BUILD_OUTCOMES:-build_outcome_topic}" "$partitions"
create "${MODELBUS_TOPICS__WINDOWS:-window_topic}" "$partitions"
# Model updates are few and every serving process reads them all, in order: one partition.
create "${MODELBUS_TOPICS__MODEL_UPDATES:-model_update_topic}" 1

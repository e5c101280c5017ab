#!/usr/bin/env bash
# Load the synthetic demo data set (rule plus seeded noise, see modelbus/demo.py) and queue
# mlp and linear builds: a thin wrapper of `modelbus demo load`, which takes the same arguments.
#
#   scripts/load-demo-data.sh                         500 rows, seed 2018, dataset default
#   scripts/load-demo-data.sh --rows 2000 --dataset judges --build build_slr
# Embedded mode writes straight into the store; with MODELBUS_KAFKA_BOOTSTRAP set the events
# go to event_topic and a running `modelbus worker`/`modelbus up` ingests and builds them.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -x "$root/.venv/bin/modelbus" ]; then
  exec "$root/.venv/bin/modelbus" demo load "$@"
fi
exec modelbus demo load "$@"

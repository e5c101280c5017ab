"""Serving throughput with and without prediction recording (issue 12's budget: at most 10% less).

    python -m bench recording

The same `modelbus predictor` run (20,000 waiting requests, predict_batch 256) and the same
`modelbus api` load (16 concurrent clients, 1 row per request, from a second process), once with
record_predictions=false (the baseline) and once with every answer recorded.
"""
from __future__ import annotations

import os

from bench.predict import REQUESTS, http_rates, kafka_rate, services


def main() -> None:
    """Measure both paths with recording off and on and print the ratios."""
    clients, seconds = 16, float(os.environ.get("MODELBUS_BENCH_HTTP_SECONDS", "10"))
    with services() as (bootstrap, url):
        kafka = {on: kafka_rate(bootstrap, url, REQUESTS, batch=256, wait_ms=10,
                                MODELBUS_RECORD_PREDICTIONS="true" if on else "false") for on in (False, True)}
        http = {on: http_rates(url, clients, seconds, loads=((clients, 1),),
                               MODELBUS_RECORD_PREDICTIONS="true" if on else "false")[0][1]["requests_per_s"]
                for on in (False, True)}
    for path, rates, unit in (("kafka predictor, batch 256", kafka, "answers/s"),
                              (f"http POST /api/predict, {clients} clients", http, "requests/s")):
        print(f"{path:<36} not recorded (baseline) {rates[False]:9,.0f} {unit}   recorded {rates[True]:9,.0f} "
              f"{unit}   ratio {rates[True] / rates[False]:.2f} (goal >= 0.90)")


if __name__ == "__main__":
    main()

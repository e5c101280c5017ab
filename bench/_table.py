"""The issue's table of `make bench`: each path beside its in-run baseline, the ratio and the goal."""
from __future__ import annotations

from typing import Any


def _row(path: str, value: str, baseline: str, ratio: float | None, goal: str) -> str:
    shown = "n/a" if ratio is None else f"{ratio:.2f}"
    return f"| {path} | {value} | {baseline} | {shown} | {goal} |"


def table(results: dict[str, Any]) -> list[str]:
    """Markdown rows from the benchmarks' returned figures (a benchmark not run or failed is left out)."""
    lines = ["| path | modelbus | in-run baseline | ratio | goal |", "|---|---|---|---|---|"]
    ingest = results.get("ingest")
    if ingest:
        lines.append(_row("ingest Tansu -> MySQL", f"{ingest['c_worker']:,.0f} events/s ({ingest['c_cpu_us']:.0f} us CPU/event)",
                          f"raw PyMySQL executemany {ingest['b_executemany']:,.0f} rows/s", ingest["c_over_b"], ">= 0.7"))
    predict = results.get("predict")
    if predict:
        lines.append(_row("Kafka predictor, batched", f"{predict['batched']:,.0f} answers/s",
                          f"raw kafka-python produce {predict['produce']:,.0f} msg/s",
                          predict["batched"] / predict["produce"], ">= 0.5"))
    for row in results.get("http") or []:
        if "workers" not in row:
            continue
        server = "waitress, 1 process" if row["workers"] == 1 else f"gunicorn, {row['workers']} workers"
        lines.append(_row(f"HTTP POST /api/predict, 1 row, 10 connections ({server})", f"{row['modelbus_rps']:,} req/s",
                          f"bare Flask endpoint, same server and workers: {row['bare_rps']:,} req/s", row["ratio"],
                          ">= 0.7"))
    build = results.get("build")
    if build:
        lines.append(_row(f"mlp build, {build['rows'] // 1000}k rows, MySQL", f"{build['build_seconds']:.2f} s",
                          f"the same fit from numpy arrays: {build['direct_fit_seconds']:.2f} s",
                          build["build_over_direct_fit"], "<= 1.1"))
    replay = results.get("replay")
    if replay:
        lines.append(_row("replay training_records, MySQL", f"{replay['replay_rows_per_s']:,} rows/s",
                          f"raw PyMySQL scan {replay['scan_rows_per_s']:,} rows/s", replay["replay_over_scan"], ">= 0.7"))
        lines.append(_row("a build's read of the log, MySQL", f"{replay['build_read_rows_per_s']:,} rows/s",
                          f"raw PyMySQL scan {replay['scan_rows_per_s']:,} rows/s", replay["build_read_over_scan"], ""))
    memory = [r["up_demo"] for r in results.get("http") or [] if "up_demo" in r]
    if memory:
        workers = [r for r in results["http"] if "workers" in r]
        worker = f"; one API worker RSS {workers[-1]['worker_rss_mib']} MiB (PSS {workers[-1]['worker_pss_mib']} MiB)" if workers else ""
        lines.append(f"memory: modelbus up --demo RSS {memory[0]['rss_mib']} MiB (PSS {memory[0]['pss_mib']} MiB){worker}")
    return lines

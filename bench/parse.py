"""Parse cost per message: the parser on typical messages, beside stdlib json.loads of the same bytes.

    python -m bench parse
    python -m bench.parse --repeat 7 --number 20000

Ingest is bound by Python CPU (bench.ingest), and parsing is a quarter of it: each figure is the
best of --repeat rounds of --number calls, in µs per message, measured in this run together
with json.loads of the same bytes (which checks nothing: no duplicate keys, NaN, int64 or field
rules), and their ratio. Prints one JSON object per message kind.
"""
from __future__ import annotations

import argparse
import json
import timeit
from typing import Callable

from modelbus.messages.parse import parse_event, parse_event_obj, parse_request

MESSAGES: dict[str, tuple[str, bytes]] = {
    "training_csv": ("event", b'{"type":"training","payload":"3,4,5,6"}'),
    "training_array": ("event", b'{"type":"training","payload":[3,4,5,6],"id":"t-1","dataset":"default"}'),
    "training_ts": ("event", b'{"type":"training","payload":"3,4,5,6","ts":"2026-11-23T10:00:00Z"}'),
    "build_params": ("event", b'{"type":"command","payload":"build_mlp","params":{"hidden":[32,32],"epochs":300}}'),
    "promote": ("event", b'{"type":"command","payload":"promote","model":"mlp","version":3}'),
    "prediction_request": ("request", b'{"model":"mlp","payload":"3,4,5","id":"r1"}'),
    # A replay re-reads stored events as decoded objects (the handlers' path).
    "replay_training": ("stored", b'{"dataset":"default","payload":"3,4,5,6","type":"training"}'),
}


def per_call_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    """The best of `repeat` rounds of `number` calls, in µs per call."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def measure(kind: str, raw: bytes, number: int, repeat: int) -> dict[str, float]:
    """µs per message for the parser and for json.loads of the same bytes."""
    if kind == "event":
        parse: Callable[[], object] = lambda: parse_event(raw)
    elif kind == "request":
        parse = lambda: parse_request(raw)
    else:
        stored = json.loads(raw)
        parse = lambda: parse_event_obj(stored, system=True)
    parse()  # warm: the first call builds pydantic's caches
    parser_us = per_call_us(parse, number, repeat)
    json_us = per_call_us(lambda: json.loads(raw), number, repeat)
    return {"parser_us": round(parser_us, 2), "json_loads_us": round(json_us, 2),
            "ratio": round(parser_us / json_us, 2)}


def main(argv: list[str] | None = None) -> None:
    """Print one JSON object per message kind."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=20_000, help="Calls per round.")
    parser.add_argument("--repeat", type=int, default=7, help="Rounds; the best counts.")
    args = parser.parse_args(argv)
    for name, (kind, raw) in MESSAGES.items():
        print(json.dumps({"message": name, **measure(kind, raw, args.number, args.repeat)}), flush=True)


if __name__ == "__main__":
    main()

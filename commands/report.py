"""Rejected messages: kept as dead letters and reported on error_topic."""
from __future__ import annotations

import base64
from typing import Any, Sequence

from modelbus.commands.transport import Transport
from modelbus.db.events import REJECTED, EventStore, Incoming, Outcome, Source, utcnow
from modelbus.messages.errors import Rejected
from modelbus.messages.jsonutil import compact_json

# error_topic carries the reason and enough of the message to recognise it; the full
# bytes are in dead_letters (a broker's message size limit would refuse a 1 MB echo).
ERROR_RAW_LIMIT = 4096


# A broker may deliver far bigger messages than we accept (Tansu takes 20 MB), but MySQL
# refuses a statement over max_allowed_packet (16 MiB on MariaDB 10.11) by dropping the
# connection, and a retried batch would fail forever. Dead letters keep this much.
DEAD_LETTER_RAW_LIMIT = 4 * 1024 * 1024


def raw_view(raw: bytes) -> dict[str, Any]:
    """The head of a message as error_topic and the API show it: text when it is UTF-8, else base64."""
    head = raw[:ERROR_RAW_LIMIT]
    try:
        raw.decode("utf-8")
        # Only a character cut in two at the limit is dropped.
        shown, encoding = head.decode("utf-8", "ignore"), "utf-8"
    except UnicodeDecodeError:
        shown, encoding = base64.b64encode(head).decode("ascii"), "base64"
    return {"raw": shown, "raw_encoding": encoding, "raw_bytes": len(raw), "truncated": len(raw) > ERROR_RAW_LIMIT}


def error_message(raw: bytes, source: Source, error: Rejected) -> bytes:
    """The JSON published on error_topic for one rejected message."""
    body = {
        "error": error.as_dict(),
        "source": source.describe(),
        **raw_view(raw),
        "received_at": utcnow().isoformat(timespec="milliseconds") + "Z",
    }
    return compact_json(body).encode()


def rejected(raw: bytes, source: Source, error: Rejected) -> Incoming:
    """A dead-letter Incoming; a huge message keeps only its head (the reason says how big it was)."""
    if len(raw) > DEAD_LETTER_RAW_LIMIT:
        error = Rejected(error.code, f"{error.message} (the dead letter keeps its first {DEAD_LETTER_RAW_LIMIT} bytes)")
        raw = raw[:DEAD_LETTER_RAW_LIMIT]
    return Incoming(raw=raw, source=source, error=error)


def store_and_report(
    store: EventStore, transport: Transport | None, error_topic: str, items: Sequence[Incoming], keys: Sequence[bytes | None] | None = None
) -> list[Outcome]:
    """Append a batch, then publish its rejects to error_topic and wait for the broker's acks."""
    outcomes = store.append(items)
    if transport is not None:
        published = 0
        for index, (item, outcome) in enumerate(zip(items, outcomes)):
            # Re-delivered rejects are published again: a crash may have fallen between
            # the database commit and the broker's ack (at-least-once on error_topic).
            if outcome.status == REJECTED:
                key = keys[index] if keys else None
                transport.publish(error_topic, error_message(item.raw, item.source, outcome.error), key)
                published += 1
        if published:
            transport.flush()
    return outcomes

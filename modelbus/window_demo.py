"""The windows demo data set: page views of users and bots (seed 000) and course activity (seed 003).

Raw events for the examples in messages/windows_bots.toml (stream `pageviews`) and
messages/windows_sessions.toml (stream `moodle_logs`), over `hours` of event time from
2026-11-23T10:00Z. Each user visits in bursts: 1 to 11 page views a few seconds to 4 minutes
apart, then 10 to 40 minutes away; one user in ten is a bot that views a page every 2 to 10
seconds throughout. Students log 1 to 8 activities per study session, sessions 20 to 120 minutes
apart. Events arrive up to 20 s out of event-time order (the examples' grace is 1 minute), with
stable ids, so loading twice adds nothing. Only `random.Random(seed).random()` and `randrange`
are used, so a seed gives the same events everywhere.
"""
from __future__ import annotations

import random
from typing import Any, Iterator

START_MS = 1_795_428_000_000  # 2026-11-23T10:00:00Z
MINUTE = 60_000
PAGES = ("main_page", "products_listing", "product_page", "product_gallery")
ACTIONS = ("viewed", "submitted", "graded", "posted")


def _page_views(rng: random.Random, user: int, end: int) -> Iterator[tuple[int, dict[str, Any]]]:
    bot = user % 10 == 9
    at = START_MS + rng.randrange(20 * MINUTE)
    while at < end:
        burst = 10_000 if bot else rng.randrange(1, 12)
        for _ in range(burst):
            if at >= end:
                return
            yield at, {"type": "raw", "stream": "pageviews", "key": f"user-{user}", "ts": at,
                       "fields": {"event": rng.choice(PAGES), "amount": rng.randrange(0, 400) / 4}}
            at += rng.randrange(2_000, 10_000) if bot else rng.randrange(5_000, 4 * MINUTE)
        at += rng.randrange(10 * MINUTE, 40 * MINUTE)


def _activities(rng: random.Random, student: int, end: int) -> Iterator[tuple[int, dict[str, Any]]]:
    at = START_MS + rng.randrange(30 * MINUTE)
    while at < end:
        for _ in range(rng.randrange(1, 9)):
            yield at, {"type": "raw", "stream": "moodle_logs", "key": str(1000 + student), "ts": at,
                       "fields": {"action": rng.choice(ACTIONS), "course": rng.randrange(1, 6)}}
            at += rng.randrange(30_000, 8 * MINUTE)
        at += rng.randrange(20 * MINUTE, 120 * MINUTE)


def raw_events(users: int = 50, hours: int = 2, seed: int = 2026) -> list[dict[str, Any]]:
    """Page views of `users` users and activity of as many students, in arrival order, with stable ids."""
    rng = random.Random(seed)
    end = START_MS + hours * 60 * MINUTE
    timed = []
    for user in range(users):
        timed.extend(_page_views(rng, user, end))
        timed.extend(_activities(rng, user, end))
    arrivals = sorted(((at + rng.randrange(20_000), i, event) for i, (at, event) in enumerate(timed)))
    return [{**event, "id": f"window-demo:{seed}:{i}"} for _arrival, i, event in arrivals]

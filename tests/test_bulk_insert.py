"""db.dialect.insert_plain, the window projection's bulk insert: every string comes back as written, on each backend
and under MySQL's NO_BACKSLASH_ESCAPES mode (MySQL builds the statement's text itself)."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text

from modelbus.db.dialect import insert_plain, is_mysql
from modelbus.db.schema import window_rows

AWKWARD = ["plain", "it's", 'say "hi"', "back\\slash", "\\'", "per%cent %s %(x)s", "line\nbreak\r", "ctrl-z \x1a",
           "nul \x00 inside", "ünïcødé ✓ 𝄞", "", "'; DROP TABLE window_rows; --"]
COLUMNS = ["window", "end_ms", "key", "start_ms", "handler", "aggregates"]


def rows_for(keys: list[str]) -> list[tuple]:
    """One row per key; repeated window and handler names (escaped once each) and distinct aggregates."""
    return [("w", 2**62 + i, key, -i, "windows", f'[{i},"{key}"]') for i, key in enumerate(keys)]


def stored(conn) -> list[tuple]:
    """Every row of window_rows, sorted."""
    return sorted(tuple(r) for r in conn.execute(select(*(window_rows.c[c] for c in COLUMNS))))


def test_every_string_comes_back_as_written(engine):
    rows = rows_for(AWKWARD * 3)
    with engine.begin() as conn:
        insert_plain(conn, window_rows, COLUMNS, rows)
    with engine.connect() as conn:
        assert stored(conn) == sorted(rows)


@pytest.mark.parametrize("many", [1, 4001])
def test_no_backslash_escapes_mode(mysql_db, many):
    from modelbus.db.engine import make_engine

    engine = make_engine(mysql_db)
    rows = rows_for([f"{AWKWARD[i % len(AWKWARD)]}{i}" for i in range(many)])
    with engine.begin() as conn:
        assert is_mysql(conn)
        conn.execute(text("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')"))
        insert_plain(conn, window_rows, COLUMNS, rows)
        assert stored(conn) == sorted(rows)
        conn.execute(text("SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')"))
    engine.dispose()

"""Versioned schema migrations. `migrate(db)` is idempotent and safe to run from several
processes at once (each migration runs in its own BEGIN IMMEDIATE transaction and re-checks).

Never edit a released migration: append a new one. The history issue adds customers, policies,
cards, claims, predictions... as migrations 2, 3, ...
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Callable

import sqlite_utils

Migration = tuple[int, str, Callable[[sqlite_utils.Database], None]]


def _m1_calls_and_events(db: sqlite_utils.Database) -> None:
    # calls.caller is MASKED (+86*******0001); caller_hash is sha256(salt + raw caller) for
    # lookups of "this caller's earlier calls". The raw caller ID is never stored.
    db.execute("""
        CREATE TABLE calls (
            id              TEXT PRIMARY KEY,
            caller          TEXT NOT NULL DEFAULT '',
            caller_hash     TEXT NOT NULL DEFAULT '',
            lang            TEXT NOT NULL DEFAULT '',
            flow_version    TEXT NOT NULL DEFAULT '',
            channel         TEXT NOT NULL DEFAULT '',
            started_at      TEXT NOT NULL,
            ended_at        TEXT,
            duration        REAL,
            outcome         TEXT NOT NULL DEFAULT '',
            ended_by        TEXT NOT NULL DEFAULT '',
            transfer_queue  TEXT NOT NULL DEFAULT '',
            transfer_reason TEXT NOT NULL DEFAULT '',
            escalation      TEXT NOT NULL DEFAULT '',
            verified        INTEGER NOT NULL DEFAULT 0,
            last_scene      TEXT NOT NULL DEFAULT '',
            scenes          TEXT NOT NULL DEFAULT '[]',
            event_count     INTEGER NOT NULL DEFAULT 0
        )""")
    db.execute("""
        CREATE TABLE events (
            call_id TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
            seq     INTEGER NOT NULL,
            t       REAL NOT NULL,
            type    TEXT NOT NULL,
            data    TEXT NOT NULL,
            PRIMARY KEY (call_id, seq)
        )""")
    db.execute("CREATE INDEX idx_calls_started_at ON calls(started_at)")
    db.execute("CREATE INDEX idx_calls_caller_hash ON calls(caller_hash, started_at)")
    db.execute("CREATE INDEX idx_calls_outcome ON calls(outcome, started_at)")
    db.execute("CREATE INDEX idx_events_type ON events(type)")
    db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT OR IGNORE INTO settings(key, value) VALUES ('caller_salt', ?)",
               [secrets.token_hex(16)])


MIGRATIONS: list[Migration] = [
    (1, "calls and events", _m1_calls_and_events),
]


def applied_versions(db: sqlite_utils.Database) -> set[int]:
    if "schema_migrations" not in db.table_names():
        return set()
    return {row["version"] for row in db.query("SELECT version FROM schema_migrations")}


def migrate(db: sqlite_utils.Database, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the missing migrations in order; return the versions applied now (often [])."""
    migrations = MIGRATIONS if migrations is None else migrations
    db.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                      version    INTEGER PRIMARY KEY,
                      name       TEXT NOT NULL,
                      applied_at TEXT NOT NULL)""")
    done = applied_versions(db)
    applied: list[int] = []
    for version, name, apply in sorted(migrations, key=lambda m: m[0]):
        if version in done:
            continue
        db.execute("BEGIN IMMEDIATE")  # takes the write lock: a second migrator waits here
        try:
            if db.execute("SELECT 1 FROM schema_migrations WHERE version = ?", [version]).fetchone():
                db.rollback()  # another process got there first
                continue
            apply(db)
            db.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                       [version, name, datetime.now(timezone.utc).isoformat(timespec="seconds")])
            db.commit()
        except BaseException:
            db.rollback()
            raise
        applied.append(version)
    return applied

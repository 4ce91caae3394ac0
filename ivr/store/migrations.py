"""Versioned schema migrations. `migrate(db)` is idempotent and safe to run from several
processes at once (each migration runs in its own BEGIN IMMEDIATE transaction and re-checks).

Never edit a released migration: append a new one.
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


def _m2_caller_history(db: sqlite_utils.Database) -> None:
    # Customers and what they hold. Verification factors are salted scrypt hashes
    # (ivr.store.factors), never plain text. `digest` is a keyed hash of the imported row: an
    # unchanged row is skipped, so importing the same file twice changes nothing.
    db.execute("""
        CREATE TABLE customers (
            id          INTEGER PRIMARY KEY,
            phone       TEXT NOT NULL UNIQUE,
            mobile      TEXT NOT NULL DEFAULT '',
            name        TEXT NOT NULL DEFAULT '',
            lang        TEXT NOT NULL DEFAULT '',
            email       TEXT NOT NULL DEFAULT '',
            address     TEXT NOT NULL DEFAULT '',
            segment     TEXT NOT NULL DEFAULT '',
            dob_hash    TEXT NOT NULL DEFAULT '',
            id4_hash    TEXT NOT NULL DEFAULT '',
            digest      TEXT NOT NULL DEFAULT '',
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL
        )""")
    child = "customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE"
    db.execute(f"""
        CREATE TABLE policies (
            number TEXT PRIMARY KEY, {child}, product TEXT NOT NULL, status TEXT NOT NULL,
            renewal_due TEXT NOT NULL DEFAULT '', premium REAL, started TEXT NOT NULL DEFAULT '')""")
    db.execute(f"""
        CREATE TABLE claims (
            number TEXT PRIMARY KEY, {child}, policy TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL, opened TEXT NOT NULL, kind TEXT NOT NULL DEFAULT '',
            amount REAL)""")
    db.execute(f"""
        CREATE TABLE cards (
            {child}, last4 TEXT NOT NULL, status TEXT NOT NULL,
            statement_due TEXT NOT NULL DEFAULT '', balance REAL NOT NULL DEFAULT 0,
            min_payment REAL NOT NULL DEFAULT 0, blocked_at TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (customer_id, last4))""")
    db.execute(f"""
        CREATE TABLE accounts (
            number TEXT PRIMARY KEY, {child}, kind TEXT NOT NULL, status TEXT NOT NULL,
            balance REAL NOT NULL DEFAULT 0)""")
    db.execute(f"""
        CREATE TABLE cases (
            number TEXT PRIMARY KEY, {child}, kind TEXT NOT NULL, status TEXT NOT NULL,
            opened TEXT NOT NULL, summary TEXT NOT NULL DEFAULT '')""")
    # One row per scene a past call of the customer went through: imported history
    # (source 'import', call_key = the row's own key) and live calls (source 'call',
    # call_key = calls.id). The proactive scores read recency and frequency from here.
    db.execute(f"""
        CREATE TABLE contacts (
            {child}, call_key TEXT NOT NULL, at TEXT NOT NULL, scene TEXT NOT NULL,
            resolved INTEGER NOT NULL DEFAULT 1, source TEXT NOT NULL DEFAULT 'import',
            PRIMARY KEY (customer_id, call_key, scene))""")
    db.execute("CREATE INDEX idx_contacts_at ON contacts(at)")
    # Every proactive question asked, and how it turned out. customer_id is NULLed when a
    # customer is forgotten: the anonymous row still counts in precision and acceptance.
    db.execute("""
        CREATE TABLE predictions (
            id          INTEGER PRIMARY KEY,
            call_id     TEXT NOT NULL,
            customer_id INTEGER REFERENCES customers(id) ON DELETE SET NULL,
            at          TEXT NOT NULL,
            name        TEXT NOT NULL,
            scene       TEXT NOT NULL,
            score       REAL NOT NULL,
            parts       TEXT NOT NULL DEFAULT '{}',
            accepted    INTEGER,
            correct     INTEGER
        )""")
    db.execute("CREATE INDEX idx_predictions_name ON predictions(name, correct)")
    db.execute("CREATE INDEX idx_predictions_call ON predictions(call_id)")
    for table in ("policies", "claims", "cards", "accounts", "cases", "contacts"):
        db.execute(f"CREATE INDEX idx_{table}_customer ON {table}(customer_id)")
    # A call's turns: what the IVR said and what it heard, in order (retention purges these).
    db.execute("""
        CREATE VIEW turns AS
            SELECT call_id, seq, t, CASE type WHEN 'prompt' THEN 'ivr' ELSE 'caller' END AS speaker,
                   json_extract(data, '$.kind') AS kind,
                   COALESCE(json_extract(data, '$.text'), json_extract(data, '$.value')) AS text
            FROM events WHERE type IN ('prompt', 'input')""")


def _m3_sms_and_links(db: sqlite_utils.Database) -> None:
    # Every text message the hotline sends, with its delivery state. `body` holds the link for
    # the embedded gateway (the outbox IS the delivery there); a real gateway's sent message
    # keeps the body with the link's token cut off (the caller's phone has the link).
    db.execute("""
        CREATE TABLE sms_outbox (
            id          INTEGER PRIMARY KEY,
            call_id     TEXT NOT NULL DEFAULT '',
            recipient   TEXT NOT NULL,
            purpose     TEXT NOT NULL DEFAULT '',
            body        TEXT NOT NULL,
            gateway     TEXT NOT NULL,
            status      TEXT NOT NULL DEFAULT 'queued',
            attempts    INTEGER NOT NULL DEFAULT 0,
            last_error  TEXT NOT NULL DEFAULT '',
            created_at  TEXT NOT NULL,
            sent_at     TEXT
        )""")
    db.execute("CREATE INDEX idx_sms_status ON sms_outbox(status, id)")
    # Links to the visual page: only the token's sha256 is kept, bound to a call, a number and
    # a purpose; spent once (a POST), expiring, revoked when the call ends.
    db.execute("""
        CREATE TABLE link_tokens (
            token_hash  TEXT PRIMARY KEY,
            call_id     TEXT NOT NULL,
            phone       TEXT NOT NULL,
            purpose     TEXT NOT NULL,
            created_at  REAL NOT NULL,
            expires_at  REAL NOT NULL,
            spent_at    REAL,
            revoked_at  REAL
        )""")
    db.execute("CREATE INDEX idx_link_tokens_call ON link_tokens(call_id)")


def _m4_step_index(db: sqlite_utils.Database) -> None:
    # `ivr stats` attributes no-input/no-match errors to the step event before them
    db.execute("CREATE INDEX idx_events_step ON events(json_extract(data, '$.scene'),"
               " json_extract(data, '$.id'), json_extract(data, '$.kind')) WHERE type = 'step'")


MIGRATIONS: list[Migration] = [
    (1, "calls and events", _m1_calls_and_events),
    (2, "caller history: customers, holdings, contacts, predictions", _m2_caller_history),
    (3, "sms outbox and visual-page link tokens", _m3_sms_and_links),
    (4, "index of step events for the figures", _m4_step_index),
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

"""The one connection factory: sqlite-utils over sqlite3, in WAL mode with a busy timeout."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

DEFAULT_BUSY_TIMEOUT = 10.0  # seconds a connection waits for a lock before "database is locked"


def connect(path: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
            create: bool = True) -> sqlite_utils.Database:
    """A Database on `path`: WAL, synchronous=NORMAL, busy_timeout, foreign keys on.

    WAL with synchronous=NORMAL keeps every committed transaction across a process crash
    (`kill -9`); only a power cut may lose the last transactions. `create=False` refuses to
    create a missing file (readers). The connection may be used from another thread than the
    one that made it, but only from one thread at a time.
    """
    path = Path(path)
    if not create and not path.exists():
        raise FileNotFoundError(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # `timeout` installs SQLite's busy handler; the PRAGMA below says the same for clarity.
    conn = sqlite3.connect(str(path), timeout=busy_timeout, check_same_thread=False)
    try:
        db = sqlite_utils.Database(conn, execute_plugins=False)
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return db

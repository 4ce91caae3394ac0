"""The call store: SQLite (WAL) through sqlite-utils.

One writer thread per process (`CallStore`), fed by a queue and batching its inserts in
transactions; readers open their own connections. See `ivr.store.calls`.
"""

from ivr.store.calls import CallStore, read_recent
from ivr.store.db import connect
from ivr.store.migrations import MIGRATIONS, migrate

__all__ = ["CallStore", "MIGRATIONS", "connect", "migrate", "read_recent"]

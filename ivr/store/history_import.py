"""`ivr history import`: customers from JSON lines into the store.

Every line is checked on its own (`ivr.data.records`); a bad line is reported with its number
and skipped, good lines load. Each customer is written inside a savepoint, so a conflict (a
policy number that belongs to another customer) rolls back that customer only and nothing
already stored is touched. An unchanged customer is skipped, so importing the same file twice
changes nothing: `digest` covers every field but the verification factors, which are compared
against their stored hashes instead (a digest of them would be cheap to brute-force).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from ivr.data.records import check_customer
from ivr.store.db import connect
from ivr.store.factors import hash_factor, verify_factor
from ivr.store.migrations import migrate

_LOGGER = logging.getLogger(__name__)
MAX_LINE = 1_000_000  # bytes; a longer line is a broken export
BATCH = 200  # customers per transaction

CHILDREN = {
    "policies": ("number", "product", "status", "renewal_due", "premium", "started"),
    "claims": ("number", "policy", "status", "opened", "kind", "amount"),
    "cards": ("last4", "status", "statement_due", "balance", "min_payment", "blocked_at"),
    "accounts": ("number", "kind", "status", "balance"),
    "cases": ("number", "kind", "status", "opened", "summary"),
}
FACTORS = (("dob", "birth_date", "dob_hash"), ("id_last4", "id_last4", "id4_hash"))


@dataclass
class ImportReport:
    loaded: int = 0  # new or changed customers written
    unchanged: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)  # "FILE:LINE: code: message"

    def to_dict(self) -> dict[str, Any]:
        return {"loaded": self.loaded, "unchanged": self.unchanged, "rejected": self.rejected,
                "problems": self.problems}


def import_file(path: str | Path, db_path: str | Path) -> ImportReport:
    """Import the JSON-lines file at `path` into the store at `db_path`."""
    path = Path(path)
    with path.open("rb") as handle:
        return import_lines(_numbered(handle), db_path, name=str(path))


def import_records(records: Iterable[dict[str, Any]], db_path: str | Path, name: str = "<records>") -> ImportReport:
    """Import already-decoded customers (the demo population), checked as a file would be."""
    return import_lines(((n, json.dumps(r, ensure_ascii=False).encode()) for n, r in enumerate(records, 1)),
                        db_path, name=name)


def import_lines(lines: Iterable[tuple[int, bytes]], db_path: str | Path, *, name: str) -> ImportReport:
    report = ImportReport()
    db = connect(db_path)
    try:
        migrate(db)
        salt = db.execute("SELECT value FROM settings WHERE key = 'caller_salt'").fetchone()[0]
        seen: dict[str, int] = {}
        batch: list[tuple[int, dict]] = []
        with ThreadPoolExecutor(2, thread_name_prefix="factors") as pool:
            for number, raw in lines:
                record = _decode(number, raw, name, report)
                if record is None:
                    continue
                first = seen.get(record["phone"])
                if first is not None:
                    report.rejected += 1
                    report.problems.append(f"{name}:{number}: import-duplicate: customer "
                                           f"{_masked(record['phone'])} is already on line {first}; skipped")
                    continue
                seen[record["phone"]] = number
                batch.append((number, record))
                if len(batch) >= BATCH:
                    _write_batch(db, batch, salt, pool, name, report)
                    batch = []
            if batch:
                _write_batch(db, batch, salt, pool, name, report)
    finally:
        db.close()
    return report


def _numbered(handle) -> Iterator[tuple[int, bytes]]:
    for number, raw in enumerate(handle, 1):
        yield number, raw


def _decode(number: int, raw: bytes, name: str, report: ImportReport) -> dict | None:
    where = f"{name}:{number}"
    if not raw.strip():
        return None
    if len(raw) > MAX_LINE:
        report.rejected += 1
        report.problems.append(f"{where}: import-bad-row: line longer than {MAX_LINE} bytes")
        return None
    try:
        obj = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
    except UnicodeDecodeError:
        report.rejected += 1
        report.problems.append(f"{where}: import-bad-json: not UTF-8 text")
        return None
    except (json.JSONDecodeError, RecursionError) as exc:
        report.rejected += 1
        report.problems.append(f"{where}: import-bad-json: {getattr(exc, 'msg', 'too deeply nested')}"
                               f" (column {getattr(exc, 'colno', 1)})")
        return None
    checked = check_customer(obj)
    for warning in checked.warnings:
        report.problems.append(f"{where}: import-warning: {warning}")
    if checked.record is None:
        report.rejected += 1
        report.problems.extend(f"{where}: import-bad-row: {error}" for error in checked.errors)
        return None
    return checked.record


def _masked(phone: str) -> str:
    from ivr.privacy import mask_phone

    return mask_phone(phone)


def _digest(salt: str, record: dict) -> str:
    plain = {k: v for k, v in record.items() if k not in ("birth_date", "id_last4")}
    text = json.dumps(plain, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{salt}:{text}".encode()).hexdigest()


def _write_batch(db, batch: list[tuple[int, dict]], salt: str, pool, name: str,
                 report: ImportReport) -> None:
    conn = db.conn
    phones = [r["phone"] for _, r in batch]
    marks = ",".join("?" * len(phones))
    existing = {row[1]: row for row in conn.execute(
        f"SELECT id, phone, digest, dob_hash, id4_hash FROM customers WHERE phone IN ({marks})", phones)}
    # the factor hashes (scrypt, about 5 ms each) are the slow part: two threads, outside the lock
    factors = list(pool.map(lambda item: _factor_hashes(item[1], existing.get(item[1]["phone"])), batch))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for (number, record), (hashes, same_factors) in zip(batch, factors):
            old = existing.get(record["phone"])
            digest = _digest(salt, record)
            if old is not None and old[2] == digest and same_factors:
                report.unchanged += 1
                continue
            conn.execute("SAVEPOINT customer")
            try:
                _write_customer(conn, record, old[0] if old else None, digest, hashes, now)
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK TO customer")
                conn.execute("RELEASE customer")
                report.rejected += 1
                report.problems.append(f"{name}:{number}: import-conflict: {_conflict(exc)}")
                continue
            conn.execute("RELEASE customer")
            report.loaded += 1
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _factor_hashes(record: dict, old) -> tuple[dict[str, str], bool]:
    """The hashes to store, and whether they are the ones already on file."""
    hashes, same = {}, True
    for method, key, column in FACTORS:
        value = record[key]
        stored = old[3 if column == "dob_hash" else 4] if old is not None else ""
        if value and stored and verify_factor(method, stored, value):
            hashes[column] = stored
        elif not value:
            hashes[column] = ""
            same = same and not stored
        else:
            hashes[column] = hash_factor(method, value)
            same = False
    return hashes, same


def _write_customer(conn, record: dict, customer_id: int | None, digest: str,
                    hashes: dict[str, str], now: str) -> None:
    fields = {k: record[k] for k in ("phone", "mobile", "name", "lang", "email", "address", "segment")}
    fields.update(hashes, digest=digest, updated_at=now)
    if customer_id is None:
        cur = conn.execute(
            f"INSERT INTO customers({', '.join(fields)}, created_at) VALUES "
            f"({', '.join(':' + k for k in fields)}, :updated_at)", fields)
        customer_id = cur.lastrowid
    else:
        conn.execute(f"UPDATE customers SET {', '.join(f'{k} = :{k}' for k in fields)} WHERE id = :id",
                     {**fields, "id": customer_id})
        for table in CHILDREN:
            conn.execute(f"DELETE FROM {table} WHERE customer_id = ?", [customer_id])
    for table, columns in CHILDREN.items():
        rows = [[customer_id, *(item[c] for c in columns)] for item in record[table]]
        if rows:
            conn.executemany(f"INSERT INTO {table}(customer_id, {', '.join(columns)}) VALUES "
                             f"({', '.join('?' * (len(columns) + 1))})", rows)
    conn.executemany(
        "INSERT OR IGNORE INTO contacts(customer_id, call_key, at, scene, resolved, source)"
        " VALUES (?, ?, ?, ?, ?, 'import')",
        [[customer_id, f"import:{c['at']}:{c['scene']}", c["at"], c["scene"], int(c["resolved"])]
         for c in record["calls"]])


def _conflict(exc: sqlite3.IntegrityError) -> str:
    text = str(exc)
    if "UNIQUE" in text and "." in text:
        table, column = text.rsplit(" ", 1)[-1].split(".", 1)
        return f"a {column} in {table} already belongs to another customer; customer skipped"
    return f"{text}; customer skipped"

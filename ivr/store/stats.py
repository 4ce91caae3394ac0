"""Analytics over the call store: what `ivr stats` prints and the admin page charts.

Everything is SQL over the tables `calls` and `events` (ivr.store.migrations), read on a
connection of its own in one snapshot; nothing is written. The figures (README, "Analytics and
the admin page", says the same for users):

* calls: calls started in the window (`since` .. now, on calls.started_at); ended: those with
  an outcome (a call in progress has none yet).
* abandoned: ended calls the caller hung up within `abandon_seconds` (default 10 s) of the call
  start: they never gave the IVR a chance and are left out of the containment rates.
* containment = contained / (ended - abandoned), where contained = ended, not abandoned and
  not transferred to a human (outcome != 'transferred'): the IVR finished the call, or the
  caller hung up later on their own. resolved_rate is the strict variant: only outcome
  'resolved' (the IVR ended the call after serving it) counts.
* average_handle_time: mean calls.duration (seconds in the IVR, up to the transfer for
  transferred calls) over ended calls; handle_time_by_outcome: the same per outcome.
* steps: per (scene, step), `entered` = `step` events; `no_input` / `no_match` = `error`
  events with that code, each attributed to the step event that precedes it in the call (the
  engine publishes the step, then the step's re-prompts). An error after a `scene` event and
  before any step of that scene comes from the scene's implicit verification (`requires:
  [verified]`), reported as step `verify` with entered = null. Rates are occurrences per entry
  (a step re-prompted twice in one entry counts twice).
* funnels: per scene, over ended calls (calls.scenes, in visiting order): entered (calls that
  visited it at least once); resolved / transferred / dropped = calls that ended in it
  (calls.last_scene) resolved by the IVR / handed to a human / hung up by the caller;
  escalated = calls escalated to a human (calls.escalation: no-input, no-match, caller asked
  for an agent...) from this scene, i.e. it is the scene before the last (the agent scene);
  passed_on = entered - (resolved + transferred + dropped + other endings here).
* proactive (`proactive` events): asked; accepted / declined / unanswered (accepted true,
  false, null); acceptance_rate = accepted / asked; right = accepted, or the call reached the
  predicted scene (the event's `scene`) anyway (calls.scenes); precision = right / asked. An
  event without `scene` is right only when accepted. Per prediction name too.
* calls_per_day / calls_per_hour: calls started, by local day and hour of day in `timezone`
  (grouped by UTC hour in SQL, then shifted: exact for whole-hour offsets).
"""

from __future__ import annotations

import json
import logging
import zoneinfo
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from ivr.errors import IvrError
from ivr.store.db import DEFAULT_BUSY_TIMEOUT, connect

_LOGGER = logging.getLogger(__name__)

ABANDON_SECONDS = 10.0
# Used when a migration has made it (the figures are the same without it, only slower):
#   CREATE INDEX idx_events_step ON events(json_extract(data, '$.scene'),
#       json_extract(data, '$.id'), json_extract(data, '$.kind')) WHERE type = 'step'
STEP_INDEX = "idx_events_step"
IMPLICIT_VERIFY = "verify"  # the step id the engine gives a scene's implicit verification
_MAX_SINCE = 64  # characters: an ISO date/time is far shorter


class StatsError(IvrError):
    code = "stats-invalid"


def parse_since(text: str | None, tz: str = "UTC") -> str | None:
    """An ISO date or date/time -> the UTC ISO form calls.started_at uses (string-comparable).
    A value without an offset is read in `tz`. None or "" means no limit."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    if len(text) > _MAX_SINCE:
        raise StatsError("since: not an ISO date or date/time", code="bad-since")
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time())
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise StatsError(f"since: {text!r} is not an ISO date or date/time "
                         "(e.g. 2026-12-01 or 2026-12-01T08:00+08:00)", code="bad-since") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_zone(tz))
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _zone(tz: str):
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise StatsError(f"unknown time zone {tz!r}", code="bad-timezone") from None


def compute(path: str | Path, *, since: str | None = None, tz: str = "UTC",
            abandon_seconds: float = ABANDON_SECONDS,
            busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> dict[str, Any]:
    """The figures for calls started since `since` (see the module doc). FileNotFoundError
    when there is no store at `path`; an empty or unmigrated store gives zeros."""
    zone = _zone(tz)
    start = parse_since(since, tz)
    db = connect(path, busy_timeout=busy_timeout, create=False)
    try:
        if "calls" not in db.table_names():
            return empty(start, tz, abandon_seconds)
        conn = db.conn
        conn.execute("BEGIN")  # one snapshot for every query
        try:
            q = _Queries(conn, start or "", abandon_seconds)
            result = {
                "since": start, "timezone": tz, "abandon_seconds": abandon_seconds,
                **q.summary(),
                **q.transfers(),
                "steps": q.steps(),
                "funnels": q.funnels(),
                "proactive": q.proactive(),
                **q.per_time(zone),
            }
        finally:
            conn.rollback()
    finally:
        db.close()
    return result


def empty(start: str | None, tz: str, abandon_seconds: float = ABANDON_SECONDS) -> dict[str, Any]:
    """The figures of a store without calls."""
    return {"since": start, "timezone": tz, "abandon_seconds": abandon_seconds,
            "calls": 0, "ended": 0, "in_progress": 0, "outcomes": {}, "abandoned": 0,
            "contained": 0, "containment": None, "resolved": 0, "resolved_rate": None,
            "transferred": 0, "average_handle_time": None, "handle_time_by_outcome": {},
            "transfer_reasons": [],
            "transfer_queues": [], "steps": [], "funnels": [],
            "proactive": _proactive_totals([]), "calls_per_day": [],
            "calls_per_hour": [{"hour": h, "calls": 0} for h in range(24)]}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class _Queries:
    """The SQL, one method per figure. `since` is '' for no limit ('' sorts before any date)."""

    def __init__(self, conn, since: str, abandon_seconds: float) -> None:
        self.conn = conn
        self.since = since
        self.abandon = float(abandon_seconds)

    def _events(self, where: str) -> tuple[str, list]:
        """FROM/WHERE for events of the window's calls (no join when the window is open)."""
        if self.since:  # CROSS JOIN: the window's calls first, then their events by key
            return (f"FROM calls c CROSS JOIN events e ON e.call_id = c.id"
                    f" WHERE c.started_at >= ? AND {where}", [self.since])
        return f"FROM events e WHERE {where}", []

    def _has_index(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                                 [name]).fetchone() is not None

    def summary(self) -> dict[str, Any]:
        row = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(outcome != ''), 0),"
            " COALESCE(SUM(outcome = 'hangup-caller' AND COALESCE(duration, 0) < ?), 0),"
            " AVG(CASE WHEN outcome != '' THEN COALESCE(duration, 0) END)"
            " FROM calls WHERE started_at >= ?", [self.abandon, self.since]).fetchone()
        calls, ended, abandoned, aht = row
        outcomes: dict[str, int] = {}
        handle: dict[str, float] = {}
        for o, n, mean in self.conn.execute(
                "SELECT outcome, COUNT(*), AVG(COALESCE(duration, 0)) FROM calls"
                " WHERE started_at >= ? AND outcome != ''"
                " GROUP BY outcome ORDER BY COUNT(*) DESC, outcome", [self.since]):
            outcomes[o], handle[o] = n, round(mean, 2)
        transferred = outcomes.get("transferred", 0)
        resolved = outcomes.get("resolved", 0)
        served = ended - abandoned  # calls the IVR had a chance with
        contained = served - transferred
        return {"calls": calls, "ended": ended, "in_progress": calls - ended, "outcomes": outcomes,
                "abandoned": abandoned, "contained": contained,
                "containment": _rate(contained, served), "resolved": resolved,
                "resolved_rate": _rate(resolved, served), "transferred": transferred,
                "average_handle_time": round(aht, 2) if aht is not None else None,
                "handle_time_by_outcome": handle}

    def transfers(self) -> dict[str, Any]:
        rows = self.conn.execute(
            "SELECT transfer_queue, transfer_reason, COUNT(*) FROM calls"
            " WHERE started_at >= ? AND outcome = 'transferred'"
            " GROUP BY transfer_queue, transfer_reason", [self.since]).fetchall()
        total = sum(n for _, _, n in rows)
        reasons: dict[str, int] = {}
        queues: dict[str, int] = {}
        for queue, reason, n in rows:
            reasons[reason or "(none)"] = reasons.get(reason or "(none)", 0) + n
            queues[queue or "(none)"] = queues.get(queue or "(none)", 0) + n

        def listing(counts: dict[str, int], key: str) -> list[dict]:
            return [{key: k, "count": n, "share": _rate(n, total)}
                    for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]

        return {"transfer_reasons": listing(reasons, "reason"), "transfer_queues": listing(queues, "queue")}

    def steps(self) -> list[dict[str, Any]]:
        table: dict[tuple[str, str], dict[str, Any]] = {}

        def entry(scene: str, step: str, kind: str, entered: int | None) -> dict[str, Any]:
            return table.setdefault((scene, step), {
                "scene": scene, "step": step, "kind": kind, "entered": entered,
                "no_input": 0, "no_match": 0})

        sql, params = self._events("e.type = 'step'")
        if not self.since and self._has_index(STEP_INDEX):  # all calls: read the index only
            sql = sql.replace("FROM events e", f"FROM events e INDEXED BY {STEP_INDEX}", 1)
        for scene, step, kind, n in self.conn.execute(
                "SELECT json_extract(e.data, '$.scene'), json_extract(e.data, '$.id'),"
                f" json_extract(e.data, '$.kind'), COUNT(*) {sql} GROUP BY 1, 2, 3", params):
            row = entry(str(scene or ""), str(step or ""), str(kind or ""), 0)
            row["entered"] += n
        # each no-input / no-match -> the nearest step (or scene) event before it in its call
        sql, params = self._events(
            "e.type = 'error' AND json_extract(e.data, '$.code') IN ('no-input', 'no-match')")
        for code, at, n in self.conn.execute(
                # the subquery is used once: its (type, scene, id) as one JSON array
                "SELECT code, at, COUNT(*) FROM ("
                " SELECT json_extract(e.data, '$.code') AS code,"
                "  (SELECT json_extract(s.data, '$.type', '$.scene', '$.id') FROM events s"
                "   WHERE s.call_id = e.call_id AND s.seq < e.seq AND s.type IN ('step', 'scene')"
                "   ORDER BY s.seq DESC LIMIT 1) AS at"
                f" {sql}) GROUP BY 1, 2", params):
            at_type, at_scene, at_step = json.loads(at) if at else (None, None, None)
            if at_type == "step":
                row = entry(str(at_scene or ""), str(at_step or ""), "", 0)
            elif at_type == "scene":  # a scene event: its id is the scene
                row = entry(str(at_step or ""), IMPLICIT_VERIFY, "verify", None)
            else:  # no step before it (should not happen): keep the count visible
                row = entry("", "", "", None)
            row["no_match" if code == "no-match" else "no_input"] += n
        rows = list(table.values())
        for row in rows:
            row["no_input_rate"] = _rate(row["no_input"], row["entered"] or 0)
            row["no_match_rate"] = _rate(row["no_match"], row["entered"] or 0)
        rows.sort(key=lambda r: (-(r["no_input"] + r["no_match"]), -(r["entered"] or 0),
                                 r["scene"], r["step"]))
        return rows

    def funnels(self) -> list[dict[str, Any]]:
        ended = "c.started_at >= ? AND c.outcome != ''"
        table: dict[str, dict[str, Any]] = {}

        def entry(scene: str) -> dict[str, Any]:
            return table.setdefault(scene, {"scene": scene, "entered": 0, "resolved": 0,
                                            "transferred": 0, "escalated": 0, "dropped": 0,
                                            "other": 0})

        for scene, n in self.conn.execute(
                "SELECT j.value, COUNT(*) FROM calls c, json_each(c.scenes) j"
                f" WHERE {ended} AND json_valid(c.scenes) AND NOT EXISTS (SELECT 1 FROM"
                "  json_each(c.scenes) k WHERE k.value = j.value AND k.key < j.key)"  # once a call
                " GROUP BY j.value", [self.since]):
            entry(str(scene))["entered"] = n
        for scene, outcome, n in self.conn.execute(
                f"SELECT c.last_scene, c.outcome, COUNT(*) FROM calls c WHERE {ended}"
                " GROUP BY 1, 2", [self.since]):
            key = {"resolved": "resolved", "transferred": "transferred",
                   "hangup-caller": "dropped"}.get(outcome, "other")
            entry(str(scene or ""))[key] += n
        for scene, n in self.conn.execute(
                "SELECT json_extract(c.scenes, '$[#-2]'), COUNT(*) FROM calls c"
                f" WHERE {ended} AND c.escalation != '' AND json_valid(c.scenes)"
                " AND json_array_length(c.scenes) >= 2 GROUP BY 1", [self.since]):
            entry(str(scene))["escalated"] += n
        rows = []
        for row in table.values():
            ended_here = row["resolved"] + row["transferred"] + row["dropped"] + row["other"]
            row["passed_on"] = max(0, row["entered"] - ended_here)
            rows.append(row)
        rows.sort(key=lambda r: (-r["entered"], r["scene"]))
        return rows

    def proactive(self) -> dict[str, Any]:
        sql, params = self._events("e.type = 'proactive'")
        rows = self.conn.execute(
            "SELECT prediction, accepted, COUNT(*), SUM(accepted IS 1 OR reached) FROM ("
            " SELECT COALESCE(json_extract(e.data, '$.prediction'), '') AS prediction,"
            "  json_extract(e.data, '$.accepted') AS accepted,"
            "  (SELECT COUNT(*) FROM calls k, json_each(k.scenes) j WHERE k.id = e.call_id"
            "   AND json_valid(k.scenes) AND j.value = json_extract(e.data, '$.scene')) > 0 AS reached"
            f" {sql}) GROUP BY 1, 2", params).fetchall()
        return _proactive_totals(rows)

    def per_time(self, zone) -> dict[str, Any]:
        days: dict[str, int] = {}
        hours = [0] * 24
        for bucket, n in self.conn.execute(
                "SELECT substr(started_at, 1, 13), COUNT(*) FROM calls WHERE started_at >= ?"
                " GROUP BY 1", [self.since]):
            try:
                utc = datetime.fromisoformat(bucket + ":00").replace(tzinfo=timezone.utc)
            except ValueError:
                _LOGGER.warning("call store: unreadable started_at %r", bucket)
                continue
            local = utc.astimezone(zone)
            day = local.date().isoformat()
            days[day] = days.get(day, 0) + n
            hours[local.hour] += n
        return {"calls_per_day": [{"day": d, "calls": days[d]} for d in sorted(days)],
                "calls_per_hour": [{"hour": h, "calls": n} for h, n in enumerate(hours)]}


def _proactive_totals(rows: list[tuple]) -> dict[str, Any]:
    """rows: (prediction, accepted 1/0/None, count, right) -> totals and per prediction."""
    def blank(name: str | None = None) -> dict[str, Any]:
        d = {"asked": 0, "accepted": 0, "declined": 0, "unanswered": 0, "right": 0}
        return {"prediction": name, **d} if name is not None else d

    total = blank()
    per: dict[str, dict[str, Any]] = {}
    for prediction, accepted, n, right in rows:
        item = per.setdefault(str(prediction), blank(str(prediction)))
        key = "accepted" if accepted == 1 else "declined" if accepted == 0 else "unanswered"
        for d in (total, item):
            d["asked"] += n
            d[key] += n
            d["right"] += int(right or 0)
    for d in (total, *per.values()):
        d["acceptance_rate"] = _rate(d["accepted"], d["asked"])
        d["precision"] = _rate(d["right"], d["asked"])
    total["by_prediction"] = sorted(per.values(), key=lambda d: (-d["asked"], d["prediction"]))
    return total

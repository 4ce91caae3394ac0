"""How likely is it that the caller is calling about this? The data-driven proactive score.

Three kinds of evidence, from the weakest to the most specific:
1. the rule's declared score (`score:` in the flow): the author's prior;
2. similar customers: how often this rule's question was right for the customers it was asked
   of (a prediction is right when the caller said yes, or reached its scene anyway); the rule's
   score is the prior, worth `k_similar` predictions;
3. this customer's own recent calls: the recency-weighted share of their past calls that went
   to the rule's scene. Each past call weighs 2^(-age / half_life), an unresolved one 1.5 times
   as much; the estimate from 1 and 2 is worth `k_own` calls.

score = (own hits + k_own * similar) / (own calls + k_own), with
similar = (right + k_similar * rule score) / (asked + k_similar).
A customer without history gets the similar-customer estimate; one whose recent calls were all
about this scene scores near 1; one whose calls were all about something else scores lower.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable


@dataclass(frozen=True)
class ScoreWeights:
    half_life_days: float = 14.0
    unresolved_weight: float = 1.5
    k_own: float = 2.0
    k_similar: float = 10.0
    horizon_days: float = 180.0  # older calls are ignored


@dataclass(frozen=True)
class PastCall:
    age_days: float
    scenes: frozenset[str]
    resolved: bool


def past_calls(profile: dict[str, Any], now: datetime) -> list[PastCall]:
    """The profile's `calls` (import format, plus `call` to group live calls' scenes), as
    PastCalls; entries with an unreadable time are skipped."""
    grouped: dict[str, tuple[datetime, set[str], bool]] = {}
    naive_now = now.replace(tzinfo=None)
    for call in profile.get("calls") or []:
        try:
            at = datetime.fromisoformat(str(call.get("at", ""))).replace(tzinfo=None)
        except ValueError:
            continue
        key = str(call.get("call") or f"{call.get('at')}:{call.get('scene')}")
        when, scenes, resolved = grouped.get(key, (at, set(), True))
        scenes.add(str(call.get("scene", "")))
        grouped[key] = (when, scenes, resolved and bool(call.get("resolved", True)))
    return [PastCall(max(0.0, (naive_now - at).total_seconds() / 86400), frozenset(scenes), resolved)
            for at, scenes, resolved in grouped.values()]


def score(rule_score: float, scene: str, calls: Iterable[PastCall],
          outcome: tuple[int, int] | None = None,
          weights: ScoreWeights = ScoreWeights()) -> tuple[float, dict[str, float]]:
    """The score of one candidate and its parts. `outcome` is (asked, right) over the
    predictions this rule made before."""
    asked, right = outcome or (0, 0)
    similar = (right + weights.k_similar * rule_score) / (asked + weights.k_similar)
    hits = total = 0.0
    for call in calls:
        if call.age_days > weights.horizon_days:
            continue
        weight = 2 ** (-call.age_days / weights.half_life_days)
        if not call.resolved:
            weight *= weights.unresolved_weight
        total += weight
        if scene in call.scenes:
            hits += weight
    value = (hits + weights.k_own * similar) / (total + weights.k_own)
    parts = {"rule": round(rule_score, 3), "similar": round(similar, 3), "asked": asked,
             "own_hits": round(hits, 3), "own_calls": round(total, 3)}
    return max(0.0, min(1.0, value)), parts

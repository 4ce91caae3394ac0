"""Facts derived from a customer's holdings, that flows test: the open claim, a bill due soon.

One function for the in-memory demo directory and the SQLite history, so the two agree.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

OPEN_CLAIM = ("reported", "under_review", "approved")
DUE_SOON_DAYS = 30
RECENT_UNRESOLVED_DAYS = 7
RECENTLY_BLOCKED_DAYS = 14


def derive_facts(c: dict[str, Any], today: date) -> dict[str, Any]:
    """Add the derived facts to profile `c` (in place) and return it."""
    soon = (today + timedelta(days=DUE_SOON_DAYS)).isoformat()
    now = today.isoformat()
    claims = sorted(c.get("claims", []), key=lambda x: x.get("opened", ""), reverse=True)
    c["open_claims"] = [x for x in claims if x.get("status") in OPEN_CLAIM]
    c["open_claim"] = c["open_claims"][0] if c["open_claims"] else None
    cards = c.get("cards", [])
    c["blocked_cards"] = [x for x in cards if x.get("status") == "blocked"]
    blocked_since = (today - timedelta(days=RECENTLY_BLOCKED_DAYS)).isoformat()
    c["recently_blocked_card"] = next((x for x in c["blocked_cards"]
                                       if str(x.get("blocked_at") or "")[:10] >= blocked_since), None)
    c["bill_due"] = next((x for x in cards if x.get("status") == "active"
                          and now <= str(x.get("statement_due", "")) <= soon
                          and float(x.get("balance") or 0) > 0), None)
    c["renewal_due"] = next((p for p in sorted(c.get("policies", []), key=lambda p: p.get("renewal_due", ""))
                             if p.get("status") == "active" and now <= str(p.get("renewal_due", "")) <= soon),
                            None)
    cutoff = (today - timedelta(days=RECENT_UNRESOLVED_DAYS)).isoformat()
    calls = sorted(c.get("calls", []), key=lambda x: x.get("at", ""), reverse=True)
    c["recent_unresolved"] = next((x for x in calls if not x.get("resolved", True)
                                   and str(x.get("at", "")) >= cutoff), None)
    c["mobile"] = c.get("mobile") or c.get("phone", "")
    return c

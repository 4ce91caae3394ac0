"""Caller history on real calls: a customer imported with `ivr history import` into the running
hotline's store calls from their number, is greeted in their language, hears the proactive
question about their open claim first, accepts it with a key and gets the claim's status; the
prediction and the contact are in the store afterwards."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import date, timedelta

import pytest

from conftest import REPO, wait_for

pytestmark = pytest.mark.e2e

CUSTOMER = "+8613800009901"


def test_a_returning_caller_hears_the_proactive_question_and_reaches_their_claim(hotline_agi, tmp_path):
    opened = (date.today() - timedelta(days=5)).isoformat()
    line = {"phone": CUSTOMER, "name": "测试", "lang": "zh", "birth_date": "1980-01-01",
            "policies": [{"number": "P990001", "product": "car", "status": "active"}],
            "claims": [{"number": "20269901", "policy": "P990001", "status": "under_review", "opened": opened}]}
    source = tmp_path / "customer.jsonl"
    source.write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "ivr", "--config", str(hotline_agi.config.source),
                          "history", "import", str(source), "--db", str(hotline_agi.store_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    (call,) = hotline_agi.call("proactive_claim.yaml")
    assert call["lang"] == "zh"
    assert call["scenes"] == ["welcome", "claim_status", "anything_else"], call["scenes"]
    proactive = [e for e in call["events"] if e["type"] == "proactive"]
    assert proactive and proactive[0]["prediction"] == "open_claim" and proactive[0]["accepted"] is True
    assert any("20269901" in e.get("text", "") for e in call["events"] if e["type"] == "prompt")
    def learned():
        db = sqlite3.connect(hotline_agi.store_path, timeout=10)
        try:
            rows = db.execute("SELECT name, accepted, correct FROM predictions WHERE call_id = ?",
                              [call["call_id"]]).fetchall()
            contacts = db.execute("SELECT scene FROM contacts WHERE call_key = ?", [call["call_id"]]).fetchall()
        finally:
            db.close()
        return (rows, contacts) if rows else None

    rows, contacts = wait_for(learned, 5, 0.1, what="the call's prediction in the store")
    assert rows == [("open_claim", 1, 1)]
    assert contacts == [("claim_status",)]

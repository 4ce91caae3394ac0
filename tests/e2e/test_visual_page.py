"""The visual page in a real headless Chromium, during a real SIP call through Asterisk (FastAGI).

A customer imported by the test (two policies, a paid claim: nothing open, so no proactive
question) calls and only listens: the hotline texts the page's link at call start
(`visual.auto_offer`, switched on from the Asterisk CLI). The test takes the link from the
outbox, opens it (the GET spends nothing), presses Continue, sees the greeting in the
transcript, verifies with the date of birth (the policies appear, the call says so), taps
"claims" then "claim progress", keys in the claim number with one wrong digit deleted, hears
the claim's status, taps "No" to anything else, and the page says the call has ended. The call's recorded events prove each step. Screenshots go to
tests/artifacts/.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-quic"]
CUSTOMER = {"phone": "+15550177001", "name": "Page Tester", "lang": "en", "birth_date": "1970-01-01",
            "policies": [{"number": "P770001", "product": "home", "status": "active", "renewal_due": "2027-05-01"},
                         {"number": "P770002", "product": "car", "status": "active", "renewal_due": "2027-08-01"}],
            "claims": [{"number": "20267001", "policy": "P770001", "status": "paid", "opened": "2026-10-01"}]}


def latest_link(store: Path, call_ids_before: set[str]) -> dict | None:
    from ivr.sms.outbox import read_outbox

    try:
        messages = read_outbox(store, 20)
    except FileNotFoundError:
        return None
    fresh = [m for m in messages if m["call_id"] not in call_ids_before and m["to"].endswith("7001")]
    return fresh[0] if fresh and fresh[0]["url"] else None


def import_customer(hotline) -> None:
    """The page's customer into the hotline's store, as an operator would (`ivr history import`)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    source = ARTIFACTS / f"visual_customer_{hotline.mode}.jsonl"
    source.write_text(json.dumps(CUSTOMER) + "\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "ivr", "--config", str(hotline.config.source), "history",
                          "import", str(source), "--db", str(hotline.store_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout


def test_a_caller_follows_and_drives_the_call_on_the_visual_page(hotline_agi):
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (./setup.sh installs it)")
    from playwright.sync_api import expect, sync_playwright

    import_customer(hotline_agi)
    hotline_agi.rx("database put ivr visual.auto_offer 1")  # as an admin would, from the CLI
    try:
        _follow_and_drive(hotline_agi, expect, sync_playwright)
    finally:
        hotline_agi.rx("database del ivr visual.auto_offer")


def _follow_and_drive(hotline_agi, expect, sync_playwright) -> None:
    time.sleep(1.0)  # the controller reads AstDB flags every 0.5 s
    before = hotline_agi.call_ids()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        placed = pool.submit(hotline_agi.call, "visual_listen.yaml", sipp_timeout=180, wait=15,
                             end_wait_ms=120_000)
        sms = wait_for(lambda: latest_link(hotline_agi.store_path, before), 20, 0.2,
                       what="the visual page's link in the SMS outbox")
        url = sms["url"]
        assert url.startswith(hotline_agi.config.web.public_url + "/v/")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=15_000)
            context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
            context.set_default_timeout(15_000)
            expect.set_options(timeout=12_000)  # a tap over a prompt waits for AMI to stop it
            page = context.new_page()
            problems: list[str] = []
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            try:
                # a GET (what a link previewer does) spends nothing: the same link opens twice
                preview = page.goto(url)
                assert preview.status == 200 and preview.headers["referrer-policy"] == "no-referrer"
                assert preview.headers["cache-control"] == "no-store"
                page.goto(url)
                page.screenshot(path=str(ARTIFACTS / "visual_continue.png"))
                with page.expect_navigation():
                    page.get_by_role("button", name="Continue").click()
                assert page.url.endswith("/v")  # the token is gone from the address
                transcript = page.locator("#transcript")
                expect(transcript).to_contain_text("Welcome to Harbor Financial Group.")
                expect(page.locator("#status")).to_have_text("Live")
                # verification on the page: the policies appear and the call hears it
                page.get_by_label("Your answer").fill("1970-01-01")
                with page.expect_navigation():
                    page.get_by_role("button", name="Verify").click()
                expect(page.locator("#holdings")).to_contain_text("P770001")
                expect(page.locator("#holdings")).to_contain_text("P770002")
                expect(transcript).to_contain_text("Thank you, you are verified.")
                # the main menu's options as buttons
                expect(page.locator("#choices")).to_contain_text("claims")
                page.screenshot(path=str(ARTIFACTS / "visual_menu.png"))
                page.locator('button.choice[data-value="1"]').click()  # claims
                expect(transcript).to_contain_text("You chose claims.")
                expect(page.locator("#choices")).to_contain_text("claim progress")
                page.locator('button.choice[data-value="1"]').click()  # claim progress
                keypad = page.locator("#keypad-card")
                expect(keypad).to_be_visible()
                for key in "20267003":
                    page.locator(f'.key[data-key="{key}"]').click()
                expect(page.locator("#send")).to_be_enabled()
                page.get_by_role("button", name="Delete").click()
                expect(page.locator("#send")).to_be_disabled()  # 7 of 8 digits: not yet
                page.locator('.key[data-key="1"]').click()
                expect(page.locator("#entry")).to_have_value("20267001")
                page.screenshot(path=str(ARTIFACTS / "visual_keypad.png"))
                page.locator("#send").click()
                expect(transcript).to_contain_text("Your claim 20267001 is paid", timeout=20_000)
                page.locator('button.choice[data-value="no"]').click()  # anything else? no
                expect(page.locator("#status")).to_contain_text("ended", timeout=20_000)
                page.screenshot(path=str(ARTIFACTS / "visual_ended.png"), full_page=True)
                assert problems == [], problems
            finally:
                context.close()
                browser.close()
        calls = placed.result(timeout=180)
    (call,) = calls
    taps = [e["value"] for e in call["events"] if e["type"] == "input" and e["kind"] == "click"]
    assert taps[:2] == ["1", "1"], taps
    keys = [e["value"] for e in call["events"] if e["type"] == "input" and e["kind"] == "dtmf"]
    assert "****7001" in keys or "20267001" in keys, keys
    assert {"type": "verified", "method": "web-dob", "ok": True}.items() <= next(
        e for e in call["events"] if e["type"] == "verified").items()
    assert call["scenes"][-2:] == ["claim_status", "anything_else"], call["scenes"]
    assert call["outcome"] == "resolved" and call["ended_by"] == "ivr"
    time.sleep(0.5)
    hotline_agi.wait_no_channels()

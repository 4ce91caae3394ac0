"""The admin page in a real headless Chromium (Debian's, driven by Playwright): `ivr web` as
an admin runs it, over a store filled by simulated calls. Sign-in through the form, the charts
drawn (SVG styled by the page's own stylesheet, nothing blocked by the CSP), the figures equal
to `ivr stats --json`, the `since` filter, a wrong password, and no cookie -> the sign-in form.
A screenshot goes to tests/artifacts/admin_page.png. Needs no Asterisk."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
IVR = str(REPO / ".venv" / "bin" / "ivr")
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-quic"]
TIMEOUT_MS = 15_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(base URL, store path, env, password) of a running `ivr web`."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (./setup.sh installs it)")
    pytest.importorskip("playwright.sync_api")
    sys.path.insert(0, str(REPO / "tests" / "unit"))
    from _statskit import fill

    from ivr.app import flow_repository
    from ivr.config import load_config
    from ivr.nlu.router import IntentRouter

    tmp = tmp_path_factory.mktemp("admin")
    store = tmp / "ivr.db"
    config = load_config(str(REPO / "config.yaml"))
    asyncio.run(fill(store, config, flow_repository(config).load(), IntentRouter(None)))
    env = {**os.environ, "IVR_VAR_DIR": str(tmp / "var"), "PYTHONDONTWRITEBYTECODE": "1"}
    port = _free_port()
    proc = subprocess.Popen([IVR, "--config", str(REPO / "config.yaml"), "web", "--db", str(store),
                             "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ivr web did not start: {proc.stdout.read() if proc.poll() is not None else 'timeout'}")
                time.sleep(0.1)
        password = json.loads((tmp / "var" / "secrets.json").read_text())["WEB_ADMIN_PASSWORD"]
        yield f"http://127.0.0.1:{port}", store, env, password
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=TIMEOUT_MS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.problems = []  # console errors (CSP violations show there) and page errors
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    try:
        yield page
    finally:
        context.close()


def ivr_stats(store: Path, env: dict, *args: str) -> dict:
    proc = subprocess.run([IVR, "--config", str(REPO / "config.yaml"), "stats", "--db", str(store),
                           "--json", *args], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def pct(value) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def sign_in(page, base: str, password: str):
    page.goto(f"{base}/admin")
    page.wait_for_url(re.compile(r"/admin/login$"))
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("button[type=submit]")


def test_no_cookie_goes_to_the_sign_in_form(site, page):
    base, *_ = site
    response = page.goto(f"{base}/admin")
    assert page.url == f"{base}/admin/login"
    assert response.status == 200 and page.is_visible("#password")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.problems == []


def test_a_wrong_password_shows_an_error(site, page):
    base, *_ = site
    sign_in(page, base, "not the password")
    assert page.url == f"{base}/admin/login"
    assert page.locator("p.error").inner_text() == "Wrong password."
    assert not any(c["name"] == "ivr_admin" for c in page.context.cookies())


def test_signed_in_admin_sees_the_charts_with_the_figures_of_ivr_stats(site, page):
    base, store, env, password = site
    sign_in(page, base, password)
    assert page.url == f"{base}/admin"
    page.wait_for_selector("#chart-containment svg.pygal-chart")
    stats = ivr_stats(store, env)
    assert page.locator("svg.pygal-chart").count() == 8
    assert page.inner_text("#fig-calls") == str(stats["calls"])
    assert page.inner_text("#fig-containment") == pct(stats["containment"])
    assert page.inner_text("#fig-resolved") == pct(stats["resolved_rate"])
    assert page.inner_text("#fig-aht") == f"{stats['average_handle_time']:.1f} s"
    assert page.inner_text("#fig-acceptance") == pct(stats["proactive"]["acceptance_rate"])
    assert page.inner_text("#fig-precision") == pct(stats["proactive"]["precision"])
    # one bar per transfer reason, with the reason's count printed on it
    bars = page.locator("#chart-transfers svg .series rect")
    assert bars.count() == len(stats["transfer_reasons"])
    printed = page.locator("#chart-transfers svg .text-overlay text").all_text_contents()
    assert sorted(int(t) for t in printed if t.strip()) == sorted(r["count"] for r in stats["transfer_reasons"])
    # the charts' stylesheet (not inline: the CSP forbids that) applies to the inline SVG
    fill = page.eval_on_selector("#chart-transfers svg .series rect", "e => getComputedStyle(e).fill")
    assert fill == "rgb(37, 99, 235)", fill
    box = page.locator("#chart-funnels svg").bounding_box()
    assert box and box["width"] > 300 and box["height"] > 150
    # the accessible tables carry the same figures
    funnel_rows = page.locator("#chart-funnels table tbody tr")
    assert funnel_rows.count() == len(stats["funnels"])
    first = funnel_rows.nth(0).locator("td").all_text_contents()
    top = stats["funnels"][0]
    assert first[:3] == [top["scene"], str(top["entered"]), str(top["resolved"])]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin_page.png"), full_page=True)
    assert page.problems == [], page.problems


def test_since_filter_through_the_form(site, page):
    base, store, env, password = site
    sign_in(page, base, password)
    page.fill("#since", "2999-01-01")
    with page.expect_navigation():
        page.click("form.since button")
    assert "since=2999-01-01" in page.url
    assert page.inner_text("#fig-calls") == str(ivr_stats(store, env, "--since", "2999-01-01")["calls"]) == "0"
    page.fill("#since", "not a date")
    with page.expect_navigation():
        page.click("form.since button")
    assert "bad-since" in page.inner_text("p.error")
    assert page.problems == []

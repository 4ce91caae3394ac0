"""The SMS outbox: what a call's `sms_link` step talks to (the `SmsGateway` of ivr.services).

`send_link` issues a link token, writes the message to the store's `sms_outbox` and returns the
link at once (`send_code` does the same for a one-time code: purpose `otp`, no link); delivery
runs in the background through the configured gateway, retried with backoff, so a slow or
dead gateway never holds up or breaks the call. Every message and its delivery state can be
read back (`ivr sms outbox`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ivr.privacy import mask_phone
from ivr.sms.gateways import Gateway, GatewayError
from ivr.store.db import DEFAULT_BUSY_TIMEOUT, connect
from ivr.store.links import LinkTokens
from ivr.store.migrations import migrate

_LOGGER = logging.getLogger(__name__)

TEXTS = {
    "visual": {"en": "{brand}: follow your call on screen, tap to choose, verify yourself: {url} (valid {minutes} minutes)",
               "zh": "{brand}：在手机上查看本次通话、点选菜单并验证身份：{url}（{minutes}分钟内有效）"},
    "verify": {"en": "{brand}: verify your identity for this call: {url} (valid {minutes} minutes)",
               "zh": "{brand}：请点击链接完成本次通话的身份验证：{url}（{minutes}分钟内有效）"},
    "documents": {"en": "{brand}: the documents for your call: {url} (valid {minutes} minutes)",
                  "zh": "{brand}：本次通话的相关资料：{url}（{minutes}分钟内有效）"},
    "otp": {"en": "{brand}: your verification code is {code}. It expires in {minutes} minutes. Do not share it with anyone.",
            "zh": "{brand}：您的验证码为{code}，{minutes}分钟内有效。请勿向任何人透露。"},
}
HIDDEN_CODE = "••••••"
_URL = re.compile(r"https?://[^\s（()]+")
BRAND = {"en": "Harbor Financial", "zh": "港湾金融"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class SmsOutbox:
    def __init__(self, db_path: str | Path, gateway: Gateway, *, base_url: str, links: LinkTokens | None = None,
                 retries: int = 4, backoff: float = 1.0, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.gateway = gateway
        self.base_url = base_url.rstrip("/")
        self.links = links or LinkTokens(db_path)
        self.retries = retries
        self.backoff = backoff
        self._lock = threading.Lock()
        self._db = connect(db_path, busy_timeout=busy_timeout)
        migrate(self._db)
        self._tasks: set[asyncio.Task] = set()

    async def send_link(self, call_id: str, to: str, purpose: str, lang: str = "en") -> str:
        token = await asyncio.to_thread(self.links.issue, call_id, to, purpose)
        url = f"{self.base_url}/v/{token}"
        texts = TEXTS.get(purpose, TEXTS["visual"])
        lang = lang if lang in texts else "en"
        text = texts[lang].format(brand=BRAND.get(lang, BRAND["en"]), url=url,
                           minutes=max(1, round(self.links.ttl / 60)))
        row_id = await asyncio.to_thread(self._insert, call_id, to, purpose, text)
        self._spawn(self._deliver(row_id, to, text, text.replace(url, url[: url.rfind("/") + 1] + "…")))
        return url

    async def send_code(self, call_id: str, to: str, code: str, *, lang: str = "en", minutes: int = 5) -> None:
        """Text a one-time code (ivr.verification). The embedded outbox keeps the message as it
        is (that row is the message); for a real gateway the row never holds the code."""
        lang = lang if lang in TEXTS["otp"] else "en"
        text = TEXTS["otp"][lang].format(brand=BRAND.get(lang, BRAND["en"]), code=code, minutes=minutes)
        stored = text if self.gateway.keeps_body else text.replace(code, HIDDEN_CODE)
        row_id = await asyncio.to_thread(self._insert, call_id, to, "otp", stored)
        self._spawn(self._deliver(row_id, to, text, stored))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def call_ended(self, call_id: str) -> None:
        """The call is over: its page links open nothing any more (off the event loop; a call
        without links costs no thread)."""
        if not self.links.issued_for(call_id):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.links.revoke_call(call_id)
            return
        task = loop.create_task(asyncio.to_thread(self.links.revoke_call, call_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the deliveries in flight (at shutdown, and in tests)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def close(self) -> None:
        await self.drain(timeout=5)
        for task in list(self._tasks):
            task.cancel()
        await self.gateway.close()
        self.links.close()
        with self._lock:
            self._db.close()

    # ---- delivery ----------------------------------------------------------------------

    async def _deliver(self, row_id: int, to: str, text: str, redacted: str) -> None:
        """Send `text`; once sent, a gateway that does not keep bodies leaves `redacted` in the row."""
        delay = self.backoff
        for attempt in range(1, self.retries + 2):
            try:
                await self.gateway.deliver(to, text)
            except GatewayError as exc:
                final = not exc.retry or attempt > self.retries
                await asyncio.to_thread(self._update, row_id, "failed" if final else "retrying", attempt, str(exc))
                _LOGGER.warning("sms %d to %s: attempt %d: %s%s", row_id, mask_phone(to), attempt, exc,
                                "; giving up" if final else f"; retrying in {delay:.1f} s")
                if final:
                    return
                await asyncio.sleep(delay)
                delay *= 2
                continue
            except Exception as exc:  # a broken gateway is logged, never raised into a call
                _LOGGER.exception("sms %d: gateway failed", row_id)
                await asyncio.to_thread(self._update, row_id, "failed", attempt, f"{type(exc).__name__}: {exc}")
                return
            body = None if self.gateway.keeps_body else redacted
            await asyncio.to_thread(self._update, row_id, "sent", attempt, "", body)
            return

    # ---- the table ---------------------------------------------------------------------

    def _insert(self, call_id: str, to: str, purpose: str, text: str) -> int:
        with self._lock:
            cur = self._db.conn.execute(
                "INSERT INTO sms_outbox(call_id, recipient, purpose, body, gateway, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)", [call_id, to, purpose, text, self.gateway.name, _now()])
            self._db.conn.commit()
            return cur.lastrowid

    def _update(self, row_id: int, status: str, attempts: int, error: str, body: str | None = None) -> None:
        with self._lock:
            self._db.conn.execute(
                "UPDATE sms_outbox SET status = ?, attempts = ?, last_error = ?, body = COALESCE(?, body),"
                " sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE id = ?",
                [status, attempts, error[:300], body, status, _now(), row_id])
            self._db.conn.commit()


def read_outbox(db_path: str | Path, last: int = 20) -> list[dict[str, Any]]:
    """The last messages, newest first, the recipient masked."""
    db = connect(db_path, create=False)
    try:
        if "sms_outbox" not in db.table_names():
            return []
        rows = list(db.query("SELECT * FROM sms_outbox ORDER BY id DESC LIMIT ?", [max(0, last)]))
    finally:
        db.close()
    out = []
    for r in rows:
        found = _URL.search(r["body"])
        url = found.group(0) if found else ""
        out.append({"id": r["id"], "call_id": r["call_id"], "to": mask_phone(r["recipient"]),
                    "purpose": r["purpose"], "url": url, "text": r["body"], "gateway": r["gateway"],
                    "status": r["status"], "attempts": r["attempts"], "error": r["last_error"],
                    "created_at": r["created_at"], "sent_at": r["sent_at"]})
    return out

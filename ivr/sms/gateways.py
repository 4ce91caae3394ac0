"""SMS gateways: how a queued message leaves the box.

`EmbeddedGateway` delivers nowhere: the outbox row is the message (`ivr sms outbox` shows it),
for development, tests and demos. `HttpGateway` speaks to a provider's REST API from config:
URL, method, headers (the auth header) and a body template, which is enough for the common
providers. A gateway answers `deliver(to, text)` with None (sent) or raises GatewayError, whose
`retry` says whether trying again may help (network errors, 429, 5xx) or not (other 4xx).
"""

from __future__ import annotations

import asyncio
import json
import logging
import string
from typing import Any, Protocol
from urllib.parse import quote

from ivr.privacy import mask_phone

_LOGGER = logging.getLogger(__name__)


class GatewayError(Exception):
    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Gateway(Protocol):
    name: str
    keeps_body: bool  # the outbox row is the delivered message: keep the link in it

    async def deliver(self, to: str, text: str) -> None: ...

    async def close(self) -> None: ...


class EmbeddedGateway:
    name = "embedded"
    keeps_body = True

    async def deliver(self, to: str, text: str) -> None:
        _LOGGER.info("sms to %s (embedded outbox): %d characters", mask_phone(to), len(text))

    async def close(self) -> None:
        pass


class HttpGateway:
    """POST (or another method) to a provider's API; `body` is a string.Template with $to, $text."""

    keeps_body = False
    name = "http"

    def __init__(self, url: str, *, method: str = "POST", headers: dict[str, str] | None = None,
                 body: str = '{"to": "$to", "text": "$text"}', content_type: str = "application/json",
                 timeout: float = 5.0) -> None:
        self.url = url
        self.method = method.upper()
        self.headers = {str(k): str(v) for k, v in (headers or {}).items()}
        self.template = string.Template(body)
        self.content_type = content_type
        self.timeout = timeout
        self._session: Any = None

    def render(self, to: str, text: str) -> str:
        if "json" in self.content_type:
            esc = lambda v: json.dumps(v, ensure_ascii=False)[1:-1]  # noqa: E731
        elif "x-www-form-urlencoded" in self.content_type:
            esc = lambda v: quote(v, safe="")  # noqa: E731
        else:
            esc = str
        return self.template.safe_substitute(to=esc(to), text=esc(text))

    async def deliver(self, to: str, text: str) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        headers = {"Content-Type": self.content_type, **self.headers}
        try:
            async with self._session.request(self.method, self.url, data=self.render(to, text).encode(),
                                             headers=headers) as resp:
                if 200 <= resp.status < 300:
                    return
                detail = (await resp.text())[:200]
                raise GatewayError(f"gateway answered {resp.status}: {detail}",
                                   retry=resp.status == 429 or resp.status >= 500)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise GatewayError(f"gateway unreachable: {type(exc).__name__}: {exc}", retry=True) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

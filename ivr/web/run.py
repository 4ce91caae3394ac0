"""Serving the web app: inside the controller (`ivr serve`) or alone (`ivr web`)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from ivr.config import Config
from ivr.errors import IvrError
from ivr.web.app import build_web_app

_LOGGER = logging.getLogger(__name__)


def admin_password(config: Config) -> str:
    """The install's admin password (generated into VAR_DIR/secrets.json on first use)."""
    from ivr.telephony.asterisk import load_secrets

    return load_secrets(config.var_dir)["WEB_ADMIN_PASSWORD"]


class WebServer:
    """The web app on `web.bind`:`web.port` (an AppRunner and one TCPSite)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise IvrError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                           code="web-port-busy") from None
        if self.port == 0:  # an ephemeral port (tests): say which one
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        _LOGGER.info("web app on http://%s:%d/admin", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # on_shutdown closes the websockets first
            self._runner = None


async def start_web(config: Config, store_path: Path, *, port: int | None = None,
                    pages_setup=None) -> WebServer:
    """`pages_setup`: the page modules' setup functions (default: the admin page alone, which
    needs no live calls: `ivr web`)."""
    app = build_web_app(config, store_path, admin_password=admin_password(config), pages_setup=pages_setup)
    server = WebServer(app, config.web.bind, config.web.port if port is None else port)
    await server.start()
    return server


async def run_standalone(config: Config, store_path: Path, *, port: int | None = None) -> None:
    """`ivr web`: serve until SIGINT or SIGTERM."""
    server = await start_web(config, store_path, port=port)
    print(f"admin page: http://{server.host}:{server.port}/admin "
          f"(password: WEB_ADMIN_PASSWORD in {config.var_dir / 'secrets.json'})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()

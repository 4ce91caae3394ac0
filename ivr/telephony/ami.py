"""AMI (panoramisk Manager): reconnecting client, Originate, queue status, UserEvents, and the
AstDB admin flags the engine's `flag` conditions read.

After a reconnect panoramisk re-sends actions that were still waiting; Originate, UserEvent
and DBPut are in `forgetable_actions`, so a call is never placed twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from ivr.telephony.sanitize import agi_value

_LOGGER = logging.getLogger(__name__)
NOT_RESENT = ("ping", "login", "originate", "userevent", "dbput", "dbdel", "command")
FLAG_FAMILY = "ivr"


class AmiClient:
    def __init__(self, host: str, port: int, username: str, secret: str) -> None:
        # events="off": the controller only sends actions; parsing every call's AMI events
        # would cost CPU per call for nothing.
        self._config = dict(host=host, port=port, username=username, secret=secret, events="off",
                            ping_delay=5, ping_interval=5, reconnect_timeout=1,
                            forgetable_actions=NOT_RESENT)
        self.manager: Any = None

    async def connect(self, timeout: float = 10) -> None:
        from panoramisk import Manager

        self.manager = Manager(loop=asyncio.get_running_loop(), **self._config)
        await asyncio.wait_for(self.manager.connect(), timeout)
        for _ in range(int(timeout * 10)):
            if self.manager.authenticated:
                return
            await asyncio.sleep(0.1)
        raise ConnectionError("AMI login failed")

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()

    @property
    def connected(self) -> bool:
        return bool(self.manager and self.manager.authenticated)

    async def action(self, action: dict[str, Any], timeout: float = 10, *, as_list: bool | None = None) -> Any:
        async with asyncio.timeout(timeout):  # no extra task per action (wait_for makes one)
            return await self.manager.send_action(action, as_list=as_list)

    async def command(self, cli: str, timeout: float = 10) -> str:
        """An Asterisk CLI command over AMI; its output as text."""
        response = await self.action({"Action": "Command", "Command": cli}, timeout)
        if isinstance(response, list):
            response = response[0]
        output = response.get("Output") if hasattr(response, "get") else None
        if isinstance(output, list):
            return "\n".join(output)
        return str(output or getattr(response, "content", "") or "")

    async def originate(self, channel: str, *, context: str, exten: str, priority: int = 1,
                        caller_id: str = "", variables: dict[str, str] | None = None,
                        timeout_ms: int = 30000) -> Any:
        action = {"Action": "Originate", "Channel": channel, "Context": context, "Exten": exten,
                  "Priority": str(priority), "Timeout": str(timeout_ms), "Async": "true"}
        if caller_id:
            action["CallerID"] = agi_value(caller_id, 80)
        if variables:
            action["Variable"] = [f"{k}={agi_value(v)}" for k, v in variables.items()]
        # as_list=False: take "successfully queued" as the answer; panoramisk would otherwise
        # wait for the OriginateResponse event, which never comes with events off
        return await self.action(action, as_list=False)

    async def user_event(self, name: str, fields: dict[str, str]) -> None:
        action = {"Action": "UserEvent", "UserEvent": agi_value(name, 40)}
        action.update({k: agi_value(v) for k, v in fields.items()})
        try:
            await self.action(action, timeout=2)
        except Exception:  # admin visibility must never hurt a call
            _LOGGER.debug("UserEvent %s not sent", name)

    async def queue_status(self) -> str:
        return await self.command("queue show")

    async def db_family(self, family: str = FLAG_FAMILY) -> dict[str, str]:
        text = await self.command(f"database show {family}")
        return parse_db_show(text, family)


def parse_db_show(text: str, family: str = FLAG_FAMILY) -> dict[str, str]:
    """`database show ivr` output -> {key: value}; keys without the `/ivr/` prefix."""
    flags = {}
    for line in text.splitlines():
        match = re.match(rf"^/{re.escape(family)}/(\S+)\s*:\s*(.*?)\s*$", line)
        if match:
            flags[match.group(1)] = match.group(2)
    return flags


class AstDbFlags:
    """Admin flags from AstDB (`database put ivr hotline.closed 1`), refreshed every `interval`.

    Conditions read the last snapshot without waiting; a change reaches new decisions within
    one interval. If AMI is down the last known flags stay in force.
    """

    def __init__(self, ami: AmiClient, interval: float = 0.5, initial: dict[str, str] | None = None) -> None:
        self._ami = ami
        self._interval = interval
        self._flags: dict[str, str] = dict(initial or {})
        self._static = dict(initial or {})
        self.refreshed = 0

    def get(self, name: str) -> str | None:
        return self._flags.get(name)

    def all(self) -> dict[str, str]:
        return dict(self._flags)

    async def refresh(self) -> None:
        flags = await self._ami.db_family(FLAG_FAMILY)
        self._flags = {**self._static, **flags}
        self.refreshed += 1

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                _LOGGER.debug("AstDB flag refresh failed; keeping the last flags")
            await asyncio.sleep(self._interval)

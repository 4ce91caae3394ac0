"""Live caller audio for FastAGI calls: AGI itself cannot stream audio (EAGI does not work over
`agi://`), so the controller forks it. An AMI Originate of `AudioSocket/<us>/<uuid>/c(slin16)`
into `[ivr-spy]` runs `ChanSpy(<the AGI channel>,qEo)` there: `o` forks only the caller's
voice, `E` ends the fork when the call hangs up, and our AudioSocket server receives it.
Barge-in stops the running STREAM FILE with AMI `ControlPlayback ... stop` (about 1 ms).
"""

from __future__ import annotations

import asyncio
import logging

from ivr.telephony.sanitize import agi_value

_LOGGER = logging.getLogger(__name__)
CONNECT_TIMEOUT = 3.0
SPY_CONTEXT = "ivr-spy"


class AgiAudioFork:
    def __init__(self, ami, server, channel_name: str) -> None:
        self._ami = ami
        self._server = server
        self.channel_name = channel_name
        self._sid = None
        self._tasks: set[asyncio.Task] = set()

    async def open(self, sink) -> bool:
        """Start streaming the caller's voice to `sink`; False if Asterisk did not connect."""
        self._sid = self._server.register(sink)
        endpoint = f"AudioSocket/{self._server.host}:{self._server.port}/{self._sid}/c(slin16)"
        try:
            await self._ami.originate(endpoint, context=SPY_CONTEXT, exten="s",
                                      variables={"SPYON": agi_value(self.channel_name, 120)},
                                      timeout_ms=int(CONNECT_TIMEOUT * 1000))
            if not await self._server.wait_connected(self._sid, CONNECT_TIMEOUT):
                _LOGGER.warning("audio fork for %s: Asterisk did not connect", self.channel_name)
                self.close()
                return False
        except asyncio.CancelledError:  # the call ended while the fork was being set up
            self.close()
            raise
        except Exception as exc:
            _LOGGER.warning("audio fork for %s not started: %s", self.channel_name, exc)
            self.close()
            return False
        return True

    def stop_prompt(self) -> None:
        """Stop the prompt playing on the call now (called from the audio path: no waiting)."""
        task = asyncio.get_running_loop().create_task(self._ami.action(
            {"Action": "ControlPlayback", "Channel": self.channel_name, "Control": "stop"}, timeout=2))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.debug("ControlPlayback on %s failed: %s", self.channel_name, task.exception())

    def close(self) -> None:
        if self._sid is not None:
            self._server.drop(self._sid)
            self._sid = None

"""AudioSocket server: Asterisk streams each caller's voice here, live, over TCP.

Frames are `>BH` (type, payload length) then the payload (ARCHITECTURE.md section 6):
0x01 the call's 16-byte UUID (first), 0x10 slin 8 kHz, 0x12 slin16 (16-bit little-endian),
0x03 a DTMF digit, 0x00 hangup, 0xff error. A caller's hangup just closes the connection.

The controller registers a sink under a fresh UUID before asking Asterisk to connect (AMI
Originate of an `AudioSocket/` channel for FastAGI calls, an ARI externalMedia channel for ARI
calls); a connection with an unknown UUID is closed at once. We send a 20 ms silence frame about
once a second: Asterisk drops an AudioSocket that carries no traffic for 2 s.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import uuid
from typing import Protocol

_LOGGER = logging.getLogger(__name__)
KIND_HANGUP, KIND_UUID, KIND_DTMF, KIND_SLIN, KIND_SLIN16, KIND_ERROR = 0x00, 0x01, 0x03, 0x10, 0x12, 0xFF
RATES = {KIND_SLIN: 8000, KIND_SLIN16: 16000}
MAX_PAYLOAD = 8192  # a frame is 20 ms: anything this big is not AudioSocket
HELLO_TIMEOUT = 5.0
KEEPALIVE = 1.0


class AudioSink(Protocol):
    def audio(self, pcm: bytes, rate: int) -> None: ...

    def dtmf(self, digit: str) -> None: ...

    def stream_closed(self) -> None: ...


class AudioSocketServer:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sinks: dict[uuid.UUID, AudioSink] = {}
        self._connected: dict[uuid.UUID, asyncio.Future] = {}
        self._writers: dict[uuid.UUID, asyncio.StreamWriter] = {}
        self._server: asyncio.base_events.Server | None = None
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        _LOGGER.info("AudioSocket listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def register(self, sink: AudioSink) -> uuid.UUID:
        """A new stream id for Asterisk to connect with; frames for it go to `sink`."""
        sid = uuid.uuid4()
        self._sinks[sid] = sink
        self._connected[sid] = asyncio.get_running_loop().create_future()
        return sid

    async def wait_connected(self, sid: uuid.UUID, timeout: float) -> bool:
        future = self._connected.get(sid)
        if future is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(future)
            return True
        except TimeoutError:
            return False

    def drop(self, sid: uuid.UUID) -> None:
        """End a stream from our side: Asterisk hangs up its AudioSocket channel."""
        writer = self._writers.pop(sid, None)
        if writer is not None:
            writer.close()
        self.unregister(sid)

    def unregister(self, sid: uuid.UUID) -> None:
        self._sinks.pop(sid, None)
        future = self._connected.pop(sid, None)
        if future is not None and not future.done():
            future.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sid = None
        keepalive = None
        try:
            kind, payload = await asyncio.wait_for(_read_frame(reader), HELLO_TIMEOUT)
            if kind != KIND_UUID or len(payload) != 16:
                _LOGGER.warning("AudioSocket connection without a UUID frame; closed")
                return
            sid = uuid.UUID(bytes=payload)
            sink = self._sinks.get(sid)
            if sink is None:
                _LOGGER.warning("AudioSocket connection for unknown stream %s; closed", sid)
                return
            self.connections += 1
            self._writers[sid] = writer
            future = self._connected.get(sid)
            if future is not None and not future.done():
                future.set_result(True)
            keepalive = asyncio.create_task(_keepalive(writer), name=f"audiosocket-keepalive-{sid}")
            await self._pump(reader, sink)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ValueError):
            pass
        finally:
            if keepalive is not None:
                keepalive.cancel()
            if sid is not None:
                self._writers.pop(sid, None)
                sink = self._sinks.pop(sid, None)
                self._connected.pop(sid, None)
                if sink is not None:
                    sink.stream_closed()
            writer.close()

    async def _pump(self, reader: asyncio.StreamReader, sink: AudioSink) -> None:
        while True:
            kind, payload = await _read_frame(reader)
            rate = RATES.get(kind)
            if rate:
                sink.audio(payload, rate)
            elif kind == KIND_DTMF:
                for ch in payload.decode("ascii", "replace"):
                    if ch in "0123456789*#ABCD":
                        sink.dtmf(ch)
            elif kind in (KIND_HANGUP, KIND_ERROR):
                return


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    kind, length = struct.unpack(">BH", await reader.readexactly(3))
    if length > MAX_PAYLOAD:
        raise ValueError(f"AudioSocket frame of {length} bytes")
    return kind, await reader.readexactly(length) if length else b""


async def _keepalive(writer: asyncio.StreamWriter) -> None:
    frame = struct.pack(">BH", KIND_SLIN, 320) + bytes(320)
    try:
        while True:
            writer.write(frame)
            await writer.drain()
            await asyncio.sleep(KEEPALIVE)
    except (ConnectionError, OSError):
        pass

"""A broker behind a Kafka-aware TCP proxy that can hold one client's produce request or its acknowledgement.

It lands a stopped process exactly where a test wants it: a zombie whose intent is durable but not yet
acknowledged ("between intent and call"), or whose outcome write has not left ("after the call, before the
outcome"). tansu advertises the proxy's port, so every client, the test's own included, goes through it; a
hold only ever affects the one connection whose request matched, and everything behind it on that connection.

Kafka frames are a 4-byte big-endian size and a payload. A request payload starts with its api key, api
version and correlation id; a response payload starts with the correlation id. Produce requests carry their
records' keys and values as they are (highlight's producer compresses nothing), so a needle finds one record.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from highlight.broker import broker_binary, free_port

PRODUCE = 0
HOST = "127.0.0.1"


@dataclass
class Hold:
    """The first produce request containing `needle`: held before the broker sees it (`request`), or after the
    broker stored it, before its acknowledgement reaches the client (`response`)."""

    needle: bytes
    what: str  # "request" or "response"
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self._released.set()


class KafkaProxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._holds: list[Hold] = []
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def hold_request(self, needle: bytes) -> Hold:
        return self._add(Hold(needle, "request"))

    def hold_response(self, needle: bytes) -> Hold:
        return self._add(Hold(needle, "response"))

    def release_all(self) -> None:
        for hold in self._holds:
            hold.release()

    def _add(self, hold: Hold) -> Hold:
        self._holds.append(hold)
        return hold

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._connected, HOST, port)
        self.port = port

    async def close(self) -> None:
        self.release_all()
        if self._server is not None:
            self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connected(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection(HOST, self._upstream)
        except OSError:
            client_writer.close()
            return
        held_responses: dict[int, Hold] = {}
        pumps = [
            asyncio.create_task(self._requests(client_reader, broker_writer, held_responses)),
            asyncio.create_task(self._responses(broker_reader, client_writer, held_responses)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._pumps.difference_update(pumps)
            for writer in (client_writer, broker_writer):
                writer.close()

    def _matching(self, payload: bytes, what: str) -> Hold | None:
        for hold in self._holds:
            if hold.what == what and not hold.holding.is_set() and hold.needle in payload:
                hold.holding.set()
                return hold
        return None

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held_responses: dict[int, Hold]
    ) -> None:
        while payload := await _frame(reader):
            api_key, _version, correlation = struct.unpack(">hhi", payload[:8])
            if api_key == PRODUCE:
                hold = self._matching(payload, "response")
                if hold is not None:
                    held_responses[correlation] = hold
                hold = self._matching(payload, "request")
                if hold is not None:
                    await hold._released.wait()  # and everything after it on this connection, in order
            writer.write(struct.pack(">i", len(payload)) + payload)
            await writer.drain()

    async def _responses(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held_responses: dict[int, Hold]
    ) -> None:
        while payload := await _frame(reader):
            (correlation,) = struct.unpack(">i", payload[:4])
            hold = held_responses.pop(correlation, None)
            if hold is not None:
                await hold._released.wait()
            writer.write(struct.pack(">i", len(payload)) + payload)
            await writer.drain()


async def _frame(reader: asyncio.StreamReader) -> bytes:
    try:
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        return await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return b""


@contextlib.asynccontextmanager
async def proxied_broker() -> AsyncIterator[KafkaProxy]:
    """A tansu of its own whose advertised address is the proxy's."""
    upstream, front = free_port(), free_port()
    proxy = KafkaProxy(upstream)
    await proxy.start(front)
    command = [
        str(broker_binary()),
        "broker",
        "--listener-url",
        f"tcp://{HOST}:{upstream}",
        "--advertised-listener-url",
        f"tcp://{HOST}:{front}",
        "--storage-engine",
        "memory://tansu/",
    ]
    broker = subprocess.Popen(  # noqa: ASYNC220 -- starting it takes microseconds; it is waited for off the loop
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        deadline = time.monotonic() + 15
        while not _listening(upstream):
            assert broker.poll() is None, f"tansu exited with {broker.returncode}"
            assert time.monotonic() < deadline, "tansu did not start listening"
            await asyncio.sleep(0.02)
        yield proxy
    finally:
        await proxy.close()
        broker.send_signal(signal.SIGINT)  # SIGTERM waits seconds for connected clients
        try:
            await asyncio.to_thread(broker.wait, 5)
        except subprocess.TimeoutExpired:
            broker.kill()
            await asyncio.to_thread(broker.wait)


def _die_with_parent() -> None:
    """Linux: the broker gets SIGKILL if the test process dies without stopping it, rather than linger."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
        return True
    return False

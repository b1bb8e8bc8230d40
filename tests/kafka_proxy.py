"""A broker of its own behind a Kafka-aware TCP proxy that can hold produce requests or their acknowledgements.

Two kinds of hold:

- by needle (`hold_request`, `hold_response`): the first produce request containing some bytes, held before the
  broker sees it, or after the broker stored it, before its acknowledgement reaches the client. It lands a stopped
  process exactly where a test wants it: a zombie whose intent is durable but not yet acknowledged ("between
  intent and call"), or whose outcome write has not left ("after the call, before the outcome").
- by client id (`ack_stall`): while stalled, the answers to every produce request of the clients with that client
  id (the service's) wait: their records are written, their acknowledgements are not delivered.

tansu advertises the proxy's port, so every client, the test's own included, goes through it; a hold only ever
affects the connections whose requests matched, and everything behind them on those connections.

Kafka frames are a 4-byte big-endian size and a payload. A request payload starts with its api key, api
version, correlation id and client id (an int16-sized string, in every header version); a response payload
starts with the correlation id. Produce requests carry their records' keys and values as they are (highlight's
producer compresses nothing), so a needle finds one record.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from highlight.broker import EmbeddedBroker, free_port

PRODUCE = 0
HOST = "127.0.0.1"


@dataclass
class Hold:
    """The first produce request containing `needle`: held before the broker sees it (`request`), or after the
    broker stored it, before its acknowledgement reaches the client (`response`)."""

    needle: bytes
    what: Literal["request", "response"]
    holding: asyncio.Event = field(default_factory=asyncio.Event)  # set once a request matched
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self._released.set()

    async def _let_through(self) -> None:
        await self._released.wait()


class AckStall:
    """While stalled, the answers to the produce requests of the clients with `client_id` wait: their records are
    written, their acknowledgements are not delivered."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id.encode()
        self.held = 0  # produce answers held back so far
        self._released = asyncio.Event()
        self._released.set()

    def stall(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def _let_through(self) -> None:
        # Decided when the answer arrives, not when the request left: an answer held is a record stored.
        if not self._released.is_set():
            self.held += 1
            await self._released.wait()


class KafkaProxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._holds: list[Hold] = []
        self._stalls: list[AckStall] = []
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._closed = False
        self.port = 0

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def hold_request(self, needle: bytes) -> Hold:
        hold = Hold(needle, "request")
        self._holds.append(hold)
        return hold

    def hold_response(self, needle: bytes) -> Hold:
        hold = Hold(needle, "response")
        self._holds.append(hold)
        return hold

    def ack_stall(self, client_id: str) -> AckStall:
        """Not stalled until its `stall()`."""
        stall = AckStall(client_id)
        self._stalls.append(stall)
        return stall

    def release_all(self) -> None:
        for gate in [*self._holds, *self._stalls]:
            gate.release()

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._connected, HOST, port)
        self.port = port

    async def close(self) -> None:
        self._closed = True
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
        if self._closed:  # closed while this connection was opening: nobody would cancel its pumps
            for writer in (client_writer, broker_writer):
                writer.close()
            return
        held_answers: dict[int, list[Hold | AckStall]] = {}
        pumps = [
            asyncio.create_task(self._requests(client_reader, broker_writer, held_answers)),
            asyncio.create_task(self._responses(broker_reader, client_writer, held_answers)),
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
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        held_answers: dict[int, list[Hold | AckStall]],
    ) -> None:
        while payload := await _frame(reader):
            api_key, _version, correlation = struct.unpack_from(">hhi", payload)
            if api_key == PRODUCE:
                (client_id_size,) = struct.unpack_from(">h", payload, 8)
                client_id = payload[10 : 10 + client_id_size] if client_id_size >= 0 else None
                gates: list[Hold | AckStall] = [stall for stall in self._stalls if stall.client_id == client_id]
                if (hold := self._matching(payload, "response")) is not None:
                    gates.append(hold)
                if gates:
                    held_answers[correlation] = gates
                if (hold := self._matching(payload, "request")) is not None:
                    await hold._let_through()  # and everything after it on this connection, in order
            writer.write(struct.pack(">i", len(payload)) + payload)
            await writer.drain()

    async def _responses(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        held_answers: dict[int, list[Hold | AckStall]],
    ) -> None:
        while payload := await _frame(reader):
            (correlation,) = struct.unpack_from(">i", payload)
            for gate in held_answers.pop(correlation, ()):
                # Later answers on this connection wait too: Kafka answers in order.
                await gate._let_through()
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
    broker = EmbeddedBroker(HOST, upstream, advertised_port=front)
    proxy = KafkaProxy(upstream)
    await proxy.start(front)
    try:
        # On the loop's thread, not a worker's: the broker is made to die with the thread that started it
        # (PR_SET_PDEATHSIG), so that it cannot outlive a test process killed without stopping it.
        broker.start()
        yield proxy
    finally:
        await proxy.close()
        await asyncio.to_thread(broker.close)  # it waits for tansu to exit

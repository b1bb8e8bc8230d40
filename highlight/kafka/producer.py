"""The producer: acknowledged sends (`Producer.send`), and whole batches queued with their acknowledgements
arriving later (`Producer.publish`, for `highlight.outbox`); a record's size as the producer counts it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import aiokafka
import aiokafka.errors
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from highlight.config import KafkaSettings
from highlight.kafka.client import CLIENT_ID, _close_within, _mapped, broker_errors, client_options


class RecordBatch:
    """Records for one partition, published together (`Producer.publish`): one acknowledgement for all."""

    __slots__ = ("builder", "count")

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.count = 0

    def append(self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]] = ()) -> bool:
        """False when the batch is full (it always takes its first record)."""
        # aiokafka's C record builder takes headers as a list only.
        listed = headers if isinstance(headers, list) else list(headers)
        if self.builder.append(timestamp=None, key=key, value=value, headers=listed) is None:
            return False
        self.count += 1
        return True

    def close(self) -> None:
        """Nothing else may join a batch once it is queued."""
        self.builder.close()


class Producer:
    """acks=all and await every send: callers act only on records the brokers hold.

    `request_timeout_ms` bounds how long a record may wait for the brokers: past it, aiokafka fails the record
    instead of holding it for a later delivery, so a caller told "failed" can trust nothing went out later.
    """

    def __init__(self, settings: KafkaSettings, *, request_timeout_ms: int | None = None) -> None:
        timeouts = {} if request_timeout_ms is None else {"request_timeout_ms": request_timeout_ms}
        self._producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=CLIENT_ID,
            acks="all",
            # Idempotence needs InitProducerId, which tansu lacks; dedup makes redelivery harmless instead.
            enable_idempotence=False,
            # aiokafka keeps one request in flight per broker, so records batch behind it anyway; lingering
            # would only add its delay to every acknowledged write on a moment's path.
            linger_ms=0,
            max_batch_size=256 * 1024,
            # Set, not left at aiokafka's default: dead letters are cut to fit it (`highlight.results`).
            max_request_size=settings.max_request_bytes,
            **timeouts,
            **client_options(settings),
        )
        self._started = False

    async def reachable(self, topic: str) -> bool:
        """Whether any broker answers a metadata request for `topic` now.

        Only `topic`, and never creating it: metadata for every topic can be megabytes on a large cluster, and a
        broker that auto-creates topics would create a missing one with its default partition count.
        """
        client = self._producer.client
        nodes = [broker.nodeId for broker in client.cluster.brokers()]
        random.shuffle(nodes)
        for node in nodes:
            try:
                await client.send(node, MetadataRequest([topic], allow_auto_topic_creation=False))
            except aiokafka.errors.KafkaError:
                continue
            return True
        return False

    async def __aenter__(self) -> Producer:
        async with broker_errors("producer start"):
            await self._producer.start()
        self._started = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await _close_within(self._producer.stop(), "producer")

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> int:
        """The record's offset, once the brokers acknowledged it."""
        async with broker_errors(f"send to {topic}", sending=True):
            future = await self._producer.send(
                topic, value, key=key, partition=partition, headers=list(headers) if headers else None
            )
            metadata = await future
        return int(metadata.offset)

    # The batch side, for records published pipelined (highlight.outbox): whole batches are queued, and each
    # one's acknowledgement arrives later as a future.

    def batch(self) -> RecordBatch:
        return RecordBatch(self._producer.create_batch())

    async def partitions(self, topic: str) -> int:
        """The topic's partition count, from the producer's metadata (fetched once, then kept up to date)."""
        async with broker_errors(f"metadata of {topic}"):
            return len(await self._producer.partitions_for(topic))

    async def publish(self, batch: RecordBatch, topic: str, partition: int) -> asyncio.Future[None]:
        """Queue `batch`; the future resolves when the brokers acknowledge it, or fails with our error. Batches of
        one partition are sent in the order they were queued, the records of each in the order appended."""
        batch.close()
        async with broker_errors(f"send to {topic}", sending=True):
            delivery = await self._producer.send_batch(batch.builder, topic, partition=partition)
        return _acknowledgement(delivery, f"send to {topic}")


def _acknowledgement(delivery: asyncio.Future[Any], action: str) -> asyncio.Future[None]:
    """aiokafka's delivery future as ours: resolved on acknowledgement, its error mapped where it enters."""
    acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(done: asyncio.Future[Any]) -> None:
        if acked.done():
            return
        if done.cancelled():
            acked.cancel()
        elif (exc := done.exception()) is not None:
            mapped = _mapped(exc, action, sending=True) if isinstance(exc, aiokafka.errors.KafkaError) else exc
            acked.set_exception(mapped)
        else:
            acked.set_result(None)

    delivery.add_done_callback(settle)
    return acked


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    """A record's size as the producer checks it against its request limit (an upper bound of the broker's)."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers))
    return size

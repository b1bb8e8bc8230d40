"""The changelog reader: partitions of a topic read to their end outside any group (the dedup state at
restore, the dead-letter topic for a replay), the end being the fetch high-water mark, never `end_offsets()`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence

import aiokafka

from highlight import kafka_records
from highlight.config import KafkaSettings
from highlight.kafka.client import CLIENT_ID, _close_within, broker_errors, client_options
from highlight.kafka.partitions import Partition, Record, _record


class ChangelogReader:
    """Reads partitions of a topic to their end, outside any group: the dedup state at restore (`read`), the
    dead-letter topic for a replay (`records`)."""

    def __init__(
        self, settings: KafkaSettings, *, fetch_max_wait_ms: int = 50, client_id: str = f"{CLIENT_ID}-restore"
    ) -> None:
        kafka_records.install()
        self._consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=fetch_max_wait_ms,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **client_options(settings),
        )
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with broker_errors("restore consumer start"):
            await self._consumer.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await _close_within(self._consumer.stop(), "consumer")

    async def read(
        self,
        partitions: Sequence[Partition],
        apply: Callable[[Partition, bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]], None],
        start_offsets: dict[Partition, int] | None = None,
    ) -> tuple[int, dict[Partition, int]]:
        """Feed every record from the start offset (default: the beginning) to the end to
        `apply(partition, key, value, headers)`, in log order. Returns how many were read and where each partition
        ended.
        """
        if not partitions:
            return 0, {}
        starts = start_offsets or {}
        tps = [aiokafka.TopicPartition(*p) for p in partitions]
        read = 0
        ends: dict[Partition, int] = {}
        async with self._lock, broker_errors("restoring state"):
            self._consumer.assign(tps)
            for tp in tps:
                start = starts.get(Partition(tp.topic, tp.partition), 0)
                if start:
                    self._consumer.seek(tp, start)
                else:
                    await self._consumer.seek_to_beginning(tp)
            pending = set(tps)
            while pending:
                batches = await self._consumer.getmany(*pending, timeout_ms=200, max_records=50_000)
                for tp, messages in batches.items():
                    partition = Partition(tp.topic, tp.partition)
                    for message in messages:
                        apply(partition, message.key, message.value, message.headers)
                    read += len(messages)
                for tp in list(pending):
                    if await self._caught_up(tp, fetched=bool(batches.get(tp))):
                        pending.discard(tp)
                        ends[Partition(tp.topic, tp.partition)] = int(await self._consumer.position(tp))
            # Paused rather than unassigned: aiokafka's fetcher, dropping an assignment while a fetch is still out,
            # swallows a stop() that comes in the meantime and hangs it (until our close timeout).
            self._consumer.pause(*tps)
        return read, ends

    async def records(self, partition: Partition, start: int = 0) -> AsyncGenerator[list[Record], None]:
        """Batches of one partition's records, from `start` to the end the partition had at the first fetch.

        The end is fixed when reading begins: records appended meanwhile are left for a later read, so a reader
        whose work writes back into the topic it reads (a replayed dead letter dead-lettered again) still ends.
        A `start` past the end, or below the log's start, is reset by the consumer and may yield records before
        `start`: callers filter by offset.
        """
        tp = aiokafka.TopicPartition(*partition)
        async with self._lock:
            try:
                async with broker_errors(f"reading {partition.topic}"):
                    self._consumer.assign([tp])
                    if start:
                        self._consumer.seek(tp, start)
                    else:
                        await self._consumer.seek_to_beginning(tp)
                end: int | None = None
                while True:
                    async with broker_errors(f"reading {partition.topic}"):
                        batches = await self._consumer.getmany(tp, timeout_ms=200, max_records=1_000)
                        messages = batches.get(tp, [])
                        if end is None:
                            end = self._consumer.highwater(tp)
                        position = await self._consumer.position(tp)
                        # No fetch answered yet: an empty partition never reports a high-water mark on some brokers.
                        finished = position >= end if end is not None else not messages and await self._empty(tp)
                    batch = [_record(m) for m in messages if end is None or m.offset < end]
                    if batch:
                        yield batch
                    if finished:
                        return
            finally:
                self._consumer.assign([])

    async def _caught_up(self, tp: aiokafka.TopicPartition, *, fetched: bool) -> bool:
        highwater = self._consumer.highwater(tp)
        position = await self._consumer.position(tp)
        if highwater is not None:
            return bool(position >= highwater)
        # No fetch answered yet: an empty partition never reports a high-water mark on some brokers.
        return not fetched and position == 0 and await self._empty(tp)

    async def _empty(self, tp: aiokafka.TopicPartition) -> bool:
        beginning = (await self._consumer.beginning_offsets([tp]))[tp]
        end = (await self._consumer.end_offsets([tp]))[tp]
        return bool(beginning == end)

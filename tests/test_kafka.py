"""Reading a partition to its end (highlight.kafka) and counting partitions (highlight.topics), on the real broker."""

from __future__ import annotations

import asyncio
import gc
from contextlib import aclosing

import aiokafka.errors
import pytest

from highlight.kafka import ChangelogReader, Partition, Record
from highlight.kafka.group import GroupConsumer, RebalanceHandler
from highlight.lease import Lease
from highlight.topics import topic_partitions
from tests.harness import Names, create_topics, produce, settings_for

NO_LIVE_API = "http://127.0.0.1:9/common_access"


async def _read(reader: ChangelogReader, partition: Partition, start: int = 0) -> list[Record]:
    read: list[Record] = []
    async with aclosing(reader.records(partition, start)) as batches:
        async for batch in batches:
            read += batch
    return read


async def test_a_read_ends_at_the_end_the_partition_had_when_it_began(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.dlq: 1})
    await produce(bootstrap, names.dlq, [b"a", b"b", b"c"], key=b"k", partition=0)
    reader = ChangelogReader(settings_for(bootstrap, names, NO_LIVE_API).kafka)
    await reader.start()
    try:
        partition = Partition(names.dlq, 0)
        read: list[Record] = []
        async with aclosing(reader.records(partition)) as batches:
            async for batch in batches:
                read += batch
                # Written while reading, as a replayed dead letter dead-lettered again would be.
                await produce(bootstrap, names.dlq, [b"late"], key=b"k", partition=0)
        assert [record.value for record in read] == [b"a", b"b", b"c"]
        assert [record.offset for record in read] == [0, 1, 2]
        assert all(record.key == b"k" and record.topic == names.dlq for record in read)

        again = await _read(reader, partition)
        assert [record.value for record in again][:3] == [b"a", b"b", b"c"]
        assert {record.value for record in again[3:]} == {b"late"}, "a later read sees what came meanwhile"
        from_c = await _read(reader, partition, 2)
        assert from_c[0].value == b"c", "from a start offset"
    finally:
        await reader.stop()


async def test_a_read_of_an_empty_partition_ends_at_once_with_nothing(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.dlq: 2})
    await produce(bootstrap, names.dlq, [b"only"], key=b"k", partition=1)
    reader = ChangelogReader(settings_for(bootstrap, names, NO_LIVE_API).kafka)
    await reader.start()
    try:
        assert await _read(reader, Partition(names.dlq, 0)) == []
        assert [record.value for record in await _read(reader, Partition(names.dlq, 1))] == [b"only"]
    finally:
        await reader.stop()


async def test_topic_partitions_counts_existing_topics_and_creates_no_missing_one(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.moments: 3, names.dlq: 1})
    kafka = settings_for(bootstrap, names, NO_LIVE_API).kafka
    assert await topic_partitions(kafka, [names.moments, names.dlq, names.state]) == {names.moments: 3, names.dlq: 1}
    assert await topic_partitions(kafka, [names.state]) == {}, "asking did not create it"


class _ShieldedCommit:
    """aiokafka's `commit` as it is built (aiokafka 0.14): the request runs in a task of its own under
    `asyncio.shield`, here one that fails once released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def commit(self, offsets: object) -> None:
        async def request() -> None:
            await self.release.wait()
            raise aiokafka.errors.UnknownMemberIdError("refused late")

        await asyncio.shield(request())


async def test_a_commit_past_its_timeout_is_left_to_end_and_its_refusal_is_never_an_unretrieved_error(
    bootstrap: str, names: Names
) -> None:
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    try:
        # What cancelling aiokafka's commit does (an `asyncio.timeout` around it): its request's error is lost.
        shielded = _ShieldedCommit()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await shielded.commit({})
        shielded.release.set()
        await asyncio.sleep(0.01)
        gc.collect()
        assert [c["message"] for c in unretrieved] == ["Task exception was never retrieved"], "the hazard is real"
        unretrieved.clear()

        kafka = settings_for(bootstrap, names, NO_LIVE_API).kafka
        consumer = GroupConsumer(kafka, [names.moments], RebalanceHandler(), Lease(6.0))
        late = _ShieldedCommit()
        unused, consumer._consumer = consumer._consumer, late  # the commit path only: no group is joined
        await unused.stop()
        with pytest.raises(TimeoutError):
            await consumer.commit({Partition(names.moments, 0): 1}, timeout=0.05)
        late.release.set()
        await consumer.stop()  # waits for the commit left running
        gc.collect()
        assert unretrieved == []
    finally:
        loop.set_exception_handler(None)

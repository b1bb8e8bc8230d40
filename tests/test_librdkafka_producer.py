"""Upstream producers on librdkafka (confluent-kafka for Python, Go, .NET and JavaScript; kcat).

They reach the embedded broker (librdkafka 2.2.0 or later), and their default partitioner, `consistent_random`,
hashes keys with CRC32 where Kafka's Java client and aiokafka use murmur2: a moment keyed by its channel then lands
off its home partition and takes the repartition hop. `partitioner=murmur2_random` puts it home.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from highlight.kafka import home_partition
from highlight.simulator import LiveSimulator
from tests.harness import (
    Names,
    by_event,
    create_topics,
    moment,
    results,
    running,
    scrape,
    settings_for,
    value,
    wait_ready,
)

PARTITIONS = 3
CHANNELS = [f"rdk-channel-{number}" for number in range(8)]


def crc32_partition(channel_id: str, partitions: int) -> int:
    """librdkafka's `consistent_random` for a keyed record."""
    return zlib.crc32(channel_id.encode()) % partitions


async def produce_with_librdkafka(
    bootstrap: str, topic: str, moments: list[dict[str, Any]], **config: str
) -> dict[str, int]:
    """Each moment keyed by its channel, as upstream should; the partition librdkafka put each event on."""
    placed: dict[str, int] = {}
    failed: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failed.append(error)
        else:
            placed[orjson.loads(message.value())["event_id"]] = message.partition()

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 15000, **config})
    for document in moments:
        producer.produce(topic, orjson.dumps(document), key=document["channel_id"].encode(), on_delivery=delivered)
    undelivered = await asyncio.to_thread(producer.flush, 20)
    assert undelivered == 0, f"{undelivered} moments not delivered: {failed}"
    assert not failed, failed
    return placed


async def test_librdkafka_producers_are_answered_and_only_the_default_partitioner_takes_the_repartition_hop(
    bootstrap: str, names: Names, simulator: LiveSimulator, ops_port: int
) -> None:
    homes = {channel: home_partition(channel, PARTITIONS) for channel in CHANNELS}
    off_home = {channel for channel in CHANNELS if crc32_partition(channel, PARTITIONS) != homes[channel]}
    assert off_home, "no channel that CRC32 places off home: the sample proves nothing"
    await create_topics(bootstrap, {names.moments: PARTITIONS})
    # One occurred_at per channel: the second producer's moments share the first's dedup keys.
    firsts = [moment(f"murmur2-{channel}", channel) for channel in CHANNELS]
    seconds = [first | {"event_id": f"crc32-{first['channel_id']}"} for first in firsts]
    settings = settings_for(bootstrap, names, simulator.url, metrics_port=ops_port)
    async with running(settings):
        await wait_ready(ops_port, 200)

        placed = await produce_with_librdkafka(bootstrap, names.moments, firsts, partitioner="murmur2_random")
        assert placed == {f"murmur2-{channel}": homes[channel] for channel in CHANNELS}
        started = by_event(await results(bootstrap, names.results, len(CHANNELS)))
        assert {event: document["status"] for event, document in started.items()} == {
            f"murmur2-{channel}": "started" for channel in CHANNELS
        }
        assert value(await scrape(ops_port), "highlight_moments_repartitioned_total") == 0

        placed = await produce_with_librdkafka(bootstrap, names.moments, seconds)  # consistent_random
        assert placed == {f"crc32-{channel}": crc32_partition(channel, PARTITIONS) for channel in CHANNELS}
        answered = by_event(await results(bootstrap, names.results, 2 * len(CHANNELS)))
        samples = await scrape(ops_port)

    # Off home or not, each moment met its channel's dedup state: a duplicate, never a second call.
    for channel in CHANNELS:
        second = answered[f"crc32-{channel}"]
        assert second["status"] == "duplicate", second
        assert second["task_id"] == started[f"murmur2-{channel}"]["task_id"]
    assert len(simulator.calls) == len(CHANNELS)
    assert value(samples, "highlight_moments_repartitioned_total") == len(off_home)

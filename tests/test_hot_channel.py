"""One hot channel must not hold up the others: a flood on one channel, a moment of another answered meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from highlight.kafka import home_partition
from highlight.simulator import LiveSimulator
from tests.harness import Names, create_topics, moment, results, running, settings_for, wait_until

FLOOD = 400
HOT_CALL_MS = 4000


def channel_on(partition: int, partitions: int, prefix: str) -> str:
    return next(c for i in range(1000) if home_partition(c := f"{prefix}-{i}", partitions) == partition)


async def produce_quickly(bootstrap: str, topic: str, documents: Iterable[dict[str, Any]]) -> None:
    """All at once, keyed by channel, acknowledged together (one by one would take seconds for a flood)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        sent = [await producer.send(topic, orjson.dumps(d), key=d["channel_id"].encode()) for d in documents]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def test_a_new_channels_moment_is_answered_before_a_flooding_channel_is_half_done(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    partitions = 2
    # Results on one partition: their offsets give the order in which moments were answered.
    await create_topics(bootstrap, {names.moments: partitions, names.results: 1})
    hot = channel_on(0, partitions, "hot")
    quiet = channel_on(1, partitions, "quiet")
    # The flood's one call takes a while; every other moment of the flood is a duplicate queued behind it.
    simulator.inject(f"delay:{HOT_CALL_MS}", channel=hot)
    first = moment("flood-0", hot)
    flood = [first] + [moment(f"flood-{i}", hot) | {"occurred_at": first["occurred_at"]} for i in range(1, FLOOD)]
    # A bound well below the flood, so that one channel could fill it.
    settings = settings_for(bootstrap, names, simulator.url, max_in_flight=64)
    async with running(settings):
        await produce_quickly(bootstrap, names.moments, flood)
        await wait_until(lambda: bool(simulator.calls_for(hot)), what="the flood's call")
        await produce_quickly(bootstrap, names.moments, [moment("quiet-1", quiet)])
        answered = await results(bootstrap, names.results, FLOOD + 1, timeout=60)
    order = [d["event_id"] for d in answered]
    assert sorted(order) == sorted([*(f"flood-{i}" for i in range(FLOOD)), "quiet-1"])
    flood_before = sum(1 for event_id in order[: order.index("quiet-1")] if event_id.startswith("flood-"))
    assert flood_before < FLOOD // 2
    # In fact before any of it: the quiet channel was answered while the flood still waited on its call.
    assert flood_before == 0, f"{flood_before} flood moments were answered before the quiet channel's"
    statuses = [d["status"] for d in answered if d["channel_id"] == hot]
    assert statuses.count("started") == 1
    assert statuses.count("duplicate") == FLOOD - 1
    assert len(simulator.calls_for(hot)) == 1

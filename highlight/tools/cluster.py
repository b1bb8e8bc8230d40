"""The read-only Kafka questions `highlight check` asks: topics and their configs, the group's committed offsets
and the high-water marks behind them. aiokafka's errors are mapped to ours where they enter; nothing is written.

Works around the test broker's gaps as `highlight.kafka` does: high-water marks come from fetch responses (tansu's
`end_offsets()` undercounts), committed offsets from `consumer.committed()` (its admin offset listing breaks the
connection), and a topic config the broker does not report (tansu reports only those set explicitly, Apache Kafka
all of them) is absent from `TopicView.configs` rather than guessed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiokafka
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from highlight.config import KafkaSettings
from highlight.kafka import CLIENT_ID, broker_errors, client_options
from highlight.topics import admin_client

# A fetch that has not reported a partition's high-water mark in this long will not: the partition is read as
# empty if the broker's offsets agree, else its lag is unknown.
HIGHWATER_WAIT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class TopicView:
    name: str
    partitions: int
    configs: Mapping[str, str]  # only what the broker reported


@dataclass(frozen=True, slots=True)
class ClusterView:
    brokers: int
    topics: Mapping[str, TopicView]  # the asked-for topics that exist


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed here
    highwater: int | None  # None: not learnt
    lag: int | None  # moments the group has yet to read from here; None when unknown


async def describe(settings: KafkaSettings, topics: Iterable[str]) -> ClusterView:
    """How many brokers answer, and each existing topic's partition count and reported configs."""
    async with admin_client(settings) as admin, broker_errors("describing the cluster"):
        brokers = len((await admin.describe_cluster())["brokers"])
        # Listing before describing: a metadata request for a missing topic may auto-create it.
        existing = set(await admin.list_topics())
        present = [topic for topic in dict.fromkeys(topics) if topic in existing]
        if not present:
            return ClusterView(brokers, {})
        described = await admin.describe_topics(present)
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in present])
    configs = _configs(responses)
    views = {
        entry["topic"]: TopicView(entry["topic"], len(entry["partitions"]), configs.get(entry["topic"], {}))
        for entry in described
        if entry["topic"] in existing
    }
    return ClusterView(brokers, views)


def _configs(responses: Sequence[Any]) -> dict[str, dict[str, str]]:
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != 0:
                continue
            configs[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"]
                for entry in resource["config_entries"]
                if entry["config_value"] is not None
            }
    return configs


async def group_lag(settings: KafkaSettings, partitions: Mapping[str, int]) -> list[PartitionLag]:
    """Per partition of these topics: the group's committed offset, the high-water mark, and the lag between.

    A partition the group never committed counts from where a new member would start (`auto_offset_reset`).
    Reads as the group, without joining it: the group's members and assignment are left alone.
    """
    tps = [aiokafka.TopicPartition(topic, p) for topic, count in partitions.items() for p in range(count)]
    if not tps:
        return []
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{CLIENT_ID}-check",
        group_id=settings.group_id,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        # One small read per partition is enough to learn its high-water mark.
        max_partition_fetch_bytes=1024,
        **client_options(settings),
    )
    async with broker_errors("reading the group's offsets"):
        await consumer.start()
    try:
        async with broker_errors("reading the group's offsets"):
            consumer.assign(tps)
            beginnings = await consumer.beginning_offsets(tps)
            committed = {tp: await consumer.committed(tp) for tp in tps}
            for tp in tps:
                consumer.seek(tp, committed[tp] if committed[tp] is not None else beginnings[tp])
            highwater = await _highwater_marks(consumer, tps)
    finally:
        await consumer.stop()
    lags = []
    for tp in tps:
        done = committed[tp]
        start = done if done is not None else beginnings[tp]
        mark = highwater.get(tp)
        if done is None and settings.auto_offset_reset == "latest":
            lag: int | None = 0  # a new member would start at the end
        else:
            lag = None if mark is None else max(0, mark - start)
        lags.append(PartitionLag(tp.topic, tp.partition, done, mark, lag))
    return lags


async def _highwater_marks(
    consumer: aiokafka.AIOKafkaConsumer, tps: Sequence[aiokafka.TopicPartition]
) -> dict[aiokafka.TopicPartition, int]:
    marks: dict[aiokafka.TopicPartition, int] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HIGHWATER_WAIT_SECONDS
    while len(marks) < len(tps) and loop.time() < deadline:
        await consumer.getmany(timeout_ms=100, max_records=len(tps))
        for tp in tps:
            mark = consumer.highwater(tp)
            if mark is not None:
                marks[tp] = int(mark)
    missing = [tp for tp in tps if tp not in marks]
    if missing:
        # Some brokers never report the mark of an empty partition; there, both offsets agree it is empty.
        beginnings = await consumer.beginning_offsets(missing)
        ends = await consumer.end_offsets(missing)
        marks |= {tp: int(ends[tp]) for tp in missing if beginnings[tp] == ends[tp]}
    return marks

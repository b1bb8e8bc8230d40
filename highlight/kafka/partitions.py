"""Where records live and where they land: `Partition`, `Record` (and a fetched message as one), and Kafka's
default partitioner (a channel's home partition)."""

from __future__ import annotations

import functools
import itertools
from typing import Any, NamedTuple

from aiokafka.partitioner import murmur2


class Partition(NamedTuple):
    topic: str
    partition: int


class Record(NamedTuple):
    """A consumed record. A named tuple, not a frozen dataclass: one is built for every record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # A header's value may be null; a name that is not UTF-8 arrives escaped (`highlight.kafka_records`).
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int

    @property
    def source(self) -> Partition:
        return Partition(self.topic, self.partition)


def _record(message: Any) -> Record:
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=tuple(message.headers or ()),
        timestamp_ms=message.timestamp,
    )


# Hot channels repeat: remembering the hash of recent keys saves a pure-Python murmur2 per record.
KEY_HASH_CACHE = 65_536


@functools.lru_cache(maxsize=KEY_HASH_CACHE)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


@functools.lru_cache(maxsize=KEY_HASH_CACHE)
def home_partition(channel_id: str, partitions: int) -> int:
    """Where Kafka's default partitioner puts a record keyed by `channel_id`: the channel's one home."""
    return _key_hash(channel_id.encode()) % partitions


_unkeyed = itertools.count()


def partition_for(key: bytes | None, partitions: int) -> int:
    """Kafka's default partitioner (aiokafka's and Java's) for a keyed record; unkeyed records take turns."""
    return next(_unkeyed) % partitions if key is None else _key_hash(key) % partitions

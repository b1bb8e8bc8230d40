"""Hostile records for the last-resort tests: raw producing (any size, header names that are not UTF-8) and a
seeded stream of everything a careless or hostile producer can put on the moments topic."""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiokafka.producer.message_accumulator
import aiokafka.producer.producer
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

Header = tuple[str, bytes | None]


class RawName(str):
    """A header name whose bytes on the wire are not UTF-8, as librdkafka or Go producers can send."""

    __slots__ = ("raw",)

    def __new__(cls, raw: bytes) -> RawName:
        made = super().__new__(cls, raw.decode("utf-8", "backslashreplace"))
        made.raw = raw
        return made

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return self.raw


@dataclass(frozen=True)
class Raw:
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    kind: str = ""


@contextlib.contextmanager
def _python_record_builder() -> Iterator[None]:
    """aiokafka's compiled builder takes header names as str only; its Python twin writes whatever they encode to."""
    modules = (aiokafka.producer.message_accumulator, aiokafka.producer.producer)
    saved = [module.DefaultRecordBatchBuilder for module in modules]
    for module in modules:
        module.DefaultRecordBatchBuilder = _DefaultRecordBatchBuilderPy  # type: ignore[attr-defined]  # test-only swap
    try:
        yield
    finally:
        for module, builder in zip(modules, saved, strict=True):
            module.DefaultRecordBatchBuilder = builder  # type: ignore[attr-defined]  # test-only swap


async def produce_raw(
    bootstrap: str, topic: str, records: Iterable[Raw], *, partition: int = 0, partitions: int | None = None
) -> list[tuple[int, int]]:
    """Records exactly as given (several MiB each if need be), in order; where each landed (partition, offset).

    With `partitions`, each goes where Kafka's default partitioner puts its key, and keyless ones round-robin:
    the same placement on every run.
    """
    records = list(records)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, max_request_size=64 * 1024 * 1024
    )
    await producer.start()
    try:
        raw_names = any(isinstance(name, RawName) for record in records for name, _ in record.headers)
        with _python_record_builder() if raw_names else contextlib.nullcontext():
            sent = [
                await producer.send(
                    topic,
                    record.value,
                    key=record.key,
                    partition=partition if partitions is None else _placed(record.key, n, partitions),
                    headers=list(record.headers) or None,
                )
                for n, record in enumerate(records)
            ]
            landed = await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return [(metadata.partition, metadata.offset) for metadata in landed]


def _placed(key: bytes | None, n: int, partitions: int) -> int:
    return n % partitions if key is None else (murmur2(key) & 0x7FFFFFFF) % partitions


@contextlib.asynccontextmanager
async def reaped(process: subprocess.Popen[bytes]) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A `highlight run` process that is waited for whatever happens (killed first if it still runs)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        await asyncio.to_thread(process.wait)


def events(log: Path, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of one event in a process's log."""
    found = []
    for line in log.read_text().splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            document = orjson.loads(line)
            if document.get("event") == event:
                found.append(document)
    return found


def nested(depth: int) -> Any:
    """Objects and arrays nested `depth` levels deep (the outermost is level 1)."""
    value: Any = {}
    for level in range(depth - 1):
        value = [value] if level % 2 else {"k": value}
    return value


def deep_json(depth: int) -> bytes:
    """JSON nested `depth` levels, written by hand: orjson writes no more than 254."""
    return b'{"k":' * (depth - 1) + b"1" + b"}" * (depth - 1)


def valid_moment(event_id: str, channel_id: str, occurred_at: str, **fields: Any) -> bytes:
    return orjson.dumps({"event_id": event_id, "channel_id": channel_id, "occurred_at": occurred_at, **fields})


ODD_TEXT = ["", " ", "\u0000", "\u202e", "\ufeff", "\u2028", "频道", "🎮", "a\nb", "\\ud800", "&sign=0", "%00"]
ODD_TEXT += ["é" * 300]
WRONG_TYPES: list[Any] = [None, True, 0, -1, 2**63 - 1, 1.5, 1e300, "", [], {}, ["x"], {"a": 1}, "x" * 2000]
FIELDS = ["event_id", "channel_id", "occurred_at", "duration_seconds", "file_format", "record_type"]
FIELDS += ["domain", "path", "mix_stream", "attributes"]


def hostile_stream(seed: int, count: int, *, now: datetime, channels: int = 20) -> list[Raw]:
    """`count` records: about a tenth valid moments (several per channel and bucket), the rest hostile."""
    rng = random.Random(seed)
    occurred = now.astimezone(UTC).isoformat()
    records: list[Raw] = []
    for n in range(count):
        roll = rng.random()
        channel = f"fuzz-{rng.randrange(channels)}"
        key: bytes | None = channel.encode()
        if roll < 0.1:
            extra: dict[str, Any] = {}
            if rng.random() < 0.3:
                extra["attributes"] = {"n": n, "text": rng.choice(ODD_TEXT), "deep": nested(rng.randrange(1, 64))}
            records.append(Raw(_key(rng, key), valid_moment(f"ok-{n}", channel, occurred, **extra), kind="valid"))
            continue
        kind = rng.choice(KINDS)
        value, key = MAKERS[kind](rng, n, channel, occurred)
        key = _key(rng, key)
        if key is None and value is None:
            key = b""  # aiokafka's producer sends no record with neither (Kafka itself would take it)
        records.append(Raw(key, value, _headers(rng), kind))
    return records


def _key(rng: random.Random, key: bytes | None) -> bytes | None:
    choice = rng.random()
    if choice < 0.1:
        return None
    if choice < 0.15:
        return rng.randbytes(rng.randrange(0, 64))
    return key


def _headers(rng: random.Random) -> tuple[Header, ...]:
    if rng.random() < 0.7:
        return ()
    headers: list[Header] = []
    for _ in range(rng.randrange(1, 4)):
        roll = rng.random()
        if roll < 0.3:
            headers.append((f"h{rng.randrange(10)}", rng.randbytes(rng.randrange(0, 40))))
        elif roll < 0.5:
            headers.append((RawName(b"\xff\xfe" + rng.randbytes(3)), rng.randbytes(4)))
        elif roll < 0.6:
            headers.append(("null", None))
        elif roll < 0.7:
            headers.append(("huge", rng.randbytes(200_000)))
        else:
            headers.append((rng.choice(ODD_TEXT) or "empty", b"\x00\xff\xfe"))
    return tuple(headers)


def _random_bytes(rng: random.Random, n: int, channel: str, occurred: str) -> tuple[bytes | None, bytes | None]:
    return rng.randbytes(rng.randrange(0, 300)), channel.encode()


def _wrong_type(rng: random.Random, n: int, channel: str, occurred: str) -> tuple[bytes | None, bytes | None]:
    document: dict[str, Any] = {"event_id": f"wrong-{n}", "channel_id": channel, "occurred_at": occurred}
    document[rng.choice(FIELDS)] = rng.choice(WRONG_TYPES)
    return orjson.dumps(document), channel.encode()


def _deep(rng: random.Random, n: int, channel: str, occurred: str) -> tuple[bytes | None, bytes | None]:
    depth = rng.choice([65, 254, 255, 300, 1024, 1025, 5000])
    head = f'{{"event_id": "deep-{n}", "channel_id": "{channel}", "occurred_at": "{occurred}", "attributes": '
    return head.encode() + deep_json(depth) + b"}", channel.encode()


def _huge(rng: random.Random, n: int, channel: str, occurred: str) -> tuple[bytes | None, bytes | None]:
    size = rng.choice([70_000, 300_000])
    return valid_moment(f"huge-{n}", channel, occurred, attributes={"x": "y" * size}), channel.encode()


def _odd_text(rng: random.Random, n: int, channel: str, occurred: str) -> tuple[bytes | None, bytes | None]:
    field = rng.choice(["event_id", "channel_id", "occurred_at"])
    raw = rng.choice([b'"\\ud800"', b'"\\udfff"', b'"\xed\xa0\x80"', b'"\xff"', b"NaN", b"Infinity", b"1e400"])
    fields = {"event_id": f'"odd-{n}"'.encode(), "channel_id": f'"{channel}"'.encode(), "occurred_at": b'"x"'}
    fields["occurred_at"] = f'"{occurred}"'.encode()
    fields[field] = raw
    return b"{" + b",".join(b'"' + k.encode() + b'":' + v for k, v in fields.items()) + b"}", channel.encode()


def _big_number(rng: random.Random, n: int, channel: str, occurred: str) -> tuple[bytes | None, bytes | None]:
    number = rng.choice([b"18446744073709551616", b"-9223372036854775809", b"9" * 500, b"1e308"])
    field = rng.choice([b"duration_seconds", b"mix_stream", b"attributes"])
    value = b'{"n":' + number + b"}" if field == b"attributes" else number
    head = f'{{"event_id": "num-{n}", "channel_id": "{channel}", "occurred_at": "{occurred}", '.encode()
    return head + b'"' + field + b'": ' + value + b"}", channel.encode()


def _tombstone(rng: random.Random, n: int, channel: str, occurred: str) -> tuple[bytes | None, bytes | None]:
    return None, rng.choice([None, channel.encode()])


def _not_an_object(rng: random.Random, n: int, channel: str, occurred: str) -> tuple[bytes | None, bytes | None]:
    return rng.choice([b"[]", b"null", b'"moment"', b"42", b"[" * 1000 + b"]" * 1000]), channel.encode()


MAKERS = {
    "random_bytes": _random_bytes,
    "wrong_type": _wrong_type,
    "deep": _deep,
    "huge": _huge,
    "odd_text": _odd_text,
    "big_number": _big_number,
    "tombstone": _tombstone,
    "not_an_object": _not_an_object,
}
KINDS = sorted(MAKERS)

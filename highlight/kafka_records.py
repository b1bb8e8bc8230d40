"""Fetched record batches that aiokafka's own reader cannot read, read anyway.

aiokafka decodes every header name as strict UTF-8. A producer that sends other bytes there (librdkafka and Go
clients can) makes its reader raise `UnicodeDecodeError` out of `getmany()` for the whole batch, at the same
offset, after every restart: one record would stop the partition for good. The Java client decodes header
names leniently, and so do we: `LenientMemoryRecords` hands aiokafka's fetcher the usual (compiled) batches,
and only when one of them fails to decode is that batch read again here, its header names decoded with
`backslashreplace` (`b"\\xff"` becomes the text `\\xff`), so everything downstream sees ordinary strings.

`install()` puts it in place of the fetcher's `MemoryRecords`: aiokafka offers no hook for this.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiokafka.consumer.fetcher
from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.legacy_records import LegacyRecordBatch
from aiokafka.record.util import decode_varint

# Record batch v2: BaseOffset, Length, PartitionLeaderEpoch, Magic, CRC, Attributes, LastOffsetDelta,
# FirstTimestamp, MaxTimestamp, ProducerId, ProducerEpoch, BaseSequence, RecordCount.
_BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
_LENGTH_OFFSET = 8
_LOG_OVERHEAD = 12  # BaseOffset and Length: what precedes the bytes that Length counts
_MAGIC_OFFSET = 16
_MIN_SLICE = _LOG_OVERHEAD + 14  # the smallest legacy (v0) record, as aiokafka checks it
_CODEC_MASK = 0x07
_LOG_APPEND_TIME = 0x08
_DECOMPRESS = {1: gzip_decode, 2: snappy_decode, 3: lz4_decode, 4: zstd_decode}


@dataclass(frozen=True, slots=True)
class LenientRecord:
    """What aiokafka's fetcher reads from a record (its `DefaultRecord` protocol)."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]

    @property
    def checksum(self) -> None:
        return None


def read_batch(raw: bytes) -> Iterator[LenientRecord]:
    """Every record of one v2 batch, header names decoded with `backslashreplace`. Pure."""
    (base_offset, _, _, magic, _, attributes, _, first_timestamp, max_timestamp, _, _, _, count) = (
        _BATCH_HEADER.unpack_from(raw)
    )
    if magic != 2:
        raise CorruptRecordException(f"not a v2 record batch (magic {magic})")
    payload: bytes = raw[_BATCH_HEADER.size :]
    codec = attributes & _CODEC_MASK
    if codec:
        decompress = _DECOMPRESS.get(codec)
        if decompress is None:
            raise CorruptRecordException(f"unknown compression codec {codec}")
        payload = decompress(payload)
    buffer = bytearray(payload)
    timestamp_type = 1 if attributes & _LOG_APPEND_TIME else 0
    pos = 0
    for _ in range(count):
        length, pos = decode_varint(buffer, pos)
        end = pos + length
        pos += 1  # record attributes: unused
        timestamp_delta, pos = decode_varint(buffer, pos)
        offset_delta, pos = decode_varint(buffer, pos)
        key, pos = _bytes(buffer, pos)
        value, pos = _bytes(buffer, pos)
        header_count, pos = decode_varint(buffer, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            name, pos = _bytes(buffer, pos)
            header_value, pos = _bytes(buffer, pos)
            headers.append(((name or b"").decode("utf-8", "backslashreplace"), header_value))
        if pos != end:
            raise CorruptRecordException(f"record at offset delta {offset_delta} is {length} bytes, read {pos}")
        yield LenientRecord(
            offset=base_offset + offset_delta,
            timestamp=max_timestamp if timestamp_type else first_timestamp + timestamp_delta,
            timestamp_type=timestamp_type,
            key=key,
            value=value,
            headers=headers,
        )


def _bytes(buffer: bytearray, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(buffer, pos)
    if length < 0:
        return None, pos
    if pos + length > len(buffer):
        raise CorruptRecordException(f"a field of {length} bytes runs past the end of the batch")
    return bytes(buffer[pos : pos + length]), pos + length


class _LenientBatch:
    """aiokafka's compiled batch while it can read the records; this module's reader from the first it cannot."""

    def __init__(self, raw: memoryview) -> None:
        self._raw = raw
        self._batch = DefaultRecordBatch(raw)
        self._records = self._read()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        return self._records

    def __next__(self) -> Any:
        return next(self._records)

    def _read(self) -> Iterator[Any]:
        try:
            yield from self._batch
        except UnicodeDecodeError:
            # From the batch's first record again: the fetcher skips offsets it has already handed out (it
            # must, for compressed v0/v1 message sets), so nothing is delivered twice.
            yield from read_batch(bytes(self._raw))


class LenientMemoryRecords:
    """The fetcher's view of one partition's fetched bytes: a sequence of batches (as aiokafka's own)."""

    def __init__(self, data: bytes) -> None:
        self._buffer = memoryview(data)
        self._pos = 0

    def size_in_bytes(self) -> int:
        return len(self._buffer)

    def has_next(self) -> bool:
        return self._next_end() is not None

    def next_batch(self) -> Any:
        end = self._next_end()
        if end is None:
            return None
        raw = self._buffer[self._pos : end]
        self._pos = end
        if len(raw) < _MIN_SLICE:
            raise CorruptRecordException(f"a record batch of {len(raw)} bytes is below the minimum")
        magic = raw[_MAGIC_OFFSET]
        return _LenientBatch(raw) if magic >= 2 else LegacyRecordBatch(raw, magic)

    def _next_end(self) -> int | None:
        """Where the next batch ends, if it arrived whole (a fetch may end in a partial batch)."""
        remaining = len(self._buffer) - self._pos
        if remaining < _LOG_OVERHEAD:
            return None
        (length,) = struct.unpack_from(">i", self._buffer, self._pos + _LENGTH_OFFSET)
        end = self._pos + _LOG_OVERHEAD + length
        return end if end <= len(self._buffer) else None


def install() -> None:
    """Idempotent: every consumer of this process reads batches through `LenientMemoryRecords`."""
    if not hasattr(aiokafka.consumer.fetcher, "MemoryRecords"):
        # An aiokafka that moved it would otherwise be back to a poison record silently.
        raise RuntimeError("aiokafka.consumer.fetcher.MemoryRecords is gone: highlight.kafka_records needs updating")
    aiokafka.consumer.fetcher.MemoryRecords = LenientMemoryRecords

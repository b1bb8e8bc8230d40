"""Fetched batches aiokafka's reader refuses (highlight.kafka_records), and where Kafka's errors are classified."""

from __future__ import annotations

import struct
from typing import Any

import aiokafka.consumer.fetcher
import aiokafka.errors
import pytest
from aiokafka.record.default_records import DefaultRecordBatch, _DefaultRecordBatchBuilderPy
from aiokafka.record.memory_records import MemoryRecords
from hypothesis import given, settings
from hypothesis import strategies as st

from highlight import kafka_records
from highlight.errors import BrokerError, BrokerUnavailable, RecordRejected, RecordTooLarge
from highlight.kafka.client import _mapped
from highlight.kafka_records import LenientMemoryRecords, read_batch


class _RawName(str):
    """A header name whose bytes on the wire are not UTF-8 (as librdkafka or Go producers can send)."""

    __slots__ = ("raw",)

    def __new__(cls, raw: bytes) -> _RawName:
        made = super().__new__(cls, "x")
        made.raw = raw
        return made

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return self.raw


Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]


def _batch(records: list[Record], *, base_offset: int = 0, compression: int = 0) -> bytes:
    builder = _DefaultRecordBatchBuilderPy(
        magic=2,
        compression_type=compression,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=16 * 1024 * 1024,
    )
    for offset, (key, value, headers) in enumerate(records):
        builder.append(offset, timestamp=1_700_000_000_000 + offset, key=key, value=value, headers=headers)
    raw = bytes(builder.build())
    return struct.pack(">q", base_offset) + raw[8:]


def _read(records_class: Any, data: bytes) -> list[tuple[Any, ...]]:
    read = []
    records = records_class(data)
    while records.has_next():
        for record in records.next_batch():
            read.append((record.offset, record.timestamp, record.key, record.value, list(record.headers)))
    return read


records_strategy = st.lists(
    st.tuples(
        st.none() | st.binary(max_size=30),
        st.none() | st.binary(max_size=300),
        st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=4),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=100, deadline=None)
@given(records_strategy, st.integers(0, 2**40), st.sampled_from([0, 1]))
def test_read_batch_reads_what_aiokafka_reads(records: list[Record], base: int, compression: int) -> None:
    raw = _batch(records, base_offset=base, compression=compression)
    ours = [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in read_batch(raw)]
    theirs = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in DefaultRecordBatch(raw)]
    assert ours == theirs


@settings(max_examples=50, deadline=None)
@given(st.lists(records_strategy, min_size=1, max_size=4))
def test_lenient_records_read_ordinary_batches_exactly_as_aiokafka(batches: list[list[Record]]) -> None:
    data = b"".join(_batch(records, base_offset=1000 * n) for n, records in enumerate(batches))
    partial = _batch([(None, b"cut off by the fetch size", [])], base_offset=99_999)[:-5]
    assert _read(LenientMemoryRecords, data + partial) == _read(MemoryRecords, data + partial)


def test_a_header_name_that_is_not_utf8_is_read_escaped_with_the_rest_of_its_batch() -> None:
    records: list[Record] = [
        (b"k1", b"before", [("ok", b"1")]),
        (b"k2", b"hostile", [(_RawName(b"\xff\xfe-name"), b"v"), ("null-value", None)]),
        (b"k3", b"after", []),
    ]
    data = _batch(records, base_offset=40) + _batch([(None, b"next batch", [])], base_offset=43)
    with pytest.raises(UnicodeDecodeError):
        _read(MemoryRecords, data)  # what would stop the partition for good
    read = _read(LenientMemoryRecords, data)
    assert [(offset, value) for offset, _, _, value, _ in read] == [
        (40, b"before"),
        # The compiled reader hands out what it read before failing; the fetcher skips offsets it has handed out.
        (40, b"before"),
        (41, b"hostile"),
        (42, b"after"),
        (43, b"next batch"),
    ]
    assert read[2][4] == [("\\xff\\xfe-name", b"v"), ("null-value", None)]
    assert read[2][2] == b"k2"


def test_install_puts_the_lenient_reader_in_the_fetcher_and_can_run_twice() -> None:
    kafka_records.install()
    kafka_records.install()
    assert aiokafka.consumer.fetcher.MemoryRecords is LenientMemoryRecords


def test_a_batch_that_is_not_v2_is_refused_by_the_fallback_reader() -> None:
    raw = bytearray(_batch([(None, b"v", [])]))
    raw[16] = 1
    with pytest.raises(aiokafka.errors.CorruptRecordException):
        list(read_batch(bytes(raw)))


# --- classified where they enter -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [aiokafka.errors.MessageSizeTooLargeError(), aiokafka.errors.RecordListTooLargeError()]
)
def test_a_record_too_large_for_kafka_is_its_own_error_not_an_unreachable_broker(error: Exception) -> None:
    mapped = _mapped(error, "send to t", sending=True)  # type: ignore[arg-type]  # aiokafka ships no types
    assert type(mapped) is RecordTooLarge
    assert not mapped.retriable
    assert "send to t" in str(mapped)


def test_a_record_kafka_finds_invalid_is_rejected() -> None:
    assert type(_mapped(aiokafka.errors.CorruptRecordException(), "send", sending=True)) is RecordRejected


def test_outside_a_send_the_same_errors_are_not_a_records_fault() -> None:
    mapped = _mapped(aiokafka.errors.MessageSizeTooLargeError(), "fetch")
    assert not isinstance(mapped, RecordRejected)
    assert isinstance(mapped, BrokerError)


def test_connection_errors_and_timeouts_are_unavailable_even_while_sending() -> None:
    assert type(_mapped(aiokafka.errors.KafkaConnectionError(), "send", sending=True)) is BrokerUnavailable
    assert type(_mapped(aiokafka.errors.KafkaTimeoutError(), "send", sending=True)) is BrokerUnavailable

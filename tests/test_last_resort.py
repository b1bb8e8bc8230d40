"""The last resort (highlight.last_resort) around every record the recorder routes: which failures dead-letter
a record and which stop the service, the N-in-a-row bound, and a dead-letter topic that takes less than it
promised.

The producer here is a stand-in that records what it is asked to send and fails as told; the real broker
versions of these paths are in test_e2e_last_resort.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from highlight import config
from highlight.dead_letters import TRUNCATED_HEADER, Header
from highlight.errors import BrokerUnavailable, Fenced, RecordTooLarge, TooManyUnprocessable, TopicMisconfigured
from highlight.kafka import Record, record_size
from highlight.last_resort import SMALL_DEAD_LETTER_BYTES
from highlight.lease import FenceReason, Lease, Membership
from highlight.metrics import Metrics
from highlight.recorder import Recorder
from tests.harness import Names, held_lease, service_env

NAMES = Names.unique("last-resort")


class StandInProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[Header]]] = []
        self.refuse: dict[str, list[Exception]] = {}

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[Header] | None = None,
    ) -> int:
        failures = self.refuse.get(topic)
        if failures:
            raise failures.pop(0)
        self.sent.append((topic, key, value, list(headers or ())))
        return len(self.sent)

    def to(self, topic: str) -> list[tuple[str, bytes | None, bytes | None, list[Header]]]:
        return [sent for sent in self.sent if sent[0] == topic]


def _recorder(
    producer: StandInProducer, *, in_a_row: int = 3, dead_letter_bytes: int | None = None, lease: Lease | None = None
) -> Recorder:
    env = service_env("127.0.0.1:9", NAMES, "http://127.0.0.1:9/", max_unprocessable_in_a_row=in_a_row)
    settings = config.load(env)
    return Recorder(
        settings,
        partitions=1,
        producer=producer,  # type: ignore[arg-type]  # a stand-in with the same send()
        outbox=None,  # type: ignore[arg-type]  # the waiting path (`run`) is under test: it sends and awaits
        live=SimpleNamespace(backend=SimpleNamespace(name="live_tape_start")),  # type: ignore[arg-type]  # unused here
        state=None,  # type: ignore[arg-type]  # no moment here reaches the state
        limiter=None,  # type: ignore[arg-type]
        gate=None,  # type: ignore[arg-type]
        admissions=None,  # type: ignore[arg-type]  # no moment here reaches a call
        lease=lease or held_lease(),  # forwards and dead letters are published under the lease
        metrics=Metrics(),
        clock=lambda: datetime.now(UTC),
        dead_letter_bytes=dead_letter_bytes,
    )


def _record(offset: int, value: bytes | None = b"not json", key: bytes | None = b"k") -> Record:
    return Record(NAMES.moments, 0, offset, key, value, (), 0)


def _valid_unkeyed(offset: int) -> Record:
    moment = b'{"event_id": "e%d", "channel_id": "c", "occurred_at": "2024-05-01T20:15:00Z"}' % offset
    return _record(offset, moment, key=None)  # forwarded: its first step is a send to the repartition topic


async def _run(recorder: Recorder, record: Record) -> None:
    await recorder.route(record).run()


async def test_a_failure_in_our_code_on_one_record_dead_letters_it_and_the_next_record_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    producer = StandInProducer()
    recorder = _recorder(producer)

    def broken(value: bytes | None, *, max_bytes: int | None = None) -> Any:
        raise TypeError("a bug that only this record finds")

    monkeypatch.setattr("highlight.recorder.parse_moment", broken)
    await _run(recorder, _record(5, b"original bytes", key=b"original key"))
    ((topic, key, value, headers),) = producer.sent
    assert (topic, key, value) == (NAMES.dlq, b"original key", b"original bytes")
    names = dict(headers)
    assert names["highlight.dlq.reason"] == b"unprocessable"
    assert names["highlight.dlq.exception"] == b"TypeError"
    assert names["__connect.errors.offset"] == b"5"
    monkeypatch.undo()
    await _run(recorder, _record(6))
    assert producer.to(NAMES.dlq)[1][3][-1] == ("highlight.dlq.reason", b"invalid_json")


async def test_a_fenced_member_dead_letters_nothing_and_leaves_the_record_to_the_partitions_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fenced, and its last proof has run out: a write now could land after a new owner has decided.
    now = [0.0]
    lease, member = Lease(10.0, clock=lambda: now[0]), Membership(1, "member-under-test")
    lease.proved(member, 0.0)
    lease.assigned(member)
    now[0] = 60.0
    lease.fenced(FenceReason.MEMBERSHIP_LOST, member)
    producer = StandInProducer()
    recorder = _recorder(producer, lease=lease)
    with pytest.raises(Fenced):
        await _run(recorder, _record(1))  # malformed: its owner dead-letters it
    monkeypatch.setattr("highlight.recorder.parse_moment", lambda *_, **__: _raise(TypeError("a bug")))
    with pytest.raises(Fenced):
        await _run(recorder, _record(2))  # unprocessable: likewise
    assert producer.sent == [], "a zombie's dead letter would be a second copy of its owner's"


def _raise(exc: Exception) -> Any:
    raise exc


async def test_transient_and_service_wide_errors_are_not_dead_letters_they_stop_the_service() -> None:
    for error in (BrokerUnavailable("brokers gone"), TopicMisconfigured("topic gone")):
        producer = StandInProducer()
        producer.refuse[NAMES.repartition] = [error]
        with pytest.raises(type(error)):
            await _run(_recorder(producer), _valid_unkeyed(1))
        assert producer.sent == [], "nothing dead-lettered for a failure that is not the record's"


async def test_n_in_a_row_are_dead_lettered_and_the_next_in_a_row_stops_the_service_uncommitted() -> None:
    producer = StandInProducer()
    recorder = _recorder(producer, in_a_row=3)
    producer.refuse[NAMES.repartition] = [RecordTooLarge("too large") for _ in range(10)]
    for offset in range(3):
        await _run(recorder, _valid_unkeyed(offset))
    assert len(producer.to(NAMES.dlq)) == 3
    with pytest.raises(TooManyUnprocessable, match="4 records in a row"):
        await _run(recorder, _valid_unkeyed(3))
    with pytest.raises(RecordTooLarge):
        await _run(recorder, _valid_unkeyed(4))  # while stopping: left for the fixed version, not dead-lettered
    await _run(recorder, _record(5))  # an ordinary dead letter still goes
    assert len(producer.to(NAMES.dlq)) == 4
    with pytest.raises(RecordTooLarge):
        await _run(recorder, _valid_unkeyed(6))  # and does not reset a broken streak


async def test_any_record_that_succeeds_starts_the_count_again() -> None:
    producer = StandInProducer()
    recorder = _recorder(producer, in_a_row=2)
    producer.refuse[NAMES.repartition] = [RecordTooLarge("too large") for _ in range(6)]
    for offset in range(0, 9, 3):
        await _run(recorder, _valid_unkeyed(offset))
        await _run(recorder, _valid_unkeyed(offset + 1))
        await _run(recorder, _record(offset + 2))  # invalid, dead-lettered as such: processed fine
    assert len(producer.to(NAMES.dlq)) == 9


async def test_a_dead_letter_topic_that_refuses_the_promised_size_gets_a_small_copy() -> None:
    producer = StandInProducer()
    recorder = _recorder(producer)
    producer.refuse[NAMES.dlq] = [RecordTooLarge("the topic takes less than it said")]
    value = b"x" * 200_000
    await _run(recorder, _record(1, value))
    ((_, key, sent, headers),) = producer.sent
    assert dict(headers)[TRUNCATED_HEADER] == b"true"
    assert record_size(key, sent, headers) <= SMALL_DEAD_LETTER_BYTES
    assert sent is not None
    assert value.startswith(sent)


async def test_a_dead_letter_topic_that_refuses_even_a_small_copy_stops_the_service() -> None:
    producer = StandInProducer()
    producer.refuse[NAMES.dlq] = [RecordTooLarge("no") for _ in range(4)]
    with pytest.raises(RecordTooLarge):
        await _run(_recorder(producer), _record(1))
    assert producer.sent == []


async def test_dead_letters_are_cut_to_the_dead_letter_topics_own_limit() -> None:
    producer = StandInProducer()
    await _run(_recorder(producer, dead_letter_bytes=100_000), _record(1, b"y" * 500_000))
    ((_, key, sent, headers),) = producer.sent
    assert 90_000 < record_size(key, sent, headers) <= 100_000

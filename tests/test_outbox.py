"""Pipelined publishing (highlight.outbox) with a producer whose acknowledgements the test hands out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from highlight.errors import BrokerUnavailable, RecordTooLarge
from highlight.kafka import Partition, partition_for
from highlight.lanes import OffsetTracker
from highlight.lease import FenceReason, Lease, Membership
from highlight.outbox import Outbox, Token
from tests.harness import held_lease

P0 = Partition("highlight.moments", 0)
P1 = Partition("highlight.moments", 1)
RESULTS = "highlight.recordings"


@dataclass
class FakeBatch:
    capacity: int
    records: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)
    closed: bool = False

    @property
    def count(self) -> int:
        return len(self.records)

    def append(self, key: bytes | None, value: bytes | None, headers: Any = ()) -> bool:
        assert not self.closed
        if self.records and len(self.records) >= self.capacity:
            return False
        self.records.append((key, value))
        return True

    def close(self) -> None:
        self.closed = True


@dataclass
class Sent:
    topic: str
    partition: int
    batch: FakeBatch
    acked: asyncio.Future[None]


class FakeProducer:
    """Hands out batches of `capacity` records; each published batch's acknowledgement waits for the test."""

    def __init__(self, partitions: int = 3, capacity: int = 1000) -> None:
        self.count = partitions
        self.capacity = capacity
        self.sent: list[Sent] = []
        self.refuse: Exception | None = None
        self.published = asyncio.Event()

    def batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def partitions(self, topic: str) -> int:
        return self.count

    async def publish(self, batch: FakeBatch, topic: str, partition: int) -> asyncio.Future[None]:
        if self.refuse is not None:
            raise self.refuse
        batch.close()
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append(Sent(topic, partition, batch, acked))
        self.published.set()
        return acked

    def values(self, partition: int | None = None) -> list[bytes | None]:
        return [v for s in self.sent if partition in (None, s.partition) for _, v in s.batch.records]


@dataclass
class Harness:
    producer: FakeProducer
    outbox: Outbox
    acked: list[Token] = field(default_factory=list)
    failed: list[tuple[list[Token], BaseException]] = field(default_factory=list)

    async def published(self, records: int) -> None:
        """Until the flusher has handed `records` records to the producer."""
        while len(self.producer.values()) < records:
            self.producer.published.clear()
            await asyncio.wait_for(self.producer.published.wait(), 2)


@pytest.fixture
async def box() -> AsyncIterator[Harness]:
    producer = FakeProducer()
    acked: list[Token] = []
    failed: list[tuple[list[Token], BaseException]] = []
    outbox = Outbox(
        producer,  # type: ignore[arg-type]  # the fake has the surface the outbox uses
        lease=held_lease(),
        on_acked=acked.extend,
        on_failed=lambda tokens, exc: failed.append((tokens, exc)),
    )
    outbox.start()
    yield Harness(producer, outbox, acked, failed)
    await outbox.close()


def key_on(partition: int, partitions: int = 3) -> bytes:
    return next(k for i in range(1000) if partition_for(k := f"chan-{i}".encode(), partitions) == partition)


async def test_records_of_one_partition_are_published_in_the_order_they_were_queued(box: Harness) -> None:
    for offset in range(20):
        box.outbox.put(RESULTS, f"a{offset}".encode(), key=key_on(offset % 2), answers=(P0, offset))
        if offset % 5 == 0:
            await asyncio.sleep(0)  # several flushes
    await box.published(20)
    assert box.producer.values(0) == [f"a{o}".encode() for o in range(0, 20, 2)]
    assert box.producer.values(1) == [f"a{o}".encode() for o in range(1, 20, 2)]
    assert all(s.batch.closed for s in box.producer.sent)


async def test_a_record_is_done_only_when_the_batch_carrying_it_is_acknowledged(box: Harness) -> None:
    for offset in range(3):
        box.outbox.put(RESULTS, b"r", key=key_on(0), answers=(P0, offset))
    await box.published(3)
    assert box.acked == []
    assert box.outbox.outstanding() == 3
    for sent in box.producer.sent:
        sent.acked.set_result(None)
    await asyncio.sleep(0)
    assert sorted(box.acked) == [(P0, 0), (P0, 1), (P0, 2)]
    assert box.outbox.outstanding() == 0


async def test_a_failed_acknowledgement_is_reported_with_its_records_and_they_are_never_done(box: Harness) -> None:
    box.outbox.put(RESULTS, b"r", key=key_on(0), answers=(P0, 0))
    box.outbox.put(RESULTS, b"r", key=key_on(1), answers=(P0, 1))
    await box.published(2)
    error = BrokerUnavailable("Kafka send failed: KafkaTimeoutError")
    by_partition = {s.partition: s for s in box.producer.sent}
    by_partition[0].acked.set_exception(error)
    by_partition[1].acked.set_result(None)
    await asyncio.sleep(0)
    assert box.failed == [([(P0, 0)], error)]
    assert box.acked == [(P0, 1)]
    assert box.outbox.outstanding() == 0, "a failed answer no longer holds a drain"


async def test_a_publish_that_raises_fails_every_record_not_handed_over(box: Harness) -> None:
    box.producer.refuse = BrokerUnavailable("Kafka send failed: producer closed")
    for offset in range(4):
        box.outbox.put(RESULTS, b"r", key=key_on(offset % 3), answers=(P0, offset))
    await box.outbox.settle(None, 2)
    assert sorted(t for tokens, _ in box.failed for t in tokens) == [(P0, o) for o in range(4)]
    assert box.acked == []


async def test_a_full_batch_is_split_and_each_record_is_published_once_in_order() -> None:
    producer = FakeProducer(partitions=1, capacity=3)
    acked: list[Token] = []
    outbox = Outbox(producer, lease=held_lease(), on_acked=acked.extend, on_failed=lambda t, e: None)  # type: ignore[arg-type]  # the fake
    outbox.start()
    try:
        for offset in range(10):
            outbox.put(RESULTS, str(offset).encode(), key=b"k", answers=(P0, offset))
        while len(producer.values()) < 10:
            producer.published.clear()
            await asyncio.wait_for(producer.published.wait(), 2)
        assert producer.values() == [str(o).encode() for o in range(10)]
        assert [s.batch.count for s in producer.sent] == [3, 3, 3, 1]
        for sent in producer.sent:
            sent.acked.set_result(None)
        await outbox.settle(None, 1)
        assert sorted(acked) == [(P0, o) for o in range(10)]
    finally:
        await outbox.close()


async def test_an_explicit_partition_wins_and_unkeyed_records_take_turns(box: Harness) -> None:
    box.outbox.put("repartition", b"f", key=key_on(0), partition=2, answers=(P0, 0))
    for offset in range(1, 4):
        box.outbox.put("dlq", b"d", key=None, answers=(P0, offset))
    await box.published(4)
    assert [s.partition for s in box.producer.sent if s.topic == "repartition"] == [2]
    assert sorted(s.partition for s in box.producer.sent if s.topic == "dlq") == [0, 1, 2]


async def test_settle_waits_for_the_given_partitions_only(box: Harness) -> None:
    box.outbox.put(RESULTS, b"r", key=key_on(0), answers=(P0, 0))
    box.outbox.put(RESULTS, b"r", key=key_on(1), answers=(P1, 0))
    await box.published(2)
    settling = asyncio.create_task(box.outbox.settle({P0}, 5))
    await asyncio.sleep(0.01)
    assert not settling.done()
    next(s for s in box.producer.sent if s.partition == 0).acked.set_result(None)
    assert await asyncio.wait_for(settling, 1) == 0
    assert box.outbox.outstanding({P1}) == 1


async def test_settle_gives_up_after_its_timeout_and_says_how_many_are_left(box: Harness) -> None:
    box.outbox.put(RESULTS, b"r", key=key_on(0), answers=(P0, 0))
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await box.outbox.settle({P0}, 0.05) == 1
    assert loop.time() - began < 1


async def test_forget_stops_counting_a_revoked_partition(box: Harness) -> None:
    box.outbox.put(RESULTS, b"r", key=key_on(0), answers=(P0, 0))
    await box.published(1)
    box.outbox.forget([P0])
    assert box.outbox.outstanding() == 0
    box.producer.sent[0].acked.set_result(None)  # a late acknowledgement changes nothing
    await asyncio.sleep(0)
    assert box.outbox.outstanding() == 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


MEMBER = Membership(3, "member-a")


@pytest.fixture
async def leased() -> AsyncIterator[tuple[Harness, Lease, Clock]]:
    """An outbox under a lease of 10 s (5 s of cover per proof) on a clock the test moves."""
    clock = Clock()
    lease = Lease(10.0, clock=clock)
    lease.proved(MEMBER, clock.now)
    lease.assigned(MEMBER)
    producer = FakeProducer()
    harness = Harness(producer, None)  # type: ignore[arg-type]  # set right below
    harness.outbox = Outbox(
        producer,  # type: ignore[arg-type]  # the fake has the surface the outbox uses
        lease=lease,
        on_acked=harness.acked.extend,
        on_failed=lambda tokens, exc: harness.failed.append((tokens, exc)),
    )
    harness.outbox.start()
    yield harness, lease, clock
    await harness.outbox.close()


async def test_an_answer_queued_under_the_lease_is_not_published_once_the_member_is_fenced(
    leased: tuple[Harness, Lease, Clock],
) -> None:
    box, lease, clock = leased
    box.outbox.put(RESULTS, b"r", key=key_on(0), answers=(P0, 0))
    box.outbox.put(RESULTS, b"r", key=key_on(1), answers=(P1, 0))
    # Before the flusher runs: the loop stalled past the lease, and the coordinator has moved on meanwhile.
    clock.now += 6
    lease.fenced(FenceReason.MEMBERSHIP_LOST, MEMBER)
    assert await box.outbox.settle(None, 1) == 0, "a fenced answer no longer holds a drain"
    await asyncio.sleep(0.01)
    assert box.producer.sent == [], "a zombie published an answer"
    assert box.acked == [], "a dropped answer's record must stay uncommitted"
    assert box.failed == [], "being fenced is not a failure that stops the service"
    box.outbox.put(RESULTS, b"r", key=key_on(0), answers=(P0, 1))
    assert await box.outbox.settle(None, 1) == 0
    assert box.producer.sent == [], "nothing is published until the next assignment"


async def test_publishing_waits_while_the_lease_has_lapsed_and_goes_on_once_a_heartbeat_renews_it(
    leased: tuple[Harness, Lease, Clock],
) -> None:
    box, lease, clock = leased
    clock.now += 6  # no proof for longer than the lease: nothing may be published, but nothing is lost either
    box.outbox.put(RESULTS, b"r", key=key_on(0), answers=(P0, 0))
    assert await box.outbox.settle(None, 0.05) == 1
    assert box.producer.sent == []
    lease.proved(MEMBER, clock.now)
    await box.published(1)
    box.producer.sent[0].acked.set_result(None)
    assert await box.outbox.settle(None, 1) == 0
    assert box.acked == [(P0, 0)]


async def test_forget_drops_answers_not_yet_handed_to_the_producer(box: Harness) -> None:
    box.outbox.put(RESULTS, b"r", key=key_on(0), answers=(P0, 0))
    box.outbox.put(RESULTS, b"r", key=key_on(1), answers=(P1, 0))
    box.outbox.forget([P0])  # revoked before the flusher ran: the partition's next owner answers it
    await box.published(1)
    await asyncio.sleep(0.01)
    assert [s.partition for s in box.producer.sent] == [1]
    assert box.outbox.outstanding() == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=12), st.randoms(use_true_random=False))
async def test_the_commit_point_never_passes_an_unacknowledged_answer(flushes: list[int], rng: Any) -> None:
    """The service's wiring, with acknowledgements landing in any order: the tracker's commit point only ever
    covers records whose answers the brokers hold."""
    producer = FakeProducer(partitions=4, capacity=4)
    tracker = OffsetTracker()
    acked: set[int] = set()

    def on_acked(tokens: list[Token]) -> None:
        for partition, offset in tokens:
            acked.add(offset)
            tracker.done(partition, offset)

    outbox = Outbox(producer, lease=held_lease(), on_acked=on_acked, on_failed=lambda t, e: None)  # type: ignore[arg-type]  # the fake
    outbox.start()
    offset = 0
    try:
        for size in flushes:
            for _ in range(size):
                tracker.track(P0, offset)
                outbox.put(RESULTS, b"r", key=f"c{offset % 7}".encode(), answers=(P0, offset))
                offset += 1
            await asyncio.sleep(0)
            pending = [s for s in producer.sent if not s.acked.done()]
            for sent in rng.sample(pending, k=rng.randint(0, len(pending))):
                sent.acked.set_result(None)
            await asyncio.sleep(0)
            commit = tracker.to_commit().get(P0, 0)
            assert set(range(commit)) <= acked, "committed past an answer the brokers do not hold"
        while outbox.outstanding():
            for sent in producer.sent:
                if not sent.acked.done():
                    sent.acked.set_result(None)
            await asyncio.sleep(0)
        assert tracker.to_commit().get(P0, 0) == offset
    finally:
        await outbox.close()


async def test_a_batch_refused_for_a_records_sake_is_sent_again_answer_by_answer_through_their_retries(
    box: Harness,
) -> None:
    retried: list[int] = []

    def retry(offset: int, fails: bool = False) -> Any:
        async def again() -> None:
            if fails:
                raise RecordTooLarge("still too large on its own")
            retried.append(offset)

        return again

    box.outbox.put(RESULTS, b"a", key=key_on(0), answers=(P0, 0), retry=retry(0))
    box.outbox.put(RESULTS, b"b", key=key_on(0), answers=(P0, 1), retry=retry(1, fails=True))
    box.outbox.put(RESULTS, b"c", key=key_on(0), answers=(P0, 2))  # no retry: the refusal is its failure
    box.outbox.put(RESULTS, b"d", key=key_on(0), answers=(P0, 3), retry=retry(3))
    await box.published(4)
    (sent,) = box.producer.sent
    refusal = RecordTooLarge("Kafka send failed: MessageSizeTooLargeError")
    sent.acked.set_exception(refusal)
    await box.outbox.settle(None, 2)
    assert retried == [0, 3], "each in order, on its own"
    assert sorted(box.acked) == [(P0, 0), (P0, 3)]
    assert sorted((tokens[0], type(exc)) for tokens, exc in box.failed) == [
        ((P0, 1), RecordTooLarge),
        ((P0, 2), RecordTooLarge),
    ]
    assert box.outbox.outstanding() == 0

"""Answers decided at once (highlight.recorder) only under the lease: a member that cannot prove it owns its
partitions queues nothing, and its waiting path gives the moment up (`Fenced`) instead of answering it.

The outbox and the state are stand-ins; the outbox's own check at send time is in test_outbox.py, and the whole
story, with members stopped past their lease, in test_zombie.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from highlight import config
from highlight.dedup import DedupKey, Entry, Phase, bucket_key
from highlight.errors import Abandoned, Fenced
from highlight.kafka import Record
from highlight.lease import FenceReason, Lease, Membership
from highlight.metrics import Metrics
from highlight.moment import Moment, parse_moment
from highlight.recorder import Recorder
from tests.harness import Names, moment, service_env

NAMES = Names.unique("fenced-answers")
MEMBER = Membership(2, "member-a")
SESSION = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class StandInOutbox:
    def __init__(self) -> None:
        self.queued: list[tuple[str, bytes | None, dict[str, Any]]] = []

    def put(self, topic: str, value: bytes | None, **fields: Any) -> None:
        self.queued.append((topic, value, fields))


class StandInProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    async def send(self, topic: str, value: bytes | None, **fields: Any) -> int:
        self.sent.append((topic, value))
        return len(self.sent)


class RecordedState:
    """The dedup state of one key: a recording already started for it."""

    def __init__(self, key: DedupKey) -> None:
        self.entries = {key: Entry(Phase.STARTED, "first", "2024-05-01 20:15:00", "2024-05-01 20:20:00", "task-1")}

    def candidates(self, index: int, moment: Moment) -> dict[DedupKey, Entry]:
        return self.entries


def duplicate() -> tuple[Record, Moment]:
    value = orjson.dumps(moment("second", "chan-a"))
    parsed = parse_moment(value, max_bytes=65536)
    return Record(NAMES.moments, 0, 7, b"chan-a", value, (), 0), parsed


def recorder(lease: Lease, outbox: StandInOutbox, producer: StandInProducer, state: RecordedState) -> Recorder:
    settings = config.load(service_env("127.0.0.1:9", NAMES, "http://127.0.0.1:9/"))
    return Recorder(
        settings,
        partitions=1,
        producer=producer,  # type: ignore[arg-type]  # a stand-in with the same send()
        outbox=outbox,  # type: ignore[arg-type]  # a stand-in with the same put()
        live=SimpleNamespace(backend=SimpleNamespace(name="live_tape_start")),  # type: ignore[arg-type]  # no call here
        state=state,  # type: ignore[arg-type]  # the state answers every moment here
        limiter=None,  # type: ignore[arg-type]
        gate=None,  # type: ignore[arg-type]
        admissions=None,  # type: ignore[arg-type]  # no moment here reaches a call
        lease=lease,
        metrics=Metrics(),
        clock=lambda: datetime.now(UTC),
    )


@pytest.fixture
def lease_clock() -> tuple[Lease, Clock]:
    clock = Clock()
    lease = Lease(SESSION, clock=clock)
    lease.proved(MEMBER, clock.now)
    lease.assigned(MEMBER)
    return lease, clock


async def test_a_duplicate_is_answered_at_once_while_the_lease_holds(lease_clock: tuple[Lease, Clock]) -> None:
    lease, _ = lease_clock
    record, parsed = duplicate()
    outbox, producer = StandInOutbox(), StandInProducer()
    routed = recorder(lease, outbox, producer, RecordedState(bucket_key(parsed, 300))).route(record)
    assert routed.answer is not None
    assert routed.answer() is True
    assert len(outbox.queued) == 1
    topic, value, fields = outbox.queued[0]
    assert topic == NAMES.results
    assert orjson.loads(value or b"")["status"] == "duplicate"
    assert fields["answers"] == (record.source, record.offset)


async def test_a_member_whose_lease_has_lapsed_queues_no_answer_and_its_waiting_path_gives_the_moment_up(
    lease_clock: tuple[Lease, Clock],
) -> None:
    lease, clock = lease_clock
    record, parsed = duplicate()
    outbox, producer = StandInOutbox(), StandInProducer()
    routed = recorder(lease, outbox, producer, RecordedState(bucket_key(parsed, 300))).route(record)
    clock.now += SESSION  # stalled past the lease
    lease.fenced(FenceReason.MEMBERSHIP_LOST, MEMBER)  # and, on waking, told its membership is over
    assert routed.answer is not None
    assert routed.answer() is False, "a fenced member decided a moment at once"
    with pytest.raises(Fenced) as given_up:
        await routed.run()
    assert isinstance(given_up.value, Abandoned), "the lane must leave it uncommitted, not fail"
    assert outbox.queued == []
    assert producer.sent == [], "a fenced member published an answer"


async def test_a_forward_is_queued_only_under_the_lease(lease_clock: tuple[Lease, Clock]) -> None:
    lease, clock = lease_clock
    value = orjson.dumps(moment("elsewhere", "chan-a"))
    unkeyed = Record(NAMES.moments, 0, 8, None, value, (), 0)  # not keyed by its channel: re-keyed first
    outbox, producer = StandInOutbox(), StandInProducer()
    rec = recorder(lease, outbox, producer, RecordedState(("chan-a", 0)))
    clock.now += SESSION
    lease.fenced(FenceReason.REBALANCE, MEMBER)
    forwarding = rec.route(unkeyed)
    assert forwarding.answer is not None
    assert forwarding.answer() is False
    with pytest.raises(Fenced):
        await forwarding.run()
    assert outbox.queued == []
    assert producer.sent == []

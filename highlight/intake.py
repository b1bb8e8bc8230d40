"""What the consumer loop takes in: each owned partition's records, staged, then admitted as the window allows.

aiokafka prefetches one chunk per partition and, while any chunk of a broker is unconsumed and young (100 ms),
sends that broker no new fetch: one hot partition whose chunk waits would hold up every other partition of the
broker. So each pass moves whatever aiokafka holds for a partition into a stage of our own, which lets the next
fetch go out at once (for every partition, the hot one's next chunk included), drops what arrives for a paused
partition (polling a paused partition does that; it is fetched again on resuming), and then admits staged records
into flight as far as the partition's share of the in-flight bound allows (highlight.window), least loaded
first. The bound counts records being decided (taken in, not yet answered); a record answered at once (a
duplicate) only waits for its answer's acknowledgement, and those are bounded separately (16 times the bound),
so the acknowledgements' round trip does not cap how fast duplicates are answered. A partition is paused once its
stage holds as many records as the bound (its next chunk keeps coming while it holds fewer, so it never waits for
a fetch between chunks), and every partition is paused while no slot at all is free. Memory stays bounded: at
most `limit` records being decided and 16 x `limit` in all, plus per partition at most a stage of `limit`
records, one chunk taken beyond it, and one chunk prefetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from highlight.kafka import GroupConsumer, Partition, Record
from highlight.lanes import OffsetTracker
from highlight.window import Window

log = structlog.get_logger("highlight.intake")

# A poll of one partition takes everything aiokafka holds for it (at most one chunk).
TAKE_ALL = 1_000_000
# Taken-in records whose answers wait for the brokers' acknowledgement (a duplicate is answered at once and waits
# only for that) may number this many times the bound, shared among partitions as the bound is.
UNACKNOWLEDGED_FACTOR = 16
# Records admitted per pass. A pass runs without yielding, and a moment on its way to a call (its intent write,
# its request, their answers) moves one step per turn of the event loop: while any call is under way, passes are
# short, so a flood's passes cost those steps little; otherwise longer passes cost less per record.
PASS_RECORDS = 64
PASS_RECORDS_WHILE_CALLING = 8
# While staged records wait for a slot, the loop looks for newly arrived records at least this often.
ROOM_WAIT_SECONDS = 0.01


class Intake:
    def __init__(
        self,
        consumer: GroupConsumer,
        tracker: OffsetTracker,
        window: Window,
        *,
        answered: Callable[[Partition], int],
        answered_total: Callable[[], int],
        stopping: asyncio.Event,
        calling: Callable[[], bool] = lambda: False,
        on_paused: Callable[[int, bool], None] = lambda partitions, everything: None,
    ) -> None:
        self._consumer = consumer
        self._stopping = stopping
        self._calling = calling
        self._tracker = tracker
        self._window = window
        # Answers awaiting acknowledgement are shared the same way: one flood's backlog leaves room for the others.
        self._backlog = Window(window.limit * UNACKNOWLEDGED_FACTOR)
        self._answered = answered
        self._answered_total = answered_total
        self._on_paused = on_paused
        self._staged: dict[Partition, deque[Record]] = {}
        self.paused: set[Partition] = set()
        self.everything_paused = False
        self.last_poll = time.monotonic()

    def staged(self, partitions: Iterable[Partition] | None = None) -> int:
        return sum(len(s) for p, s in self._staged.items() if partitions is None or p in partitions)

    async def draw(self, active: set[Partition], admit: Callable[[list[Record]], None]) -> tuple[int, bool]:
        """One pass over `active`, least loaded first: stage what aiokafka holds, admit what the window allows.

        Returns how many records were admitted and whether a partition with staged records had to wait for a
        slot (then a freed slot, not only new records, is worth waking for).
        """
        window, backlog, tracker = self._window, self._backlog, self._tracker
        admitted, waiting = 0, False
        await self._take_in(active)
        budget = PASS_RECORDS_WHILE_CALLING if self._calling() else PASS_RECORDS
        undecided = {partition: self._undecided(partition) for partition in active}
        tracked = {partition: tracker.in_flight_of(partition) for partition in active}
        # Least undecided first; among equals, the one with fewer answers awaiting acknowledgement (a flood's
        # partition holds many): a quiet partition's moment is never left behind a busy one's in the pass budget.
        for partition in window.order(active, lambda p: (undecided[p], tracked[p])):
            stage = self._staged.get(partition)
            if stage and admitted < budget:
                allowance = min(
                    window.allowance(undecided[partition], self._deciding(), _busy(undecided)),
                    backlog.allowance(tracked[partition], tracker.in_flight(), _busy(tracked)),
                )
                if allowance > 0:
                    batch = [stage.popleft() for _ in range(min(allowance, len(stage), budget - admitted))]
                    admitted += len(batch)
                    admit(batch)
                    undecided[partition] = self._undecided(partition)
                    tracked[partition] = tracker.in_flight_of(partition)
            no_slot = self._deciding() >= window.limit or tracker.in_flight() >= backlog.limit
            waiting |= bool(stage) or no_slot
            self._set_paused(partition, (stage is not None and len(stage) >= window.limit) or no_slot)
        return admitted, waiting

    async def _take_in(self, active: set[Partition]) -> None:
        """Stage everything aiokafka holds for the active partitions (one poll: taking all, no partition's
        prefetched chunk can keep another's waiting), and drop what it holds for paused ones: a chunk fetched just
        before a pause took effect would hold up the broker's fetches for every other partition (its prefetch
        backoff); polling a paused partition drops it, and it is fetched again once the partition resumes."""
        fetching = [p for p in active if p not in self.paused]
        if fetching:
            by_partition: dict[Partition, list[Record]] = {}
            for record in await self._consumer.fetch(0, TAKE_ALL, fetching):
                by_partition.setdefault(record.source, []).append(record)
            for partition, fresh in by_partition.items():
                self._stage(partition, fresh)
        if paused := self.paused & active:
            await self._consumer.fetch(0, 1, paused)
        self.last_poll = time.monotonic()

    def _undecided(self, partition: Partition) -> int:
        """Records of `partition` taken in and not yet answered: what its share of the window counts."""
        return self._tracker.in_flight_of(partition) - self._answered(partition)

    def _deciding(self) -> int:
        return self._tracker.in_flight() - self._answered_total()

    async def wait(self, active: set[Partition], room: asyncio.Event | None, timeout: float) -> None:  # noqa: ASYNC109 -- a poll interval
        """Nothing was admitted: wait for new records of the partitions still fetching, or, if `room` is given,
        for a slot to free up, whichever comes first (at most `timeout`). New records are staged, not admitted."""
        if room is not None:
            # Records wait for a slot: wake when one frees up (a decision, an acknowledgement, a stop all set
            # `room`), or soon anyway to take in what arrived meanwhile. A poll of aiokafka per wake would cost
            # more than the moment it lets in when the window is full of calls.
            room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(timeout, ROOM_WAIT_SECONDS)):
                    await room.wait()
            return
        fetching_partitions = [p for p in active if p not in self.paused]
        if not fetching_partitions:
            await self.poll_paused(timeout)
            return
        fetching = asyncio.create_task(self._consumer.fetch(int(timeout * 1000), TAKE_ALL, fetching_partitions))
        records = await self._until(fetching, None, timeout)
        self.last_poll = time.monotonic()
        by_partition: dict[Partition, list[Record]] = {}
        for record in records:
            by_partition.setdefault(record.source, []).append(record)
        for partition, fresh in by_partition.items():
            if partition in active:
                self._stage(partition, fresh)
            else:
                self._consumer.rewind({partition: fresh[0].offset})

    async def poll_paused(self, timeout: float) -> None:  # noqa: ASYNC109 -- a poll interval
        """Every partition paused (an outage, all stages full, or not assigned yet): wait, then poll once to show
        the group we are alive. A poll of paused partitions returns nothing."""
        await self._until(None, None, timeout)
        if not self._stopping.is_set():
            # While the group rebalances a poll waits for the new assignment: a stop must not wait with it.
            await self._until(asyncio.create_task(self._consumer.fetch(0, 1)), None, None)
        self.last_poll = time.monotonic()

    async def _until(
        self, fetching: asyncio.Task[list[Record]] | None, room: asyncio.Event | None, seconds: float | None
    ) -> list[Record]:
        """Wait for `fetching`, `room`, a stop or `seconds`, whichever comes first; what `fetching` got, if it
        finished (it is cancelled otherwise: nothing is lost, a cancelled poll takes no record)."""
        waits: set[asyncio.Future[Any]] = {asyncio.create_task(self._stopping.wait())}
        if fetching is not None:
            waits.add(fetching)
        if room is not None:
            waits.add(asyncio.create_task(room.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                if waiter is not fetching:
                    waiter.cancel()
            if fetching is not None and not fetching.done():
                fetching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetching
        if fetching is None or fetching.cancelled():
            return []
        return fetching.result()

    def pause_all(self) -> None:
        assigned = self._consumer.assignment()
        if assigned <= self.paused:
            return
        self._consumer.pause(assigned - self.paused)
        self.paused |= assigned
        self._changed()

    def assigned(self, partitions: set[Partition]) -> None:
        """New partitions start paused (nothing may be fetched before their state is restored); the first pass
        after they are active resumes them."""
        self._consumer.pause(partitions)
        self.paused |= partitions
        self._changed()

    def revoked(self, partitions: set[Partition]) -> int:
        """Forget what was staged for `partitions`: nothing of it was admitted, so nothing of it is committed."""
        dropped = sum(len(self._staged.pop(p, ())) for p in partitions)
        self.paused -= partitions
        self._changed()
        return dropped

    def _stage(self, partition: Partition, records: list[Record]) -> deque[Record]:
        stage = self._staged.get(partition)
        if stage is None:
            stage = self._staged[partition] = deque()
        stage.extend(records)
        return stage

    def _set_paused(self, partition: Partition, paused: bool) -> None:
        if paused == (partition in self.paused):
            return
        if paused:
            self.paused.add(partition)
            self._consumer.pause((partition,))
        else:
            self.paused.discard(partition)
            self._consumer.resume((partition,))
        self._changed()

    def _changed(self) -> None:
        assignment = self._consumer.assignment()
        everything = bool(assignment) and assignment <= self.paused
        if everything != self.everything_paused:
            self.everything_paused = everything
            log.debug("consumer_paused" if everything else "consumer_resumed", in_flight=self._tracker.in_flight())
        self._on_paused(len(self.paused & assignment), everything)


def _busy(held: dict[Partition, int]) -> int:
    return sum(1 for count in held.values() if count)

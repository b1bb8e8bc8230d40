"""This member's work on its partitions: the consume loop, commits, and the partition lifecycle.

The loop takes records in as the window allows and routes each to its lane; a moment is done when its answer is
acknowledged, and only what is done is committed. On a rebalance, revoked partitions are drained, committed and
handed over; assigned ones are restored (waiting out earlier owners' leases if need be) before their first record
is processed. `highlight.service` builds the parts and owns the lifecycle around this.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from highlight.admission import Admissions
from highlight.clipper import Clipper
from highlight.config import Settings
from highlight.errors import HighlightError
from highlight.handover import Handovers
from highlight.intake import Intake
from highlight.kafka import GroupConsumer, Partition, RebalanceHandler, Record
from highlight.lanes import Job, KeyedRunner, OffsetTracker
from highlight.lease import Lease
from highlight.metrics import Metrics
from highlight.outage import LiveGate
from highlight.outbox import Outbox, Token
from highlight.recorder import Recorder, Routed
from highlight.state import StateStore

log = structlog.get_logger("highlight.member")

COMMIT_INTERVAL_SECONDS = 1.0
COMMIT_TIMEOUT_SECONDS = 10.0
POLL_TIMEOUT_MS = 200
EXPIRY_INTERVAL_SECONDS = 60.0


class Member(RebalanceHandler):
    """The group member's side of the service: what it consumes, commits, drains and hands over.

    Made with the service; its parts are attached (`attach`) once the service has built them on entering.
    `request_stop` is the service's: a fatal error here stops the whole service.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        gate: LiveGate,
        lease: Lease,
        stopping: asyncio.Event,
        request_stop: Callable[[], None],
        on_ready_changed: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._gate = gate
        self._lease = lease
        self._stopping = stopping
        self._request_stop = request_stop
        self._on_ready_changed = on_ready_changed
        self._fatal: BaseException | None = None
        self._tracker = OffsetTracker()
        self._callbacks_topic = settings.kafka.callbacks_topic
        self._runner: KeyedRunner[Routed] = KeyedRunner(
            answer=self._answer, run=self._process, on_error=self._job_failed
        )
        self._outbox: Outbox | None = None
        # Partitions whose dedup state is restored and that are not being handed over: only their records
        # are processed. aiokafka starts fetching new partitions before the assignment callback has finished.
        self._active: set[Partition] = set()
        self._commit_lock = asyncio.Lock()
        self._room = asyncio.Event()  # set whenever in-flight work shrinks
        self._ready = False
        self._handovers: Handovers | None = None  # needs the state store, made on entering
        self._committed: dict[Partition, int] = {}
        self._last_poll = time.monotonic()
        self._last_commit = 0.0

    def attach(
        self,
        *,
        consumer: GroupConsumer,
        intake: Intake,
        outbox: Outbox,
        recorder: Recorder,
        clipper: Clipper,
        state: StateStore,
        admissions: Admissions,
        handovers: Handovers,
    ) -> None:
        """The parts the service built on entering; before the consumer starts, so before any rebalance."""
        self._consumer = consumer
        self._intake = intake
        self._outbox = outbox
        self._recorder = recorder
        self._clipper = clipper
        self._state = state
        self._admissions = admissions
        self._handovers = handovers

    @property
    def tracker(self) -> OffsetTracker:
        return self._tracker

    @property
    def runner(self) -> KeyedRunner[Routed]:
        return self._runner

    @property
    def room(self) -> asyncio.Event:
        """Set whenever in-flight work shrinks or the loop must look again (the gate changed, stopping)."""
        return self._room

    @property
    def last_poll(self) -> float:
        """When the loop last polled the consumer (`time.monotonic()`): the liveness check reads it."""
        return self._last_poll

    @property
    def restored(self) -> bool:
        """Whether the group is joined and the assigned partitions' state restored."""
        return self._ready

    def lag(self) -> list[tuple[str, int, int]]:
        """Per owned partition: the high-water mark seen in fetches minus our last committed offset."""
        lags = []
        for partition in sorted(self._active):
            highwater = self._consumer.highwater(partition)
            committed = self._committed.get(partition)
            if highwater is not None and committed is not None:
                lags.append((partition.topic, partition.partition, max(0, highwater - committed)))
        return lags

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until `request_stop()` or a fatal error; drain, commit, and re-raise a fatal error."""
        assert self._outbox is not None  # noqa: S101 -- set by attach
        self._outbox.start()
        sweeper = asyncio.create_task(self._expire_forever(), name="state-expiry")
        try:
            await self._consume()
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            abandoned, unacknowledged = await self._drain(None)
            if abandoned:
                log.warning(
                    "in_flight_abandoned",
                    moments=[f"{j.partition.topic}/{j.partition.partition}@{j.offset}" for j in abandoned],
                    note="a call cut off mid-request makes its key in_doubt; it is never re-sent",
                )
            if unacknowledged:
                log.warning(
                    "answers_unacknowledged",
                    answers=unacknowledged,
                    note="their moments stay uncommitted and are answered again from the state",
                )
            await self._commit(force=True)
            owned = self._consumer.assignment()
            # Answers still queued now are of moments left uncommitted: whoever owns them next answers them, so
            # none may be published after the release records say this member is done with the partitions.
            self._outbox.forget(owned)
            await self._hand_over({p.partition for p in owned})
        if self._fatal is not None:
            raise self._fatal

    async def _consume(self) -> None:
        """Take records partition by partition, as the window allows, and decide what can be decided at once."""
        intake = self._intake
        while not self._stopping.is_set():
            if not self._gate.available:
                # Nothing is fetched during an outage; sleep until the gate reopens (it sets `_room`).
                intake.pause_all()
                await self._wait_for_room(POLL_TIMEOUT_MS / 1000)
                await intake.poll_paused(0)
            else:
                active = self._active & self._consumer.assignment()
                admitted, waiting = await intake.draw(active, self._take)
                if admitted:
                    # Let acknowledgements, lanes and the outbox run between passes; a freed slot is refilled on
                    # the next pass (no hysteresis: resume at the first free slot).
                    await asyncio.sleep(0)
                else:
                    await intake.wait(active, self._room if waiting else None, POLL_TIMEOUT_MS / 1000)
            self._last_poll = intake.last_poll
            await self._commit()

    def _take(self, records: list[Record]) -> None:
        rewind: dict[Partition, int] = {}
        for record in records:
            source = record.source
            if source not in self._active:
                # Being handed over (the next owner fetches it) or not restored yet (fetch it again later).
                rewind.setdefault(source, record.offset)
                continue
            # Where we started, until the first commit: lag is measured from a known position.
            self._committed.setdefault(source, record.offset)
            self._tracker.track(source, record.offset)
            if record.topic == self._callbacks_topic:
                routed = self._clipper.route(record)
            else:
                routed = self._recorder.route(record)
            # Decided at once if its lane is idle and nothing needs waiting for; else in its lane, in order.
            self._runner.submit(routed.lane, Job(source, record.offset, routed))
        if rewind:
            self._consumer.rewind(rewind)

    def _answer(self, job: Job[Routed]) -> bool:
        answer = job.work.answer
        if answer is None:
            return False
        try:
            return answer()
        except Exception:
            # Deciding it at once failed: its waiting path decides it again, under the last resort.
            return False

    async def _process(self, job: Job[Routed]) -> None:
        routed = job.work
        await routed.run()
        if not routed.queued:
            # Answered on the waiting path with its answer acknowledged there (a dead letter, a clip, a result too
            # large to queue): done now.
            self._tracker.done(job.partition, job.offset)
            self._room.set()

    def answers_acked(self, answered: list[Token]) -> None:
        done = self._tracker.done
        for partition, offset in answered:
            done(partition, offset)
        self._room.set()

    def answers_failed(self, answered: list[Token], exc: BaseException) -> None:
        # The brokers did not take these answers: their moments stay uncommitted (answered again, from the state,
        # after a restart), and the service stops rather than run on with answers it cannot deliver.
        log.error(
            "answers_not_acknowledged",
            answers=[f"{p.topic}/{p.partition}@{o}" for p, o in answered[:10]],
            count=len(answered),
            error=str(exc),
        )
        self.fail(exc)

    async def _drain(self, partitions: set[Partition] | None) -> tuple[list[Job[Routed]], int]:
        """Let running jobs of `partitions` (all if None) finish, then wait for their answers' acknowledgements,
        within the drain timeout: what is committed next must not pass an unacknowledged answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.recorder.drain_timeout_seconds
        abandoned = await self._runner.drain(self.settings.recorder.drain_timeout_seconds, partitions)
        unacknowledged = 0
        if self._outbox is not None:
            unacknowledged = await self._outbox.settle(partitions, max(0.0, deadline - loop.time()))
        return abandoned, unacknowledged

    async def _wait_for_room(self, timeout: float) -> None:  # noqa: ASYNC109 -- a poll interval
        """Until a moment is done (a slot frees up), the gate changes, or `timeout` passes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                self._room.clear()
                await self._room.wait()

    def _job_failed(self, job: Job[Routed], exc: BaseException) -> None:
        if not isinstance(exc, HighlightError):
            log.error(
                "moment_crashed",
                topic=job.partition.topic,
                partition=job.partition.partition,
                offset=job.offset,
                exc_info=exc,
            )
        self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        """Stop the service; `run` re-raises the first fatal error after draining and committing."""
        if self._fatal is None:
            self._fatal = exc
        self._request_stop()

    async def _commit(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_INTERVAL_SECONDS:
            return
        async with self._commit_lock:
            self._last_commit = now
            offsets = {p: o for p, o in self._tracker.to_commit().items() if p in self._active or force}
            if not offsets:
                return
            try:
                await self._consumer.commit(offsets, timeout=COMMIT_TIMEOUT_SECONDS)
            except (HighlightError, TimeoutError) as exc:
                # Not fatal: the offsets stay uncommitted and their moments are answered again from state.
                self.metrics.commit_failures.inc()
                log.warning("commit_failed", error=str(exc) or "timed out")
                return
            self._tracker.committed(offsets)
            self._committed.update(offsets)
            self.metrics.commits.inc()
            log.debug("offsets_committed", offsets={f"{p.topic}/{p.partition}": o for p, o in offsets.items()})

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_INTERVAL_SECONDS)
            expired = await self._state.expire(self._writable_indexes)
            if expired:
                log.info("state_expired", entries=expired)

    def _writable_indexes(self) -> set[int]:
        """Indexes whose state this member may write to now: being processed, and the lease holding."""
        if not self._lease.may_write():
            return set()
        waiting = self._handovers.waiting if self._handovers is not None else set()
        return {p.partition for p in self._active} - waiting

    # --- rebalances -------------------------------------------------------------------------------

    async def partitions_revoked(self, revoked: set[Partition]) -> None:
        """Drain first, then commit, then let go: committing before draining would double-send."""
        if not revoked:
            return
        self._set_ready(False)
        self._active -= revoked
        try:
            # Moments of these partitions waiting out an outage or for room in the budget made no call: the next
            # owner takes them.
            tasks = {job.task for job in self._runner.running(revoked) if job.task is not None}
            self._gate.release_waiting(tasks)
            self._admissions.release_waiting(tasks)
            abandoned, unacknowledged = await self._drain(revoked)
            await self._commit(force=True)
            self._tracker.forget(revoked)
            if self._outbox is not None:
                self._outbox.forget(revoked)
            self._intake.revoked(revoked)
            for partition in revoked:
                self._committed.pop(partition, None)
            self._room.set()
            indexes = {p.partition for p in revoked}
            await self._hand_over(indexes)
            self._state.release(indexes, keep=not abandoned and self._fatal is None)
            log.info(
                "partitions_revoked",
                partitions=sorted(f"{p.topic}/{p.partition}" for p in revoked),
                abandoned=[f"{j.partition.topic}/{j.partition.partition}@{j.offset}" for j in abandoned],
                unacknowledged=unacknowledged,
            )
        except BaseException as exc:
            self.fail(exc)
            raise

    async def partitions_assigned(self, assigned: set[Partition]) -> None:
        """Restore the dedup state of these partitions before their first moment is processed; those taken over
        without a clean handover first wait out earlier owners' leases (`highlight.handover`)."""
        # Before any await: nothing of these partitions may be fetched for processing until restored. They stay
        # paused until the loop's first pass over them as active partitions (the intake resumes them).
        self._intake.assigned(assigned)
        membership = self._consumer.membership
        try:
            assert self._handovers is not None  # noqa: S101 -- the consumer is started only after it is made
            taken = await self._handovers.take_over({p.partition for p in assigned}, membership)
        except BaseException as exc:
            # aiokafka would only log a listener failure and carry on without state: stop instead.
            self.fail(exc)
            raise
        self._activate({p for p in assigned if p.partition not in taken.waits})
        self.metrics.assigned.set(len(assigned))
        self.metrics.restore_seconds.observe(taken.restore.seconds)
        for partition in assigned:
            with contextlib.suppress(HighlightError):  # lag shows from the first commit or fetch instead
                committed = await self._consumer.committed(partition)
                if committed is not None:
                    self._committed[partition] = committed
        self._set_ready(True)
        log.info(
            "partitions_assigned",
            partitions=sorted(f"{p.topic}/{p.partition}" for p in assigned),
            generation=membership.generation,
            state_records=taken.restore.records,
            state_entries=taken.restore.entries,
            in_doubt=taken.in_doubt,
            restore_seconds=round(taken.restore.seconds, 3),
            waiting={str(index): round(wait, 3) for index, wait in sorted(taken.waits.items())},
        )

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        self._on_ready_changed()

    def _activate(self, partitions: set[Partition]) -> None:
        # The intake resumes them on its next pass over active partitions, as the window allows.
        self._active |= partitions
        self._room.set()

    async def _hand_over(self, indexes: set[int]) -> None:
        if self._handovers is not None:
            await self._handovers.hand_over(indexes)

    def taken_over(self, index: int) -> None:
        """An index's takeover wait is over: process it."""
        self._activate({p for p in self._consumer.assignment() if p.partition == index})
        self._set_ready(self._ready)

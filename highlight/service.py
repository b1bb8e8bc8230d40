"""The recorder service: composition root, consumer loop, commits and rebalances.

Lifecycle: `async with Service(settings) as service: await service.run()`. `request_stop()` (the CLI calls it
on SIGTERM) makes `run` stop fetching, drain in-flight work, commit, and return; leaving the context closes
the consumer, then flushes the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime
from types import TracebackType

import structlog
from aiolimiter import AsyncLimiter

from highlight.admission import Admissions
from highlight.apis import backend_for
from highlight.budget import DAILY_LIMIT, RUNNING_LIMIT, Budget
from highlight.clipper import Clipper
from highlight.config import Settings
from highlight.dedup import WINDOW_MODE
from highlight.errors import HighlightError
from highlight.handover import Handovers
from highlight.intake import Intake
from highlight.kafka import (
    ChangelogReader,
    GroupConsumer,
    Partition,
    Producer,
    RebalanceHandler,
    Record,
)
from highlight.lanes import Job, KeyedRunner, OffsetTracker
from highlight.lease import FenceReason, Lease
from highlight.live import LiveClient
from highlight.metrics import Metrics
from highlight.ops import OpsServer
from highlight.outage import LiveGate
from highlight.outbox import Outbox, Token
from highlight.recorder import Recorder, Routed
from highlight.recording import now_utc
from highlight.state import StateStore
from highlight.topics import prepare_topics
from highlight.window import Window

log = structlog.get_logger("highlight.service")

# The collector's young generation is collected every 700 allocations by default, and every collection scans
# every young object: a busy service allocates a few objects per record while thousands of records are in
# flight, so at the default a third of a flood's time went to collections (bench/ANALYSIS.md). Records are freed
# by reference counting as they finish; the collector is only for cycles, and can run far less often.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_garbage_collector() -> None:
    """For a process that runs the service: collect cyclic garbage less often (process-wide, so the caller's
    choice, not the service's)."""
    gc.set_threshold(*GC_THRESHOLDS)


COMMIT_INTERVAL_SECONDS = 1.0
COMMIT_TIMEOUT_SECONDS = 10.0
POLL_TIMEOUT_MS = 200
EXPIRY_INTERVAL_SECONDS = 60.0


class Service(RebalanceHandler):
    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = now_utc) -> None:
        self.settings = settings
        self.metrics = Metrics(settings.live.api)
        self._clock = clock
        self._stack = AsyncExitStack()
        self._stopping = asyncio.Event()
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
        self._gate = LiveGate(on_change=self._live_availability, on_outage=self._live_outage)
        # What this member can prove about owning its partitions; nothing is called or written without it.
        self._lease = Lease(settings.kafka.session_timeout_ms / 1000, on_fence=self._fenced)
        self._handovers: Handovers | None = None  # needs the state store, made on entering
        self._committed: dict[Partition, int] = {}
        self._last_poll = time.monotonic()
        self._last_commit = 0.0
        self._entered = False
        self._closed = False
        self.partitions = 0
        self.ops_port: int | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> Service:
        kafka = self.settings.kafka
        stack = self._stack
        try:
            topics = await prepare_topics(kafka)
            self.partitions = topics.partitions
            # Two producers: aiokafka keeps one request in flight per broker connection, and the dedup state's
            # writes (an intent before every call) must not queue behind a batch of results.
            self._producer = await stack.enter_async_context(Producer(kafka))
            state_producer = await stack.enter_async_context(Producer(kafka))
            self._outbox = Outbox(
                self._producer,
                lease=self._lease,
                on_acked=self._answers_acked,
                on_failed=self._answers_failed,
                # An answered moment frees its slot in the window: the loop may take the next one in.
                on_queued=self._room.set,
            )
            reader = ChangelogReader(kafka)
            await reader.start()
            stack.push_async_callback(reader.stop)
            # The budget counts what the state holds; waiting moments look again whenever it may have room.
            self._budget = Budget(
                self.settings.budget, partitions=self.partitions, on_change=lambda: self._admissions.changed()
            )
            self._admissions = Admissions(self._budget, clock=self._unix_clock)
            self._state = StateStore(
                kafka.state_topic,
                state_producer,
                reader,
                bucket_seconds=self.settings.recorder.bucket_seconds,
                max_event_age_seconds=self.settings.recorder.max_event_age_seconds,
                clock=self._unix_clock,
                budget=self._budget,
                window_mode=self.settings.recorder.dedup_mode == WINDOW_MODE,
                clip_wait_seconds=self.settings.recorder.clip_wait_seconds,
            )
            self._handovers = Handovers(
                self._state,
                self._lease,
                self.metrics,
                full_wait=kafka.session_timeout_ms / 1000 + kafka.takeover_margin_seconds,
                static=kafka.group_instance_id is not None,
                on_ready=self._taken_over,
                on_error=self._fail,
            )
            live = await stack.enter_async_context(
                LiveClient(
                    self.settings.live,
                    backend_for(self.settings.live),
                    max_connections=self.settings.recorder.max_in_flight,
                )
            )
            self._recorder = Recorder(
                self.settings,
                partitions=self.partitions,
                producer=self._producer,
                outbox=self._outbox,
                live=live,
                state=self._state,
                limiter=AsyncLimiter(self.settings.live.max_rps, 1.0),
                gate=self._gate,
                admissions=self._admissions,
                lease=self._lease,
                metrics=self.metrics,
                clock=self._clock,
                dead_letter_bytes=topics.dlq_max_message_bytes,
            )
            self._clipper = Clipper(
                self.settings,
                partitions=self.partitions,
                producer=self._producer,
                state=self._state,
                lease=self._lease,
                metrics=self.metrics,
                clock=self._clock,
                dead_letter_bytes=topics.dlq_max_message_bytes,
            )
            if self.settings.metrics_port:
                ops = OpsServer(
                    self.metrics,
                    self.settings.metrics_port,
                    ready=self._readiness,
                    last_poll=lambda: self._last_poll,
                )
                await stack.enter_async_context(ops)
                self.ops_port = ops.port
            # Partition i of all three holds the same channels (their home): range assignment keeps them together.
            subscribed = [kafka.moments_topic, kafka.repartition_topic, kafka.callbacks_topic]
            self._consumer = GroupConsumer(kafka, subscribed, self, self._lease)
            self._intake = Intake(
                self._consumer,
                self._tracker,
                Window(self.settings.recorder.max_in_flight),
                answered=self._outbox.outstanding_of,
                answered_total=self._outbox.outstanding,
                stopping=self._stopping,
                calling=self._runner.waiting,
                on_paused=self._paused_changed,
            )
            self.metrics.watch_lag(self._lag)
            # Read at scrape time: exact, and nothing to keep in step on the hot path.
            self.metrics.in_flight.set_function(self._tracker.in_flight)
            self.metrics.state_entries.set_function(self._state.entries)
            self.metrics.budget_waiting.set_function(lambda: self._admissions.waiting)
            self.metrics.watch_budget(self._budget_usage)
            self.metrics.lease_remaining.set_function(lambda: max(0.0, self._lease.remaining()))
            # Closed before the producer: the group must not hand our partitions on while results are unsent.
            stack.push_async_callback(self._consumer.stop)
            await self._consumer.start()
        except BaseException:
            await stack.aclose()
            raise
        self._entered = True
        if not self.settings.live.tls_verify:
            log.warning("live_tls_verification_off", note="HIGHLIGHT_LIVE_TLS_VERIFY=false is for testing only")
        log.info(
            "service_started",
            brokers=kafka.bootstrap_servers,
            moments_topic=kafka.moments_topic,
            callbacks_topic=kafka.callbacks_topic,
            clips_topic=kafka.clips_topic,
            partitions=self.partitions,
            group_id=kafka.group_id,
            group_instance_id=kafka.group_instance_id,
            api=self.settings.live.api,
            live_url=self.settings.live.url,
            ops_port=self.ops_port,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def request_stop(self) -> None:
        """Safe from a signal handler; idempotent."""
        self._stopping.set()
        self._room.set()
        # Moments waiting out an outage, or for room in the budget, made no call: let them go now rather than
        # hold the drain.
        self._gate.release_waiting()
        if self._entered:
            self._admissions.release_waiting()

    async def stop(self) -> None:
        """Idempotent: close the consumer (leaving the group), flush and close the producer, the HTTP client."""
        self.request_stop()
        if self._closed:
            return
        self._closed = True
        if self._handovers is not None:
            await self._handovers.cancel(self._handovers.waiting)
        await self._runner.close()
        if self._outbox is not None:
            await self._outbox.close()
        await self._stack.aclose()
        log.info("service_stopped")

    @property
    def ready(self) -> bool:
        return self._readiness()[0]

    def _readiness(self) -> tuple[bool, str]:
        if not self._ready:
            return False, "joining the group or restoring state"
        if self._handovers is not None and self._handovers.waiting:
            return False, "waiting out a previous owner's lease before processing some partitions"
        if not self._gate.available:
            return False, "the Live API refuses our credentials or is unreachable; consumption paused"
        return True, "ready"

    def _live_availability(self, available: bool) -> None:
        self.metrics.live_available.set(1 if available else 0)
        self.metrics.ready.set(1 if self.ready else 0)
        self._room.set()  # the loop pauses or resumes fetching at once

    def _live_outage(self, reason: str) -> None:
        self.metrics.outages.labels(reason).inc()

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        self.metrics.ready.set(1 if self.ready else 0)

    def _unix_clock(self) -> float:
        return self._clock().timestamp()

    def _budget_usage(self) -> list[tuple[str, int, int]]:
        now = self._unix_clock()
        usages = [self._budget.usage(limit, now) for limit in (RUNNING_LIMIT, DAILY_LIMIT)]
        return [(u.limit.removesuffix("_limit"), u.in_use, u.share) for u in usages]

    def _fenced(self, reason: FenceReason) -> None:
        self.metrics.fences.labels(reason.value).inc()
        # A rebalance or leaving the group is routine; being told our membership is over, or not reaching the
        # coordinator, is not.
        routine = reason in (FenceReason.REBALANCE, FenceReason.LEFT_GROUP)
        (log.info if routine else log.warning)(
            "member_fenced",
            reason=reason.value,
            note="no call until this member proves it owns its partitions again; unfinished moments stay "
            "uncommitted for whoever owns them",
        )

    def _lag(self) -> list[tuple[str, int, int]]:
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
        if not self._entered:
            raise RuntimeError("Service.run() outside `async with Service(...)`")
        assert self._outbox is not None  # noqa: S101 -- set by __aenter__
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

    def _answers_acked(self, answered: list[Token]) -> None:
        done = self._tracker.done
        for partition, offset in answered:
            done(partition, offset)
        self._room.set()

    def _answers_failed(self, answered: list[Token], exc: BaseException) -> None:
        # The brokers did not take these answers: their moments stay uncommitted (answered again, from the state,
        # after a restart), and the service stops rather than run on with answers it cannot deliver.
        log.error(
            "answers_not_acknowledged",
            answers=[f"{p.topic}/{p.partition}@{o}" for p, o in answered[:10]],
            count=len(answered),
            error=str(exc),
        )
        self._fail(exc)

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

    def _paused_changed(self, partitions: int, everything: bool) -> None:
        self.metrics.paused_partitions.set(partitions)
        self.metrics.paused.set(1 if everything else 0)

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
        self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Stop the service; `run` re-raises the first fatal error after draining and committing."""
        if self._fatal is None:
            self._fatal = exc
        self.request_stop()

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
                async with asyncio.timeout(COMMIT_TIMEOUT_SECONDS):
                    await self._consumer.commit(offsets)
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
            self._fail(exc)
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
            self._fail(exc)
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

    def _activate(self, partitions: set[Partition]) -> None:
        # The intake resumes them on its next pass over active partitions, as the window allows.
        self._active |= partitions
        self._room.set()

    async def _hand_over(self, indexes: set[int]) -> None:
        if self._handovers is not None:
            await self._handovers.hand_over(indexes)

    def _taken_over(self, index: int) -> None:
        """An index's takeover wait is over: process it."""
        self._activate({p for p in self._consumer.assignment() if p.partition == index})
        self._set_ready(self._ready)

"""The recorder service: the composition root and its lifecycle; the consume loop, commits and rebalances are
the member's (`highlight.member`).

Lifecycle: `async with Service(settings) as service: await service.run()`. `request_stop()` (the CLI calls it
on SIGTERM) makes `run` stop fetching, drain in-flight work, commit, and return; leaving the context closes
the consumer, then flushes the producer.
"""

from __future__ import annotations

import asyncio
import gc
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
from highlight.handover import Handovers
from highlight.intake import Intake
from highlight.kafka import ChangelogReader, GroupConsumer, Producer
from highlight.lease import FenceReason, Lease
from highlight.live import LiveClient
from highlight.member import Member
from highlight.metrics import Metrics
from highlight.ops import OpsServer
from highlight.outage import LiveGate
from highlight.outbox import Outbox
from highlight.recorder import Recorder
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


class Service:
    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = now_utc) -> None:
        self.settings = settings
        self.metrics = Metrics(settings.live.api)
        self._clock = clock
        self._stack = AsyncExitStack()
        self._stopping = asyncio.Event()
        self._outbox: Outbox | None = None
        self._gate = LiveGate(on_change=self._live_availability, on_outage=self._live_outage)
        # What this member can prove about owning its partitions; nothing is called or written without it.
        self._lease = Lease(settings.kafka.session_timeout_ms / 1000, on_fence=self._fenced)
        self._member = Member(
            settings,
            self.metrics,
            gate=self._gate,
            lease=self._lease,
            stopping=self._stopping,
            request_stop=self.request_stop,
            on_ready_changed=self._ready_changed,
        )
        self._handovers: Handovers | None = None  # needs the state store, made on entering
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
                on_acked=self._member.answers_acked,
                on_failed=self._member.answers_failed,
                # An answered moment frees its slot in the window: the loop may take the next one in.
                on_queued=self._member.room.set,
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
                on_ready=self._member.taken_over,
                on_error=self._member.fail,
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
                    last_poll=lambda: self._member.last_poll,
                )
                await stack.enter_async_context(ops)
                self.ops_port = ops.port
            # Partition i of all three holds the same channels (their home): range assignment keeps them together.
            subscribed = [kafka.moments_topic, kafka.repartition_topic, kafka.callbacks_topic]
            self._consumer = GroupConsumer(kafka, subscribed, self._member, self._lease)
            self._intake = Intake(
                self._consumer,
                self._member.tracker,
                Window(self.settings.recorder.max_in_flight),
                answered=self._outbox.outstanding_of,
                answered_total=self._outbox.outstanding,
                stopping=self._stopping,
                calling=self._member.runner.waiting,
                on_paused=self._paused_changed,
            )
            self._member.attach(
                consumer=self._consumer,
                intake=self._intake,
                outbox=self._outbox,
                recorder=self._recorder,
                clipper=self._clipper,
                state=self._state,
                admissions=self._admissions,
                handovers=self._handovers,
            )
            self.metrics.watch_lag(self._member.lag)
            # Read at scrape time: exact, and nothing to keep in step on the hot path.
            self.metrics.in_flight.set_function(self._member.tracker.in_flight)
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
        self._member.room.set()
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
        await self._member.runner.close()
        if self._outbox is not None:
            await self._outbox.close()
        await self._stack.aclose()
        log.info("service_stopped")

    async def run(self) -> None:
        """Consume until `request_stop()` or a fatal error; drain, commit, and re-raise a fatal error."""
        if not self._entered:
            raise RuntimeError("Service.run() outside `async with Service(...)`")
        await self._member.run()

    @property
    def ready(self) -> bool:
        return self._readiness()[0]

    def _readiness(self) -> tuple[bool, str]:
        if not self._member.restored:
            return False, "joining the group or restoring state"
        if self._handovers is not None and self._handovers.waiting:
            return False, "waiting out a previous owner's lease before processing some partitions"
        if not self._gate.available:
            return False, "the Live API refuses our credentials or is unreachable; consumption paused"
        return True, "ready"

    def _live_availability(self, available: bool) -> None:
        self.metrics.live_available.set(1 if available else 0)
        self.metrics.ready.set(1 if self.ready else 0)
        self._member.room.set()  # the loop pauses or resumes fetching at once

    def _live_outage(self, reason: str) -> None:
        self.metrics.outages.labels(reason).inc()

    def _ready_changed(self) -> None:
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

    def _paused_changed(self, partitions: int, everything: bool) -> None:
        self.metrics.paused_partitions.set(partitions)
        self.metrics.paused.set(1 if everything else 0)

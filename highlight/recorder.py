"""What happens to one record: dead letter, re-key, or dedup → (call) → state → result.

Business logic only; Kafka and HTTP are reached through the adapters, whose errors are already ours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from aiolimiter import AsyncLimiter

from highlight.config import Settings
from highlight.dedup import DedupKey, Entry, Phase, Verdict, decide
from highlight.errors import LiveAccessRefused, LiveError, LiveInDoubt
from highlight.kafka import Producer, Record, home_partition
from highlight.live import LiveClient
from highlight.metrics import Metrics
from highlight.moment import InvalidMoment, Moment, parse_moment
from highlight.results import dead_letter_headers, encode_result, result_document
from highlight.state import StateStore
from highlight.tape import window_at

log = structlog.get_logger("highlight.recorder")

# Headers a forwarded moment carries, so its result and logs can name where it was first published.
ORIGIN_TOPIC_HEADER = "highlight.origin.topic"
ORIGIN_PARTITION_HEADER = "highlight.origin.partition"
ORIGIN_OFFSET_HEADER = "highlight.origin.offset"


@dataclass(frozen=True, slots=True)
class Routed:
    """A record's lane (moments of one channel run in order) and its work."""

    lane: str
    run: Callable[[], Coroutine[Any, Any, None]]


class Recorder:
    def __init__(
        self,
        settings: Settings,
        *,
        partitions: int,
        producer: Producer,
        live: LiveClient,
        state: StateStore,
        limiter: AsyncLimiter,
        metrics: Metrics,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._kafka = settings.kafka
        self._rec = settings.recorder
        self._partitions = partitions
        self._producer = producer
        self._live = live
        self._state = state
        self._limiter = limiter
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep

    def route(self, record: Record) -> Routed:
        """Parse now (cheap, and it decides the lane), do the rest in the lane."""
        # Dead letters and forwards need no order: a lane of their own lets them run concurrently.
        unordered = f"\0{record.topic}:{record.partition}:{record.offset}"
        try:
            moment = parse_moment(record.value)
        except InvalidMoment as invalid:
            error = invalid  # `invalid` is unbound when the except block ends; the lambda runs later
            return Routed(unordered, lambda: self._dead_letter(record, error))
        home = home_partition(moment.channel_id, self._partitions)
        keyed_by_channel = record.key == moment.channel_id.encode()
        if record.partition != home or (record.topic == self._kafka.moments_topic and not keyed_by_channel):
            return Routed(unordered, lambda: self._forward(record, moment, home))
        return Routed(f"ch:{moment.channel_id}", lambda: self._process(record, moment, home))

    async def _dead_letter(self, record: Record, error: InvalidMoment) -> None:
        headers = dead_letter_headers(error, record.topic, record.partition, record.offset, record.headers)
        await self._producer.send(self._kafka.dlq_topic, record.value, key=record.key, headers=headers)
        self._metrics.dead_letters.labels(error.reason).inc()
        log.warning(
            "moment_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=error.reason,
            error=str(error),
        )

    async def _forward(self, record: Record, moment: Moment, home: int) -> None:
        """Re-key through the repartition topic, as Kafka Streams does, so one member owns the channel."""
        headers = [*_without_origin(record.headers)]
        headers += [
            (ORIGIN_TOPIC_HEADER, record.topic.encode()),
            (ORIGIN_PARTITION_HEADER, str(record.partition).encode()),
            (ORIGIN_OFFSET_HEADER, str(record.offset).encode()),
        ]
        await self._producer.send(
            self._kafka.repartition_topic,
            record.value,
            key=moment.channel_id.encode(),
            partition=home,
            headers=headers,
        )
        self._metrics.repartitioned.inc()
        log.debug(
            "moment_repartitioned",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            channel=moment.channel_id,
            event_id=moment.event_id,
            home=home,
        )

    async def _process(self, record: Record, moment: Moment, index: int) -> None:
        started = time.perf_counter()
        bucket = moment.bucket(self._rec.bucket_seconds)
        key: DedupKey = (moment.channel_id, bucket)
        decision = decide(moment, self._state.get(index, key), self._clock(), self._rec.max_event_age_seconds)
        entry: Entry | None
        if decision.verdict is Verdict.CALL:
            entry = await self._call(moment, index, key)
            status = entry.phase.value
        else:
            entry, status = decision.entry, decision.status or "expired"
        document = result_document(moment, bucket, self._rec.bucket_seconds, status, entry, self._clock())
        await self._producer.send(self._kafka.results_topic, encode_result(document), key=moment.channel_id.encode())
        self._metrics.results.labels(status).inc()
        log.info(
            "moment_recorded" if status == "started" else "moment_answered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            channel=moment.channel_id,
            event_id=moment.event_id,
            bucket=bucket,
            status=status,
            task_id=document.get("task_id"),
            attempts=document.get("attempts"),
            error=document.get("error"),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def _call(self, moment: Moment, index: int, key: DedupKey) -> Entry:
        """At most one recording per key: an acknowledged intent before every attempt, the outcome after.

        Cancelled while waiting (rate limit, backoff), nothing is outstanding: the intent is withdrawn and the
        moment stays uncommitted for the next owner. Cancelled mid-request, the intent stays: in_doubt.
        """
        previous = self._state.get(index, key)
        options = moment.tape_options(self._rec.record_seconds)
        attempts = self._settings.live.max_attempts
        entry: Entry | None = None
        error: LiveError | None = None
        written = False
        for attempt in range(1, attempts + 1):
            sending = False
            try:
                if attempt > 1:
                    await self._sleep(self._settings.live.retry_delay_seconds)
                async with self._limiter:
                    pass
                now = self._clock()
                window = window_at(now, options.record_seconds)
                intent = Entry(Phase.INTENT, moment.event_id, window.start_time, window.end_time, attempts=attempt)
                written = True  # from here on, the log may hold the intent even if the put is cancelled
                await self._state.put(index, key, intent)
                log.debug("live_call_sending", channel=moment.channel_id, event_id=moment.event_id, attempt=attempt)
                sending = True
                call_started = time.perf_counter()
                try:
                    task_id = await self._live.start(options, window, now)
                finally:
                    self._metrics.call_seconds.observe(time.perf_counter() - call_started)
                sending = False
            except asyncio.CancelledError:
                if written and not sending:
                    await _withdraw(self._state, index, key, previous)
                raise
            except LiveAccessRefused:
                # Not this moment's fault: put the key back as it was and let the service stop.
                self._metrics.calls.labels("access_refused").inc()
                await self._state.put(index, key, previous)
                raise
            except LiveError as exc:
                self._metrics.calls.labels(exc.code).inc()
                error = exc
                entry = Entry(
                    Phase.IN_DOUBT if isinstance(exc, LiveInDoubt) else Phase.FAILED,
                    moment.event_id,
                    window.start_time,
                    window.end_time,
                    error_code=exc.code,
                    error_message=exc.message,
                    attempts=attempt,
                )
                if exc.retriable and attempt < attempts:
                    log.info(
                        "live_call_retrying",
                        channel=moment.channel_id,
                        event_id=moment.event_id,
                        attempt=attempt,
                        code=exc.code,
                        error=exc.message,
                    )
                    continue
                break
            else:
                self._metrics.calls.labels("started").inc()
                entry = Entry(
                    Phase.STARTED,
                    moment.event_id,
                    window.start_time,
                    window.end_time,
                    task_id=str(task_id),
                    attempts=attempt,
                )
                break
        assert entry is not None, error  # noqa: S101 -- the loop runs at least once
        await self._state.put(index, key, entry)
        return entry


async def _withdraw(state: StateStore, index: int, key: DedupKey, previous: Entry | None) -> None:
    try:
        await state.put(index, key, previous)
    except Exception:
        log.warning("intent_withdraw_failed", channel=key[0], bucket=key[1])


def _without_origin(headers: tuple[tuple[str, bytes], ...]) -> list[tuple[str, bytes]]:
    names = {ORIGIN_TOPIC_HEADER, ORIGIN_PARTITION_HEADER, ORIGIN_OFFSET_HEADER}
    return [(k, v) for k, v in headers if k not in names]

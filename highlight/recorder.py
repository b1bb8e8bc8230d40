"""What happens to one record: dead letter, re-key, or dedup → (call) → state → result.

Business logic only; Kafka and HTTP are reached through the adapters, whose errors are already ours. Every
record's waiting path runs under the last resort (`highlight.last_resort`). A record that needs no waiting (a
forward, or a moment the dedup state answers) is decided at once, its answer queued in the outbox
(`highlight.outbox`); when that cannot be done (the answer is too large for one request, or deciding fails), the
waiting path decides it again, under the last resort.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import structlog
from aiolimiter import AsyncLimiter
from structlog.typing import FilteringBoundLogger

from highlight.admission import Admissions
from highlight.apis import Started
from highlight.config import Settings
from highlight.dedup import DedupKey, DedupRules, Entry, Phase, Verdict, decide_among
from highlight.errors import (
    Fenced,
    LiveAccessRefused,
    LiveError,
    LiveInDoubt,
    LiveLimitReached,
    LiveUnreachable,
    RecordRejected,
    RecordTooLarge,
)
from highlight.kafka import Producer, Record, home_partition, record_size
from highlight.last_resort import LastResort
from highlight.lease import Lease
from highlight.live import LiveClient
from highlight.metrics import Metrics
from highlight.moment import InvalidMoment, Moment, compile_validators, parse_moment
from highlight.outage import LiveGate
from highlight.outbox import Outbox
from highlight.recording import clamp_record_seconds, window_at
from highlight.results import STATUSES, dropping, encode_result, result_document
from highlight.state import StateStore

log = structlog.get_logger("highlight.recorder")

# Headers a forwarded moment carries, so its result and logs can name where it was first published.
ORIGIN_TOPIC_HEADER = "highlight.origin.topic"
ORIGIN_PARTITION_HEADER = "highlight.origin.partition"
ORIGIN_OFFSET_HEADER = "highlight.origin.offset"
_ORIGIN_FIELDS = {
    ORIGIN_TOPIC_HEADER: "origin_topic",
    ORIGIN_PARTITION_HEADER: "origin_partition",
    ORIGIN_OFFSET_HEADER: "origin_offset",
}


@dataclass(slots=True)
class Routed:
    """A record's lane (a channel's records are decided in order) and its work.

    `answer` decides the record at once if nothing needs waiting for (True) and does nothing otherwise; `run` is
    the waiting path, under the last resort. A record whose answer went to the outbox (`queued`) is done when that
    answer is acknowledged; any other, when `run` returns. `retry` publishes a queued answer again on its own
    (awaited), should the batch that carried it be refused for a record's sake.
    """

    lane: str
    run: Callable[[], Coroutine[Any, Any, None]]
    answer: Callable[[], bool] | None = None
    retry: Callable[[], Coroutine[Any, Any, None]] | None = None
    work: Work | None = None

    @property
    def queued(self) -> bool:
        return self.work is not None and self.work.queued


class Work:
    """What deciding a moment (or forwarding it) needs, and whether its answer was queued in the outbox. The
    callables of its `Routed` refer to it, never to the `Routed`: no reference cycle, so both go as soon as the
    record is done, without the cyclic garbage collector (which cost a third of a flood's time)."""

    __slots__ = ("home", "moment", "queued", "record")

    def __init__(self, record: Record, moment: Moment, home: int) -> None:
        self.record = record
        self.moment = moment
        self.home = home
        self.queued = False


class Recorder:
    def __init__(
        self,
        settings: Settings,
        *,
        partitions: int,
        producer: Producer,
        outbox: Outbox,
        live: LiveClient,
        state: StateStore,
        limiter: AsyncLimiter,
        gate: LiveGate,
        admissions: Admissions,
        lease: Lease,
        metrics: Metrics,
        clock: Callable[[], datetime],
        dead_letter_bytes: int | None = None,
    ) -> None:
        self._settings = settings
        self._kafka = settings.kafka
        self._rec = settings.recorder
        self._partitions = partitions
        self._producer = producer
        self._outbox = outbox
        self._live = live
        self._state = state
        self._limiter = limiter
        self._gate = gate
        self._admissions = admissions
        self._rules = DedupRules(
            mode=self._rec.dedup_mode,
            bucket_seconds=self._rec.bucket_seconds,
            min_cover_seconds=self._rec.min_cover_seconds,
            max_event_age_seconds=self._rec.max_event_age_seconds,
        )
        self._lease = lease
        self._api = live.backend.name
        self._metrics = metrics
        self._clock = clock
        self._last_resort = LastResort(settings, producer, metrics, dead_letter_bytes=dead_letter_bytes)
        # What one queued record may weigh: the producer's request limit (a larger answer goes the waiting path,
        # which drops what does not fit).
        self._request_bytes = settings.kafka.max_request_bytes
        self._answered = {status: metrics.moments.labels(status) for status in STATUSES}
        self._log_answers = log.is_enabled_for(logging.INFO)
        compile_validators()

    def route(self, record: Record) -> Routed:
        """Parse now (cheap, and it decides the lane); decide at once if nothing needs waiting for, else in the lane
        under the last resort."""
        # Dead letters and forwards need no order: a lane of their own lets them run concurrently.
        unordered = f"\0{record.topic}:{record.partition}:{record.offset}"
        guarded = self._last_resort.guarded
        try:
            moment = parse_moment(record.value, max_bytes=self._rec.max_moment_bytes)
            home = home_partition(moment.channel_id, self._partitions)
        except InvalidMoment as invalid:
            error = invalid  # `invalid` is unbound when the except block ends; the lambda runs later
            return Routed(unordered, lambda: guarded(record, lambda: self._last_resort.dead_letter(record, error)))
        except Exception as exc:
            crash = exc  # a bug in parsing this record: the lane's last resort deals with it as with any other
            return Routed(unordered, lambda: guarded(record, lambda: _raise(crash)))
        work = Work(record, moment, home)
        keyed_by_channel = record.key == moment.channel_id.encode()
        if record.partition != home or (record.topic == self._kafka.moments_topic and not keyed_by_channel):
            forward = partial(self._forward_guarded, work)
            return Routed(unordered, forward, partial(self._forward_now, work), forward, work)
        return Routed(
            f"ch:{moment.channel_id}",
            partial(self._decide_guarded, work, True),
            partial(self._answer_now, work),
            partial(self._decide_guarded, work, False),
            work,
        )

    async def _decide_guarded(self, work: Work, queue: bool) -> None:
        await self._last_resort.guarded(work.record, partial(self._process, work, queue=queue))

    async def _forward_guarded(self, work: Work) -> None:
        await self._last_resort.guarded(work.record, partial(self._forward, work.record, work.moment, work.home))

    def _forward_now(self, work: Work) -> bool:
        """Queue the forward in the outbox; False (nothing done) if it is too large for one request, or if the lease
        does not cover publishing now (the waiting path waits for it, or gives the record up)."""
        if not self._lease.may_write():
            return False
        record, moment, home = work.record, work.moment, work.home
        headers = _forward_headers(record)
        key = moment.channel_id.encode()
        if record_size(key, record.value, headers) > self._request_bytes:
            return False
        self._outbox.put(
            self._kafka.repartition_topic,
            record.value,
            key=key,
            partition=home,
            headers=headers,
            answers=(record.source, record.offset),
            retry=partial(self._forward_guarded, work),
        )
        work.queued = True
        self._repartitioned(record, moment, home)
        return True

    def _answer_now(self, work: Work) -> bool:
        """Answer a moment the dedup state (or its age) answers, at once; False, and nothing done, if it needs a
        call or its result does not fit one request, or if the lease does not cover a result now.

        The lease is checked here, when the answer is queued, and again when the outbox sends it
        (`highlight.outbox`): here so that a member that cannot prove it owns the partition decides nothing at
        once (the waiting path waits for the lease or gives the moment up as `Fenced`, uncommitted), there so
        that an answer that waited in the outbox past the lease is never published by a zombie.
        """
        if not self._lease.may_write():
            return False
        started = time.perf_counter()
        moment = work.moment
        now = self._clock()
        decision = decide_among(moment, self._state.candidates(work.home, moment), now, self._rules)
        if decision.verdict is Verdict.CALL:
            return False
        bucket = moment.bucket(self._rec.bucket_seconds)
        status = decision.status or "expired"
        document = result_document(moment, bucket, self._rec.bucket_seconds, status, decision.entry, now)
        return self._queue(work, bucket, status, document, started)

    def _queue(self, work: Work, bucket: int, status: str, document: dict[str, Any], started: float) -> bool:
        """Queue a result in the outbox: pipelined, the channel's next moment is decided at once, and the moment is
        done when the brokers acknowledge it. False (nothing done) if it does not fit one request."""
        record, moment = work.record, work.moment
        value = encode_result(document)
        key = moment.channel_id.encode()
        if record_size(key, value, ()) > self._request_bytes:
            return False
        self._answered[status].inc()
        if status == "skipped":
            self._metrics.skipped.labels(document["reason"]).inc()
        if self._log_answers:
            self._log_answer(record, moment, bucket, status, document, started)
        self._outbox.put(
            self._kafka.results_topic,
            value,
            key=key,
            answers=(record.source, record.offset),
            retry=partial(self._decide_guarded, work, False),
        )
        work.queued = True
        return True

    def _log_answer(
        self, record: Record, moment: Moment, bucket: int, status: str, document: dict[str, Any], started: float
    ) -> None:
        # The one canonical line per moment: everything an on-call engineer needs to find it again.
        log.info(
            "moment_recorded" if status == "started" else "moment_answered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            channel_id=moment.channel_id,
            event_id=moment.event_id,
            **_origin(record),
            bucket=bucket,
            status=status,
            reason=document.get("reason"),
            task_id=document.get("task_id"),
            attempts=document.get("attempts"),
            api=document.get("api"),
            request_id=document.get("request_id"),
            error=document.get("error"),
            dropped=document.get("dropped"),
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def _forward(self, record: Record, moment: Moment, home: int) -> None:
        """Re-key through the repartition topic, as Kafka Streams does, so one member owns the channel."""
        # Published only under the lease, as a queued forward is: fenced, the record stays for the owner.
        await self._lease.writable()
        await self._producer.send(
            self._kafka.repartition_topic,
            record.value,
            key=moment.channel_id.encode(),
            partition=home,
            headers=_forward_headers(record),
        )
        self._repartitioned(record, moment, home)

    def _repartitioned(self, record: Record, moment: Moment, home: int) -> None:
        self._metrics.repartitioned.inc()
        log.debug(
            "moment_repartitioned",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            channel_id=moment.channel_id,
            event_id=moment.event_id,
            home=home,
        )

    async def _process(self, work: Work, *, queue: bool = True) -> None:
        """The waiting path: decide (a call if the state does not answer), then publish the result, queued when it
        fits one request (`queue`), else sent and acknowledged here, without the attributes if it must."""
        started = time.perf_counter()
        record, moment, index = work.record, work.moment, work.home
        bucket = moment.bucket(self._rec.bucket_seconds)
        mlog = log.bind(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            channel_id=moment.channel_id,
            event_id=moment.event_id,
            **_origin(record),
        )
        decision = decide_among(moment, self._state.candidates(index, moment), self._clock(), self._rules)
        entry: Entry | None = None
        try:
            if decision.verdict is Verdict.CALL:
                assert decision.key is not None  # noqa: S101 -- a call always names its key
                entry, status = await self._record(moment, index, decision.key, mlog)
            else:
                entry, status = decision.entry, decision.status or "expired"
            # The answer is ours to give only while the lease holds: a new owner, once it takes over, answers
            # this moment itself (it was not committed), from what it reads.
            await self._lease.writable()
        except Fenced as fenced:
            self._metrics.fenced_moments.inc()
            mlog.warning(
                "moment_fenced",
                bucket=bucket,
                task_id=entry.task_id if entry is not None else None,
                error=str(fenced),
                note="left uncommitted: the partition's owner answers it",
            )
            raise
        document = result_document(moment, bucket, self._rec.bucket_seconds, status, entry, self._clock())
        if queue and self._queue(work, bucket, status, document, started):
            return
        try:
            await self._producer.send(
                self._kafka.results_topic, encode_result(document), key=moment.channel_id.encode()
            )
        except RecordTooLarge:
            # Attributes larger than the results topic takes: the answer, and any task_id, goes without them.
            document = dropping(document, "attributes")
            try:
                await self._producer.send(
                    self._kafka.results_topic, encode_result(document), key=moment.channel_id.encode()
                )
            except RecordRejected as again:
                raise RecordRejected(
                    f"the results topic refused the result even without attributes (status {status}, "
                    f"task_id {document.get('task_id')}): {again}"
                ) from again
        self._metrics.moments.labels(status).inc()
        if status == "skipped":
            self._metrics.skipped.labels(document["reason"]).inc()
        # The one canonical line per moment: everything an on-call engineer needs to find it again.
        mlog.info(
            "moment_recorded" if status == "started" else "moment_answered",
            bucket=bucket,
            status=status,
            reason=document.get("reason"),
            task_id=document.get("task_id"),
            attempts=document.get("attempts"),
            api=document.get("api"),
            request_id=document.get("request_id"),
            error=document.get("error"),
            dropped=document.get("dropped"),
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def _record(
        self, moment: Moment, index: int, key: DedupKey, mlog: FilteringBoundLogger
    ) -> tuple[Entry | None, str]:
        """Room in the budget first (waiting for a running slot at most until the moment is too old), then the
        call. A moment with no room makes no call: `skipped`, kept in state so a redelivery is answered alike."""
        seconds = clamp_record_seconds(moment.recording_options(self._rec.record_seconds).record_seconds)
        deadline = moment.occurred_at.timestamp() + self._rec.max_event_age_seconds
        reason = await self._admissions.admit(index, key, moment.priority, deadline=deadline, seconds=seconds)
        if reason is not None:
            entry = Entry(Phase.SKIPPED, moment.event_id, reason=reason)
            await self._lease.writable()  # a member that cannot prove it owns the key writes nothing
            await self._state.put(index, key, entry)
            return entry, "skipped"
        try:
            entry = await self._call(moment, index, key, mlog)
        except _OutlivedOutage:
            return None, "expired"
        finally:
            self._admissions.done(index, key)
        return entry, entry.phase.value

    async def _call(self, moment: Moment, index: int, key: DedupKey, mlog: FilteringBoundLogger) -> Entry:
        """At most one recording per key: an acknowledged intent before every attempt, the outcome after.

        Every attempt: the lease checked (cheap: a fenced member writes nothing), the intent written and
        acknowledged, the lease checked again, and then at once the request. A member that passes the second
        check and stalls before its request leaves has its intent in the log already, so whoever takes the
        partition over after the lease ran out answers in_doubt for the key instead of calling it.

        Cancelled while waiting (rate limit, backoff, an outage), nothing is outstanding: the intent is withdrawn
        and the moment stays uncommitted for the next owner. Cancelled mid-request, the intent stays: in_doubt.
        While the API refuses our credentials or stays unreachable past the retry budget, the moment waits at
        the gate instead of failing; the state meanwhile holds what it held before this moment. Fenced, the
        moment is given up as it stands (`Fenced`): no outcome, no result, and the intent withdrawn only while
        the lease still covers writes.
        """
        previous = self._state.get(index, key)
        options = moment.recording_options(self._rec.record_seconds)
        live = self._settings.live
        budget = live.max_attempts
        held = False  # waited out an outage: the moment may have grown too old meanwhile
        tries = 0
        last_try: float | None = None
        written = False
        putting: asyncio.Future[None] | None = None
        while True:
            sending = False
            outcome: Started | LiveError
            try:
                # Never two attempts of one moment closer than the retry delay: that can record twice.
                not_before = None if last_try is None else last_try + live.retry_delay_seconds
                async with self._gate.attempt(not_before=not_before) as attempt:
                    async with self._limiter:
                        pass
                    now = self._clock()
                    if held and (now - moment.occurred_at).total_seconds() > self._rec.max_event_age_seconds:
                        # A real-time recording now would capture the wrong minutes, as for any late moment.
                        raise _OutlivedOutage
                    await self._lease.callable()
                    window = window_at(now, options.record_seconds)
                    tries += 1
                    budget -= 1
                    intent = Entry(
                        Phase.INTENT, moment.event_id, window.start_time, window.end_time, attempts=tries, api=self._api
                    )
                    written = True  # from here on, the log may hold the intent even if the put is cancelled
                    # Shielded: if we are cancelled meanwhile, its acknowledgement still decides the withdrawal.
                    putting = asyncio.ensure_future(self._state.put(index, key, intent))
                    await asyncio.shield(putting)
                    try:
                        await self._lease.callable()  # the safety check: nothing but the request after it
                    except Fenced:
                        await _withdraw(self._state, self._lease, index, key, previous)
                        raise
                    mlog.debug("live_call_sending", attempt=tries)
                    sending = True
                    call_started = time.monotonic()
                    try:
                        outcome = await self._live.start(options, window, now)
                    except LiveError as exc:
                        outcome = exc
                    finally:
                        # Spacing counts from the end of an attempt: its request may have arrived late.
                        last_try = time.monotonic()
                        self._metrics.call_seconds.labels(self._api).observe(last_try - call_started)
                    sending = False
                    unavailable = _unavailable(outcome, budget, self._gate.available)
                    if isinstance(outcome, LiveError) and unavailable is not None:
                        attempt.unavailable(unavailable, outcome)
                    elif not isinstance(outcome, LiveUnreachable):
                        attempt.reached()
            except asyncio.CancelledError:
                if written and not sending:
                    if putting is not None:
                        # Where the intent stands decides whether a withdrawal is safe: wait for its answer.
                        await asyncio.wait([putting])
                        if not putting.cancelled():
                            putting.exception()  # a failed put is withdrawn all the same; seen, not re-raised
                    await _withdraw(self._state, self._lease, index, key, previous)
                raise
            self._metrics.calls.labels(self._api, _result_class(outcome)).inc()
            if isinstance(outcome, Started):
                self._metrics.call_succeeded()
                entry = Entry(
                    Phase.STARTED,
                    moment.event_id,
                    window.start_time,
                    window.end_time,
                    task_id=str(outcome.task_id),
                    attempts=tries,
                    api=self._api,
                    request_id=outcome.request_id,
                )
                break
            if unavailable is not None:
                # Not this moment's fault: put the key back as it was, wait for the API, then a fresh budget.
                await self._lease.writable()
                await self._state.put(index, key, previous)
                budget = live.max_attempts
                held = True
                continue
            if outcome.retriable and budget > 0:
                self._metrics.retries.labels(self._api, _result_class(outcome)).inc()
                mlog.info("live_call_retrying", attempt=tries, code=outcome.code, error=outcome.message)
                continue
            reason = None
            if isinstance(outcome, LiveLimitReached):
                # The API has the last word on the account's limits: the share is full for now.
                self._admissions.refused_by_api(outcome.reason)
                phase, reason = Phase.SKIPPED, outcome.reason
            else:
                phase = Phase.IN_DOUBT if isinstance(outcome, LiveInDoubt) else Phase.FAILED
            entry = Entry(
                phase,
                moment.event_id,
                window.start_time,
                window.end_time,
                error_code=outcome.code,
                error_message=outcome.message,
                attempts=tries,
                api=self._api,
                request_id=outcome.request_id,
                reason=reason,
            )
            break
        try:
            await self._lease.writable()
        except Fenced:
            # The call was made, but a new owner may have read its intent and answered in_doubt already: this
            # outcome must not contradict it. Logged, so the recording can still be found.
            mlog.warning(
                "live_call_outcome_dropped",
                status=entry.phase.value,
                task_id=entry.task_id,
                request_id=entry.request_id,
                error=entry.error_code,
            )
            raise
        await self._state.put(index, key, entry)
        return entry


class _OutlivedOutage(Exception):
    """The moment waited out an outage for longer than HIGHLIGHT_MAX_EVENT_AGE_SECONDS: `expired`."""


def _unavailable(outcome: Started | LiveError, budget: int, available: bool) -> str | None:
    """Whether this outcome shows the API unusable for every moment, not just this one."""
    if isinstance(outcome, LiveAccessRefused):
        return "credentials"
    if isinstance(outcome, LiveUnreachable) and (budget <= 0 or not available):
        return "unreachable"
    return None


def _result_class(outcome: Started | LiveError) -> str:
    if isinstance(outcome, Started):
        return "started"
    if isinstance(outcome, LiveAccessRefused):
        return "credentials"
    if isinstance(outcome, LiveUnreachable):
        return "unreachable"
    if isinstance(outcome, LiveInDoubt):
        return "in_doubt"
    if isinstance(outcome, LiveLimitReached):
        return "limit_reached"
    return "rate_limited" if outcome.retriable else "refused"


async def _withdraw(state: StateStore, lease: Lease, index: int, key: DedupKey, previous: Entry | None) -> None:
    """Put the key back as it was before an intent whose request never left.

    Only while the lease holds: then the intent was acknowledged within it, so any later owner read the intent
    and never called the key, and this write cannot hide anybody's call. Without the lease, the intent stays:
    in_doubt for a call that was never made, which costs a recording but never pays for two.
    """
    if not lease.may_write():
        return
    try:
        await state.put(index, key, previous)
    except Exception:
        log.warning("intent_withdraw_failed", channel=key[0], bucket=key[1])


def _origin(record: Record) -> dict[str, str]:
    """Where a re-keyed moment was first published: what an engineer searching for it knows."""
    return {_ORIGIN_FIELDS[k]: (v or b"").decode(errors="replace") for k, v in record.headers if k in _ORIGIN_FIELDS}


async def _raise(exc: Exception) -> None:
    raise exc


def _forward_headers(record: Record) -> list[tuple[str, bytes | None]]:
    """The record's headers, then where it was first published (replacing any such headers it carried)."""
    return [
        *_without_origin(record.headers),
        (ORIGIN_TOPIC_HEADER, record.topic.encode()),
        (ORIGIN_PARTITION_HEADER, str(record.partition).encode()),
        (ORIGIN_OFFSET_HEADER, str(record.offset).encode()),
    ]


def _without_origin(headers: tuple[tuple[str, bytes | None], ...]) -> list[tuple[str, bytes | None]]:
    names = {ORIGIN_TOPIC_HEADER, ORIGIN_PARTITION_HEADER, ORIGIN_OFFSET_HEADER}
    return [(k, v) for k, v in headers if k not in names]

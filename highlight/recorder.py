"""What happens to one record: dead letter, re-key, or dedup → (call) → state → result.

The call itself, with its intent, lease checks and outcome, is `highlight.call`; this module routes records,
decides them, and publishes their answers.

Business logic only; Kafka and HTTP are reached through the adapters, whose errors are already ours. Every
record's waiting path runs under the last resort (`highlight.last_resort`). A record that needs no waiting (a
forward, or a moment the dedup state answers) is decided at once, its answer queued in the outbox
(`highlight.outbox`); when that cannot be done (the answer is too large for one request, or deciding fails), the
waiting path decides it again, under the last resort.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import structlog
from aiolimiter import AsyncLimiter

from highlight.admission import Admissions
from highlight.call import Caller
from highlight.config import Settings
from highlight.dedup import DedupRules, Entry, Verdict, decide_among
from highlight.errors import (
    Fenced,
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

    __slots__ = ("home", "key", "moment", "queued", "record")

    def __init__(self, record: Record, moment: Moment, home: int, key: bytes) -> None:
        self.record = record
        self.moment = moment
        self.home = home
        self.key = key  # the channel id, encoded once: the key of its answer, and of a forward
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
        self._kafka = settings.kafka
        self._rec = settings.recorder
        self._partitions = partitions
        self._producer = producer
        self._outbox = outbox
        self._state = state
        self._rules = DedupRules(
            mode=self._rec.dedup_mode,
            bucket_seconds=self._rec.bucket_seconds,
            min_cover_seconds=self._rec.min_cover_seconds,
            max_event_age_seconds=self._rec.max_event_age_seconds,
        )
        self._lease = lease
        self._metrics = metrics
        self._clock = clock
        self._caller = Caller(
            settings,
            live=live,
            state=state,
            limiter=limiter,
            gate=gate,
            admissions=admissions,
            lease=lease,
            metrics=metrics,
            clock=clock,
        )
        self._last_resort = LastResort(settings, producer, metrics, lease, dead_letter_bytes=dead_letter_bytes)
        # What one queued record may weigh: the producer's request limit (a larger answer goes the waiting path,
        # which drops what does not fit).
        self._request_bytes = settings.kafka.max_request_bytes
        self._answered = {status: metrics.moments.labels(status) for status in STATUSES}
        self._log_answers = log.is_enabled_for(logging.INFO)
        compile_validators()

    def route(self, record: Record) -> Routed:
        """Parse now (cheap, and it decides the lane); decide at once if nothing needs waiting for, else in the lane
        under the last resort."""
        guarded = self._last_resort.guarded
        try:
            moment = parse_moment(record.value, max_bytes=self._rec.max_moment_bytes)
            home = home_partition(moment.channel_id, self._partitions)
        except InvalidMoment as invalid:
            error = invalid  # `invalid` is unbound when the except block ends; the lambda runs later
            return Routed(
                _unordered(record), lambda: guarded(record, lambda: self._last_resort.dead_letter(record, error))
            )
        except Exception as exc:
            crash = exc  # a bug in parsing this record: the lane's last resort deals with it as with any other
            return Routed(_unordered(record), lambda: guarded(record, lambda: _raise(crash)))
        key = moment.channel_id.encode()
        work = Work(record, moment, home, key)
        if record.partition != home or (record.topic == self._kafka.moments_topic and record.key != key):
            forward = partial(self._forward_guarded, work)
            return Routed(_unordered(record), forward, partial(self._forward_now, work), forward, work)
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
        await self._last_resort.guarded(work.record, partial(self._forward, work))

    def _forward_now(self, work: Work) -> bool:
        """Queue the forward in the outbox; False (nothing done) if it is too large for one request, or if the lease
        does not cover publishing now (the waiting path waits for it, or gives the record up)."""
        if not self._lease.may_write():
            return False
        record, moment, home, key = work.record, work.moment, work.home, work.key
        headers = _forward_headers(record)
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
        record, moment, key = work.record, work.moment, work.key
        value = encode_result(document)
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

    async def _forward(self, work: Work) -> None:
        """Re-key through the repartition topic, as Kafka Streams does, so one member owns the channel."""
        record, moment, home = work.record, work.moment, work.home
        # Published only under the lease, as a queued forward is: fenced, the record stays for the owner.
        await self._lease.writable()
        await self._producer.send(
            self._kafka.repartition_topic,
            record.value,
            key=work.key,
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
                entry, status = await self._caller.record(moment, index, decision.key, mlog)
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
            await self._producer.send(self._kafka.results_topic, encode_result(document), key=work.key)
        except RecordTooLarge:
            # Attributes larger than the results topic takes: the answer, and any task_id, goes without them.
            document = dropping(document, "attributes")
            try:
                await self._producer.send(self._kafka.results_topic, encode_result(document), key=work.key)
            except RecordRejected as again:
                raise RecordRejected(
                    f"the results topic refused the result even without attributes (status {status}, "
                    f"task_id {document.get('task_id')}): {again}"
                ) from again
        self._metrics.moments.labels(status).inc()
        if status == "skipped":
            self._metrics.skipped.labels(document["reason"]).inc()
        self._log_answer(record, moment, bucket, status, document, started)


def _origin(record: Record) -> dict[str, str]:
    """Where a re-keyed moment was first published: what an engineer searching for it knows."""
    return {_ORIGIN_FIELDS[k]: (v or b"").decode(errors="replace") for k, v in record.headers if k in _ORIGIN_FIELDS}


def _unordered(record: Record) -> str:
    """The lane of a record that needs no order (a dead letter, a crash, a forward): its own, so such records run
    concurrently. Built only for those."""
    return f"\0{record.topic}:{record.partition}:{record.offset}"


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

"""The last resort around every record's work, and the one way a record becomes a dead letter.

A consumer that stops on a record stops on it again after every restart: the partition is stuck for good and
every later moment on it waits forever. So a failure that would recur on every retry of the same record (our
own bug on that record, or Kafka refusing the record itself) dead-letters it as `unprocessable` and the
service moves on. Failures that are not the record's own (brokers unreachable, a topic misconfigured) go up and
stop or pause the service as before: waiting and retrying is what they need. A bug that fails every record is
bounded: past HIGHLIGHT_MAX_UNPROCESSABLE_IN_A_ROW in a row, the service stops instead.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from highlight.config import Settings
from highlight.dead_letters import DeadLetter, Streak, Unprocessable, dead_letter_headers, fit
from highlight.errors import HighlightError, RecordRejected, RecordTooLarge, TooManyUnprocessable
from highlight.kafka import Producer, Record, record_size
from highlight.lease import Lease
from highlight.metrics import Metrics
from highlight.moment import InvalidMoment

log = structlog.get_logger("highlight.recorder")

# A dead letter the topic refused at the size it was promised goes again at this size, which any topic takes.
SMALL_DEAD_LETTER_BYTES = 16 * 1024


class LastResort:
    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        metrics: Metrics,
        lease: Lease,
        *,
        dead_letter_bytes: int | None = None,
    ) -> None:
        self._topic = settings.kafka.dlq_topic
        self._producer = producer
        self._lease = lease
        self._metrics = metrics
        limit = settings.kafka.max_request_bytes
        # The dead-letter topic's own limit, when it is below the producer's (learnt at start-up).
        self._dead_letter_bytes = min(dead_letter_bytes or limit, limit)
        self._limit = settings.recorder.max_unprocessable_in_a_row
        self._streak = Streak(self._limit)

    async def guarded(self, record: Record, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run one record's work; what would fail again on every retry of this record dead-letters it."""
        try:
            await work()
        except HighlightError as exc:
            if not isinstance(exc, RecordRejected):
                raise
            await self._unprocessable(record, exc)
        except Exception as exc:
            await self._unprocessable(record, exc)
        else:
            self._streak.ok()

    async def dead_letter(self, record: Record, error: InvalidMoment) -> None:
        letter = await self._send(record, error)
        log.warning(
            "moment_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=error.reason,
            error=str(error),
            truncated=letter.truncated,
        )

    async def _unprocessable(self, record: Record, exc: Exception) -> None:
        where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        if self._streak.broken:
            raise exc  # already stopping for a bug: this record stays uncommitted for the fixed version
        if self._streak.failed():
            log.error(
                "unprocessable_limit_reached",
                **where,
                in_a_row=self._streak.count,
                limit=self._limit,
                note="records fail one after another in highlight's own code: a bug to report; this record and "
                "any that fails after it stay uncommitted",
                exc_info=exc,
            )
            raise TooManyUnprocessable(
                f"{self._streak.count} records in a row could not be processed (the last, at {record.topic}/"
                f"{record.partition}@{record.offset}: {type(exc).__name__}: {exc}); stopping rather than "
                "dead-lettering the stream (HIGHLIGHT_MAX_UNPROCESSABLE_IN_A_ROW)"
            ) from exc
        cause = Unprocessable(exc)
        letter = await self._send(record, cause)
        # One line, with the traceback: a bug to report, and the dead letter keeps the record to reproduce it.
        log.error(
            "moment_unprocessable",
            **where,
            exception_class=cause.exception_class,
            error=str(cause),
            truncated=letter.truncated,
            in_a_row=self._streak.count,
            exc_info=exc,
        )

    async def _send(self, record: Record, cause: InvalidMoment | Unprocessable) -> DeadLetter:
        """The original record, or a truncated copy that says so when it does not fit: never dropped.

        Only under the lease, as every answer: a member that cannot prove it still owns the record's partition
        raises `Fenced` and leaves the record uncommitted, so its owner's dead letter is the only one."""
        await self._lease.writable()
        ours = dead_letter_headers(cause, record.topic, record.partition, record.offset)
        for budget in (self._dead_letter_bytes, SMALL_DEAD_LETTER_BYTES):
            letter = fit(record.key, record.value, record.headers, ours, budget=budget, size_of=record_size)
            try:
                await self._producer.send(self._topic, letter.value, key=letter.key, headers=letter.headers)
            except RecordTooLarge:
                if budget == SMALL_DEAD_LETTER_BYTES:
                    raise
                # The topic takes less than it told us at start-up (or it told us nothing).
                continue
            break
        self._metrics.dead_letters.labels(cause.reason).inc()
        self._metrics.moments.labels("dead_letter").inc()
        return letter

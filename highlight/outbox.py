"""Pipelined publishing: what answers a record (its result, dead letter or forward) is queued at once and
published in batches; the record is done when the brokers acknowledge the batch that carries its answer.

Queuing never waits, so a lane moves on as soon as its result is queued and a fetched batch's duplicates are
answered in one synchronous pass. One flusher hands the queued records to the producer topic by topic, partition
by partition, in the order they were queued, and aiokafka sends a partition's batches in order: the results of one
channel keep their order. The dedup state's writes do not come through here; they are acknowledged before the
lane moves on (the intent before a call, the outcome after it), because they are what makes a call happen at most
once.

Nothing is published without the lease (`highlight.lease`). The recorder queues an answer only while the lease
covers writes, but that is not enough: an answer may wait here (behind a slow batch, or in a loop that stalls,
which is exactly how a member becomes a zombie) until after the lease has run out and a new owner has taken the
partition over and answered the same moment itself. So the flusher checks the lease again right before it hands
each batch to the producer: a lapsed lease holds publishing until a heartbeat renews it, and a fenced member
drops what is queued, whose records stay uncommitted for the partition's owner to answer. The check at queue
time keeps a fenced member from deciding anything at once (its moments go the waiting path, which gives them up
as `Fenced`); the check at send time is the one that keeps a zombie silent. What is left between that check and
the broker (the producer's own linger and retries) is the same as for every other write under the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import structlog

from highlight.errors import Abandoned, Fenced, RecordRejected
from highlight.kafka import Partition, Producer, RecordBatch, partition_for
from highlight.lease import Lease

log = structlog.get_logger("highlight.outbox")

# The input record a published record answers: done when that record is acknowledged.
Token = tuple[Partition, int]
Headers = Sequence[tuple[str, bytes | None]]
# Publishes one answer again on its own, awaited (and takes care of it if that fails for the record's sake too).
Retry = Callable[[], Coroutine[Any, Any, None]]
# key, value, headers, partition (None: the default partitioner's), the record it answers, its retry
_Entry = tuple[bytes | None, bytes | None, Headers, int | None, Token, Retry | None]


class Outbox:
    def __init__(
        self,
        producer: Producer,
        *,
        lease: Lease,
        on_acked: Callable[[list[Token]], None],
        on_failed: Callable[[list[Token], BaseException], None],
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._producer = producer
        self._lease = lease
        self._on_acked = on_acked
        self._on_failed = on_failed
        self._on_queued = on_queued
        self._queued: dict[str, list[_Entry]] = {}
        # Answers queued or sent and not yet acknowledged, per input partition: what a drain waits for.
        self._outstanding: Counter[Partition] = Counter()
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_forever(), name="outbox")

    async def close(self) -> None:
        """Stop publishing; anything still queued is dropped, and its records stay uncommitted."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        for retrying in list(self._retries):
            retrying.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)
        self._queued.clear()

    def put(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        answers: Token,
        partition: int | None = None,
        headers: Headers = (),
        retry: Retry | None = None,
    ) -> None:
        """Queue a record that answers the input record `answers`; published soon, in queue order. Should Kafka
        refuse the batch that carries it for a record's sake (one too large for the topic, say), `retry` publishes
        this answer on its own instead; without one, the refusal is reported as a failure."""
        queue = self._queued.get(topic)
        if queue is None:
            queue = self._queued[topic] = []
        queue.append((key, value, headers, partition, answers, retry))
        self._outstanding[answers[0]] += 1
        self._wake.set()
        self._on_queued()

    def outstanding_of(self, partition: Partition) -> int:
        return self._outstanding.get(partition, 0)

    def outstanding(self, partitions: Iterable[Partition] | None = None) -> int:
        if partitions is None:
            return self._outstanding.total()
        return sum(self._outstanding[p] for p in partitions)

    async def settle(self, partitions: set[Partition] | None, timeout: float) -> int:  # noqa: ASYNC109 -- a bound on a drain step, not a cancellation scope
        """Wait until every answer to a record of `partitions` (all if None) is acknowledged or has failed, for
        up to `timeout` seconds; returns how many are still outstanding."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.outstanding(partitions):
                    self._settled.clear()
                    await self._settled.wait()
        return self.outstanding(partitions)

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Stop counting answers to records of `partitions` (revoked), and drop those not yet handed to the
        producer: their records were not committed, and the partition's next owner answers them. Late
        acknowledgements of those already handed over change nothing."""
        gone = set(partitions)
        for partition in gone:
            self._outstanding.pop(partition, None)
        for entries in self._queued.values():
            entries[:] = [entry for entry in entries if entry[4][0] not in gone]

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queued:
                queued, self._queued = self._queued, {}
                for topic, entries in queued.items():
                    await self._flush(topic, entries)

    async def _flush(self, topic: str, entries: list[_Entry]) -> None:
        outstanding = self._outstanding
        entries = [entry for entry in entries if entry[4][0] in outstanding]  # none of a partition forgotten since
        if not entries:
            return
        try:
            batches = self._batches(entries, await self._producer.partitions(topic))
        except Exception as exc:
            # Whatever went wrong, these answers are not published: say so, never drop them quietly.
            self._failed([entry[4] for entry in entries], exc)
            return
        for index, (partition, batch, carried) in enumerate(batches):
            if not await self._leased():
                self._fenced([entry for _, _, later in batches[index:] for entry in later])
                return
            try:
                acked = await self._producer.publish(batch, topic, partition)
            except RecordRejected as exc:
                self._refused(carried, exc)
                continue
            except Exception as exc:
                self._failed([entry[4] for _, _, later in batches[index:] for entry in later], exc)
                return
            acked.add_done_callback(functools.partial(self._acked, entries=carried))

    def _batches(self, entries: list[_Entry], partitions: int) -> list[tuple[int, RecordBatch, list[_Entry]]]:
        """The entries as batches per partition, each partition's in queue order."""
        by_partition: dict[int, list[_Entry]] = {}
        for entry in entries:
            partition = entry[3]
            if partition is None:
                partition = partition_for(entry[0], partitions)
            group = by_partition.get(partition)
            if group is None:
                group = by_partition[partition] = []
            group.append(entry)
        batches = []
        for partition, group in by_partition.items():
            batch, carried = self._producer.batch(), list[_Entry]()
            for entry in group:
                key, value, headers = entry[0], entry[1], entry[2]
                if not batch.append(key, value, headers):
                    batches.append((partition, batch, carried))
                    batch, carried = self._producer.batch(), list[_Entry]()
                    batch.append(key, value, headers)
                carried.append(entry)
            batches.append((partition, batch, carried))
        return batches

    async def _leased(self) -> bool:
        """Whether the lease covers publishing now: a lapsed one is waited for (the next heartbeat renews it);
        False once this member is fenced."""
        if self._lease.may_write():
            return True
        try:
            await self._lease.writable()
        except Fenced:
            return False
        return True

    def _fenced(self, entries: list[_Entry]) -> None:
        """Drop answers this member may no longer publish, and everything queued after them: their records stay
        uncommitted (not done, not failed), and whoever owns the partitions now answers them."""
        dropped = [entry[4] for entry in entries]
        for queued in self._queued.values():
            dropped += [entry[4] for entry in queued]
        self._queued.clear()
        self._release(dropped)
        log.warning(
            "answers_fenced",
            answers=len(dropped),
            note="not published: this member cannot prove it still owns their partitions; left uncommitted",
        )

    def _acked(self, done: asyncio.Future[None], *, entries: list[_Entry]) -> None:
        tokens = [entry[4] for entry in entries]
        if done.cancelled():
            self._failed(tokens, asyncio.CancelledError("the producer was closed before acknowledging"))
        elif isinstance(exc := done.exception(), RecordRejected):
            self._refused(entries, exc)
        elif exc is not None:
            self._failed(tokens, exc)
        else:
            self._release(tokens)
            self._on_acked(tokens)

    def _refused(self, entries: list[_Entry], exc: RecordRejected) -> None:
        """Kafka refused a batch for a record's sake: each answer goes again on its own, in order, through its
        retry (which knows how to make it fit, or dead-letters its record); one without a retry has failed."""
        log.warning("answers_batch_refused", answers=len(entries), error=str(exc), note="sent again one by one")
        retrying = asyncio.create_task(self._retry(entries, exc), name="outbox-retry")
        self._retries.add(retrying)
        retrying.add_done_callback(self._retries.discard)

    async def _retry(self, entries: list[_Entry], refusal: RecordRejected) -> None:
        for entry in entries:
            token, retry = entry[4], entry[5]
            if retry is None:
                self._failed([token], refusal)
                continue
            try:
                await retry()
            except Abandoned:
                self._release([token])  # given up (fenced): uncommitted, for the partition's owner
            except Exception as exc:
                self._failed([token], exc)
            else:
                self._release([token])
                self._on_acked([token])

    def _failed(self, tokens: list[Token], exc: BaseException) -> None:
        self._release(tokens)
        self._on_failed(tokens, exc)

    def _release(self, tokens: list[Token]) -> None:
        outstanding = self._outstanding
        for partition, _ in tokens:
            left = outstanding.get(partition)
            if left is None:
                continue  # forgotten (revoked) meanwhile
            if left <= 1:
                del outstanding[partition]
            else:
                outstanding[partition] = left - 1
        self._settled.set()

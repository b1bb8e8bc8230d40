"""`highlight run` with the proposed fixes applied by monkeypatching, to measure them before they land.

    python bench/candidate.py              (same environment and flags as `python -m highlight run`)
    BENCH_FIXES=1,2 python bench/candidate.py

Used by `python bench/bench.py --candidate` (and `bench/workers.py restore --candidate`). By default it applies
those of fixes 1-3 that highlight/ does not have yet (see `landed()`); BENCH_FIXES applies exactly the listed ones,
landed or not, to compare alternatives. The proposals, detailed in bench/ANALYSIS.md:

1. service.Service._consume: at the in-flight bound, wait for a moment to finish (no paused 200 ms poll) and
   resume at the first free slot. (highlight/ has its own version now, which resumes only at 7/8 of the bound.)
2. recorder.Recorder._process + lanes.KeyedRunner: a lane does not wait for its result's broker ack; the moment
   counts as done (committable, its in-flight slot freed) when the ack arrives.
3. state.StateStore.restore/get: restore keeps raw entry bytes; an entry is decoded the first time it is read.
   (landed in highlight/)
4. kafka.Producer: linger_ms 0 instead of 2. (landed in highlight/)

Once the fixes are in highlight/ this file can be deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiokafka

from highlight import cli, kafka
from highlight.config import KafkaSettings
from highlight.dedup import DedupKey, Entry, Phase, Verdict, decide, decode_entry, decode_key, expires_at
from highlight.errors import HighlightError
from highlight.kafka import Partition, Producer, Record, broker_errors
from highlight.lanes import Job, KeyedRunner
from highlight.moment import Moment
from highlight.recorder import Recorder, log
from highlight.results import encode_result, result_document
from highlight.service import POLL_TIMEOUT_MS, Service
from highlight.state import RestoreReport, StateStore, _in_doubt
from highlight.state import log as state_log

# --- fix 1: a full consumer waits for room, not for a paused poll to time out --------------------------------

_original_init = Service.__init__


def __init__(self: Service, *args: object, **kwargs: object) -> None:
    _original_init(self, *args, **kwargs)
    self._room = asyncio.Event()


def _job_done(self: Service, job: Job) -> None:
    self._tracker.done(job.partition, job.offset)
    self._room.set()


def request_stop(self: Service) -> None:
    self._stopping.set()
    self._room.set()


async def _consume(self: Service) -> None:
    limit = self.settings.recorder.max_in_flight
    while not self._stopping.is_set():
        capacity = limit - self._tracker.in_flight()
        self._set_paused(capacity <= 0)
        if capacity <= 0:
            # Full: wait for a moment to finish, not for a poll to time out (a poll of paused partitions sleeps
            # its whole timeout, and throws away what aiokafka had prefetched for them). The timeout keeps
            # commits going while every moment in flight is slow.
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_TIMEOUT_MS / 1000):
                    await self._room.wait()
            self._last_poll = time.monotonic()
            await self._commit()
            continue
        records = await self._consumer.fetch(POLL_TIMEOUT_MS, capacity)
        self._last_poll = time.monotonic()
        rewind: dict[Partition, int] = {}
        for record in records:
            if record.source not in self._active:
                rewind.setdefault(record.source, record.offset)
                continue
            routed = self._recorder.route(record)
            self._tracker.track(record.source, record.offset)
            self._runner.submit(routed.lane, Job(record.source, record.offset, routed.run))
        if rewind:
            self._consumer.rewind(rewind)
        self.metrics.in_flight.set(self._tracker.in_flight())
        await self._commit()


# --- fix 2: a lane moves on once its result is queued; the moment is done (committable) once it is acked -----


async def enqueue(
    self: Producer,
    topic: str,
    value: bytes | None,
    *,
    key: bytes | None = None,
    partition: int | None = None,
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> asyncio.Future[Any]:
    """Queue a record; the returned future resolves when the brokers acknowledged it (KafkaError if not)."""
    async with broker_errors(f"send to {topic}"):
        future: asyncio.Future[Any] = await self._producer.send(
            topic, value, key=key, partition=partition, headers=list(headers) if headers else None
        )
    return future


async def _process(self: Recorder, record: Record, moment: Moment, index: int) -> asyncio.Future[Any]:
    started = time.perf_counter()
    bucket = moment.bucket(self._rec.bucket_seconds)
    key: DedupKey = (moment.channel_id, bucket)
    decision = decide(moment, self._state.get(index, key), self._clock(), self._rec.max_event_age_seconds)
    if decision.verdict is Verdict.CALL:
        entry = await self._call(moment, index, key, log)
        status = entry.phase.value
    else:
        entry, status = decision.entry, decision.status or "expired"
    document = result_document(moment, bucket, self._rec.bucket_seconds, status, entry, self._clock())
    acked: asyncio.Future[Any] = await self._producer.enqueue(
        self._kafka.results_topic, encode_result(document), key=moment.channel_id.encode()
    )
    self._metrics.moments.labels(status).inc()
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
    return acked


async def _work(self: KeyedRunner, key: str) -> None:
    lane = self._lanes[key]
    try:
        while lane:
            job = lane.popleft()
            job.task = asyncio.create_task(job.run())
            self._running[key] = job
            try:
                outcome = await job.task
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
                continue
            except Exception as exc:
                lane.clear()
                self._on_error(job, exc)
                return
            finally:
                self._running.pop(key, None)
            if isinstance(outcome, asyncio.Future):
                # Done when the brokers hold the result; the lane need not wait for that.
                self._acks[outcome] = job
                outcome.add_done_callback(functools.partial(_settle, self, job))
            else:
                self._on_done(job)
    finally:
        self._lanes.pop(key, None)
        self._workers.pop(key, None)
        if not self._workers:
            self._idle.set()


def _settle(self: KeyedRunner, job: Job, acked: asyncio.Future[Any]) -> None:
    self._acks.pop(acked, None)
    if acked.cancelled():
        return  # never acknowledged: stays uncommitted
    exc = acked.exception()
    if exc is None:
        self._on_done(job)
    else:
        error = kafka._mapped(exc, "send") if not isinstance(exc, HighlightError) else exc
        self._on_error(job, error)


_original_drain = KeyedRunner.drain


async def drain(self: KeyedRunner, timeout: float, partitions: set[Partition] | None = None) -> list[Job]:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    abandoned: list[Job] = await _original_drain(self, timeout, partitions)
    acks = [f for f, j in self._acks.items() if partitions is None or j.partition in partitions]
    if acks:
        # Results queued but not yet acknowledged: the commit that follows a drain must include them.
        await asyncio.wait(acks, timeout=max(0.0, deadline - loop.time()))
        await asyncio.sleep(0)
    return abandoned


_original_runner_init = KeyedRunner.__init__


def _runner_init(self: KeyedRunner, *args: Any, **kwargs: Any) -> None:
    _original_runner_init(self, *args, **kwargs)
    acks: dict[asyncio.Future[Any], Job] = {}
    self._acks = acks


# --- fix 3: restore keeps each entry's raw bytes and decodes on first use ---------------------------------------

# encode_entry writes JSON, where a quote inside a string is always escaped: this text can only be the phase field.
_INTENT_MARK = b'"phase":"intent"'


def get(self: StateStore, index: int, key: DedupKey) -> Entry | None:
    table: dict[DedupKey, Entry | bytes] = self._tables[index]
    value = table.get(key)
    if isinstance(value, bytes):
        try:
            value = table[key] = decode_entry(value)
        except (ValueError, KeyError, TypeError):
            state_log.warning("state_record_unreadable", partition=index, key=str(key)[:100])
            del table[key]
            return None
    return value


async def restore(self: StateStore, indexes: set[int]) -> RestoreReport:
    started = time.perf_counter()
    now = self._clock()
    for index in indexes - self._tables.keys():
        self._tables[index] = {}
    starts = {Partition(self._topic, i): self._positions.get(i, 0) for i in indexes}
    tables: dict[int, dict[DedupKey, Entry | bytes]] = self._tables
    bucket_seconds, max_age = self._bucket_seconds, self._max_age

    def apply(partition: Partition, raw_key: bytes | None, raw_value: bytes | None) -> None:
        if raw_key is None:
            return
        table = tables[partition.partition]
        try:
            key = decode_key(raw_key)
        except (ValueError, TypeError):
            state_log.warning("state_record_unreadable", partition=partition.partition, key=raw_key[:100])
            return
        if raw_value is None or expires_at(key[1], bucket_seconds, max_age) <= now:
            table.pop(key, None)
        else:
            table[key] = raw_value  # decoded by get(), the first time a moment needs it

    records, ends = await self._reader.read(sorted(starts), apply, starts)
    for partition, end in ends.items():
        self._positions[partition.partition] = end
    in_doubt = 0
    for index in indexes:
        table = tables[index]
        intents = [
            key
            for key, value in table.items()
            if (_INTENT_MARK in value if isinstance(value, bytes) else value.phase is Phase.INTENT)
        ]
        for key in intents:
            entry = get(self, index, key)
            if entry is not None and entry.phase is Phase.INTENT:
                await self.put(index, key, _in_doubt(entry))
                in_doubt += 1
    self._kept -= indexes
    return RestoreReport(
        partitions=len(indexes),
        records=records,
        entries=sum(len(self._tables[i]) for i in indexes),
        in_doubt=in_doubt,
        seconds=time.perf_counter() - started,
    )


# --- fix 4: no linger on the producer --------------------------------------------------------------------------


def _producer_init(self: Producer, settings: KafkaSettings) -> None:
    # aiokafka has one produce request in flight per broker, so records queue (and batch) behind it anyway; a
    # linger only adds its 2 ms to every acknowledged write, three of them on a moment's path.
    self._producer = aiokafka.AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=kafka.CLIENT_ID,
        acks="all",
        enable_idempotence=False,
        linger_ms=0,
        max_batch_size=256 * 1024,
    )
    self._started = False


FIXES = {
    "1": "a full consumer resumes at the first free slot",
    "2": "a lane does not wait for its result's ack",
    "3": "restore keeps raw state bytes",
    "4": "producer linger 0",
}


def landed() -> set[str]:
    """The fixes highlight/ already has, in its own words."""
    import inspect

    from highlight import state

    found = set()
    # highlight/'s own version of fix 1 resumes at 7/8 of the bound (`limit // 8`); ours at the first free slot.
    if "_room" in inspect.getsource(Service._job_done) and "limit // 8" not in inspect.getsource(Service._consume):
        found.add("1")
    if hasattr(Producer, "enqueue"):
        found.add("2")
    if hasattr(state, "_is_intent") or "bytes" in inspect.getsource(StateStore.get):
        found.add("3")
    if "linger_ms=0" in inspect.getsource(Producer.__init__):
        found.add("4")
    return found


def selected() -> set[str]:
    """BENCH_FIXES if set (exactly those, landed or not: to compare alternatives), else 1-3 minus what landed."""
    # `landed` reads source, so it runs here, before any patch is installed.
    chosen = os.environ.get("BENCH_FIXES")
    if chosen is not None:
        return {fix for fix in chosen.split(",") if fix in FIXES}
    return {"1", "2", "3"} - landed()


def install() -> set[str]:
    fixes = selected()
    if "1" in fixes:
        Service.__init__ = __init__
        Service._job_done = _job_done
        Service.request_stop = request_stop
        Service._consume = _consume
    if "2" in fixes:
        Producer.enqueue = enqueue
        Recorder._process = _process
        KeyedRunner.__init__ = _runner_init
        KeyedRunner._work = _work
        KeyedRunner.drain = drain
    if "3" in fixes:
        StateStore.get = get
        StateStore.restore = restore
    if "4" in fixes:
        Producer.__init__ = _producer_init
    return fixes


if __name__ == "__main__":
    install()
    sys.exit(cli.main(["run", *sys.argv[1:]]))

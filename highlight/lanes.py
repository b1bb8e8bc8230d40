"""Key-ordered concurrency (the KEY mode of Confluent's Parallel Consumer) and per-partition commit points.

Jobs of one key are decided one at a time in submission order; jobs of different keys run concurrently. A job
that can be decided without waiting (the dedup state already answers it) is decided inline, with no task: at
once when its key is idle, or by its lane's worker in one synchronous pass over what is queued. Only a job that
must wait (a call) gets a task. Every task is owned here and awaited or cancelled by `drain`/`close`; nothing is
fire-and-forget.

Being decided is not being done: a decided job's answer is queued for publishing (highlight.outbox), and its
record is done, for the commit point, when the brokers acknowledge that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from highlight.errors import Abandoned
from highlight.kafka import Partition


class OffsetTracker:
    """Per partition, the highest offset below which every record is completely done."""

    def __init__(self) -> None:
        self._open: dict[Partition, deque[list[int | bool]]] = {}
        self._slots: dict[tuple[Partition, int], list[int | bool]] = {}
        self._counts: dict[Partition, int] = {}  # records in flight, per partition
        self._commit_at: dict[Partition, int] = {}
        self._committed: dict[Partition, int] = {}

    def track(self, partition: Partition, offset: int) -> None:
        slot: list[int | bool] = [offset, False]
        pending = self._open.get(partition)
        if pending is None:
            pending = self._open[partition] = deque()
        pending.append(slot)
        self._slots[(partition, offset)] = slot
        self._counts[partition] = self._counts.get(partition, 0) + 1

    def done(self, partition: Partition, offset: int) -> None:
        slot = self._slots.pop((partition, offset), None)
        if slot is None:
            return  # forgotten by a revoke meanwhile
        slot[1] = True
        self._counts[partition] -= 1
        pending = self._open[partition]
        while pending and pending[0][1]:
            finished = pending.popleft()
            self._commit_at[partition] = int(finished[0]) + 1

    def in_flight(self) -> int:
        return len(self._slots)

    def in_flight_of(self, partition: Partition) -> int:
        return self._counts.get(partition, 0)

    def pending(self, partition: Partition) -> int:
        return len(self._open.get(partition, ()))

    def to_commit(self) -> dict[Partition, int]:
        """Commit points that moved since `committed()` was last told about them."""
        return {p: o for p, o in self._commit_at.items() if self._committed.get(p) != o}

    def committed(self, offsets: dict[Partition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, partitions: Iterable[Partition]) -> None:
        for partition in partitions:
            for slot in self._open.pop(partition, ()):
                self._slots.pop((partition, int(slot[0])), None)
            self._counts.pop(partition, None)
            self._commit_at.pop(partition, None)
            self._committed.pop(partition, None)


W = TypeVar("W")

# A lane's worker lets the event loop run after this many jobs decided in one synchronous pass.
YIELD_EVERY = 256


@dataclass(slots=True)
class Job(Generic[W]):
    partition: Partition
    offset: int
    work: W
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class KeyedRunner(Generic[W]):
    """Decides jobs concurrently across keys, in order within a key.

    `answer(job)` decides a job synchronously if it can (True) or declines (False); `run(job)` is the waiting
    path, run in a task of its own. Either raising stops the key's lane and reports `on_error`.
    """

    def __init__(
        self,
        *,
        answer: Callable[[Job[W]], bool],
        run: Callable[[Job[W]], Coroutine[Any, Any, None]],
        on_error: Callable[[Job[W], BaseException], None],
    ) -> None:
        self._answer = answer
        self._run = run
        self._on_error = on_error
        self._lanes: dict[str, deque[Job[W]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, Job[W]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, key: str, job: Job[W]) -> None:
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(job)  # behind the key's earlier jobs
            return
        # The key is idle: nothing of it is undecided, so this job may be decided right here.
        try:
            if self._answer(job):
                return
        except Exception as exc:
            self._on_error(job, exc)
            return
        self._lanes[key] = deque((job,))
        self._idle.clear()
        self._workers[key] = asyncio.create_task(self._work(key), name=f"lane:{key[:40]}")

    @property
    def active_keys(self) -> int:
        return len(self._workers)

    def waiting(self) -> bool:
        """Whether any job is on its waiting path (a call) right now."""
        return bool(self._running)

    async def _work(self, key: str) -> None:
        lane = self._lanes[key]
        decided = 0
        try:
            while lane:
                job = lane.popleft()
                try:
                    answered = self._answer(job)
                except Exception as exc:
                    lane.clear()  # later jobs of this key must not overtake one that was not decided
                    self._on_error(job, exc)
                    return
                if answered:
                    decided += 1
                    if decided % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                    continue
                job.task = asyncio.create_task(self._run(job))  # owned: awaited right here
                self._running[key] = job
                try:
                    await job.task
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                        raise  # the lane itself is being closed
                    # Only this job was abandoned (drain timeout); it stays uncommitted.
                    continue
                except Abandoned:
                    continue  # it gave itself up (fenced): uncommitted too, for the partition's next owner
                except Exception as exc:
                    lane.clear()
                    self._on_error(job, exc)
                    return
                finally:
                    self._running.pop(key, None)
        finally:
            self._lanes.pop(key, None)
            self._workers.pop(key, None)
            if not self._workers:
                self._idle.set()

    def discard_queued(self, partitions: set[Partition] | None = None) -> int:
        """Forget jobs that have not started; they stay uncommitted and will be redelivered."""
        dropped = 0
        for lane in self._lanes.values():
            keep = [job for job in lane if partitions is not None and job.partition not in partitions]
            dropped += len(lane) - len(keep)
            lane.clear()
            lane.extend(keep)
        return dropped

    def running(self, partitions: set[Partition] | None = None) -> list[Job[W]]:
        """Jobs started and not finished, of `partitions` (all if None)."""
        return [j for j in self._running.values() if partitions is None or j.partition in partitions]

    async def drain(self, timeout: float, partitions: set[Partition] | None = None) -> list[Job[W]]:  # noqa: ASYNC109 -- a bound, not a cancellation scope: overrunning jobs are cancelled one by one
        """Stop queued work of `partitions` (all if None), let running jobs finish for up to `timeout`
        seconds, then cancel the rest. Returns the running jobs that were abandoned."""
        self.discard_queued(partitions)

        def running() -> list[Job[W]]:
            return self.running(partitions)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (jobs := running()) and loop.time() < deadline:
            tasks = [j.task for j in jobs if j.task is not None]
            await asyncio.wait(tasks, timeout=deadline - loop.time())
            await asyncio.sleep(0)  # let lane workers record completion
        abandoned = running()
        for job in abandoned:
            if job.task is not None:
                job.task.cancel()
        for job in abandoned:
            if job.task is not None:
                with contextlib.suppress(BaseException):
                    await job.task
        await asyncio.sleep(0)
        return abandoned

    async def close(self) -> None:
        """Cancel everything; for after `drain` or on a fatal error."""
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        for job in list(self._running.values()):
            if job.task is not None:
                job.task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        # A worker cancelled before it ever ran never reaches its own clean-up.
        self._lanes.clear()
        self._workers.clear()
        self._running.clear()
        self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

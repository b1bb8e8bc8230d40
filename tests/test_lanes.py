"""Commit points and key-ordered concurrency (highlight.lanes): asyncio, no I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight.kafka import Partition
from highlight.lanes import Job, KeyedRunner, OffsetTracker

P0 = Partition("highlight.moments", 0)
P1 = Partition("highlight.moments", 1)


# --- OffsetTracker --------------------------------------------------------------------------------


def _tracker(partition: Partition, offsets: list[int]) -> OffsetTracker:
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.track(partition, offset)
    return tracker


def test_nothing_to_commit_before_anything_is_done() -> None:
    tracker = _tracker(P0, [0, 1, 2])
    assert tracker.to_commit() == {}
    assert tracker.in_flight() == 3
    assert tracker.pending(P0) == 3


def test_commit_point_is_one_past_the_highest_contiguous_done_offset() -> None:
    tracker = _tracker(P0, [0, 1, 2, 3, 4])
    tracker.done(P0, 0)
    assert tracker.to_commit() == {P0: 1}


def test_done_out_of_order_moves_the_commit_point_only_when_the_gap_fills() -> None:
    tracker = _tracker(P0, [0, 1, 2, 3, 4])
    tracker.done(P0, 2)
    tracker.done(P0, 3)
    assert tracker.to_commit() == {}
    tracker.done(P0, 1)
    assert tracker.to_commit() == {}
    tracker.done(P0, 0)
    assert tracker.to_commit() == {P0: 4}
    tracker.done(P0, 4)
    assert tracker.to_commit() == {P0: 5}
    assert tracker.in_flight() == 0
    assert tracker.pending(P0) == 0


def test_offsets_with_holes_commit_past_the_last_done_one() -> None:
    # Compacted topics and transaction markers leave holes in the offsets a consumer sees.
    tracker = _tracker(P0, [10, 12, 15])
    tracker.done(P0, 12)
    assert tracker.to_commit() == {}
    tracker.done(P0, 10)
    assert tracker.to_commit() == {P0: 13}
    tracker.done(P0, 15)
    assert tracker.to_commit() == {P0: 16}


def test_partitions_are_tracked_independently() -> None:
    tracker = OffsetTracker()
    for offset in range(3):
        tracker.track(P0, offset)
        tracker.track(P1, offset)
    tracker.done(P1, 0)
    tracker.done(P1, 1)
    tracker.done(P0, 1)
    assert tracker.to_commit() == {P1: 2}
    tracker.done(P0, 0)
    assert tracker.to_commit() == {P0: 2, P1: 2}
    assert tracker.pending(P0) == 1
    assert tracker.pending(P1) == 1


def test_to_commit_returns_only_points_that_moved_since_committed() -> None:
    tracker = OffsetTracker()
    for offset in range(4):
        tracker.track(P0, offset)
        tracker.track(P1, offset)
    tracker.done(P0, 0)
    tracker.done(P1, 0)
    tracker.committed(tracker.to_commit())
    assert tracker.to_commit() == {}
    tracker.done(P1, 1)
    assert tracker.to_commit() == {P1: 2}
    tracker.committed({P1: 2})
    assert tracker.to_commit() == {}
    tracker.done(P0, 2)  # a gap: nothing moves
    assert tracker.to_commit() == {}


def test_done_twice_or_for_an_untracked_offset_is_ignored() -> None:
    tracker = _tracker(P0, [0, 1])
    tracker.done(P0, 0)
    tracker.done(P0, 0)
    tracker.done(P0, 7)
    tracker.done(P1, 0)
    assert tracker.to_commit() == {P0: 1}
    assert tracker.in_flight() == 1


def test_forget_drops_a_partition() -> None:
    tracker = OffsetTracker()
    for offset in range(3):
        tracker.track(P0, offset)
        tracker.track(P1, offset)
    tracker.done(P0, 0)
    tracker.done(P1, 0)
    tracker.forget([P0])
    assert tracker.to_commit() == {P1: 1}
    assert tracker.pending(P0) == 0
    assert tracker.in_flight() == 2
    tracker.done(P0, 1)  # a job of the revoked partition finishing late
    assert tracker.to_commit() == {P1: 1}
    assert tracker.pending(P0) == 0


def test_a_forgotten_partition_starts_afresh_when_assigned_again() -> None:
    tracker = _tracker(P0, [0, 1])
    tracker.done(P0, 0)
    tracker.committed(tracker.to_commit())
    tracker.forget([P0])
    tracker.track(P0, 1)
    assert tracker.to_commit() == {}
    tracker.done(P0, 1)
    assert tracker.to_commit() == {P0: 2}


@given(st.integers(1, 40).flatmap(lambda n: st.permutations(range(n))), st.integers(0, 10**6))
def test_commit_point_is_one_past_the_longest_done_prefix_for_any_completion_order(order: list[int], base: int) -> None:
    tracker = _tracker(P0, [base + offset for offset in range(len(order))])
    done: set[int] = set()
    for offset in order:
        tracker.done(P0, base + offset)
        done.add(offset)
        prefix = 0
        while prefix in done:
            prefix += 1
        expected = {P0: base + prefix} if prefix else {}
        assert tracker.to_commit() == expected
    assert tracker.in_flight() == 0


# --- KeyedRunner ----------------------------------------------------------------------------------


class Recorder:
    """A runner with on_done/on_error that record what happened."""

    def __init__(self) -> None:
        self.done: list[tuple[Partition, int]] = []
        self.errors: list[tuple[int, BaseException]] = []
        self.runner = KeyedRunner(self._on_done, self._on_error)

    def _on_done(self, job: Job) -> None:
        self.done.append((job.partition, job.offset))

    def _on_error(self, job: Job, exc: BaseException) -> None:
        self.errors.append((job.offset, exc))

    def submit(
        self, key: str, offset: int, run: Callable[[], Coroutine[Any, Any, None]], partition: Partition = P0
    ) -> None:
        self.runner.submit(key, Job(partition, offset, run))


@pytest.fixture
async def rec() -> Any:
    recorder = Recorder()
    yield recorder
    await recorder.runner.close()


async def test_jobs_of_one_key_run_in_order_and_never_overlap(rec: Recorder) -> None:
    log: list[str] = []
    running = 0

    def job(i: int, delay: float) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            nonlocal running
            running += 1
            log.append(f"start {i}")
            assert running == 1
            await asyncio.sleep(delay)
            for _ in range(3):
                await asyncio.sleep(0)
            log.append(f"end {i}")
            running -= 1

        return run

    # Earlier jobs take longer: overlapping lanes would finish them out of order.
    for i, delay in enumerate([0.03, 0.02, 0.01, 0, 0]):
        rec.submit("channel-a", i, job(i, delay))
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert log == [f"{what} {i}" for i in range(5) for what in ("start", "end")]
    assert rec.done == [(P0, i) for i in range(5)]
    assert rec.errors == []
    assert rec.runner.active_keys == 0


async def test_jobs_submitted_while_the_lane_runs_join_its_queue_in_order(rec: Recorder) -> None:
    log: list[int] = []
    gate = asyncio.Event()

    async def first() -> None:
        await gate.wait()
        log.append(0)

    def later(i: int) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            log.append(i)

        return run

    rec.submit("k", 0, first)
    await asyncio.sleep(0.01)
    for i in range(1, 4):
        rec.submit("k", i, later(i))
    assert rec.runner.active_keys == 1
    gate.set()
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert log == [0, 1, 2, 3]


async def test_jobs_of_different_keys_overlap_in_time(rec: Recorder) -> None:
    started: set[str] = set()
    both = asyncio.Event()
    overlapped: list[str] = []

    def job(key: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            started.add(key)
            if len(started) == 3:
                both.set()
            await asyncio.wait_for(both.wait(), 1)  # only returns if all three run at once
            overlapped.append(key)

        return run

    for key in ("a", "b", "c"):
        rec.submit(key, 0, job(key))
    assert rec.runner.active_keys == 3
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert sorted(overlapped) == ["a", "b", "c"]
    assert rec.errors == []


async def test_a_failing_job_stops_its_lane_and_calls_on_error(rec: Recorder) -> None:
    ran: list[tuple[str, int]] = []
    boom = RuntimeError("boom")

    def job(key: str, i: int, fail: bool = False) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            await asyncio.sleep(0.005)
            ran.append((key, i))
            if fail:
                raise boom

        return run

    rec.submit("a", 0, job("a", 0))
    rec.submit("a", 1, job("a", 1, fail=True))
    rec.submit("a", 2, job("a", 2))
    rec.submit("a", 3, job("a", 3))
    for i in range(3):
        rec.submit("b", 10 + i, job("b", i))
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert [i for key, i in ran if key == "a"] == [0, 1]  # 2 and 3 never ran
    assert [i for key, i in ran if key == "b"] == [0, 1, 2]  # another key is unaffected
    assert rec.errors == [(1, boom)]
    assert (P0, 1) not in rec.done
    assert (P0, 2) not in rec.done
    assert sorted(rec.done) == [(P0, 0), (P0, 10), (P0, 11), (P0, 12)]
    assert rec.runner.active_keys == 0


async def test_drain_lets_running_jobs_finish_within_the_timeout(rec: Recorder) -> None:
    async def short() -> None:
        await asyncio.sleep(0.03)

    rec.submit("a", 0, short)
    await asyncio.sleep(0.005)
    abandoned = await rec.runner.drain(1.0)
    assert abandoned == []
    assert rec.done == [(P0, 0)]


async def test_drain_discards_queued_jobs_of_the_given_partitions(rec: Recorder) -> None:
    ran: list[tuple[Partition, int]] = []
    gate = asyncio.Event()

    def job(partition: Partition, offset: int, wait: bool = False) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            if wait:
                await gate.wait()
            ran.append((partition, offset))

        return run

    rec.submit("a", 0, job(P0, 0, wait=True), P0)
    rec.submit("a", 1, job(P0, 1), P0)
    rec.submit("a", 2, job(P0, 2), P0)
    rec.submit("b", 0, job(P1, 0, wait=True), P1)
    rec.submit("b", 1, job(P1, 1), P1)
    await asyncio.sleep(0.005)
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, gate.set)
    abandoned = await rec.runner.drain(1.0, {P0})
    assert abandoned == []
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert (P0, 0) in ran  # the running job finished
    assert (P0, 1) not in ran
    assert (P0, 2) not in ran
    assert [offset for partition, offset in ran if partition == P1] == [0, 1]  # other partitions untouched


async def test_drain_cancels_jobs_that_overrun_and_returns_them(rec: Recorder) -> None:
    cancelled: list[int] = []

    def slow(offset: int) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(offset)
                raise

        return run

    async def quick() -> None:
        await asyncio.sleep(0.01)

    rec.submit("a", 0, slow(0))
    rec.submit("b", 1, slow(1))
    rec.submit("c", 2, quick)
    rec.submit("a", 3, quick)  # queued behind the slow one: discarded, never run
    await asyncio.sleep(0.005)
    loop = asyncio.get_running_loop()
    began = loop.time()
    abandoned = await rec.runner.drain(0.1)
    elapsed = loop.time() - began
    assert sorted(job.offset for job in abandoned) == [0, 1]
    assert all(job.task is not None and job.task.cancelled() for job in abandoned)
    assert sorted(cancelled) == [0, 1]
    assert 0.09 <= elapsed < 1.0
    assert rec.done == [(P0, 2)]  # abandoned jobs are neither done nor errors: they stay uncommitted
    assert rec.errors == []
    await asyncio.wait_for(rec.runner.wait_idle(), 1)
    assert rec.runner.active_keys == 0


async def test_drain_only_cancels_overrunning_jobs_of_the_given_partitions(rec: Recorder) -> None:
    finished: list[Partition] = []

    def slow(partition: Partition, seconds: float) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            await asyncio.sleep(seconds)
            finished.append(partition)

        return run

    rec.submit("a", 0, slow(P0, 10), P0)
    rec.submit("b", 0, slow(P1, 0.15), P1)
    await asyncio.sleep(0.005)
    abandoned = await rec.runner.drain(0.05, {P0})
    assert [(job.partition, job.offset) for job in abandoned] == [(P0, 0)]
    await asyncio.wait_for(rec.runner.wait_idle(), 1)
    assert finished == [P1]
    assert rec.done == [(P1, 0)]


async def test_drain_with_nothing_running_returns_zero_at_once(rec: Recorder) -> None:
    assert await asyncio.wait_for(rec.runner.drain(5.0), 0.5) == []


async def test_close_cancels_everything() -> None:
    recorder = Recorder()
    cancelled: list[int] = []
    ran: list[int] = []

    def slow(offset: int) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            ran.append(offset)
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(offset)
                raise

        return run

    recorder.submit("a", 0, slow(0))
    recorder.submit("a", 1, slow(1))
    recorder.submit("b", 2, slow(2))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(recorder.runner.close(), 1)
    assert sorted(cancelled) == [0, 2]
    assert sorted(ran) == [0, 2]  # the queued job never started
    assert recorder.done == []
    assert recorder.errors == []
    assert recorder.runner.active_keys == 0
    await asyncio.wait_for(recorder.runner.wait_idle(), 0.5)


async def test_close_right_after_submit_leaves_the_runner_idle() -> None:
    recorder = Recorder()

    async def run() -> None:
        await asyncio.sleep(0)

    recorder.submit("a", 0, run)
    await recorder.runner.close()
    assert recorder.runner.active_keys == 0
    await asyncio.wait_for(recorder.runner.wait_idle(), 0.2)


async def test_wait_idle_returns_once_every_lane_is_empty(rec: Recorder) -> None:
    await asyncio.wait_for(rec.runner.wait_idle(), 0.1)  # idle from the start

    async def short() -> None:
        await asyncio.sleep(0.02)

    rec.submit("a", 0, short)
    waiter = asyncio.create_task(rec.runner.wait_idle())
    await asyncio.sleep(0.005)
    assert not waiter.done()
    await asyncio.wait_for(waiter, 1)
    assert rec.done == [(P0, 0)]

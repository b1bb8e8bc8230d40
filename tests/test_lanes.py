"""Commit points and key-ordered concurrency with inline decisions (highlight.lanes): asyncio, no I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
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


@dataclass
class Work:
    """A test job: decided inline when `inline`, else by running `run` in a task."""

    name: str
    inline: bool = False
    run: Callable[[], Coroutine[Any, Any, None]] | None = None
    fail_inline: BaseException | None = None


class Runner:
    """A KeyedRunner whose callbacks record what was decided, how, and what failed."""

    def __init__(self) -> None:
        self.decided: list[str] = []
        self.inline: list[str] = []
        self.errors: list[tuple[str, BaseException]] = []
        self.runner: KeyedRunner[Work] = KeyedRunner(answer=self._answer, run=self._run, on_error=self._on_error)

    def _answer(self, job: Job[Work]) -> bool:
        if job.work.fail_inline is not None:
            raise job.work.fail_inline
        if job.work.inline:
            self.decided.append(job.work.name)
            self.inline.append(job.work.name)
        return job.work.inline

    async def _run(self, job: Job[Work]) -> None:
        assert job.work.run is not None
        await job.work.run()
        self.decided.append(job.work.name)

    def _on_error(self, job: Job[Work], exc: BaseException) -> None:
        self.errors.append((job.work.name, exc))

    def submit(self, key: str, work: Work, partition: Partition = P0, offset: int = 0) -> None:
        self.runner.submit(key, Job(partition, offset, work))


@pytest.fixture
async def rec() -> Any:
    runner = Runner()
    yield runner
    await runner.runner.close()


def waiting(name: str, delay: float = 0.0, log: list[str] | None = None) -> Work:
    async def run() -> None:
        if log is not None:
            log.append(f"start {name}")
        await asyncio.sleep(delay)
        if log is not None:
            log.append(f"end {name}")

    return Work(name, run=run)


async def test_a_job_of_an_idle_key_that_the_state_answers_is_decided_inline_without_a_task(rec: Runner) -> None:
    tasks_before = len(asyncio.all_tasks())
    rec.submit("a", Work("a0", inline=True))
    # Decided during submit: no lane, no task, nothing to wait for.
    assert rec.decided == ["a0"]
    assert rec.runner.active_keys == 0
    assert len(asyncio.all_tasks()) == tasks_before


async def test_jobs_of_one_key_run_in_order_and_never_overlap(rec: Runner) -> None:
    log: list[str] = []
    running = 0

    def job(i: int, delay: float) -> Work:
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

        return Work(str(i), run=run)

    # Earlier jobs take longer: overlapping lanes would finish them out of order.
    for i, delay in enumerate([0.03, 0.02, 0.01, 0, 0]):
        rec.submit("channel-a", job(i, delay))
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert log == [f"{what} {i}" for i in range(5) for what in ("start", "end")]
    assert rec.decided == [str(i) for i in range(5)]
    assert rec.errors == []
    assert rec.runner.active_keys == 0


async def test_answerable_jobs_queued_behind_a_waiting_one_are_decided_after_it_in_order_without_tasks(
    rec: Runner,
) -> None:
    gate = asyncio.Event()

    async def call() -> None:
        await gate.wait()

    rec.submit("hot", Work("call", run=call))
    for i in range(600):  # more than one synchronous pass: the worker yields between passes
        rec.submit("hot", Work(f"dup-{i}", inline=True))
    rec.submit("other", Work("other", inline=True))
    await asyncio.sleep(0.01)
    # The state would answer every duplicate, but none may be decided before the call that precedes it.
    assert rec.decided == ["other"]
    tasks = len(asyncio.all_tasks())
    gate.set()
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert rec.decided == ["other", "call", *(f"dup-{i}" for i in range(600))]
    assert rec.inline == ["other", *(f"dup-{i}" for i in range(600))]
    assert len(asyncio.all_tasks()) <= tasks, "no task per duplicate"


async def test_jobs_submitted_while_the_lane_runs_join_its_queue_in_order(rec: Runner) -> None:
    gate = asyncio.Event()

    async def first() -> None:
        await gate.wait()

    rec.submit("k", Work("0", run=first))
    await asyncio.sleep(0.01)
    rec.submit("k", Work("1", inline=True))
    rec.submit("k", waiting("2"))
    rec.submit("k", Work("3", inline=True))
    assert rec.runner.active_keys == 1
    assert rec.decided == []
    gate.set()
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert rec.decided == ["0", "1", "2", "3"]


async def test_jobs_of_different_keys_overlap_in_time(rec: Runner) -> None:
    started: set[str] = set()
    both = asyncio.Event()
    overlapped: list[str] = []

    def job(key: str) -> Work:
        async def run() -> None:
            started.add(key)
            if len(started) == 3:
                both.set()
            await asyncio.wait_for(both.wait(), 1)  # only returns if all three run at once
            overlapped.append(key)

        return Work(key, run=run)

    for key in ("a", "b", "c"):
        rec.submit(key, job(key))
    assert rec.runner.active_keys == 3
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert sorted(overlapped) == ["a", "b", "c"]
    assert rec.errors == []


async def test_a_failing_job_stops_its_lane_and_calls_on_error(rec: Runner) -> None:
    ran: list[str] = []
    boom = RuntimeError("boom")

    def job(name: str, fail: bool = False) -> Work:
        async def run() -> None:
            await asyncio.sleep(0.005)
            ran.append(name)
            if fail:
                raise boom

        return Work(name, run=run)

    rec.submit("a", job("a0"))
    rec.submit("a", job("a1", fail=True))
    rec.submit("a", job("a2"))
    rec.submit("a", Work("a3", inline=True))
    for i in range(3):
        rec.submit("b", job(f"b{i}"))
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert [name for name in ran if name.startswith("a")] == ["a0", "a1"]  # a2 and a3 never ran
    assert [name for name in ran if name.startswith("b")] == ["b0", "b1", "b2"]  # another key is unaffected
    assert rec.errors == [("a1", boom)]
    assert "a3" not in rec.decided
    assert rec.runner.active_keys == 0


async def test_an_answer_that_raises_reports_on_error_and_leaves_the_key_usable(rec: Runner) -> None:
    boom = ValueError("unreadable")
    rec.submit("a", Work("a0", fail_inline=boom))
    assert rec.errors == [("a0", boom)]
    assert rec.runner.active_keys == 0
    rec.submit("a", Work("a1", inline=True))
    assert rec.decided == ["a1"]


async def test_an_answer_that_raises_in_a_lane_stops_the_lane(rec: Runner) -> None:
    gate = asyncio.Event()

    async def call() -> None:
        await gate.wait()

    boom = ValueError("unreadable")
    rec.submit("a", Work("a0", run=call))
    rec.submit("a", Work("a1", fail_inline=boom))
    rec.submit("a", Work("a2", inline=True))
    gate.set()
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert rec.decided == ["a0"]
    assert rec.errors == [("a1", boom)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans(), st.integers(0, 2)), max_size=40))
async def test_each_key_decides_its_jobs_once_in_submission_order_however_inline_and_waiting_jobs_mix(
    jobs: list[tuple[str, bool, int]],
) -> None:
    runner = Runner()
    try:
        for i, (key, inline, sleeps) in enumerate(jobs):

            async def run(sleeps: int = sleeps) -> None:
                for _ in range(sleeps):
                    await asyncio.sleep(0)

            runner.submit(key, Work(f"{key}{i}", inline=inline, run=run))
            if i % 7 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(runner.runner.wait_idle(), 2)
    finally:
        await runner.runner.close()
    assert sorted(runner.decided) == sorted(f"{key}{i}" for i, (key, _, _) in enumerate(jobs))
    for key in "abc":
        mine = [name for name in runner.decided if name.startswith(key)]
        assert mine == [f"{key}{i}" for i, (k, _, _) in enumerate(jobs) if k == key]


async def test_drain_lets_running_jobs_finish_within_the_timeout(rec: Runner) -> None:
    rec.submit("a", waiting("a0", 0.03))
    await asyncio.sleep(0.005)
    abandoned = await rec.runner.drain(1.0)
    assert abandoned == []
    assert rec.decided == ["a0"]


async def test_drain_discards_queued_jobs_of_the_given_partitions(rec: Runner) -> None:
    ran: list[str] = []
    gate = asyncio.Event()

    def job(name: str, wait: bool = False) -> Work:
        async def run() -> None:
            if wait:
                await gate.wait()
            ran.append(name)

        return Work(name, run=run)

    rec.submit("a", job("p0-0", wait=True), P0, 0)
    rec.submit("a", job("p0-1"), P0, 1)
    rec.submit("a", Work("p0-2", inline=True), P0, 2)
    rec.submit("b", job("p1-0", wait=True), P1, 0)
    rec.submit("b", job("p1-1"), P1, 1)
    await asyncio.sleep(0.005)
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, gate.set)
    abandoned = await rec.runner.drain(1.0, {P0})
    assert abandoned == []
    await asyncio.wait_for(rec.runner.wait_idle(), 2)
    assert "p0-0" in ran  # the running job finished
    assert "p0-1" not in ran
    assert "p0-2" not in rec.decided
    assert [name for name in ran if name.startswith("p1")] == ["p1-0", "p1-1"]  # other partitions untouched


async def test_drain_cancels_jobs_that_overrun_and_returns_them(rec: Runner) -> None:
    cancelled: list[str] = []

    def slow(name: str) -> Work:
        async def run() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        return Work(name, run=run)

    rec.submit("a", slow("a0"), offset=0)
    rec.submit("b", slow("b1"), offset=1)
    rec.submit("c", waiting("c2", 0.01), offset=2)
    rec.submit("a", waiting("a3"), offset=3)  # queued behind the slow one: discarded, never run
    await asyncio.sleep(0.005)
    loop = asyncio.get_running_loop()
    began = loop.time()
    abandoned = await rec.runner.drain(0.1)
    elapsed = loop.time() - began
    assert sorted(job.offset for job in abandoned) == [0, 1]
    assert all(job.task is not None and job.task.cancelled() for job in abandoned)
    assert sorted(cancelled) == ["a0", "b1"]
    assert 0.09 <= elapsed < 5, "the drain bound, not the 10 s the jobs would take"
    assert rec.decided == ["c2"]  # abandoned jobs are neither decided nor errors: they stay uncommitted
    assert rec.errors == []
    await asyncio.wait_for(rec.runner.wait_idle(), 1)
    assert rec.runner.active_keys == 0


async def test_drain_only_cancels_overrunning_jobs_of_the_given_partitions(rec: Runner) -> None:
    rec.submit("a", waiting("p0", 10), P0)
    rec.submit("b", waiting("p1", 0.15), P1)
    await asyncio.sleep(0.005)
    abandoned = await rec.runner.drain(0.05, {P0})
    assert [(job.partition, job.offset) for job in abandoned] == [(P0, 0)]
    await asyncio.wait_for(rec.runner.wait_idle(), 1)
    assert rec.decided == ["p1"]


async def test_drain_with_nothing_running_returns_at_once(rec: Runner) -> None:
    assert await asyncio.wait_for(rec.runner.drain(5.0), 0.5) == []


async def test_close_cancels_everything() -> None:
    runner = Runner()
    cancelled: list[str] = []
    ran: list[str] = []

    def slow(name: str) -> Work:
        async def run() -> None:
            ran.append(name)
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        return Work(name, run=run)

    runner.submit("a", slow("a0"))
    runner.submit("a", slow("a1"))
    runner.submit("b", slow("b2"))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(runner.runner.close(), 1)
    assert sorted(cancelled) == ["a0", "b2"]
    assert sorted(ran) == ["a0", "b2"]  # the queued job never started
    assert runner.decided == []
    assert runner.errors == []
    assert runner.runner.active_keys == 0
    await asyncio.wait_for(runner.runner.wait_idle(), 0.5)


async def test_close_right_after_submit_leaves_the_runner_idle() -> None:
    runner = Runner()
    runner.submit("a", waiting("a0"))
    await runner.runner.close()
    assert runner.runner.active_keys == 0
    await asyncio.wait_for(runner.runner.wait_idle(), 0.2)


async def test_wait_idle_returns_once_every_lane_is_empty(rec: Runner) -> None:
    await asyncio.wait_for(rec.runner.wait_idle(), 0.1)  # idle from the start
    rec.submit("a", waiting("a0", 0.02))
    waiter = asyncio.create_task(rec.runner.wait_idle())
    await asyncio.sleep(0.005)
    assert not waiter.done()
    await asyncio.wait_for(waiter, 1)
    assert rec.decided == ["a0"]

"""The account's limits as a budget, end to end: real broker, the simulator over HTTP, small limits."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from highlight.budget import DAILY_LIMIT, RUNNING_LIMIT
from highlight.kafka import home_partition
from highlight.recording import CST
from highlight.service import Service
from highlight.simulator import LiveSimulator
from tests.conftest import simulator_config
from tests.harness import (
    Names,
    by_event,
    create_topics,
    iso,
    moment,
    produce,
    results,
    running,
    settings_for,
    wait_until,
)

# Moments that find no room wait this long after they occurred, then are skipped: short, so tests are quick.
MAX_AGE = 6


def limits(running_limit: int = 0, daily: int = 0, *, share: float = 0.0, priority: int = 80) -> dict[str, Any]:
    return {
        "max_running_recordings": running_limit,
        "max_recordings_per_day": daily,
        "reserved_share": share,
        "reserved_priority": priority,
        "max_event_age_seconds": MAX_AGE,
    }


def statuses(got: dict[str, dict[str, Any]]) -> Counter[str]:
    return Counter(d["status"] if d["status"] != "skipped" else f"skipped:{d['reason']}" for d in got.values())


def channels_at(partition: int, partitions: int, count: int, prefix: str) -> list[str]:
    """Channel ids whose home is `partition`."""
    found = (f"{prefix}-{n}" for n in range(10_000))
    return [c for c in found if home_partition(c, partitions) == partition][:count]


async def test_thirty_new_channels_against_a_running_limit_of_ten_start_ten_skip_twenty_and_call_ten_times(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 2})
    settings = settings_for(bootstrap, names, simulator.url, **limits(10))
    async with running(settings) as service:
        await wait_until(lambda: service.ready, what="the service to be ready")
        # Two seconds old already: the twenty without room wait the four seconds left, not six.
        await produce(bootstrap, names.moments, [moment(f"n{i}", f"limit-{i}", age_seconds=2) for i in range(30)])
        got = by_event(await results(bootstrap, names.results, 30))
        assert service._admissions.waiting == 0
    assert statuses(got) == {"started": 10, "skipped:running_limit": 20}
    assert len(simulator.calls) == 10, "a moment with no room makes no call"
    skipped = [d for d in got.values() if d["status"] == "skipped"]
    assert all("api" not in d and "task_id" not in d for d in skipped)
    # Each waited for a running slot until it was too old to record, never longer.
    for document in skipped:
        occurred = datetime.fromisoformat(document["occurred_at"])
        processed = datetime.fromisoformat(document["processed_at"].replace("Z", "+00:00"))
        assert MAX_AGE - 0.5 <= (processed - occurred).total_seconds() <= MAX_AGE + 5


async def test_a_high_priority_moment_gets_the_reserve_when_others_are_refused(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    # 10 running, the last 20% (2) kept for priority 80 and above.
    settings = settings_for(bootstrap, names, simulator.url, **limits(10, share=0.2, priority=80))
    async with running(settings) as service:
        await wait_until(lambda: service.ready, what="the service to be ready")
        normal = [moment(f"low{i}", f"prio-{i}", priority=50, age_seconds=2) for i in range(10)]
        await produce(bootstrap, names.moments, normal)
        await wait_until(lambda: len(simulator.calls) == 8, what="the normal share to fill")
        await wait_until(lambda: service._admissions.waiting == 2, what="two normal moments to be refused")
        await produce(bootstrap, names.moments, [moment("high", "prio-high", priority=90)])
        got = by_event(await results(bootstrap, names.results, 11))
    assert got["high"]["status"] == "started", "the reserve went to the high-priority moment"
    assert statuses(got) == {"started": 9, "skipped:running_limit": 2}
    assert {e for e, d in got.items() if d["status"] == "skipped"} <= {f"low{i}" for i in range(10)}
    assert len(simulator.calls) == 9


class ShiftedClock:
    """Wall time moved by a settable offset: the service, its state and the simulator share it."""

    def __init__(self, to: datetime) -> None:
        self.offset = to - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def unix(self) -> float:
        return self.now().timestamp()


@contextlib.asynccontextmanager
async def service_with_clock(settings: Any, clock: Callable[[], datetime]) -> AsyncIterator[Service]:
    async with Service(settings, clock=clock) as service:
        task = asyncio.create_task(service.run())
        try:
            yield service
        finally:
            service.request_stop()
            await task


async def test_the_daily_limit_resets_at_midnight_in_china(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    clock = ShiftedClock(datetime(2026, 11, 22, 23, 59, 40, tzinfo=CST))
    async with LiveSimulator(simulator_config(seed=3), clock=clock.unix) as simulator:
        settings = settings_for(bootstrap, names, simulator.url, **limits(0, 2))
        async with service_with_clock(settings, clock.now) as service:
            await wait_until(lambda: service.ready, what="the service to be ready")
            late = [
                {"event_id": f"late{i}", "channel_id": f"day-{i}", "occurred_at": iso(clock.now())} for i in range(3)
            ]
            await produce(bootstrap, names.moments, late)
            first = by_event(await results(bootstrap, names.results, 3))
            assert statuses(first) == {"started": 2, "skipped:daily_limit": 1}
            # The day has no room and ends after the moment is too old to record: answered at once, no wait.
            assert service._admissions.waiting == 0

            clock.offset += timedelta(seconds=30)  # 00:00:10 the next day in China
            assert clock.now().astimezone(CST).strftime("%H:%M") == "00:00"
            (skipped,) = [m for m in late if first[m["event_id"]]["status"] == "skipped"]
            fresh = [
                {"event_id": f"new{i}", "channel_id": f"day-new-{i}", "occurred_at": iso(clock.now())} for i in range(2)
            ]
            # The skipped moment again (a redelivery: same event), then two new ones.
            await produce(bootstrap, names.moments, [skipped, *fresh])
            got = by_event(await results(bootstrap, names.results, 6))
    assert got[skipped["event_id"]] == first[skipped["event_id"]] | {
        "processed_at": got[skipped["event_id"]]["processed_at"]
    }
    assert {got[f"new{i}"]["status"] for i in range(2)} == {"started"}, "a new day, a new count"
    assert len(simulator.calls) == 4


async def test_the_apis_own_limit_answer_gives_skipped_and_fills_the_share(
    bootstrap: str, names: Names, simulator: LiveSimulator, api: str
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    # The account is fuller than highlight's budget knows (someone else records on it).
    simulator.set_config(max_running=1)
    settings = settings_for(bootstrap, names, simulator.url_for(api), live_api=api, live_max_attempts=2, **limits(100))
    expected_code = {
        "live_tape_start": "1206",
        "create_record": "4400",
        "create_live_record": "LimitExceeded.MaximumRunningTask",
    }
    async with running(settings) as service:
        await wait_until(lambda: service.ready, what="the service to be ready")
        await produce(bootstrap, names.moments, [moment("first", "api-a")])
        await results(bootstrap, names.results, 1)
        await produce(bootstrap, names.moments, [moment("refused", "api-b")])
        refused = by_event(await results(bootstrap, names.results, 2))["refused"]
        # The share is now full until one of our recordings ends: no call for the next one.
        await produce(bootstrap, names.moments, [moment("held-back", "api-c", age_seconds=MAX_AGE - 2)])
        got = by_event(await results(bootstrap, names.results, 3))
    assert (refused["status"], refused["reason"], refused["error"]["code"]) == (
        "skipped",
        "running_limit",
        expected_code[api],
    )
    assert refused["api"] == api
    assert (got["held-back"]["status"], got["held-back"]["reason"]) == ("skipped", "running_limit")
    assert "api" not in got["held-back"], "skipped by the budget: no call"
    calls = Counter(call.channel_id for call in simulator.calls)
    # v2's 4400 may also mean a frequency limit: it is retried once before it counts as the limit.
    assert calls == {"api-a": 1, "api-b": 2 if api == "create_record" else 1}


async def test_counts_survive_a_rebalance_and_a_restart_because_they_come_from_the_state(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    partitions = 2
    await create_topics(bootstrap, {names.moments: partitions})
    settings = settings_for(bootstrap, names, simulator.url, **limits(4))
    on_0 = channels_at(0, partitions, 4, "keep")
    on_1 = channels_at(1, partitions, 4, "keep")

    def owned(service: Service) -> set[int]:
        return {p.partition for p in service._consumer.assignment() if p.topic == names.moments}

    async with running(settings) as first:
        await wait_until(lambda: first.ready and owned(first) == {0, 1}, what="the first instance")
        # 2 + 2: the whole account's limit, spent by one instance owning both partitions.
        await produce(bootstrap, names.moments, [moment(f"s{i}", c) for i, c in enumerate(on_0[:2] + on_1[:2])])
        assert statuses(by_event(await results(bootstrap, names.results, 4))) == {"started": 4}

        async with running(settings) as second:
            await wait_until(
                lambda: len(owned(first)) == len(owned(second)) == 1 and first.ready and second.ready,
                timeout=40,
                what="the rebalance",
            )
            for service in (first, second):
                usage = service._budget.usage(RUNNING_LIMIT, service._unix_clock())
                # Each owns one partition now: a share of 2, and the 2 recordings of that partition's state.
                assert (usage.in_use, usage.share) == (2, 2)
            await produce(bootstrap, names.moments, [moment("r0", on_0[2]), moment("r1", on_1[2])])
            after_rebalance = by_event(await results(bootstrap, names.results, 6))
        # Leave the group settled: a member leaving mid-rebalance can hold the next join on this broker.
        await wait_until(lambda: first.ready and owned(first) == {0, 1}, timeout=40, what="the first to settle")
    assert statuses({e: after_rebalance[e] for e in ("r0", "r1")}) == {"skipped:running_limit": 2}

    # Both stopped: a new instance knows only what the state topic holds.
    async with running(settings) as restarted:
        await wait_until(lambda: restarted.ready and owned(restarted) == {0, 1}, timeout=40, what="the restart")
        usage = restarted._budget.usage(RUNNING_LIMIT, restarted._unix_clock())
        assert (usage.in_use, usage.share) == (4, 4)
        daily = restarted._budget.usage(DAILY_LIMIT, restarted._unix_clock())
        assert daily.in_use == 4, "today's count survives too"
        await produce(bootstrap, names.moments, [moment("after-restart", on_1[3])])
        got = by_event(await results(bootstrap, names.results, 7))
    assert (got["after-restart"]["status"], got["after-restart"]["reason"]) == ("skipped", "running_limit")
    assert len(simulator.calls) == 4


@pytest.mark.parametrize(("mode", "calls"), [("window", 1), ("bucket", 2)])
async def test_window_mode_makes_one_recording_across_a_bucket_boundary(
    bootstrap: str, names: Names, simulator: LiveSimulator, mode: str, calls: int
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    bucket_seconds = 60
    now = datetime.now(UTC)
    boundary = datetime.fromtimestamp(now.timestamp() // bucket_seconds * bucket_seconds, UTC)
    before = moment("before", "edge") | {"occurred_at": iso(boundary - timedelta(seconds=5))}
    after = moment("after", "edge") | {"occurred_at": iso(boundary + timedelta(seconds=5))}
    settings = settings_for(bootstrap, names, simulator.url, dedup_mode=mode, bucket_seconds=bucket_seconds)
    await produce(bootstrap, names.moments, [before, after])
    async with running(settings):
        got = by_event(await results(bootstrap, names.results, 2))
    assert got["after"]["bucket"] == got["before"]["bucket"] + 1, "results carry the bucket in both modes"
    assert len(simulator.calls) == calls
    if mode == "window":
        assert (got["before"]["status"], got["after"]["status"]) == ("started", "duplicate")
        assert got["after"]["task_id"] == got["before"]["task_id"]
        assert got["after"]["started_by"] == "before"
    else:
        assert {d["status"] for d in got.values()} == {"started"}

"""Key-ordered concurrency: channels in parallel, one channel in order, bounded in-flight, shared rate limit."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

from highlight.service import Service
from highlight.simulator import LiveSimulator
from tests.harness import Names, by_event, create_topics, moment, produce, results, running, settings_for

HOT = 5  # one channel's moments, each its own key


async def test_one_channel_runs_in_order_while_other_channels_run_concurrently(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 2})
    # A whole second per call: "all other channels were in flight together" must survive a busy machine's stalls.
    simulator.set_config(latency_ms=(1000, 1000))
    # One-second buckets: every moment of the hot channel is its own key, so each one makes a call.
    settings = settings_for(bootstrap, names, simulator.url, bucket_seconds=1)
    now = datetime.now(UTC)
    hot = [
        moment(f"hot-{i}", "hot-chan") | {"occurred_at": (now - timedelta(seconds=30 - i)).isoformat()}
        for i in range(HOT)
    ]
    others = [moment(f"other-{i}", f"other-chan-{i}") for i in range(8)]
    await produce(bootstrap, names.moments, [*hot, *others])
    async with running(settings):
        got = by_event(await results(bootstrap, names.results, HOT + 8))
    assert all(d["status"] == "started" for d in got.values())

    hot_calls = simulator.calls_for("hot-chan")
    order = [c.query["Param.s.start_time"] for c in hot_calls]
    assert order == sorted(order)
    assert [got[f"hot-{i}"]["task_id"] for i in range(HOT)] == [
        str(t.task_id) for t in simulator.tasks if t.channel_id == "hot-chan"
    ], "the hot channel's moments were called in their Kafka order"
    gaps = [b.received_monotonic - a.received_monotonic for a, b in itertools.pairwise(hot_calls)]
    assert min(gaps) >= 0.99, f"a hot-channel call started before the previous one was answered: {gaps}"

    other_arrivals = sorted(c.received_monotonic for c in simulator.calls if c.channel_id != "hot-chan")
    assert other_arrivals[-1] - other_arrivals[0] < 1.0, "other channels' calls were all in flight together"


async def test_in_flight_never_exceeds_the_bound_and_the_consumer_pauses(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 3})
    simulator.set_config(latency_ms=(150, 250))
    settings = settings_for(bootstrap, names, simulator.url, max_in_flight=5)
    await produce(bootstrap, names.moments, [moment(f"b{i}", f"bound-chan-{i}") for i in range(60)])
    peak = 0
    paused_seen = False

    async def watch(service: Service) -> None:
        nonlocal peak, paused_seen
        while True:
            # Being decided: taken in and not answered (an answer awaiting its acknowledgement holds no slot).
            assert service._outbox is not None
            peak = max(peak, service._member.tracker.in_flight() - service._outbox.outstanding())
            paused_seen |= service._intake.everything_paused
            await asyncio.sleep(0.002)

    async with running(settings) as service:
        watcher = asyncio.create_task(watch(service))
        try:
            await results(bootstrap, names.results, 60)
        finally:
            watcher.cancel()
    concurrent = _max_overlap(simulator)
    assert 0 < peak <= 5
    assert concurrent <= 5
    assert paused_seen, "reaching the bound paused the partitions"
    assert len(simulator.tasks) == 60


def _max_overlap(simulator: LiveSimulator) -> int:
    """Most calls the simulator held at once (each held at least its minimum latency)."""
    arrivals = sorted(c.received_monotonic for c in simulator.calls)
    return max(sum(1 for b in arrivals if a <= b < a + 0.15) for a in arrivals)


async def test_calls_share_one_rate_limit_and_limited_moments_wait_instead_of_failing(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 2})
    settings = settings_for(bootstrap, names, simulator.url, live_max_rps=5)
    await produce(bootstrap, names.moments, [moment(f"r{i}", f"rate-chan-{i}") for i in range(20)])
    async with running(settings):
        got = await results(bootstrap, names.results, 20)
    assert {d["status"] for d in got} == {"started"}
    arrivals = sorted(c.received_monotonic for c in simulator.calls)
    # A bucket of 5 tokens refilled at 5/s: 20 calls need at least 3 s, and no second holds more than ~10.
    assert arrivals[-1] - arrivals[0] >= 2.8
    assert max(sum(1 for b in arrivals if a <= b < a + 1.0) for a in arrivals) <= 10

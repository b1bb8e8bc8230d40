"""Several instances in one group: re-keying by channel, drain-then-commit on rebalance, static membership, and
recording files reaching the instance that holds their channel's state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson

from highlight.kafka import home_partition
from highlight.service import Service
from highlight.simulator import LiveSimulator
from tests.conftest import simulator_config
from tests.harness import (
    CALLBACK_KEY,
    Names,
    by_event,
    clips,
    create_topics,
    moment,
    produce,
    read_all,
    read_topic,
    receiver_settings_for,
    receiving,
    results,
    running,
    settings_for,
    wait_until,
)


@contextlib.asynccontextmanager
async def group_of(*services: contextlib.AbstractAsyncContextManager[Service]) -> AsyncIterator[list[Service]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(s) for s in services]


def owner(services: list[Service], topic: str, partition: int) -> Service:
    (found,) = [s for s in services if (topic, partition) in s._consumer.assignment()]
    return found


async def settled(services: list[Service], names: Names, partitions: int) -> None:
    """Every input partition (moments, repartition, callbacks) owned by exactly one of `services`, all restored."""

    def done() -> bool:
        owned = [tp for s in services for tp in s._consumer.assignment()]
        return len(owned) == len(set(owned)) == 3 * partitions and all(s.ready for s in services)

    await wait_until(done, timeout=40, what="the group to settle")


async def test_null_and_wrongly_keyed_moments_dedup_with_correctly_keyed_ones_across_instances(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    partitions = 4
    await create_topics(bootstrap, {names.moments: partitions})
    settings = settings_for(bootstrap, names, simulator.url)
    async with group_of(running(settings), running(settings)) as services:
        await settled(services, names, partitions)
        channel = next(f"chan-{i}" for i in range(100) if home_partition(f"chan-{i}", partitions) == 0)
        home_owner = owner(services, names.moments, 0)
        elsewhere = next(p for p in range(partitions) if owner(services, names.moments, p) is not home_owner)
        keyed = moment("keyed-1", channel)
        same_bucket = {"occurred_at": keyed["occurred_at"]}
        await produce(bootstrap, names.moments, [keyed])
        stray = moment("null-1", channel) | same_bucket
        wrong = moment("wrong-1", channel) | same_bucket
        await produce(bootstrap, names.moments, [stray], key=None, partition=elsewhere)
        await produce(bootstrap, names.moments, [wrong], key=b"not-the-channel", partition=0)
        got = by_event(await results(bootstrap, names.results, 3))
    statuses = sorted(d["status"] for d in got.values())
    assert statuses == ["duplicate", "duplicate", "started"]
    assert len({d["task_id"] for d in got.values()}) == 1
    assert len(simulator.calls_for(channel)) == 1
    forwarded = await read_topic(bootstrap, names.repartition, 2)
    assert sorted(r.value for r in forwarded) == sorted(orjson.dumps(m) for m in (stray, wrong)), (
        "both stray moments went through the repartition topic, bytes untouched"
    )
    assert {r.key for r in forwarded} == {channel.encode()}
    assert {r.partition for r in forwarded} == {0}, "to the channel's home partition"


async def test_a_rebalance_drains_in_flight_calls_before_committing_and_handing_over(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    partitions = 2
    await create_topics(bootstrap, {names.moments: partitions})
    # A drain writes its calls' outcomes only while the lease (half a session) covers them, and heartbeats stop
    # during a rebalance: a call started just before the rebalance signal, after a proof up to a quarter session
    # old, must end within the other quarter (3 s here). Each call takes 2 s, leaving a whole second for a busy
    # machine's stalls; with the suite's 6 s session it was 2.5 s against 1.5 s, and failed under load.
    simulator.set_config(latency_ms=(2000, 2000))
    settings = settings_for(bootstrap, names, simulator.url, kafka_session_timeout_ms=12000)
    channels = [f"drain-{i}" for i in range(6)]
    async with running(settings) as first:
        await wait_until(lambda: first.ready, timeout=30, what="the first member")
        await produce(bootstrap, names.moments, [moment(f"d{i}", c) for i, c in enumerate(channels)])
        await wait_until(lambda: len(simulator.calls) == len(channels), what="all calls in flight")
        # A second member joins while every call is still in flight: the first must finish them, commit,
        # and only then give partitions away. Otherwise the new owner would see intents and answer in_doubt.
        async with running(settings) as second:
            await settled([first, second], names, partitions)
            got = by_event(await results(bootstrap, names.results, len(channels)))
            await asyncio.sleep(1)
    assert {d["status"] for d in got.values()} == {"started"}
    assert len(simulator.calls) == len(channels), "nothing was called twice"
    assert len(await read_all(bootstrap, names.results)) == len(channels)


async def test_static_membership_joins_with_the_group_instance_id(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    settings = settings_for(bootstrap, names, simulator.url, group_instance_id="recorder-0")
    await produce(bootstrap, names.moments, [moment("s1", "static-chan")])
    async with running(settings) as service:
        (result,) = await results(bootstrap, names.results, 1)
        assert service._consumer._consumer._group_instance_id == "recorder-0"
    assert result["status"] == "started"


async def test_each_recording_file_reaches_the_instance_that_owns_its_channels_state(
    bootstrap: str, names: Names
) -> None:
    partitions = 4
    await create_topics(bootstrap, {names.moments: partitions})
    channels = [
        next(f"own-{p}-{i}" for i in range(200) if home_partition(f"own-{p}-{i}", partitions) == p) for p in range(4)
    ]
    async with receiving(receiver_settings_for(bootstrap, names)) as receiver:
        config = simulator_config(callback_url=receiver.url, callback_key=CALLBACK_KEY, time_scale=300)
        async with LiveSimulator(config) as sim:
            settings = settings_for(bootstrap, names, sim.url)
            async with group_of(running(settings), running(settings)) as services:
                await settled(services, names, partitions)
                await produce(bootstrap, names.moments, [moment(f"own-{c}", c) for c in channels])
                found = await clips(bootstrap, names.clips, len(channels))
                made = [
                    s.metrics.registry.get_sample_value("highlight_clips_total", {"matched_by": "task_id"})
                    for s in services
                ]
                owned = [
                    sum(
                        1
                        for c in channels
                        if (names.callbacks, home_partition(c, partitions)) in s._consumer.assignment()
                    )
                    for s in services
                ]
    assert sorted(c["channel_id"] for c in found) == sorted(channels), "one clip per recording"
    assert made == owned, "each instance clipped exactly the files of the channels whose state it holds"
    assert all(owned), "both instances own some of the channels"
    assert {c["started_by"] for c in found} == {f"own-{c}" for c in channels}

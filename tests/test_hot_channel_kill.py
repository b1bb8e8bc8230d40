"""A flood on one channel while the instances that own it are killed with SIGKILL, one after the other, and
started again: every moment is answered, no (channel, bucket) is sent to the API twice, and the flood's key
has one recording (or is in_doubt if its one call was cut off)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from highlight.moment import bucket_of, parse_rfc3339
from highlight.simulator import LiveSimulator
from tests.harness import Names, create_topics, moment, produce, service_env, wait_until
from tests.multiprocess import all_answered, processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PARTITIONS = 6
HOT = "flood-chan"
BURSTS = 16
HOT_PER_BURST = 150
UNIQUE_PER_BURST = 10


def answered_hot(log: Path, since: int) -> bool:
    """Whether the instance logging to `log` answered a moment of the hot channel after byte `since`."""
    with log.open("rb") as text:
        text.seek(since)
        return any(b'"moment_' in line and f'"channel_id":"{HOT}"'.encode() in line for line in text)


async def test_a_flood_on_one_channel_survives_its_owners_being_killed_in_turn(
    bootstrap: str, names: Names, simulator: LiveSimulator, tmp_path: Path
) -> None:
    await create_topics(bootstrap, {names.moments: PARTITIONS})
    simulator.set_config(latency_ms=(50, 150), max_running=10_000)
    env = service_env(bootstrap, names, simulator.url, max_in_flight=64)
    first = moment("hot-0", HOT)
    same_bucket = {"occurred_at": first["occurred_at"]}
    bursts: list[list[dict[str, Any]]] = []
    for b in range(BURSTS):
        burst = [moment(f"hot-{b}-{i}", HOT) | same_bucket for i in range(HOT_PER_BURST)]
        burst += [moment(f"u-{b}-{i}", f"calm-{b}-{i}") for i in range(UNIQUE_PER_BURST)]
        bursts.append(burst)
    bursts[0].insert(0, first)
    expected = {m["event_id"] for burst in bursts for m in burst}

    async with processes(tmp_path) as instances:
        live = {f"instance-{n}": instances.spawn(env, f"instance-{n}") for n in range(3)}

        async def flood() -> None:
            for burst in bursts:
                await produce(bootstrap, names.moments, burst)
                await asyncio.sleep(0.4)

        flooding = asyncio.create_task(flood())
        killed: list[str] = []
        marks = dict.fromkeys(live, 0)
        for _ in range(2):
            # Kill whichever live instance is answering the flood right now: the hot channel's owner.
            alive = [name for name in live if name not in killed]
            await wait_until(
                lambda alive=alive, marks=marks: any(answered_hot(instances.log_path(n), marks[n]) for n in alive),
                timeout=60,
                what="an instance answering the flood",
            )
            owner = next(n for n in alive if answered_hot(instances.log_path(n), marks[n]))
            await instances.kill(live[owner])
            killed.append(owner)
            marks = {n: instances.log_path(n).stat().st_size for n in live}
        for name in killed:
            instances.spawn(env, f"{name}-restarted")
        await flooding
        got = await all_answered(bootstrap, names, expected, timeout=120)

    calls: dict[tuple[str, int], int] = defaultdict(int)
    occurred = {m["channel_id"]: m["occurred_at"] for burst in bursts for m in burst}
    for call in simulator.calls:
        channel = call.query["Param.s.channel_id"]
        calls[(channel, bucket_of(parse_rfc3339(occurred[channel]), 300))] += 1
    twice = {key: n for key, n in calls.items() if n > 1}
    assert not twice, f"keys sent to the API more than once: {twice}"

    hot = [d for d in got.values() if d["channel_id"] == HOT]
    assert len(hot) == BURSTS * HOT_PER_BURST + 1
    statuses = {d["status"] for d in hot}
    if statuses != {"in_doubt"}:
        # The flood's one call was recorded: one recording, and every answer names it.
        assert statuses == {"started", "duplicate"}, statuses
        assert [d["status"] for d in hot].count("started") == 1
        assert len({d["task_id"] for d in hot}) == 1
        assert {d["task_id"] for d in hot} == {str(t.task_id) for t in simulator.tasks if t.channel_id == HOT}

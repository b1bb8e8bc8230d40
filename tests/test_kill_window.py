"""`window` dedup mode under kill -9: two `highlight run` processes, one killed mid-stream and started again.

Every channel's moments lie within one recording's cover, so window mode owes each channel at most one call.
Afterwards every moment has a result, no channel was called twice, and a channel whose call was cut off is
`in_doubt` for every moment the cut-off recording covers.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from highlight.simulator import LiveSimulator
from tests.harness import Names, create_topics, iso, moment, produce, service_env, wait_until
from tests.multiprocess import all_answered, processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CHANNELS = 240
LATER_MOMENTS = 120


async def test_killing_an_instance_in_window_mode_never_calls_a_channel_twice(
    bootstrap: str, names: Names, simulator: LiveSimulator, tmp_path: Path
) -> None:
    await create_topics(bootstrap, {names.moments: 4})
    # Slow enough answers that the kill lands mid-call; quotas lifted, they are not under test here.
    simulator.set_config(latency_ms=(200, 300), max_running=10_000)
    env = service_env(bootstrap, names, simulator.url, max_in_flight=48, dedup_mode="window")
    rng = random.Random(15)

    firsts = [moment(f"m{i}", f"win-{i}") for i in range(CHANNELS)]
    # Later moments of a channel, up to 100 s after its first (some still in the future): whichever of a
    # channel's moments is decided first, the recording it starts covers the others by more than a minute.
    later = []
    for number, first in enumerate(rng.choices(firsts, k=LATER_MOMENTS)):
        occurred = datetime.fromisoformat(first["occurred_at"]) + timedelta(seconds=rng.uniform(0, 100))
        later.append(moment(f"later{number}", first["channel_id"]) | {"occurred_at": iso(occurred)})
    stream = firsts + later
    rng.shuffle(stream)

    async with processes(tmp_path) as instances:
        victim = instances.spawn(env, "instance-0")
        instances.spawn(env, "instance-1")
        bursts = [stream[i : i + 40] for i in range(0, len(stream), 40)]
        for number, burst in enumerate(bursts):
            await produce(bootstrap, names.moments, burst)
            if number == 3:
                # Only a member that is really working makes this test mean anything.
                await wait_until(lambda: "moment_recorded" in instances.log("instance-0"), what="instance 0 working")
                await instances.kill(victim)
                instances.spawn(env, "instance-0-restarted")
            await asyncio.sleep(0.4)
        got = await all_answered(bootstrap, names, {m["event_id"] for m in stream}, timeout=120)

    calls = Counter(call.channel_id for call in simulator.calls)
    twice = {channel: n for channel, n in calls.items() if n > 1}
    assert not twice, f"channels called more than once: {twice}"
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for document in got.values():
        by_channel[document["channel_id"]].append(document)
    tasks = {task.channel_id: str(task.task_id) for task in simulator.tasks}
    assert len(by_channel) == CHANNELS
    for channel, documents in by_channel.items():
        statuses = Counter(d["status"] for d in documents)
        if "in_doubt" in statuses:
            # Cut off by the kill after the intent was written: every moment it covers is in doubt.
            assert set(statuses) == {"in_doubt"}, (channel, statuses)
            continue
        assert set(statuses) <= {"started", "duplicate"}, (channel, statuses)
        assert statuses["started"] == 1, (channel, statuses)
        assert calls[channel] == 1, channel
        assert {d["task_id"] for d in documents} == {tasks[channel]}, channel

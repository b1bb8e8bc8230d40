"""Three `highlight run` processes in one group; two are killed with SIGKILL mid-stream and started again.

Afterwards every valid moment has a result, no (channel, bucket) was sent to the API twice, and every key whose
call was cut off is `in_doubt`.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from highlight.simulator import LiveSimulator
from tests.harness import Names, create_topics, moment, produce, service_env, wait_until
from tests.multiprocess import all_answered, assert_no_key_called_twice, processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

UNIQUE_KEYS = 650
DUPLICATES = 150


async def test_killing_instances_mid_stream_loses_no_moment_and_calls_no_key_twice(
    bootstrap: str, names: Names, simulator: LiveSimulator, tmp_path: Path
) -> None:
    partitions = 6
    await create_topics(bootstrap, {names.moments: partitions})
    # More keys than the account's 400 running recordings: lift the quota, it is not under test here.
    simulator.set_config(latency_ms=(200, 300), max_running=10_000)
    env = service_env(bootstrap, names, simulator.url, max_in_flight=64)
    rng = random.Random(11)

    originals = [moment(f"m{i}", f"kill-chan-{i}") for i in range(UNIQUE_KEYS)]
    duplicates = [
        moment(f"dup{i}", source["channel_id"]) | {"occurred_at": source["occurred_at"]}
        for i, source in enumerate(rng.choices(originals, k=DUPLICATES))
    ]
    stream = originals + duplicates
    rng.shuffle(stream)

    async with processes(tmp_path) as instances:
        pids = {n: instances.spawn(env, f"instance-{n}") for n in range(3)}
        # Publish in bursts over several seconds so that the kills land mid-stream.
        bursts = [stream[i : i + 50] for i in range(0, len(stream), 50)]
        kills = {4: 0, 8: 1}
        for number, burst in enumerate(bursts):
            half = len(burst) // 2
            await produce(bootstrap, names.moments, burst[:half])
            await produce(bootstrap, names.moments, burst[half:], key=None)  # null keys: re-keyed internally
            if number in kills:
                # Only a member that is really working makes this test mean anything.
                victim = f"instance-{kills[number]}"
                await wait_until(lambda v=victim: "moment_recorded" in instances.log(v), what=f"{victim} to work")
                await instances.kill(pids[kills[number]])
            await asyncio.sleep(0.6)
        for n in kills.values():
            pids[n] = instances.spawn(env, f"instance-{n}-restarted")
        got = await all_answered(bootstrap, names, {m["event_id"] for m in stream}, timeout=150)

    answers = assert_no_key_called_twice(got.values(), simulator)
    assert len(answers) == UNIQUE_KEYS

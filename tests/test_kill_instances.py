"""Three `highlight run` processes in one group; two are killed with SIGKILL mid-stream and started again.

Afterwards every valid moment has a result, no (channel, bucket) was sent to the API twice, and every key whose
call was cut off is `in_doubt`.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from highlight.moment import bucket_of, parse_rfc3339
from highlight.simulator import LiveSimulator
from tests.harness import Names, by_event, create_topics, moment, produce, results, service_env, spawn, wait_until

pytestmark = pytest.mark.timeout(240)

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

    logs = tmp_path
    processes = {n: spawn(env, logs / f"instance-{n}.log") for n in range(3)}
    try:
        # Publish in bursts over several seconds so that the kills land mid-stream.
        bursts = [stream[i : i + 50] for i in range(0, len(stream), 50)]
        kills = {4: 0, 8: 1}
        for number, burst in enumerate(bursts):
            half = len(burst) // 2
            await produce(bootstrap, names.moments, burst[:half])
            await produce(bootstrap, names.moments, burst[half:], key=None)  # null keys: re-keyed internally
            if number in kills:
                # Only a member that is really working makes this test mean anything.
                log = logs / f"instance-{kills[number]}.log"
                await wait_until(lambda log=log: "moment_recorded" in log.read_text(), what=f"{log.name} to work")
                victim = processes[kills[number]]
                victim.send_signal(signal.SIGKILL)
                await asyncio.to_thread(victim.wait)
            await asyncio.sleep(0.6)
        for n in kills.values():
            processes[n] = spawn(env, logs / f"instance-{n}-restarted.log")

        expected = {m["event_id"] for m in stream}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 150
        while True:
            # Redelivery after a kill may answer a moment twice: wait for every event, not for a count.
            got = by_event(await results(bootstrap, names.results, len(stream), timeout=5))
            missing = expected - got.keys()
            if not missing or loop.time() > deadline:
                break
        assert not missing, f"{len(missing)} moments without a result, e.g. {sorted(missing)[:5]}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            # Off the event loop: the simulator serving their last calls runs on it.
            try:
                await asyncio.to_thread(process.wait, 40)
            except subprocess.TimeoutExpired:
                process.kill()

    keyed: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for document in got.values():
        keyed[(document["channel_id"], document["bucket"])].append(document)
    calls: dict[tuple[str, int], int] = defaultdict(int)
    for call in simulator.calls:
        start = call.query["Param.s.channel_id"]
        source = next(m for m in originals if m["channel_id"] == start)
        calls[(start, bucket_of(parse_rfc3339(source["occurred_at"]), 300))] += 1
    twice = {key: n for key, n in calls.items() if n > 1}
    assert not twice, f"keys sent to the API more than once: {twice}"

    tasks = {t.channel_id: str(t.task_id) for t in simulator.tasks}
    for key, documents_of_key in keyed.items():
        statuses = {d["status"] for d in documents_of_key}
        if "in_doubt" in statuses:
            # Cut off by a kill, before or after the request left: never called again.
            assert statuses == {"in_doubt"}, (key, statuses)
            continue
        # Otherwise the outcome was recorded: the one call, and the answer carries that call's task.
        assert statuses <= {"started", "duplicate"}, (key, statuses)
        assert calls[key] == 1, key
        assert {d["task_id"] for d in documents_of_key} == {tasks[key[0]]}, key
        assert [d["status"] for d in documents_of_key].count("started") == 1, key
    assert len(keyed) == UNIQUE_KEYS

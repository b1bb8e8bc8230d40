"""kill -9 of `highlight run` between recording-file notifications and their clips.

A recorder process starts recordings for two groups of channels; the first group's files arrive (two per
recording) and the recorder is killed as its first clip appears, mid-way. The second group's files are
announced to a receiver that only starts once the recorder is dead (the simulator retries, as Live does), so
they are stored while no recorder runs. A new recorder then gives every file its clip: from the state it
restores (the recordings and the files already clipped) and the uncommitted notifications. A clip published
just before the kill may come again: identical.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from highlight.broker import free_port
from highlight.callbacks.receiver import PATH
from highlight.simulator import LiveSimulator
from tests.conftest import simulator_config
from tests.harness import (
    CALLBACK_KEY,
    Names,
    clips,
    create_topics,
    moment,
    produce,
    receiver_settings_for,
    receiving,
    result_of,
    service_env,
    wait_until,
)
from tests.multiprocess import processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

GROUP = 8
# 300 s recordings end in 2 s.
TIME_SCALE = 150


async def test_every_file_gets_its_clip_across_a_kill_9_and_repeats_are_identical(
    bootstrap: str, names: Names, tmp_path: Path
) -> None:
    await create_topics(bootstrap, {names.moments: 2})
    early = [f"kill-clip-a{i}" for i in range(GROUP)]
    late = [f"kill-clip-b{i}" for i in range(GROUP)]
    late_port = free_port()
    late_url = f"http://127.0.0.1:{late_port}{PATH}"
    async with receiving(receiver_settings_for(bootstrap, names)) as receiver:
        config = simulator_config(
            callback_url=receiver.url, callback_key=CALLBACK_KEY, time_scale=TIME_SCALE, callback_split=True
        )
        async with LiveSimulator(config) as sim:
            env = service_env(bootstrap, names, sim.url)
            async with processes(tmp_path) as instances:
                first = instances.spawn(env, "first")
                results = await _record(bootstrap, names, early)
                # Announced to a receiver that is not there yet: retried (for up to 30 s) until it is.
                sim.set_config(callback_url=late_url, callback_retry_s=0.5, callback_retries=60)
                results |= await _record(bootstrap, names, late)
                await _first_clip(bootstrap, names)
                await instances.kill(first)
            files = 2 * len(results)
            async with receiving(receiver_settings_for(bootstrap, names, callback_port=late_port)):
                await wait_until(
                    lambda: len(sim.notifications) == files and all(n.acknowledged for n in sim.notifications),
                    timeout=60,
                    what="every file to be announced and stored",
                )
            notes = {note.file_id: note for note in sim.notifications}
            async with processes(tmp_path) as instances:
                second = instances.spawn(env, "second")
                found = await _clips_of_files(bootstrap, names, set(notes))
                await instances.terminate(second)

    copies: dict[str, set[bytes]] = defaultdict(set)
    for clip in found:
        copies[clip["file_id"]].add(orjson.dumps(clip))
    assert set(copies) == set(notes), "every file has its clip"
    assert all(len(versions) == 1 for versions in copies.values()), "a repeated clip is identical"
    for file_id, versions in copies.items():
        clip = orjson.loads(next(iter(versions)))
        result = results[clip["channel_id"]]
        assert (clip["started_by"], clip["task_id"]) == (result["event_id"], result["task_id"])
        assert clip["video_url"] == notes[file_id].body["video_url"]
    second_log = (tmp_path / "second.log").read_text()
    late_files = {note.file_id for note in notes.values() if note.stream_id in late}
    made_by_second = {
        line["file_id"]
        for line in (orjson.loads(text) for text in second_log.splitlines() if text.startswith("{"))
        if line.get("event") == "clip_published"
    }
    assert late_files <= made_by_second, "the new recorder clipped the files stored while none ran"


async def _record(bootstrap: str, names: Names, channels: list[str]) -> dict[str, dict[str, object]]:
    await produce(bootstrap, names.moments, [moment(f"m-{c}", c) for c in channels])
    results = {c: await result_of(bootstrap, names.results, f"m-{c}", timeout=60) for c in channels}
    assert {r["status"] for r in results.values()} == {"started"}
    return results


async def _first_clip(bootstrap: str, names: Names) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not await clips(bootstrap, names.clips, 0, timeout=0.1):
        assert loop.time() < deadline, "no clip from the first recorder"


async def _clips_of_files(bootstrap: str, names: Names, file_ids: set[str]) -> list[dict[str, object]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while True:
        found = await clips(bootstrap, names.clips, len(file_ids), timeout=2)
        if {c["file_id"] for c in found} >= file_ids or loop.time() > deadline:
            return found

"""End to end: moments, `started` results, the simulator's recording-file notifications through the receiver,
then clip events.

One simulator, receiver and recorder serve the whole module; each test uses its own channel. The simulator
announces a recording's files when it ends, 300 times sooner than real (a 5-minute recording in 1 s), with
the options each test sets before its moment starts the recording (a recording keeps the options of the
moment it was created).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from highlight.callbacks.receiver import Receiver
from highlight.kafka import home_partition
from highlight.recording import parse_cst
from highlight.service import Service
from highlight.simulator import LiveSimulator
from highlight.simulator.notifier import SimNotification
from tests.conftest import simulator_config
from tests.harness import (
    CALLBACK_KEY,
    Names,
    clips_of,
    create_topics,
    moment,
    produce,
    read_until,
    receiver_settings_for,
    receiving,
    result_of,
    running,
    settings_for,
    wait_until,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PARTITIONS = 2
TIME_SCALE = 300


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def topics(bootstrap: str) -> Names:
    names = Names.unique("clips")
    await create_topics(bootstrap, {names.moments: PARTITIONS})
    return names


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def receiver(bootstrap: str, topics: Names) -> AsyncIterator[Receiver]:
    async with receiving(receiver_settings_for(bootstrap, topics)) as running_receiver:
        yield running_receiver


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim(receiver: Receiver) -> AsyncIterator[LiveSimulator]:
    config = simulator_config(seed=5, callback_url=receiver.url, callback_key=CALLBACK_KEY, time_scale=TIME_SCALE)
    async with LiveSimulator(config) as simulator:
        yield simulator


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def service(bootstrap: str, topics: Names, sim: LiveSimulator) -> AsyncIterator[Service]:
    async with running(settings_for(bootstrap, topics, sim.url)) as svc:
        yield svc


@contextlib.contextmanager
def options(sim: LiveSimulator, **changes: object) -> Iterator[None]:
    """Simulator settings for the recordings created inside the block."""
    before = sim.config
    sim.set_config(**changes)
    try:
        yield
    finally:
        sim.config = before


async def record(bootstrap: str, topics: Names, event_id: str, channel: str) -> dict[str, Any]:
    """A moment that starts a recording, and its `started` result."""
    await produce(bootstrap, topics.moments, [moment(event_id, channel)])
    result = await result_of(bootstrap, topics.results, event_id)
    assert result["status"] == "started", result
    return result


def notes_of(sim: LiveSimulator, stream: str) -> list[SimNotification]:
    return [note for note in sim.notifications if note.stream_id == stream]


async def all_delivered(sim: LiveSimulator, stream: str, count: int, deliveries: int = 1) -> list[SimNotification]:
    """The stream's `count` notifications once each has been delivered (and acknowledged) `deliveries` times."""

    def done() -> bool:
        notes = notes_of(sim, stream)
        return len(notes) == count and all(n.deliveries.count(200) == deliveries for n in notes)

    await wait_until(done, what=f"{count} notifications of {stream} delivered {deliveries} times")
    return notes_of(sim, stream)


def counter(service: Service, name: str, **labels: str) -> float:
    return service.metrics.registry.get_sample_value(name, labels) or 0.0


def assert_clip_of(clip: dict[str, Any], result: dict[str, Any], note: SimNotification, matched_by: str) -> None:
    """The clip names the recording (as its result did) and carries the file (as the notification did)."""
    body = note.body
    assert clip["channel_id"] == result["channel_id"]
    assert (clip["bucket"], clip["bucket_seconds"]) == (result["bucket"], result["bucket_seconds"])
    assert clip["task_id"] == result["task_id"]
    assert clip["started_by"] == result["event_id"]
    assert clip["api"] == result["api"]
    assert (clip["start_time"], clip["end_time"]) == (result["start_time"], result["end_time"])
    assert clip["recording_status"] == "started"
    assert clip["matched_by"] == matched_by
    assert clip["file_id"] == body["file_id"]
    assert clip["video_url"] == body["video_url"]
    assert clip["file_format"] == body["file_format"]
    assert clip["file_size"] == int(body["file_size"])
    assert clip["duration_seconds"] == int(body["duration"])
    assert clip["file_start"] == _rfc3339(int(body["start_time"]))
    assert clip["file_end"] == _rfc3339(int(body["end_time"]))


def _rfc3339(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_recording_file_becomes_a_clip_matched_by_its_task_id(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service
) -> None:
    result = await record(bootstrap, topics, "task-1", "clip-task")
    (clip,) = await clips_of(bootstrap, topics.clips, "clip-task")
    (note,) = notes_of(sim, "clip-task")
    assert note.body["task_id"] == result["task_id"], "the simulator names the task that recorded the file"
    assert_clip_of(clip, result, note, "task_id")
    window = [parse_cst(result[k]).timestamp() for k in ("start_time", "end_time")]
    assert int(note.body["start_time"]) <= window[1]
    assert int(note.body["end_time"]) >= window[0]


async def test_a_file_without_task_id_is_matched_by_the_recording_window(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service
) -> None:
    with options(sim, callback_omit_task_id=True):
        result = await record(bootstrap, topics, "window-1", "clip-window")
    (clip,) = await clips_of(bootstrap, topics.clips, "clip-window")
    (note,) = notes_of(sim, "clip-window")
    assert "task_id" not in note.body
    assert_clip_of(clip, result, note, "window")


async def test_three_deliveries_of_one_notification_make_one_clip(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service
) -> None:
    repeats = counter(service, "highlight_clip_file_repeats_total")
    with options(sim, callback_duplicates=2):
        result = await record(bootstrap, topics, "dup-1", "clip-dup")
    (note,) = await all_delivered(sim, "clip-dup", 1, deliveries=3)
    every = await read_until(bootstrap, topics.callbacks, lambda rs: sum(r.key == b"clip-dup" for r in rs) >= 3)
    stored = [r for r in every if r.key == b"clip-dup"]
    assert len(stored) == 3, "every delivery was stored"
    assert {r.value for r in stored} == {orjson.dumps(note.body)}, "stored as sent, byte for byte"
    await wait_until(
        lambda: counter(service, "highlight_clip_file_repeats_total") >= repeats + 2, what="both repeats to be seen"
    )
    (clip,) = await clips_of(bootstrap, topics.clips, "clip-dup")
    assert_clip_of(clip, result, note, "task_id")


async def test_a_recording_in_two_files_makes_two_clips(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service
) -> None:
    with options(sim, callback_split=True, callback_omit_task_id=True):
        result = await record(bootstrap, topics, "split-1", "clip-split")
    found = await clips_of(bootstrap, topics.clips, "clip-split", 2)
    notes = await all_delivered(sim, "clip-split", 2)
    assert len(found) == 2
    by_file = {clip["file_id"]: clip for clip in found}
    assert set(by_file) == {note.body["file_id"] for note in notes}, "one clip per file"
    for note in notes:
        assert_clip_of(by_file[note.body["file_id"]], result, note, "window")


async def test_a_file_of_a_stream_nobody_asked_to_record_makes_no_clip(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service
) -> None:
    unmatched = counter(service, "highlight_clip_files_unmatched_total")
    with options(sim, callback_unrelated_streams=["nobody-asked"]):
        result = await record(bootstrap, topics, "ours-1", "clip-ours")
    (stranger,) = await all_delivered(sim, "nobody-asked", 1)
    await wait_until(
        lambda: counter(service, "highlight_clip_files_unmatched_total") > unmatched, what="the stranger's file"
    )
    (clip,) = await clips_of(bootstrap, topics.clips, "clip-ours")
    assert clip["started_by"] == result["event_id"]
    assert [c for c in await clips_of(bootstrap, topics.clips, "nobody-asked", 0) if c] == []
    body = orjson.dumps(stranger.body)
    stored = await read_until(bootstrap, topics.callbacks, lambda rs: body in {r.value for r in rs})
    assert body in {r.value for r in stored}, "it stays in the callbacks topic"
    assert {r.partition for r in stored if r.key == b"nobody-asked"} == {home_partition("nobody-asked", PARTITIONS)}


async def test_the_legacy_shape_with_numbers_as_strings_makes_the_same_clip(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service
) -> None:
    with options(sim, callback_legacy_numbers=True):
        result = await record(bootstrap, topics, "legacy-1", "clip-legacy")
    (clip,) = await clips_of(bootstrap, topics.clips, "clip-legacy")
    (note,) = notes_of(sim, "clip-legacy")
    assert isinstance(note.body["start_time"], str)
    assert isinstance(note.body["file_size"], str)
    assert isinstance(note.body["t"], str)
    assert_clip_of(clip, result, note, "task_id")
    assert isinstance(clip["file_size"], int)


async def test_a_file_of_an_in_doubt_recording_gets_a_clip_with_the_files_task_id(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service
) -> None:
    # The call is cut off after the recording was created: in_doubt. Its file proves the recording exists.
    sim.inject("reset", channel="clip-doubt")
    await produce(bootstrap, topics.moments, [moment("doubt-1", "clip-doubt")])
    result = await result_of(bootstrap, topics.results, "doubt-1")
    assert result["status"] == "in_doubt"
    (clip,) = await clips_of(bootstrap, topics.clips, "clip-doubt")
    (note,) = notes_of(sim, "clip-doubt")
    assert clip["recording_status"] == "in_doubt"
    assert clip["matched_by"] == "window"
    assert clip["task_id"] == note.body["task_id"] == str(sim.calls_for("clip-doubt")[0].task_id)
    assert clip["started_by"] == "doubt-1"
    assert (clip["start_time"], clip["end_time"]) == (result["start_time"], result["end_time"])
    assert clip["video_url"] == note.body["video_url"]


async def test_a_notification_sent_again_after_a_restart_finds_its_file_in_the_restored_state(
    bootstrap: str, sim: LiveSimulator, restart_names: Names
) -> None:
    names = restart_names
    await create_topics(bootstrap, {names.moments: PARTITIONS})
    settings = settings_for(bootstrap, names, sim.url)
    async with receiving(receiver_settings_for(bootstrap, names)) as own_receiver:
        with options(sim, callback_url=own_receiver.url):
            async with running(settings) as first:
                await record(bootstrap, names, "restart-1", "clip-restart")
                (clip,) = await clips_of(bootstrap, names.clips, "clip-restart")
                # Counted once the recording's state remembers the file, just after the clip is out.
                await wait_until(lambda: counter(first, "highlight_clips_total", matched_by="task_id") == 1)
        (note,) = await all_delivered(sim, "clip-restart", 1)
        # Live sends it again later (it missed our 200): a new record in the callbacks topic.
        async with aiohttp.ClientSession() as http, http.post(own_receiver.url, data=orjson.dumps(note.body)) as answer:
            assert answer.status == 200
        # A new group (tansu holds a re-join of the old one for its session timeout): it reads both deliveries.
        regrouped = settings_for(bootstrap, Names(**{**names.__dict__, "group": names.group + "-2"}), sim.url)
        async with running(regrouped) as second:
            await wait_until(
                lambda: counter(second, "highlight_clip_file_repeats_total") == 2, what="both deliveries as repeats"
            )
            assert counter(second, "highlight_clips_total", matched_by="task_id") == 0
    assert await clips_of(bootstrap, names.clips, "clip-restart") == [clip], "still one clip"


@pytest.fixture
def restart_names() -> Names:
    return Names.unique("clips-restart")


async def test_in_window_dedup_mode_a_recording_keyed_by_its_moment_gets_its_clip(
    bootstrap: str, sim: LiveSimulator, window_names: Names
) -> None:
    names = window_names
    await create_topics(bootstrap, {names.moments: PARTITIONS})
    async with receiving(receiver_settings_for(bootstrap, names)) as own_receiver:
        with options(sim, callback_url=own_receiver.url, callback_omit_task_id=True):
            async with running(settings_for(bootstrap, names, sim.url, dedup_mode="window")):
                result = await record(bootstrap, names, "window-mode-1", "clip-window-mode")
                (clip,) = await clips_of(bootstrap, names.clips, "clip-window-mode")
    (note,) = notes_of(sim, "clip-window-mode")
    assert_clip_of(clip, result, note, "window")


@pytest.fixture
def window_names() -> Names:
    return Names.unique("clips-window")

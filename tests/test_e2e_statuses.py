"""End to end on a real broker and the project's Live simulator: every status, the call's shape, clamps."""

from __future__ import annotations

from datetime import timedelta

import pytest

from highlight.simulator import LiveSimulator
from highlight.tape import parse_cst
from tests.harness import Names, by_event, create_topics, moment, produce, results, running, settings_for


async def test_each_status_is_published_once_per_moment(bootstrap: str, names: Names, simulator: LiveSimulator) -> None:
    await create_topics(bootstrap, {names.moments: 3})
    simulator.set_config(offline_channels=["offline-chan"])
    simulator.inject("hang", channel="hanging-chan")
    settings = settings_for(bootstrap, names, simulator.url, live_timeout_seconds=3.5)
    now = {"occurred_at": moment("", "")["occurred_at"]}  # one instant: moments meant to share a key do
    await produce(
        bootstrap,
        names.moments,
        [
            moment("start-1", "live-chan", attributes={"game": "cs2", "score": [1, 0]}) | now,
            moment("dup-1", "live-chan") | now,
            moment("fail-1", "offline-chan") | now,
            moment("old-1", "live-chan-2", age_seconds=3600),
            moment("doubt-1", "hanging-chan") | now,
            moment("doubt-2", "hanging-chan") | now,
        ],
    )
    async with running(settings):
        got = by_event(await results(bootstrap, names.results, 6))

    assert {e: d["status"] for e, d in got.items()} == {
        "start-1": "started",
        "dup-1": "duplicate",
        "fail-1": "failed",
        "old-1": "expired",
        "doubt-1": "in_doubt",
        "doubt-2": "in_doubt",
    }
    started = got["start-1"]
    task = next(t for t in simulator.tasks if t.channel_id == "live-chan")
    assert started["task_id"] == str(task.task_id), "task_id is the API's 64-bit id, exactly, as a string"
    assert (started["start_time"], started["end_time"]) == (task.start_time, task.end_time)
    assert started["attributes"] == {"game": "cs2", "score": [1, 0]}
    assert got["dup-1"]["task_id"] == started["task_id"]
    assert got["dup-1"]["started_by"] == "start-1"
    assert got["fail-1"]["error"]["code"] == "1301"
    assert "start_time" in got["fail-1"]
    assert "task_id" not in got["old-1"]
    assert "start_time" not in got["old-1"]
    assert got["doubt-1"]["error"]["code"] == "read_timeout"
    assert "start_time" in got["doubt-1"]
    # Exactly the calls that had to be made: the duplicate, the expired one and the second in-doubt one made none.
    assert sorted(c.channel_id or "" for c in simulator.calls) == ["hanging-chan", "live-chan", "offline-chan"]


async def test_the_call_is_a_real_time_get_with_documented_parameters(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    settings = settings_for(bootstrap, names, simulator.url)
    await produce(
        bootstrap,
        names.moments,
        [
            moment(
                "e1",
                "full-chan",
                file_format="mp4",
                record_type="video",
                domain="play.example.com",
                path="live",
                mix_stream=1,
            ),
            moment("e2", "bare-chan"),
        ],
    )
    async with running(settings):
        await results(bootstrap, names.results, 2)
    full = simulator.calls_for("full-chan")[0].query
    assert full["interface"] == "Live_Tape_Start"
    assert full["appid"] == "1234"
    assert full["Param.n.task_sub_type"] == "1"
    assert full["Param.s.file_format"] == "mp4"
    assert full["Param.s.record_type"] == "video"
    assert full["Param.s.domain"] == "play.example.com"
    assert full["Param.s.path"] == "live"
    assert full["Param.n.mix_stream"] == "1"
    bare = simulator.calls_for("bare-chan")[0].query
    assert not {k for k in bare if k.startswith("Param.") and k not in _REQUIRED}, "unset options are not sent"


_REQUIRED = {"Param.s.channel_id", "Param.s.start_time", "Param.s.end_time", "Param.n.task_sub_type"}


@pytest.mark.parametrize(
    ("requested", "expected"),
    [(60, 300), (7200, 1800), (900, 900), (None, 300)],
    ids=["60-becomes-300", "7200-becomes-1800", "900-stays", "default-record-seconds"],
)
async def test_recording_length_is_clamped_to_5_to_30_minutes(
    bootstrap: str, names: Names, simulator: LiveSimulator, requested: int | None, expected: int
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    settings = settings_for(bootstrap, names, simulator.url)
    fields = {} if requested is None else {"duration_seconds": requested}
    await produce(bootstrap, names.moments, [moment("e1", "clamp-chan", **fields)])
    async with running(settings):
        (result,) = await results(bootstrap, names.results, 1)
    call = simulator.calls_for("clamp-chan")[0].query
    length = parse_cst(call["Param.s.end_time"]) - parse_cst(call["Param.s.start_time"])
    assert length == timedelta(seconds=expected)
    assert (result["start_time"], result["end_time"]) == (call["Param.s.start_time"], call["Param.s.end_time"])

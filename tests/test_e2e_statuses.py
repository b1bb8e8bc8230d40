"""End to end on a real broker and the project's Live simulator: every status, the call's shape, clamps.

The status and clamp tests run once per recording API (the `api` fixture): only the request/response mapping
differs between them, so the pipeline must answer the same.
"""

from __future__ import annotations

from datetime import timedelta

from highlight.recording import parse_cst
from highlight.simulator import LiveSimulator
from tests.harness import NOT_LIVE, Names, by_event, create_topics, moment, produce, results, running, settings_for


async def test_each_status_is_published_once_per_moment(
    bootstrap: str, names: Names, simulator: LiveSimulator, api: str
) -> None:
    await create_topics(bootstrap, {names.moments: 3})
    simulator.set_config(offline_channels=["offline-chan"])
    simulator.inject("hang", channel="hanging-chan")
    settings = settings_for(bootstrap, names, simulator.url_for(api), live_api=api, live_timeout_seconds=3.5)
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
    assert got["fail-1"]["error"]["code"] == NOT_LIVE[api]
    assert {d["api"] for e, d in got.items() if e != "old-1"} == {api}, "results name the backend that called"
    assert "api" not in got["old-1"], "no call, no backend"
    assert "start_time" in got["fail-1"]
    assert "task_id" not in got["old-1"]
    assert "start_time" not in got["old-1"]
    assert got["doubt-1"]["error"]["code"] == "read_timeout"
    assert "start_time" in got["doubt-1"]
    # Exactly the calls that had to be made: the duplicate, the expired one and the second in-doubt one made none.
    assert sorted(c.channel_id or "" for c in simulator.calls) == ["hanging-chan", "live-chan", "offline-chan"]
    assert {c.api for c in simulator.calls} == {api}


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


CLAMPS = {"clamp-60": (60, 300), "clamp-7200": (7200, 1800), "clamp-900": (900, 900), "clamp-default": (None, 300)}


async def test_recording_length_is_clamped_to_5_to_30_minutes(
    bootstrap: str, names: Names, simulator: LiveSimulator, api: str
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    settings = settings_for(bootstrap, names, simulator.url_for(api), live_api=api)
    sent = [
        moment(channel, channel, **({} if requested is None else {"duration_seconds": requested}))
        for channel, (requested, _) in CLAMPS.items()
    ]
    await produce(bootstrap, names.moments, sent)
    async with running(settings):
        got = by_event(await results(bootstrap, names.results, len(CLAMPS)))
    for channel, (_, expected) in CLAMPS.items():
        (call,) = simulator.calls_for(channel)
        assert call.start_time is not None
        assert call.end_time is not None
        assert parse_cst(call.end_time) - parse_cst(call.start_time) == timedelta(seconds=expected), channel
        assert (got[channel]["start_time"], got[channel]["end_time"]) == (call.start_time, call.end_time)

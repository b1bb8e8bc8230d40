"""The simulator's Live callbacks: when a simulated recording ends, its files are announced over real HTTP to a
stand-in receiver, signed, retried as Live retries, in every shape the options ask for."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from highlight import signing
from highlight.recording import parse_cst
from highlight.simulator import LiveSimulator, SimulatorConfig, add_arguments, config_from_args
from highlight.simulator.notifier import NO_ANSWER
from tests.simulator.test_simulator import FORM, make_query, url_of

CALLBACK_KEY = "stand-in-callback-key"
# A 5-minute recording ends in 0.1 s.
FAST = 3000
FILE_FIELDS = {
    "appid", "app", "appname", "stream_id", "channel_id", "file_id", "record_file_id", "file_format", "task_id",
    "start_time", "end_time", "duration", "file_size", "video_url", "stream_param", "media_start_time",
    "record_temp_id", "t", "sign", "event_type",
}  # fmt: skip


@dataclass
class StandIn:
    """A receiver that records every delivery and answers with the statuses it is given (then 200)."""

    statuses: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(orjson.loads(await request.read()))
        self.arrivals.append(time.monotonic())
        self.content_types.append(request.content_type)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"code": 0 if status == 200 else status}, status=status)


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    receiver = StandIn()
    app = web.Application()
    app.router.add_post("/live/callback", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/live/callback"
    yield receiver
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def simulator(stand_in: StandIn, **changes: Any) -> LiveSimulator:
    config = SimulatorConfig(
        seed=3, callback_url=stand_in.url, callback_key=CALLBACK_KEY, time_scale=FAST, callback_retry_s=0.05
    )
    sim = LiveSimulator(config)
    sim.set_config(**changes)
    await sim.start()
    return sim


async def record(http: aiohttp.ClientSession, sim: LiveSimulator, channel: str = "cb-chan", **options: Any) -> int:
    """Start a recording; its task id."""
    async with http.get(url_of(sim, make_query(channel=channel, key=sim.config.key, **options))) as response:
        reply = orjson.loads(await response.read())
    assert reply["ret"] == 0, reply
    task_id: int = reply["output"]["task_id"]
    return task_id


async def deliveries(stand_in: StandIn, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(stand_in.received) < count:
        assert time.monotonic() < deadline, f"{len(stand_in.received)} deliveries, wanted {count}"
        await asyncio.sleep(0.01)
    return stand_in.received


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} in {timeout} s"
        await asyncio.sleep(0.01)


async def acknowledged(sim: LiveSimulator, count: int) -> None:
    """Until `count` notifications have their 200 recorded (the stand-in sees a body before its answer lands)."""
    await until(lambda: sum(note.acknowledged for note in sim.notifications) >= count, f"{count} acknowledged")


async def test_an_ended_recording_is_announced_with_every_documented_field_signed_with_the_callback_key(
    stand_in: StandIn, http: aiohttp.ClientSession
) -> None:
    sim = await simulator(stand_in)
    try:
        task_id = await record(http, sim, file_format="mp4")
        (body,) = await deliveries(stand_in, 1)
        await acknowledged(sim, 1)
    finally:
        await sim.stop()
    assert set(body) == FILE_FIELDS
    assert stand_in.content_types == ["application/json"]
    assert body["event_type"] == 100
    assert body["stream_id"] == body["channel_id"] == "cb-chan"
    assert body["task_id"] == str(task_id)
    assert body["sign"] == signing.sign(CALLBACK_KEY, body["t"])
    assert body["t"] >= time.time() + 500, "t is an expiry, about 10 minutes on"
    (task,) = sim.tasks
    start = parse_cst(task.start_time).timestamp()
    assert abs(body["start_time"] - start) <= 1
    assert body["end_time"] == int(task.effective_end)
    assert body["duration"] == body["end_time"] - body["start_time"]
    assert body["file_format"] == "mp4"
    assert body["video_url"].endswith(f"/{body['file_id']}/f0.mp4")
    assert body["record_temp_id"] == "", "an API task, not a template recording"
    (note,) = sim.notifications
    assert (note.deliveries, note.acknowledged, note.task_id) == ([200], True, task_id)


async def test_the_time_scale_ends_a_5_minute_recording_in_1_second_at_300(
    stand_in: StandIn, http: aiohttp.ClientSession
) -> None:
    sim = await simulator(stand_in, time_scale=300)
    try:
        started = time.monotonic()
        await record(http, sim)
        await deliveries(stand_in, 1, timeout=10)
        took = time.monotonic() - started
    finally:
        await sim.stop()
    assert 0.9 <= took < 8, f"announced after {took:.2f} s, not after 5 minutes"


async def test_a_notification_is_sent_again_every_interval_until_a_200_within_the_timeout(
    stand_in: StandIn, http: aiohttp.ClientSession
) -> None:
    stand_in.statuses = [503, 500, 401]
    sim = await simulator(stand_in, callback_retry_s=0.2)
    try:
        await record(http, sim)
        received = await deliveries(stand_in, 4)
        await acknowledged(sim, 1)
        await asyncio.sleep(0.3)  # time for a retry too many (0.2 s apart) to show
    finally:
        await sim.stop()
    assert len(stand_in.received) == 4, "not once more after the 200"
    assert all(body == received[0] for body in received), "the same notification, first t included"
    gaps = [b - a for a, b in zip(stand_in.arrivals, stand_in.arrivals[1:], strict=False)]
    assert all(gap >= 0.19 for gap in gaps), gaps
    assert sim.notifications[0].deliveries == [503, 500, 401, 200]


async def test_delivery_stops_after_the_retry_budget_and_a_slow_answer_counts_as_none(
    stand_in: StandIn, http: aiohttp.ClientSession
) -> None:
    stand_in.statuses = [503] * 10
    sim = await simulator(stand_in, callback_retries=2)
    try:
        await record(http, sim)
        await deliveries(stand_in, 3)
        await until(lambda: len(sim.notifications[0].deliveries) == 3, "third answer")
        await asyncio.sleep(0.3)  # time for a retry too many (0.05 s apart) to show
        assert len(stand_in.received) == 3, "one delivery and two retries"
        assert not sim.notifications[0].acknowledged
        stand_in.statuses, stand_in.delay_s = [], 0.5
        sim.set_config(callback_timeout_s=0.1, callback_retries=1)
        await record(http, sim, channel="slow-chan")
        await deliveries(stand_in, 5)
        (slow,) = [n for n in sim.notifications if n.stream_id == "slow-chan"]
        await until(lambda: len(slow.deliveries) == 2, "second slow delivery")
    finally:
        await sim.stop()
    assert slow.deliveries == [NO_ANSWER, NO_ANSWER]


async def test_options_duplicates_no_task_id_two_files_legacy_numbers_and_unrelated_streams(
    stand_in: StandIn, http: aiohttp.ClientSession
) -> None:
    sim = await simulator(
        stand_in,
        callback_duplicates=2,
        callback_omit_task_id=True,
        callback_split=True,
        callback_legacy_numbers=True,
        callback_unrelated_streams=["stranger-1"],
    )
    try:
        await record(http, sim)
        received = await deliveries(stand_in, 9)
    finally:
        await sim.stop()
    ours = [body for body in received if body["stream_id"] == "cb-chan"]
    strangers = [body for body in received if body["stream_id"] == "stranger-1"]
    assert len(ours) == 6, "each of our two files delivered three times"
    assert len(strangers) == 3, "and the stranger's file too"
    files = {body["file_id"]: body for body in ours}
    assert len(files) == 2, "two files"
    first, second = sorted(files.values(), key=lambda body: int(body["start_time"]))
    assert int(first["end_time"]) < int(second["start_time"]), "one after the other"
    for body in received:
        assert "task_id" not in body
        for name in ("t", "event_type", "start_time", "end_time", "duration", "file_size", "appid"):
            assert isinstance(body[name], str), (name, body[name])
            assert body[name].isdigit(), (name, body[name])
        assert body["sign"] == signing.sign(CALLBACK_KEY, body["t"])
    assert {n.task_id for n in sim.notifications if n.stream_id == "stranger-1"} == {None}


async def test_a_hung_call_still_records_and_is_announced(stand_in: StandIn, http: aiohttp.ClientSession) -> None:
    sim = await simulator(stand_in)
    try:
        sim.inject("reset", channel="cut-chan")
        # A POST: aiohttp would silently send a GET again after the reset.
        with pytest.raises(aiohttp.ClientError):
            await http.post(sim.url, data=make_query(channel="cut-chan", key=sim.config.key), headers=FORM)
        (body,) = await deliveries(stand_in, 1)
    finally:
        await sim.stop()
    assert body["task_id"] == str(sim.tasks[0].task_id), "the recording exists though its answer was lost"


async def test_no_callback_url_announces_nothing_and_stop_cancels_pending_announcements(
    stand_in: StandIn, http: aiohttp.ClientSession
) -> None:
    quiet = await simulator(stand_in, callback_url=None)
    try:
        await record(http, quiet)
    finally:
        await quiet.stop()
    slow = await simulator(stand_in, time_scale=1.0)
    await record(http, slow)
    started = time.monotonic()
    await slow.stop()
    await slow.stop()
    assert time.monotonic() - started < 5, "a recording 5 minutes from its end does not hold the stop"
    await asyncio.sleep(0.2)
    assert stand_in.received == []


async def test_the_control_routes_show_notifications_and_change_callback_settings(
    stand_in: StandIn, http: aiohttp.ClientSession
) -> None:
    sim = await simulator(stand_in, callback_url=None)
    try:
        base = sim.url.removesuffix("/common_access")
        change = {"callback_url": stand_in.url, "callback_split": True, "callback_unrelated_streams": ["x"]}
        async with http.post(f"{base}/_sim/config", json=change) as response:
            shown = await response.json()
        assert (shown["callback_url"], shown["callback_split"], shown["callback_unrelated_streams"]) == (
            stand_in.url,
            True,
            ["x"],
        )
        async with http.post(f"{base}/_sim/config", json={"time_scale": 0}) as response:
            assert response.status == 400
        task_id = await record(http, sim)
        await deliveries(stand_in, 3)
        await acknowledged(sim, 3)
        async with http.get(f"{base}/_sim/notifications") as response:
            listed = await response.json()
        async with http.post(f"{base}/_sim/reset") as response:
            assert response.status == 200
        assert sim.notifications == []
    finally:
        await sim.stop()
    assert len(listed) == 3
    assert {note["task_id"] for note in listed} == {str(task_id), None}
    assert all(note["acknowledged"] and note["deliveries"] == [200] for note in listed)


def test_the_simulate_live_flags_set_every_callback_option() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--callback-url", "http://127.0.0.1:8090/live/callback", "--callback-key", "ck", "--time-scale", "60",
            "--callback-retry-seconds", "1.5", "--callback-retries", "3", "--callback-timeout-seconds", "2",
            "--callback-delay-seconds", "30", "--callback-duplicates", "2", "--callback-omit-task-id",
            "--callback-split", "--callback-legacy-numbers", "--callback-unrelated", "a", "--callback-unrelated", "b",
        ]
    )  # fmt: skip
    config = config_from_args(args)
    assert config == SimulatorConfig(
        callback_url="http://127.0.0.1:8090/live/callback",
        callback_key="ck",
        time_scale=60.0,
        callback_retry_s=1.5,
        callback_retries=3,
        callback_timeout_s=2.0,
        callback_delay_s=30.0,
        callback_duplicates=2,
        callback_omit_task_id=True,
        callback_split=True,
        callback_legacy_numbers=True,
        callback_unrelated_streams=frozenset({"a", "b"}),
    )
    assert SimulatorConfig().callback_interval_s == 60.0, "Live's minute"
    assert SimulatorConfig(time_scale=60).callback_interval_s == 1.0, "scaled for development"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"callback_url": "ftp://x"}, "callback_url"),
        ({"time_scale": -1}, "time_scale"),
        ({"callback_retries": -1}, "callback_retries"),
        ({"callback_timeout_s": 0}, "callback_timeout_s"),
        ({"callback_key": ""}, "callback_key"),
        ({"callback_unrelated_streams": "x"}, "callback_unrelated_streams"),
    ],
)
def test_bad_callback_settings_are_refused(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LiveSimulator().set_config(**changes)

"""The Live_Tape_Start simulator, hit over real HTTP with URLs built by `highlight.apis.live_tape_start`.

Both sides are the project's own code, so every test here cross-checks the client protocol module against the
simulator's reading of the documents.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode

import aiohttp
import orjson
import pytest
from yarl import URL

from highlight import recording
from highlight.apis import live_tape_start
from highlight.errors import LiveAccessRefused, LiveInDoubt, LiveRefused, LiveUnreachable
from highlight.simulator import LiveSimulator, SimulatorConfig, add_arguments, config_from_args, serve

APPID = "1234"
KEY = "sim-secret-key"
CHANNEL = "8888_test123"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# 2016-08-22 07:36:27 UTC, the documents' example `t`.
DOC_T = 1471850187


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


def make_query(
    now: datetime | None = None,
    *,
    channel: str = CHANNEL,
    key: str = KEY,
    appid: str = APPID,
    start: str | None = None,
    end: str | None = None,
    record_seconds: int = 300,
    edits: dict[str, str | None] | None = None,
    **options: Any,
) -> str:
    """A query from `live_tape_start.query_string`; `edits` then replaces (or with None removes) parameters by name."""
    now = now or recording.now_utc()
    window = recording.window_at(now, record_seconds)
    window = recording.RecordingWindow(start or window.start_time, end or window.end_time)
    query = live_tape_start.query_string(
        appid, key, recording.RecordingOptions(channel, record_seconds, **options), window, now
    )
    if not edits:
        return query
    params = dict(parse_qsl(query, keep_blank_values=True))
    for name, value in edits.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return urlencode(params, quote_via=quote_plus)


def url_of(sim: LiveSimulator, query: str) -> URL:
    # encoded=True sends the client's bytes exactly, so the simulator's decoding is what is tested.
    return URL(f"{sim.url}?{query}", encoded=True)


async def get(http: aiohttp.ClientSession, sim: LiveSimulator, query: str) -> tuple[int, str, bytes]:
    async with http.get(url_of(sim, query)) as resp:
        return resp.status, resp.headers["Content-Type"], await resp.read()


async def ret_of(http: aiohttp.ClientSession, sim: LiveSimulator, query: str) -> tuple[int, str]:
    status, _, body = await get(http, sim, query)
    assert status == 200
    reply = orjson.loads(body)
    return reply["ret"], reply["message"]


async def wait_for_calls(sim: LiveSimulator, count: int) -> None:
    for _ in range(400):
        if len(sim.calls) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"expected {count} calls, got {len(sim.calls)}")


@pytest.fixture
async def sim() -> AsyncIterator[LiveSimulator]:
    async with LiveSimulator(SimulatorConfig(seed=7)) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def started_sim(config: SimulatorConfig, clock: FakeClock | None = None) -> LiveSimulator:
    simulator = LiveSimulator(config, clock=clock or time.time)
    await simulator.start()
    return simulator


# --- success ---------------------------------------------------------------------------------------------


async def test_success_answers_an_exact_task_id_above_2_53_labelled_text_html(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    status, content_type, body = await get(http, sim, make_query())

    assert status == 200
    assert content_type.startswith("text/html")
    task_id = live_tape_start.parse_reply(status, body)
    assert task_id > 2**53
    assert task_id == sim.tasks[0].task_id
    assert f'"task_id":{task_id}}}'.encode() in body
    assert orjson.loads(body)["ret"] == 0
    assert [call.outcome for call in sim.calls] == ["started"]
    assert sim.calls[0].task_id == task_id


async def test_accepts_the_documented_sign_vector(http: aiohttp.ClientSession) -> None:
    clock = FakeClock(DOC_T - live_tape_start.SIGNATURE_TTL_SECONDS)
    key = "5d41402abc4b2a76b9719d911017c592"
    query = make_query(clock.utc(), key=key)
    assert f"t={DOC_T}&sign=b17971b51ba0fe5916ddcd96692e9fb3" in query
    simulator = await started_sim(SimulatorConfig(appid="1234", key=key), clock)
    try:
        status, _, body = await get(http, simulator, query)
    finally:
        await simulator.stop()
    assert live_tape_start.parse_reply(status, body) == simulator.tasks[0].task_id


async def test_signature_is_compared_case_insensitively(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    query = make_query()
    signature = dict(parse_qsl(query))["sign"]
    assert await ret_of(http, sim, query.replace(signature, signature.upper())) == (0, "")


async def test_t_is_an_expiry_so_a_far_future_t_is_accepted(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    t = int(time.time()) + 7 * 86_400
    query = make_query(edits={"t": str(t), "sign": live_tape_start.sign(KEY, t)})
    assert await ret_of(http, sim, query) == (0, "")


@pytest.mark.parametrize(
    ("edits", "key", "message"),
    [
        pytest.param({"appid": "4321"}, KEY, "appid is invalid", id="wrong-appid"),
        pytest.param({"appid": None}, KEY, "appid is invalid", id="missing-appid"),
        pytest.param(
            {"t": "1471850187", "sign": live_tape_start.sign(KEY, 1471850187)}, KEY, "time expired", id="expired"
        ),
        pytest.param({"t": "soon"}, KEY, "time expired", id="t-not-an-int"),
        pytest.param({"t": None}, KEY, "time expired", id="missing-t"),
        pytest.param({}, "another-key", "sign invalid", id="wrong-key"),
        pytest.param({"sign": "签名"}, KEY, "sign invalid", id="non-ascii-sign"),
        # Access is checked before the parameters, as the fcgi gateway does.
        pytest.param({"appid": "4321", "interface": "Nope"}, KEY, "appid is invalid", id="before-params"),
    ],
)
async def test_access_refusals_answer_ret_minus_1_with_the_gateway_message(
    sim: LiveSimulator, http: aiohttp.ClientSession, edits: dict[str, str | None], key: str, message: str
) -> None:
    status, content_type, body = await get(http, sim, make_query(key=key, edits=edits))

    assert content_type.startswith("text/html")
    assert orjson.loads(body) == {"ret": -1, "retcode": -1, "message": message}
    with pytest.raises(LiveAccessRefused):
        live_tape_start.parse_reply(status, body)
    assert sim.calls[0].outcome == message
    assert sim.tasks == []


def _utc_window() -> tuple[str, str]:
    now = datetime.now(UTC)
    return now.strftime(recording.CST_FORMAT), (now + timedelta(minutes=5)).strftime(recording.CST_FORMAT)


@pytest.mark.parametrize(
    ("builder", "detail"),
    [
        pytest.param({"edits": {"interface": "Live_Tape_Stop"}}, "interface", id="interface"),
        pytest.param({"edits": {"Param.s.channel_id": ""}}, "Param.s.channel_id", id="empty-channel"),
        pytest.param({"start": "2017-01-01T10:10:01"}, "Param.s.start_time", id="iso-start"),
        pytest.param({"start": "2017-02-30 10:10:01"}, "Param.s.start_time", id="impossible-date"),
        pytest.param({"start": "\uff12\uff10\uff11\uff17-01-01 10:10:01"}, "Param.s.start_time", id="fullwidth-digits"),
        pytest.param({"end": "2017-01-01 10:30"}, "Param.s.end_time", id="short-end"),
        pytest.param({"edits": {"Param.s.end_time": None}}, "Param.s.end_time", id="missing-end"),
        pytest.param({"edits": {"Param.n.task_sub_type": "2"}}, "Param.n.task_sub_type", id="sub-type-2"),
        pytest.param({"edits": {"Param.n.task_sub_type": None}}, "Param.n.task_sub_type", id="no-sub-type"),
        pytest.param(
            {"start": _utc_window()[0], "end": _utc_window()[1]}, "start_time is not now (CST)", id="utc-times"
        ),
        pytest.param(
            {"end": recording.format_cst(recording.now_utc() - timedelta(seconds=30))},
            "Param.s.end_time must be after",
            id="end-before-start",
        ),
        pytest.param({"file_format": "avi"}, "Param.s.file_format", id="file-format"),
        pytest.param({"file_format": "aac", "record_type": "video"}, "aac", id="aac-with-video"),
        pytest.param({"file_format": "aac"}, "aac", id="aac-with-default-video"),
        pytest.param({"record_type": "image"}, "Param.s.record_type", id="record-type"),
        pytest.param({"mix_stream": 2}, "Param.n.mix_stream", id="mix-stream-n"),
        pytest.param({"edits": {"Param.s.mix_stream": "yes"}}, "Param.s.mix_stream", id="mix-stream-s"),
        pytest.param({"domain": ""}, "Param.s.domain", id="empty-domain"),
        pytest.param(
            {
                "edits": {
                    "Param.n.task_sub_type": "0",
                    "Param.s.start_time": "2099-01-01 00:00:00",
                    "Param.s.end_time": "2099-01-02 00:00:01",
                }
            },
            "by at most one day",
            id="scheduled-over-a-day",
        ),
    ],
)
async def test_bad_parameters_answer_1204_naming_the_parameter(
    sim: LiveSimulator, http: aiohttp.ClientSession, builder: dict[str, Any], detail: str
) -> None:
    status, _, body = await get(http, sim, make_query(**builder))

    reply = orjson.loads(body)
    assert reply["ret"] == 1204
    assert reply["message"].startswith("bad parameter: ")
    assert detail in reply["message"]
    with pytest.raises(LiveRefused):
        live_tape_start.parse_reply(status, body)
    assert sim.calls[0].outcome == "ret:1204"
    assert detail in sim.calls[0].message
    assert sim.tasks == []


@pytest.mark.parametrize(
    "builder",
    [
        pytest.param({"file_format": "aac", "record_type": "audio"}, id="aac-audio"),
        pytest.param({"file_format": "hls", "record_type": "video", "mix_stream": 1}, id="hls-mixed"),
        pytest.param({"file_format": "mp4", "domain": "live.example.com", "path": "a/b"}, id="domain-path"),
        pytest.param({"edits": {"Param.s.mix_stream": "0"}}, id="mix-stream-as-s"),
    ],
)
async def test_documented_optional_parameters_are_accepted(
    sim: LiveSimulator, http: aiohttp.ClientSession, builder: dict[str, Any]
) -> None:
    assert await ret_of(http, sim, make_query(**builder)) == (0, "")


async def test_real_time_recording_is_capped_at_30_minutes_not_refused(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    now = recording.now_utc()
    query = make_query(now, end=recording.format_cst(now + timedelta(hours=2)))

    assert await ret_of(http, sim, query) == (0, "")
    task = sim.tasks[0]
    assert task.effective_end == pytest.approx(task.created_at + recording.MAX_RECORD_SECONDS)
    assert task.end_time == recording.format_cst(now + timedelta(hours=2))


async def test_scheduled_task_within_a_day_is_created(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    edits: dict[str, str | None] = {
        "Param.n.task_sub_type": "0",
        "Param.s.start_time": "2099-01-01 10:00:00",
        "Param.s.end_time": "2099-01-01 11:00:00",
    }
    assert await ret_of(http, sim, make_query(edits=edits)) == (0, "")
    assert sim.tasks[0].effective_end == recording.parse_cst("2099-01-01 11:00:00").timestamp()


# --- channel state and quotas ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(SimulatorConfig(offline_channels=frozenset({CHANNEL})), (1301, "has not live stream")),
        pytest.param(SimulatorConfig(live_channels=frozenset({"other"})), (1301, "has not live stream")),
        pytest.param(SimulatorConfig(missing_channels=frozenset({CHANNEL})), (20601, "channel does not exist")),
        pytest.param(SimulatorConfig(live_channels=frozenset({CHANNEL})), (0, "")),
    ],
    ids=["offline", "not-in-live-set", "missing", "in-live-set"],
)
async def test_channel_state_decides_1301_or_20601(
    http: aiohttp.ClientSession, config: SimulatorConfig, expected: tuple[int, str]
) -> None:
    simulator = await started_sim(config)
    try:
        assert await ret_of(http, simulator, make_query()) == expected
    finally:
        await simulator.stop()
    assert len(simulator.tasks) == (1 if expected[0] == 0 else 0)


async def test_running_limit_answers_1206_until_a_recording_ends(http: aiohttp.ClientSession) -> None:
    clock = FakeClock(time.time())
    simulator = await started_sim(SimulatorConfig(max_running=2), clock)
    try:
        rets = [(await ret_of(http, simulator, make_query(clock.utc())))[0] for _ in range(3)]
        clock.now += 301
        after = await ret_of(http, simulator, make_query(clock.utc()))
    finally:
        await simulator.stop()
    assert rets == [0, 0, 1206]
    assert simulator.calls[2].message == "exceeds the limit of 2 running tasks"
    assert after == (0, "")


async def test_daily_quota_answers_1207_until_midnight_in_china(http: aiohttp.ClientSession) -> None:
    cst_midnight = datetime(2030, 6, 2, tzinfo=recording.CST).timestamp()
    clock = FakeClock(cst_midnight - 600)
    simulator = await started_sim(SimulatorConfig(daily_quota=2), clock)
    try:
        rets = [(await ret_of(http, simulator, make_query(clock.utc())))[0] for _ in range(3)]
        clock.now = cst_midnight + 1
        after = await ret_of(http, simulator, make_query(clock.utc()))
    finally:
        await simulator.stop()
    assert rets == [0, 0, 1207]
    assert simulator.calls[2].message == "exceeds the daily limit of 2 tasks"
    assert after == (0, "")


# --- scripted faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [
        pytest.param("ret:1202", 200, LiveRefused, id="ret-1202"),
        pytest.param("http:503", 503, LiveUnreachable, id="http-503"),
        pytest.param("garbage", 200, LiveInDoubt, id="garbage"),
        pytest.param("auth:sign invalid", 200, LiveAccessRefused, id="auth"),
    ],
)
async def test_scripted_failures_answer_once_without_a_task(
    sim: LiveSimulator, http: aiohttp.ClientSession, fault: str, status: int, error: type[Exception]
) -> None:
    sim.inject(fault)
    got_status, _, body = await get(http, sim, make_query())

    assert got_status == status
    with pytest.raises(error):
        live_tape_start.parse_reply(got_status, body)
    assert sim.tasks == []
    assert await ret_of(http, sim, make_query()) == (0, "")


async def test_scripted_ret_uses_the_documented_message(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    sim.inject("ret:1202")
    status, _, body = await get(http, sim, make_query())
    with pytest.raises(LiveRefused) as refused:
        live_tape_start.parse_reply(status, body)
    assert refused.value.code == "1202"
    assert refused.value.retriable
    assert str(refused.value) == "request frequency exceeds limit"


async def test_hang_creates_the_task_and_never_answers(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    sim.inject("hang")
    with pytest.raises(TimeoutError):
        async with http.get(url_of(sim, make_query()), timeout=aiohttp.ClientTimeout(total=0.3)) as resp:
            await resp.read()
    assert [call.outcome for call in sim.calls] == ["hang"]
    assert sim.calls[0].task_id == sim.tasks[0].task_id


async def test_reset_creates_the_task_and_closes_without_an_answer(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    sim.inject("reset")
    # POST: aiohttp re-sends an idempotent GET once after a disconnection (see the next test).
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(sim.url, data=make_query(), headers=FORM) as resp:
            await resp.read()
    assert [call.outcome for call in sim.calls] == ["reset"]
    assert len(sim.tasks) == 1


async def test_aiohttp_get_silently_resends_after_a_reset_recording_twice(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    # Pins a client hazard: the re-sent GET starts a second recording the caller never learns about.
    sim.inject("reset")
    status, _, body = await get(http, sim, make_query())

    assert live_tape_start.parse_reply(status, body) == sim.tasks[1].task_id
    assert [call.outcome for call in sim.calls] == ["reset", "started"]
    assert len(sim.tasks) == 2


async def test_a_get_without_aiohttp_retry_sees_the_reset_and_records_once(sim: LiveSimulator) -> None:
    # highlight.live turns the retry off through this private attribute; this fails first if aiohttp renames it.
    async with aiohttp.ClientSession() as session:
        session._retry_connection = False
        sim.inject("reset")
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await get(session, sim, make_query())
    assert [call.outcome for call in sim.calls] == ["reset"]
    assert len(sim.tasks) == 1


async def test_delay_fault_answers_normally_after_the_extra_delay(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    sim.inject("delay:200")
    started = time.monotonic()
    status, _, body = await get(http, sim, make_query())

    assert time.monotonic() - started >= 0.2
    assert live_tape_start.parse_reply(status, body) == sim.tasks[0].task_id


async def test_faults_are_fifo_and_skip_calls_that_fail_validation(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    sim.inject("ret:1201", "ok", "http:502")
    await get(http, sim, make_query(appid="9"))
    for _ in range(4):
        await get(http, sim, make_query())
    assert [call.outcome for call in sim.calls] == ["appid is invalid", "ret:1201", "started", "http:502", "started"]


async def test_channel_scoped_faults_spare_other_channels(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    sim.inject("ret:1301", channel="b")
    await get(http, sim, make_query(channel="a"))
    await get(http, sim, make_query(channel="b"))
    assert [(call.channel_id, call.outcome) for call in sim.calls] == [("a", "started"), ("b", "ret:1301")]
    assert sim.calls_for("b") == [sim.calls[1]]


@pytest.mark.parametrize("fault", ["boom", "ret:0", "ret:x", "http:99", "delay:soon", "auth:", "hang:1"])
def test_inject_rejects_unknown_faults(fault: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        LiveSimulator().inject("ok", fault)


@pytest.mark.parametrize(
    ("rates", "outcome"),
    [({"error_rate": 1.0}, "ret:1201"), ({"http_error_rate": 1.0}, "http:503")],
)
async def test_random_faults_follow_their_rates(
    sim: LiveSimulator, http: aiohttp.ClientSession, rates: dict[str, float], outcome: str
) -> None:
    sim.set_config(**rates)
    for _ in range(3):
        await get(http, sim, make_query())
    assert [call.outcome for call in sim.calls] == [outcome] * 3


async def test_a_seed_replays_the_same_faults_and_task_ids(http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        simulator = await started_sim(SimulatorConfig(error_rate=0.5, seed=42))
        try:
            for _ in range(12):
                await get(http, simulator, make_query())
        finally:
            await simulator.stop()
        runs.append([(call.outcome, call.task_id) for call in simulator.calls])
    assert runs[0] == runs[1]
    assert {outcome for outcome, _ in runs[0]} == {"started", "ret:1201"}


# --- recording of calls ------------------------------------------------------------------------------------


async def test_calls_are_recorded_at_arrival_before_latency(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    # Bounds are taken from both ends of the exchange, never from a fixed allowance: a busy machine may stall
    # the test for longer than any allowance, but cannot put the arrival outside [sent, answered - latency].
    sim.set_config(latency_ms=(1000, 1000))
    sent, sent_at = time.monotonic(), time.time()
    answer = asyncio.create_task(get(http, sim, make_query()))
    await wait_for_calls(sim, 1)
    assert not answer.done()
    status, _, _ = await answer
    answered, answered_at = time.monotonic(), time.time()

    assert status == 200
    assert sent <= sim.calls[0].received_monotonic <= answered - 1.0
    assert sent_at <= sim.calls[0].received_at <= answered_at - 1.0


async def test_failed_validations_are_recorded_in_arrival_order(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    queries = [make_query(key="bad"), make_query(file_format="avi"), make_query(), make_query(appid="0")]
    for query in queries:
        await get(http, sim, query)
    assert [call.outcome for call in sim.calls] == ["sign invalid", "ret:1204", "started", "appid is invalid"]
    assert [call.raw_query for call in sim.calls] == queries
    assert [call.task_id is None for call in sim.calls] == [True, True, False, True]


@pytest.mark.parametrize(
    "channel",
    ["a&b=c", "x+y z", "100%/path", "直播间 #1", "ü?&=+%/ ~"],
    ids=["amp-eq", "plus-space", "percent-slash", "cjk-hash", "everything"],
)
async def test_channel_ids_with_reserved_and_non_ascii_characters_arrive_intact(
    sim: LiveSimulator, http: aiohttp.ClientSession, channel: str
) -> None:
    query = make_query(channel=channel)
    await get(http, sim, query)
    # A plain string URL too: aiohttp's own requoting must not change the channel either.
    async with http.get(f"{sim.url}?{query}") as resp:
        await resp.read()

    assert [call.channel_id for call in sim.calls] == [channel, channel]
    assert sim.calls[0].query["Param.s.channel_id"] == channel
    assert [task.channel_id for task in sim.tasks] == [channel, channel]


async def test_post_with_a_form_body_is_read_like_a_query(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    async with http.post(sim.url, data=make_query(channel="a&b"), headers=FORM) as resp:
        status, body = resp.status, await resp.read()
    assert live_tape_start.parse_reply(status, body) == sim.tasks[0].task_id
    assert sim.calls[0].channel_id == "a&b"


# --- control routes ----------------------------------------------------------------------------------------


def control(sim: LiveSimulator, route: str) -> str:
    return sim.url.removesuffix("/common_access") + "/_sim/" + route


async def test_control_routes_list_tasks_with_string_ids_and_calls(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    await get(http, sim, make_query())
    await get(http, sim, make_query(key="bad"))
    async with http.get(control(sim, "tasks")) as resp:
        assert resp.content_type == "application/json"
        tasks = orjson.loads(await resp.read())
    async with http.get(control(sim, "calls")) as resp:
        calls = orjson.loads(await resp.read())

    assert tasks[0]["task_id"] == str(sim.tasks[0].task_id)
    assert tasks[0]["channel_id"] == CHANNEL
    assert tasks[0]["effective_end"] == sim.tasks[0].effective_end
    assert [call["outcome"] for call in calls] == ["started", "sign invalid"]
    assert [call["task_id"] for call in calls] == [str(sim.tasks[0].task_id), None]


async def test_control_faults_route_injects_and_refuses_unknown_faults(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    async with http.post(control(sim, "faults"), json={"faults": ["http:503"], "channel": CHANNEL}) as resp:
        assert resp.status == 200
    async with http.post(control(sim, "faults"), json={"faults": ["explode"]}) as resp:
        assert resp.status == 400
        assert "explode" in (await resp.json())["error"]
    status, _, _ = await get(http, sim, make_query())
    assert status == 503


async def test_control_config_route_changes_settings_at_runtime(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    change = {"latency_ms": [5, 10], "offline_channels": [CHANNEL], "max_running": 9}
    async with http.post(control(sim, "config"), json=change) as resp:
        shown = await resp.json()
    async with http.post(control(sim, "config"), json={"error_rate": 2}) as resp:
        assert resp.status == 400
    async with http.post(control(sim, "config"), json={"offline_channels": CHANNEL}) as resp:
        assert resp.status == 400

    assert shown["offline_channels"] == [CHANNEL]
    assert sim.config.latency_ms == (5.0, 10.0)
    assert sim.config.offline_channels == frozenset({CHANNEL})
    assert sim.config.max_running == 9
    assert sim.config.error_rate == 0.0
    assert await ret_of(http, sim, make_query()) == (1301, "has not live stream")


async def test_control_reset_forgets_calls_tasks_and_faults(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    await get(http, sim, make_query())
    sim.inject("http:500")
    async with http.post(control(sim, "reset")) as resp:
        assert resp.status == 200
    assert (sim.calls, sim.tasks) == ([], [])
    assert await ret_of(http, sim, make_query()) == (0, "")


async def test_healthz_answers_ok(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    async with http.get(control(sim, "healthz")) as resp:
        assert (resp.status, await resp.json()) == (200, "ok")
    assert sim.calls == []


# --- lifecycle and configuration ---------------------------------------------------------------------------


async def test_stop_is_prompt_with_a_hanging_request_outstanding(http: aiohttp.ClientSession) -> None:
    simulator = await started_sim(SimulatorConfig(latency_ms=(5000, 5000)))
    simulator.inject("hang", channel="hanging")
    hanging = asyncio.create_task(http.post(simulator.url, data=make_query(channel="hanging"), headers=FORM))
    slow = asyncio.create_task(get(http, simulator, make_query(channel="slow")))
    await wait_for_calls(simulator, 2)
    started = time.monotonic()
    await simulator.stop()
    await simulator.stop()

    assert time.monotonic() - started < 2.5, "well before the 5 s answers"
    with pytest.raises(aiohttp.ClientError):
        await hanging
    # Latency is cut short at stop: the slow call is answered, not dropped.
    assert (await slow)[0] == 200


def test_set_config_validates_and_coerces() -> None:
    simulator = LiveSimulator()
    simulator.set_config(offline_channels=["a"], latency_ms=[1, 2])
    assert simulator.config.offline_channels == frozenset({"a"})
    assert simulator.config.latency_ms == (1.0, 2.0)
    with pytest.raises(ValueError, match="error_rate"):
        simulator.set_config(error_rate=1.5)
    with pytest.raises(ValueError, match="unknown"):
        simulator.set_config(latency=5)
    with pytest.raises(ValueError, match="latency_ms"):
        simulator.set_config(latency_ms=(300, 100))
    assert simulator.config.error_rate == 0.0


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_config_from_args_reads_every_flag() -> None:
    args = _args(
        "--appid", "99", "--key", "k", "--latency-ms", "100-300", "--offline", "a", "--offline", "b",
        "--live", "c", "--missing", "d", "--error-rate", "0.1", "--http-error-rate", "0.2",
        "--hang-rate", "0.05", "--max-running", "3", "--daily-quota", "7", "--seed", "5", "--port", "0",
        "--secret-id", "AKIDx", "--secret-key", "sk", "--refuse-credentials",
    )  # fmt: skip
    assert config_from_args(args) == SimulatorConfig(
        appid="99",
        key="k",
        latency_ms=(100.0, 300.0),
        offline_channels=frozenset({"a", "b"}),
        live_channels=frozenset({"c"}),
        missing_channels=frozenset({"d"}),
        error_rate=0.1,
        http_error_rate=0.2,
        hang_rate=0.05,
        max_running=3,
        daily_quota=7,
        seed=5,
        secret_id="AKIDx",  # noqa: S106 - a test value, not a credential
        secret_key="sk",  # noqa: S106 - a test value, not a credential
        refuse_credentials=True,
    )
    assert (args.host, args.port) == ("127.0.0.1", 0)
    assert config_from_args(_args()) == SimulatorConfig()
    assert config_from_args(_args("--latency-ms", "200")).latency_ms == (200.0, 200.0)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--latency-ms", "300-100"], "latency"),
        (["--latency-ms", "fast"], "latency"),
        (["--error-rate", "1.5"], "error_rate"),
        (["--hang-rate", "nan"], "hang_rate"),
        (["--error-rate", "0.6", "--http-error-rate", "0.6"], "exceed 1"),
        (["--max-running", "-1"], "max_running"),
        (["--secret-key", ""], "secret_key"),
    ],
)
def test_config_from_args_rejects_bad_values(argv: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config_from_args(_args(*argv))


async def test_serve_reports_its_url_and_stops_when_cancelled(http: aiohttp.ClientSession) -> None:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(SimulatorConfig(), "127.0.0.1", 0, ready=ready.set_result))
    url = await asyncio.wait_for(ready, 5)
    async with http.get(url.removesuffix("/common_access") + "/_sim/healthz") as resp:
        assert resp.status == 200
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(url)

"""The simulator's v2 CreateRecord and 3.0 CreateLiveRecord endpoints, hit over real HTTP(S) by the backends.

Requests come from `highlight.create_record` / `highlight.create_live_record` exactly as the service would
send them (aiohttp, no mocks); answers are read back through the same modules' `parse`.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import orjson
import pytest
import trustme
from yarl import URL

from highlight import recording
from highlight.apis import Backend, HttpRequest, Started, live_tape_start
from highlight.apis.create_live_record import CreateLiveRecord, authorization
from highlight.apis.create_record import CreateRecord, encode_query, sign_string, signature
from highlight.config import Secret
from highlight.errors import (
    LiveAccessRefused,
    LiveError,
    LiveInDoubt,
    LiveLimitReached,
    LiveRefused,
    LiveUnreachable,
)
from highlight.recording import RecordingOptions, RecordingWindow
from highlight.simulator import LiveSimulator, SimulatorConfig

SECRET_ID = "AKIDsimulator"  # noqa: S105 - a test value, not a credential
SECRET_KEY = "sim-secret-key-tc3"  # noqa: S105 - a test value, not a credential
OTHER_ID = "AKIDother"
APPID = "1234"
KEY = "sim-secret-key"
CHANNEL = "8888_test123"
APIS = ("live_tape_start", "create_record", "create_live_record")


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_backend(sim: LiveSimulator, api: str, **kwargs: Any) -> Backend:
    if api == "create_record":
        settings = {"secret_id": SECRET_ID, "secret_key": Secret(SECRET_KEY), "region": "gz", **kwargs}
        return CreateRecord(url=sim.url_for(api), **settings)
    if api == "create_live_record":
        settings = {"secret_id": SECRET_ID, "secret_key": Secret(SECRET_KEY), "app_name": "live", **kwargs}
        settings.setdefault("domain_name", "push.example.com")
        return CreateLiveRecord(url=sim.url_for(api), **settings)
    return _Legacy(sim.url_for(api), kwargs.get("appid", APPID), kwargs.get("key", KEY))


class _Legacy:
    """Live_Tape_Start behind the same interface, from `highlight.apis.live_tape_start`'s pure functions."""

    name = "live_tape_start"

    def __init__(self, url: str, appid: str, key: str) -> None:
        self._url, self._appid, self._key = url, appid, key

    def request(self, options: RecordingOptions, window: RecordingWindow, now: datetime) -> HttpRequest:
        return HttpRequest(
            "GET", f"{self._url}?{live_tape_start.query_string(self._appid, self._key, options, window, now)}"
        )

    def parse(self, status: int, body: bytes) -> Started:
        return Started(live_tape_start.parse_reply(status, body))


async def send(http: aiohttp.ClientSession, request: HttpRequest) -> tuple[int, bytes]:
    # encoded=True: the bytes the backend built are what goes on the wire.
    async with http.request(
        request.method, URL(request.url, encoded=True), headers=dict(request.headers), data=request.body
    ) as resp:
        return resp.status, await resp.read()


async def attempt(
    http: aiohttp.ClientSession,
    backend: Backend,
    *,
    channel: str = CHANNEL,
    now: datetime | None = None,
    window: RecordingWindow | None = None,
    **options: Any,
) -> Started:
    now = now or recording.now_utc()
    request = backend.request(RecordingOptions(channel, 300, **options), window or recording.window_at(now, 300), now)
    status, body = await send(http, request)
    return backend.parse(status, body)


def refusal_of(body: bytes) -> tuple[str, str]:
    reply = orjson.loads(body)
    if "Response" in reply:
        error = reply["Response"]["Error"]
        return error["Code"], error["Message"]
    return str(reply["code"]), reply["message"]


@pytest.fixture
async def sim() -> AsyncIterator[LiveSimulator]:
    async with LiveSimulator(SimulatorConfig(seed=7)) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def started_sim(config: SimulatorConfig, clock: Callable[[], float] = time.time) -> LiveSimulator:
    simulator = LiveSimulator(config, clock=clock)
    await simulator.start()
    return simulator


# --- success on every api ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
async def test_each_api_starts_a_task_from_its_backends_request(
    sim: LiveSimulator, http: aiohttp.ClientSession, api: str
) -> None:
    now = recording.now_utc()
    window = recording.window_at(now, 300)
    started = await attempt(http, make_backend(sim, api), now=now, window=window)

    assert started.task_id == sim.tasks[0].task_id > 2**53
    call = sim.calls[0]
    assert (call.api, call.outcome, call.channel_id, call.task_id) == (api, "started", CHANNEL, started.task_id)
    assert (call.start_time, call.end_time) == (window.start_time, window.end_time)
    assert sim.tasks[0].api == api
    # The requested end is whole seconds and the task is created a moment later (over a second later on a busy
    # machine), so the end is pinned to the request, not to the simulator's clock.
    assert sim.tasks[0].effective_end == recording.parse_cst(window.end_time).timestamp()
    assert now.timestamp() <= sim.tasks[0].created_at < sim.tasks[0].effective_end
    if api == "create_live_record":
        assert started.request_id == call.request_id
        assert call.query["Highlight"] == "1"
    else:
        assert started.request_id is call.request_id is None


def test_url_for_names_each_api_once_started() -> None:
    simulator = LiveSimulator()
    with pytest.raises(RuntimeError, match="not started"):
        simulator.url_for("create_record")
    with pytest.raises(ValueError, match="unknown api"):
        simulator.url_for("nope")


async def test_url_for_paths(sim: LiveSimulator) -> None:
    base = sim.url.removesuffix("/common_access")
    assert sim.url_for("live_tape_start") == sim.url
    assert sim.url_for("create_record") == base + "/v2/index.php"
    assert sim.url_for("create_live_record") == base + "/"


async def test_v2_accepts_hmac_sha256(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    backend = make_backend(sim, "create_record", signature_method="HmacSHA256")
    assert (await attempt(http, backend)).task_id == sim.tasks[0].task_id
    assert sim.calls[0].query["SignatureMethod"] == "HmacSHA256"


@pytest.mark.parametrize("api", ["create_record", "create_live_record"])
@pytest.mark.parametrize("channel", ["a&Action=x&Signature=y", "直播间 #1", "x+y%20/z=w", "ü?&=+%/ ~"])
async def test_hostile_channel_ids_arrive_intact_and_add_no_parameter(
    sim: LiveSimulator, http: aiohttp.ClientSession, api: str, channel: str
) -> None:
    await attempt(http, make_backend(sim, api), channel=channel)

    call = sim.calls[0]
    assert call.outcome == "started"
    assert call.channel_id == sim.tasks[0].channel_id == channel
    expected = (
        {"Action", "channelId", "startTime", "endTime", "tapeType", "Region", "Timestamp", "Nonce", "SecretId"}
        | {"Signature"}
        if api == "create_record"
        else {"StreamName", "AppName", "DomainName", "StartTime", "EndTime", "Highlight"}
    )
    assert set(call.query) == expected
    assert call.query["Action" if api == "create_record" else "StreamName"] in ("CreateRecord", channel)


# --- v2 refusals ------------------------------------------------------------------------------------------------


def tampered(request: HttpRequest, **edits: str | None) -> HttpRequest:
    """The request with parameters replaced (None removes), re-encoded but not re-signed."""
    base, _, query = request.url.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    for name, value in edits.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return HttpRequest(request.method, f"{base}?{encode_query(params)}", request.headers)


def resigned(request: HttpRequest, key: str = SECRET_KEY, **edits: str | None) -> HttpRequest:
    """The request with parameters replaced and signed again, as a client would sign them."""
    edited = tampered(request, **edits)
    base, _, query = edited.url.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    host = request.headers["Host"]
    params["Signature"] = signature(key, sign_string("GET", host, urlsplit(base).path, params))
    return HttpRequest("GET", f"{base}?{encode_query(params)}", request.headers)


def v2_request(sim: LiveSimulator, now: datetime | None = None, **kwargs: Any) -> HttpRequest:
    now = now or recording.now_utc()
    return make_backend(sim, "create_record", **kwargs).request(
        RecordingOptions(CHANNEL, 300), recording.window_at(now, 300), now
    )


def cst(moment: datetime) -> str:
    return recording.format_cst(moment)


def utc_now_text() -> str:
    """The current UTC wall clock where China Standard Time is expected: the classic client bug."""
    return datetime.now(UTC).strftime(recording.CST_FORMAT)


def minute_ago_cst() -> str:
    return cst(datetime.now(UTC) - timedelta(minutes=1))


# Parameters are built when a test runs, not at collection: a full run takes minutes and "now" must be now.
Value = str | int | bool | None | Callable[[], str]


def resolved(changes: dict[str, Value]) -> dict[str, str | int | bool | None]:
    return {name: value() if callable(value) else value for name, value in changes.items()}


@pytest.mark.parametrize(
    ("edit", "code", "detail"),
    [
        pytest.param({"Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}, "4100", "signature", id="wrong-signature"),
        pytest.param({"channelId": "other"}, "4100", "signature", id="changed-after-signing"),
        pytest.param({"Signature": None}, "4000", "Signature", id="no-signature"),
        pytest.param({"Nonce": None}, "4000", "Nonce", id="no-nonce"),
        pytest.param({"Timestamp": "soon"}, "4000", "Timestamp", id="bad-timestamp"),
        pytest.param({"SignatureMethod": "HmacMD5"}, "4000", "SignatureMethod", id="bad-method"),
    ],
)
async def test_v2_refuses_unsigned_or_tampered_requests(
    sim: LiveSimulator, http: aiohttp.ClientSession, edit: dict[str, str | None], code: str, detail: str
) -> None:
    status, body = await send(http, tampered(v2_request(sim), **edit))

    assert status == 200
    assert refusal_of(body)[0] == code
    assert detail in refusal_of(body)[1]
    assert sim.calls[0].outcome == f"code:{code}"
    assert sim.tasks == []


@pytest.mark.parametrize(
    ("edit", "detail"),
    [
        pytest.param({"startTime": "2030-01-01T10:10:01"}, "startTime", id="iso-start"),
        pytest.param({"startTime": utc_now_text}, "startTime is not now (CST)", id="utc-start"),
        pytest.param({"endTime": "2030-02-30 10:10:01"}, "endTime", id="impossible-end"),
        pytest.param({"endTime": None}, "endTime", id="no-end"),
        pytest.param({"endTime": minute_ago_cst}, "after startTime", id="end-first"),
        pytest.param({"tapeType": "0"}, "tapeType", id="scheduled"),
        pytest.param({"channelId": ""}, "channelId", id="empty-channel"),
        pytest.param({"Action": "DescribeRecord"}, "Action", id="action"),
    ],
)
async def test_v2_refuses_bad_parameters_with_4000(
    sim: LiveSimulator, http: aiohttp.ClientSession, edit: dict[str, Value], detail: str
) -> None:
    status, body = await send(http, resigned(v2_request(sim), **resolved(edit)))  # type: ignore[arg-type]

    code, message = refusal_of(body)
    assert code == "4000"
    assert detail in message
    with pytest.raises(LiveRefused) as refused:
        make_backend(sim, "create_record").parse(status, body)
    assert not refused.value.retriable


async def test_v2_accepts_a_real_time_call_without_start_time_as_the_documents_example(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    status, body = await send(http, resigned(v2_request(sim), startTime=None))
    assert make_backend(sim, "create_record").parse(status, body).task_id == sim.tasks[0].task_id
    assert sim.calls[0].start_time is None


async def test_v2_refuses_a_parameter_given_twice(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    request = v2_request(sim)
    _, body = await send(http, HttpRequest("GET", request.url + "&channelId=other", request.headers))
    assert refusal_of(body) == ("4000", "bad parameter: channelId given twice")


async def test_v2_refuses_a_wrong_secret_id_and_a_wrong_key_as_access(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(LiveAccessRefused) as wrong_id:
        await attempt(http, make_backend(sim, "create_record", secret_id=OTHER_ID))
    with pytest.raises(LiveAccessRefused) as wrong_key:
        await attempt(http, make_backend(sim, "create_record", secret_key=Secret("nope")))
    assert (wrong_id.value.code, wrong_key.value.code) == ("4100", "4100")
    assert "SecretId" in wrong_id.value.message
    assert sim.tasks == []


async def test_v2_refuses_a_timestamp_more_than_five_minutes_off_as_expired(http: aiohttp.ClientSession) -> None:
    clock = FakeClock(time.time())
    simulator = await started_sim(SimulatorConfig(), clock)
    try:
        now = datetime.fromtimestamp(clock.now, UTC)
        backend = make_backend(simulator, "create_record")
        clock.now += 301
        with pytest.raises(LiveAccessRefused) as expired:
            await attempt(
                http, backend, now=now, window=recording.window_at(datetime.fromtimestamp(clock.now, UTC), 300)
            )
        clock.now -= 2
        started = await attempt(
            http, backend, now=now, window=recording.window_at(datetime.fromtimestamp(clock.now, UTC), 300)
        )
    finally:
        await simulator.stop()
    assert expired.value.code == "4200"
    assert started.task_id == simulator.tasks[0].task_id


async def test_v2_refuses_a_reused_nonce_as_a_retriable_replay_until_it_is_forgotten(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock(time.time())
    simulator = await started_sim(SimulatorConfig(), clock)
    try:
        backend = make_backend(simulator, "create_record", nonce=lambda: 42)
        first = await attempt(http, backend, now=datetime.fromtimestamp(clock.now, UTC))
        with pytest.raises(LiveRefused) as replay:
            await attempt(http, backend, now=datetime.fromtimestamp(clock.now, UTC))
        clock.now += 601
        again = await attempt(http, backend, now=datetime.fromtimestamp(clock.now, UTC))
    finally:
        await simulator.stop()
    assert replay.value.code == "4500"
    assert replay.value.retriable
    assert [first.task_id, again.task_id] == [task.task_id for task in simulator.tasks]


async def test_v2_a_forged_request_does_not_burn_its_nonce(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    request = v2_request(sim, nonce=lambda: 99)
    await send(http, tampered(request, Signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
    status, body = await send(http, request)
    assert make_backend(sim, "create_record").parse(status, body).task_id == sim.tasks[0].task_id


async def test_v2_signature_uses_the_host_header_as_sent(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    request = v2_request(sim)
    other_host = HttpRequest("GET", request.url, {"Host": "live.api.qcloud.com"})
    _, body = await send(http, other_host)
    assert refusal_of(body)[0] == "4100"


@pytest.mark.parametrize("api", ["create_record", "create_live_record"])
async def test_a_window_over_30_minutes_records_30_minutes_not_refused(
    sim: LiveSimulator, http: aiohttp.ClientSession, api: str
) -> None:
    # Both documents: a real-time end more than 30 minutes ahead records 30 minutes.
    now = recording.now_utc()
    window = RecordingWindow(recording.format_cst(now), recording.format_cst(now + timedelta(hours=2)))
    await attempt(http, make_backend(sim, api), now=now, window=window)
    task = sim.tasks[0]
    assert task.effective_end == pytest.approx(task.created_at + recording.MAX_RECORD_SECONDS)
    assert task.end_time == window.end_time


# --- 3.0 refusals -----------------------------------------------------------------------------------------------


def cloud_request(
    sim: LiveSimulator,
    fields: dict[str, object] | None = None,
    *,
    now: datetime | None = None,
    key: str = SECRET_KEY,
    secret_id: str = SECRET_ID,
    headers: dict[str, str] | None = None,
) -> HttpRequest:
    """A 3.0 request for `fields` (the backend's own by default), signed as a client would."""
    now = now or recording.now_utc()
    built = make_backend(sim, "create_live_record").request(
        RecordingOptions(CHANNEL, 300), recording.window_at(now, 300), now
    )
    assert built.body is not None
    body = built.body if fields is None else orjson.dumps(fields)
    all_headers = {**built.headers, **(headers or {})}
    all_headers["Authorization"] = authorization(
        secret_id,
        key,
        timestamp=int(all_headers["X-TC-Timestamp"]),
        host=all_headers["Host"],
        body=body,
        content_type=all_headers["Content-Type"],
    )
    return HttpRequest("POST", built.url, all_headers, body)


def backend_fields(**changes: object) -> dict[str, object]:
    now = recording.now_utc()
    window = recording.window_at(now, 300)
    fields: dict[str, object] = {
        "StreamName": CHANNEL,
        "AppName": "live",
        "StartTime": window.start_time,
        "EndTime": window.end_time,
        "Highlight": 1,
    }
    for name, value in changes.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


async def cloud_refusal(sim: LiveSimulator, http: aiohttp.ClientSession, request: HttpRequest) -> LiveError:
    status, body = await send(http, request)
    assert status == 200
    reply = orjson.loads(body)["Response"]
    assert reply["RequestId"] == sim.calls[-1].request_id
    with pytest.raises(LiveError) as raised:
        make_backend(sim, "create_live_record").parse(status, body)
    assert raised.value.request_id == reply["RequestId"]
    assert sim.calls[-1].outcome == f"error:{raised.value.code}"
    return raised.value


@pytest.mark.parametrize(
    ("changes", "code", "detail"),
    [
        pytest.param({"Highlight": 0}, "InvalidParameterValue", "Highlight", id="highlight-0"),
        pytest.param({"Highlight": None}, "InvalidParameterValue", "Highlight", id="no-highlight"),
        pytest.param({"Highlight": "1"}, "InvalidParameter", "Highlight", id="highlight-string"),
        pytest.param({"Highlight": True}, "InvalidParameter", "Highlight", id="highlight-bool"),
        pytest.param({"StreamName": None}, "MissingParameter", "StreamName", id="no-stream"),
        pytest.param({"StreamName": ""}, "InvalidParameterValue", "StreamName", id="empty-stream"),
        pytest.param({"AppName": ""}, "InvalidParameterValue", "AppName", id="empty-app"),
        pytest.param({"DomainName": ""}, "InvalidParameterValue", "DomainName", id="empty-domain"),
        pytest.param({"StartTime": "2030-01-01T10:10:01"}, "InvalidParameterValue", "StartTime", id="iso"),
        pytest.param({"StartTime": utc_now_text}, "InvalidParameterValue", "not now", id="utc-start"),
        pytest.param({"EndTime": "tomorrow"}, "InvalidParameterValue", "EndTime", id="bad-end"),
        pytest.param({"FileFormat": "avi"}, "InvalidParameterValue", "FileFormat", id="format"),
        pytest.param({"RecordType": "image"}, "InvalidParameterValue", "RecordType", id="record-type"),
        pytest.param({"MixStream": 2}, "InvalidParameterValue", "MixStream", id="mix-stream"),
        pytest.param({"Path": "a/b"}, "UnknownParameter", "Path", id="unknown-field"),
    ],
)
async def test_cloud_refuses_bad_fields(
    sim: LiveSimulator, http: aiohttp.ClientSession, changes: dict[str, Value], code: str, detail: str
) -> None:
    error = await cloud_refusal(sim, http, cloud_request(sim, backend_fields(**resolved(changes))))

    assert isinstance(error, LiveRefused)
    assert not error.retriable
    assert error.code == code
    assert detail in error.message
    assert sim.tasks == []


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"FileFormat": "MP3", "RecordType": "Audio", "MixStream": 1}, id="case-insensitive"),
        pytest.param({"StartTime": None, "EndTime": None}, id="times-optional"),
        pytest.param({"EndTime": "2000-01-01 00:00:00"}, id="past-end-records-30-min"),
    ],
)
async def test_cloud_accepts_documented_field_variants(
    sim: LiveSimulator, http: aiohttp.ClientSession, changes: dict[str, Value]
) -> None:
    status, body = await send(http, cloud_request(sim, backend_fields(**resolved(changes))))
    assert make_backend(sim, "create_live_record").parse(status, body).task_id == sim.tasks[0].task_id


async def test_cloud_refuses_a_body_changed_after_signing(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    request = cloud_request(sim)
    assert request.body is not None
    changed = HttpRequest("POST", request.url, request.headers, request.body.replace(CHANNEL.encode(), b"other"))
    error = await cloud_refusal(sim, http, changed)
    assert (type(error), error.code) == (LiveAccessRefused, "AuthFailure.SignatureFailure")


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        pytest.param({"key": "wrong"}, "AuthFailure.SignatureFailure", id="wrong-key"),
        pytest.param({"secret_id": OTHER_ID}, "AuthFailure.SecretIdNotFound", id="wrong-secret-id"),
        pytest.param({"offset_s": -400}, "AuthFailure.SignatureExpire", id="expired"),
        pytest.param({"offset_s": 400}, "AuthFailure.SignatureExpire", id="future"),
        pytest.param({"headers": {"Host": "live.tencentcloudapi.com"}}, "AuthFailure.SignatureFailure", id="host"),
        pytest.param({"headers": {"X-TC-Action": "CreateRecord"}}, "InvalidAction", id="action"),
        pytest.param({"headers": {"X-TC-Version": "2017-01-01"}}, "NoSuchVersion", id="version"),
        pytest.param(
            {"headers": {"Content-Type": "application/x-www-form-urlencoded"}}, "InvalidParameter", id="not-json"
        ),
    ],
)
async def test_cloud_refuses_bad_credentials_and_headers_as_access(
    sim: LiveSimulator, http: aiohttp.ClientSession, kwargs: dict[str, Any], code: str
) -> None:
    kwargs = dict(kwargs)
    offset = timedelta(seconds=kwargs.pop("offset_s", 0))
    request = cloud_request(sim, now=recording.now_utc() + offset, **kwargs)
    if "headers" in kwargs and "Host" in kwargs["headers"]:
        # Signed for another host than the one the request reaches.
        request = HttpRequest("POST", request.url, {**request.headers, "Host": make_host(sim)}, request.body)
    error = await cloud_refusal(sim, http, request)
    assert error.code == code
    assert sim.tasks == []


def make_host(sim: LiveSimulator) -> str:
    return URL(sim.url).raw_authority


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("TC3-HMAC-SHA256 Credential=x", "AuthFailure.InvalidAuthorization"),
        ("", "AuthFailure.InvalidAuthorization"),
    ],
)
async def test_cloud_refuses_a_malformed_authorization(
    sim: LiveSimulator, http: aiohttp.ClientSession, header: str, code: str
) -> None:
    request = cloud_request(sim)
    error = await cloud_refusal(
        sim, http, HttpRequest("POST", request.url, {**request.headers, "Authorization": header}, request.body)
    )
    assert error.code == code


async def test_cloud_refuses_a_credential_scope_of_another_day(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    request = cloud_request(sim)
    wrong_day = request.headers["Authorization"].replace("/live/", "/cvm/")
    error = await cloud_refusal(
        sim, http, HttpRequest("POST", request.url, {**request.headers, "Authorization": wrong_day}, request.body)
    )
    assert error.code == "AuthFailure.SignatureFailure"
    assert "credential scope" in error.message


async def test_cloud_answers_a_fresh_request_id_every_time(sim: LiveSimulator, http: aiohttp.ClientSession) -> None:
    backend = make_backend(sim, "create_live_record")
    started = [await attempt(http, backend) for _ in range(2)]
    await send(http, cloud_request(sim, key="wrong"))
    ids = [call.request_id for call in sim.calls]
    assert [s.request_id for s in started] == ids[:2]
    assert len(set(ids)) == 3
    assert all(len(request_id or "") == 36 for request_id in ids)


# --- shared faults, rules and switches across the three apis ----------------------------------------------------

EXPECTED_FAULTS: dict[str, dict[str, tuple[type[LiveError], str]]] = {
    "busy": {
        "live_tape_start": (LiveRefused, "ret:1202"),
        "create_record": (LiveLimitReached, "code:4400"),  # v2: one code for limits and frequency
        "create_live_record": (LiveRefused, "error:RequestLimitExceeded"),
    },
    "internal": {
        "live_tape_start": (LiveInDoubt, "ret:1201"),
        "create_record": (LiveInDoubt, "code:6000"),
        "create_live_record": (LiveInDoubt, "error:InternalError"),
    },
    "auth:sign invalid": {
        "live_tape_start": (LiveAccessRefused, "sign invalid"),
        "create_record": (LiveAccessRefused, "code:4100"),
        "create_live_record": (LiveAccessRefused, "error:AuthFailure.SignatureFailure"),
    },
    "http:503": dict.fromkeys(APIS, (LiveUnreachable, "http:503")),
    "http:404": dict.fromkeys(APIS, (LiveAccessRefused, "http:404")),
    "garbage": dict.fromkeys(APIS, (LiveInDoubt, "garbage")),
    "ret:4500": {
        "live_tape_start": (LiveRefused, "ret:4500"),
        "create_record": (LiveRefused, "code:4500"),
        "create_live_record": (LiveRefused, "error:FailedOperation"),
    },
    "error:LimitExceeded.MaximumRunningTask": {
        "live_tape_start": (LiveRefused, "ret:1204"),
        "create_record": (LiveRefused, "code:4000"),
        "create_live_record": (LiveLimitReached, "error:LimitExceeded.MaximumRunningTask"),
    },
}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("fault", list(EXPECTED_FAULTS))
async def test_faults_answer_once_in_each_apis_own_protocol(
    sim: LiveSimulator, http: aiohttp.ClientSession, api: str, fault: str
) -> None:
    error, outcome = EXPECTED_FAULTS[fault][api]
    backend = make_backend(sim, api)
    sim.inject(fault)
    with pytest.raises(error) as raised:
        await attempt(http, backend)

    assert type(raised.value) is error
    assert sim.calls[0].outcome == outcome
    assert sim.tasks == []
    assert (await attempt(http, backend)).task_id == sim.tasks[0].task_id


@pytest.mark.parametrize("api", APIS)
async def test_a_hang_creates_the_task_on_every_api(sim: LiveSimulator, http: aiohttp.ClientSession, api: str) -> None:
    now = recording.now_utc()
    request = make_backend(sim, api).request(RecordingOptions(CHANNEL, 300), recording.window_at(now, 300), now)
    sim.inject("hang")
    with pytest.raises(TimeoutError):
        async with http.request(
            request.method,
            URL(request.url, encoded=True),
            headers=dict(request.headers),
            data=request.body,
            timeout=aiohttp.ClientTimeout(total=0.3),
        ) as resp:
            await resp.read()
    assert sim.calls[0].outcome == "hang"
    assert sim.tasks[0].api == api


REFUSED_CREDENTIALS = {
    "live_tape_start": "sign invalid",
    "create_record": "4100",
    "create_live_record": "AuthFailure.SignatureFailure",
}


@pytest.mark.parametrize("api", APIS)
async def test_refuse_credentials_refuses_every_api_until_switched_off(
    sim: LiveSimulator, http: aiohttp.ClientSession, api: str
) -> None:
    backend = make_backend(sim, api)
    sim.set_config(refuse_credentials=True)
    with pytest.raises(LiveAccessRefused) as refused:
        await attempt(http, backend)
    control = sim.url.removesuffix("/common_access") + "/_sim/config"
    async with http.post(control, json={"refuse_credentials": False}) as resp:
        assert (await resp.json())["refuse_credentials"] is False

    assert refused.value.code == REFUSED_CREDENTIALS[api]
    assert (await attempt(http, backend)).task_id == sim.tasks[0].task_id


async def test_refuse_credentials_can_be_switched_on_through_the_control_route(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    control = sim.url.removesuffix("/common_access") + "/_sim/config"
    async with http.post(control, json={"refuse_credentials": True}) as resp:
        assert resp.status == 200
    async with http.post(control, json={"refuse_credentials": "yes"}) as resp:
        assert resp.status == 400
    assert sim.config.refuse_credentials is True
    for api in APIS:
        with pytest.raises(LiveAccessRefused):
            await attempt(http, make_backend(sim, api))


CHANNEL_RULES = {
    "offline": {
        "live_tape_start": "1301",
        "create_record": "5100",
        "create_live_record": "ResourceUnavailable.StreamNotExist",
    },
    "missing": {
        "live_tape_start": "20601",
        "create_record": "5000",
        "create_live_record": "ResourceNotFound.ChannelNotExist",
    },
}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("rule", list(CHANNEL_RULES))
async def test_channel_rules_answer_in_each_apis_words(http: aiohttp.ClientSession, api: str, rule: str) -> None:
    config = SimulatorConfig(**{f"{rule}_channels": frozenset({CHANNEL})})  # type: ignore[arg-type]
    simulator = await started_sim(config)
    try:
        with pytest.raises(LiveRefused) as refused:
            await attempt(http, make_backend(simulator, api))
    finally:
        await simulator.stop()
    assert refused.value.code == CHANNEL_RULES[rule][api]
    assert not refused.value.retriable


# (code, retriable, reason): v2 has one code for both limits and the frequency limit; it is retried first.
QUOTAS = {
    "max_running": {
        "live_tape_start": ("1206", False, "running_limit"),
        "create_record": ("4400", True, "running_limit"),
        "create_live_record": ("LimitExceeded.MaximumRunningTask", False, "running_limit"),
    },
    "daily_quota": {
        "live_tape_start": ("1207", False, "daily_limit"),
        "create_record": ("4400", True, "running_limit"),
        "create_live_record": ("LimitExceeded.MaximumTask", False, "daily_limit"),
    },
}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("quota", list(QUOTAS))
async def test_quotas_are_shared_and_answer_in_each_apis_words(
    http: aiohttp.ClientSession, api: str, quota: str
) -> None:
    simulator = await started_sim(SimulatorConfig(**{quota: 1}))  # type: ignore[arg-type]
    try:
        # Another api's task counts against the same quota.
        other = "create_record" if api != "create_record" else "create_live_record"
        await attempt(http, make_backend(simulator, other))
        with pytest.raises(LiveLimitReached) as refused:
            await attempt(http, make_backend(simulator, api))
    finally:
        await simulator.stop()
    assert (refused.value.code, refused.value.retriable, refused.value.reason) == QUOTAS[quota][api]


@pytest.mark.parametrize("api", APIS)
async def test_random_error_rate_is_an_internal_error_in_each_protocol(http: aiohttp.ClientSession, api: str) -> None:
    simulator = await started_sim(SimulatorConfig(error_rate=1.0))
    try:
        with pytest.raises(LiveError):
            await attempt(http, make_backend(simulator, api))
    finally:
        await simulator.stop()
    assert simulator.calls[0].outcome == EXPECTED_FAULTS["internal"][api][1]


def test_inject_accepts_neutral_and_protocol_faults_and_refuses_bad_codes() -> None:
    simulator = LiveSimulator()
    simulator.inject("busy", "internal", "auth:x", "error:AuthFailure.SignatureExpire", "ret:4400")
    for bad in ("busy:1", "internal:x", "error:", "error:Bad Code", "error:.x"):
        with pytest.raises(ValueError, match="fault"):
            simulator.inject(bad)


# --- HTTPS --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_serves_every_api_over_https_with_a_trusted_certificate(ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    simulator = LiveSimulator()
    url = await simulator.start(ssl_context=server_context)
    try:
        assert url.startswith("https://127.0.0.1:")
        assert all(simulator.url_for(api).startswith("https://") for api in APIS)
        connector = aiohttp.TCPConnector(ssl=client_context)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = [await attempt(session, make_backend(simulator, api)) for api in APIS]
        async with aiohttp.ClientSession() as untrusting:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await attempt(untrusting, make_backend(simulator, "create_live_record"))
    finally:
        await simulator.stop()
    assert [s.task_id for s in started] == [task.task_id for task in simulator.tasks]
    assert [task.api for task in simulator.tasks] == list(APIS)


async def test_control_routes_show_each_calls_api_window_and_request_id(
    sim: LiveSimulator, http: aiohttp.ClientSession
) -> None:
    for api in APIS:
        await attempt(http, make_backend(sim, api))
    base = sim.url.removesuffix("/common_access")
    async with http.get(base + "/_sim/calls") as resp:
        calls = await resp.json()
    async with http.get(base + "/_sim/tasks") as resp:
        tasks = await resp.json()

    assert [call["api"] for call in calls] == [task["api"] for task in tasks] == list(APIS)
    assert [call["request_id"] is not None for call in calls] == [False, False, True]
    assert all(call["start_time"] and call["end_time"] and call["channel_id"] == CHANNEL for call in calls)
    assert [call["task_id"] for call in calls] == [task["task_id"] for task in tasks]

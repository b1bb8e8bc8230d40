"""The simulator's read-only calls (Live_Channel_GetLiveChannelList, DescribeLVBChannelList,
DescribeLiveStreamOnlineList), hit over real HTTP by each backend's `probe` through the Live client.

They are what `highlight check` proves the credentials with, so they must check a signature exactly as the same
API's recording call does, and never create anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from highlight import config, recording
from highlight.apis import backend_for
from highlight.apis.create_live_record import authorization
from highlight.apis.create_record import encode_query, sign_string, signature
from highlight.config import LiveSettings
from highlight.errors import LiveAccessRefused
from highlight.live import LiveClient
from highlight.recording import RecordingOptions
from highlight.simulator import LiveSimulator
from tests.conftest import simulator_config
from tests.harness import APIS, SECRET_ID, SECRET_KEY, Names, service_env

ACTIONS = {
    "live_tape_start": "Live_Channel_GetLiveChannelList",
    "create_record": "DescribeLVBChannelList",
    "create_live_record": "DescribeLiveStreamOnlineList",
}
# The setting that, wrong, makes each API refuse us.
KEYS = {"live_tape_start": "live_key", "create_record": "secret_key", "create_live_record": "secret_key"}


@pytest.fixture
async def sim() -> AsyncIterator[LiveSimulator]:
    live = frozenset({"on-air", "off-air", "also-on-air"})
    config_ = simulator_config(seed=5, live_channels=live, offline_channels=frozenset({"off-air"}))
    async with LiveSimulator(config_) as simulator:
        yield simulator


def live_settings(sim: LiveSimulator, api: str, **overrides: Any) -> LiveSettings:
    return config.load(service_env("127.0.0.1:9", Names.unique(), sim.url_for(api), live_api=api, **overrides)).live


async def probe(settings: LiveSettings) -> str:
    async with LiveClient(settings, backend_for(settings), max_connections=1) as client:
        return await client.probe(recording.now_utc())


@pytest.mark.parametrize("api", APIS)
async def test_the_read_only_call_accepts_good_credentials_and_creates_nothing(sim: LiveSimulator, api: str) -> None:
    said = await probe(live_settings(sim, api))

    assert ACTIONS[api] in said
    assert "2 " in said, "the live channels: configured as live and not offline"
    assert [(read.api, read.action, read.outcome) for read in sim.reads] == [(api, ACTIONS[api], "ok")]
    assert sim.tasks == []
    assert sim.calls == [], "a read is no recording call"


@pytest.mark.parametrize("api", APIS)
async def test_a_wrong_key_is_refused_by_the_read_only_call_as_by_a_recording_call(
    sim: LiveSimulator, api: str
) -> None:
    wrong = live_settings(sim, api, **{KEYS[api]: "not-the-key"})
    with pytest.raises(LiveAccessRefused):
        await probe(wrong)
    async with LiveClient(wrong, backend_for(wrong), max_connections=1) as client:
        now = recording.now_utc()
        with pytest.raises(LiveAccessRefused):
            await client.start(RecordingOptions("on-air", 300), recording.window_at(now, 300), now)

    (read,) = sim.reads
    assert read.outcome != "ok"
    assert read.outcome == sim.calls[0].outcome, "the same refusal, in the same words"
    assert sim.tasks == []


@pytest.mark.parametrize("api", APIS)
async def test_refused_credentials_refuse_the_read_only_calls_too(sim: LiveSimulator, api: str) -> None:
    sim.set_config(refuse_credentials=True)
    with pytest.raises(LiveAccessRefused):
        await probe(live_settings(sim, api))
    sim.set_config(refuse_credentials=False)
    await probe(live_settings(sim, api))
    assert [read.outcome == "ok" for read in sim.reads] == [False, True]


@pytest.mark.parametrize("api", APIS)
async def test_a_read_only_call_takes_no_injected_fault_and_leaves_it_for_a_recording_call(
    sim: LiveSimulator, api: str
) -> None:
    sim.inject("busy")
    await probe(live_settings(sim, api))
    assert sim.reads[-1].outcome == "ok"
    assert sim._faults[None], "the fault still waits for a recording call"


async def test_the_legacy_list_reads_a_form_posted_call_too(sim: LiveSimulator) -> None:
    settings = live_settings(sim, "live_tape_start")
    request = backend_for(settings).probe(recording.now_utc())
    query = request.url.split("?", 1)[1]
    async with aiohttp.ClientSession() as http, http.post(sim.url, data=query, headers=_form()) as response:
        reply = orjson.loads(await response.read())
    assert reply["ret"] == 0
    assert reply["output"]["channel_list"] == [{"channel_id": "also-on-air"}, {"channel_id": "on-air"}]


def _form() -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded"}


async def _v2(sim: LiveSimulator, **extra: str) -> dict[str, Any]:
    url = sim.url_for("create_record")
    host = url.split("/")[2]
    params = {
        "Action": "DescribeLVBChannelList",
        "Region": "gz",
        "Timestamp": str(int(recording.now_utc().timestamp())),
        "Nonce": extra.pop("Nonce", "77"),
        "SecretId": SECRET_ID,
        **extra,
    }
    params["Signature"] = signature(SECRET_KEY, sign_string("GET", host, "/v2/index.php", params))
    async with aiohttp.ClientSession() as http, http.get(f"{url}?{encode_query(params)}") as response:
        reply: dict[str, Any] = orjson.loads(await response.read())
    return reply


async def test_the_v2_list_checks_its_filters_and_shares_the_nonce_memory_of_recording_calls(
    sim: LiveSimulator,
) -> None:
    assert (await _v2(sim, pageSize="x", Nonce="1"))["code"] == 4000
    listed = await _v2(sim, pageNo="1", pageSize="20", Nonce="2")
    assert listed["code"] == 0
    assert listed["all_count"] == "2", "v2 writes its counts as strings"
    assert (await _v2(sim, Nonce="2"))["code"] == 4500, "a Nonce is good once"


async def _cloud(sim: LiveSimulator, fields: dict[str, object]) -> dict[str, Any]:
    url = sim.url_for("create_live_record")
    host = url.split("/")[2]
    body = orjson.dumps(fields)
    timestamp = int(recording.now_utc().timestamp())
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-TC-Action": "DescribeLiveStreamOnlineList",
        "X-TC-Version": "2018-08-01",
        "X-TC-Timestamp": str(timestamp),
        "Authorization": authorization(SECRET_ID, SECRET_KEY, timestamp=timestamp, host=host, body=body),
    }
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        reply: dict[str, Any] = orjson.loads(await response.read())["Response"]
    return reply


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"PageSize": 5}, "InvalidParameterValue"),
        ({"PageNum": 0}, "InvalidParameterValue"),
        ({"PageSize": "10"}, "InvalidParameter"),
        ({"Highlight": 1}, "UnknownParameter"),
    ],
)
async def test_the_cloud_list_checks_its_fields(sim: LiveSimulator, fields: dict[str, object], code: str) -> None:
    assert (await _cloud(sim, fields))["Error"]["Code"] == code


async def test_the_cloud_list_pages_and_filters_the_live_streams(sim: LiveSimulator) -> None:
    listed = await _cloud(sim, {"PageSize": 10, "StreamName": "on-air"})
    assert listed["TotalNum"] == 1
    assert [info["StreamName"] for info in listed["OnlineInfo"]] == ["on-air"]
    assert listed["RequestId"]
    assert (await _cloud(sim, {"PageNum": 2}))["OnlineInfo"] == [], "past the last page"

"""End to end across recording APIs: each one's request, a switch of API with the state carried over, and
the logs of a full run holding no key and no signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from highlight.simulator import LiveSimulator
from tests.harness import (
    DOMAIN,
    KEY,
    REGION,
    SECRET_ID,
    SECRET_KEY,
    Names,
    by_event,
    create_topics,
    moment,
    produce,
    read_topic,
    results,
    running,
    service_env,
    settings_for,
)
from tests.multiprocess import processes


async def test_create_record_sends_the_documented_v2_request(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    settings = settings_for(
        bootstrap, names, simulator.url_for("create_record"), live_api="create_record", signature_method="HmacSHA256"
    )
    await produce(bootstrap, names.moments, [moment("v1", "v2-chan"), moment("v2", "v2-other")])
    async with running(settings):
        got = by_event(await results(bootstrap, names.results, 2))
    first, second = simulator.calls_for("v2-chan")[0], simulator.calls_for("v2-other")[0]
    query = first.query
    assert (query["Action"], query["channelId"], query["tapeType"]) == ("CreateRecord", "v2-chan", "1")
    assert (query["Region"], query["SecretId"], query["SignatureMethod"]) == (REGION, SECRET_ID, "HmacSHA256")
    assert (query["startTime"], query["endTime"]) == (got["v1"]["start_time"], got["v1"]["end_time"])
    assert query["Nonce"] != second.query["Nonce"], "a fresh Nonce per request"
    assert int(query["Nonce"]) > 0
    assert got["v1"]["api"] == "create_record"
    assert got["v1"]["task_id"] == str(first.task_id)


async def test_create_live_record_sends_the_documented_3_0_request(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    settings = settings_for(
        bootstrap, names, simulator.url_for("create_live_record"), live_api="create_live_record", app_name="show"
    )
    full = moment("c1", "cloud-chan", domain="other.example.com", file_format="mp4", record_type="video", mix_stream=1)
    await produce(bootstrap, names.moments, [full, moment("c2", "cloud-bare")])
    async with running(settings):
        got = by_event(await results(bootstrap, names.results, 2))
    body = simulator.calls_for("cloud-chan")[0].query
    assert (body["StreamName"], body["AppName"], body["DomainName"]) == ("cloud-chan", "show", "other.example.com")
    assert (body["Highlight"], body["FileFormat"], body["RecordType"], body["MixStream"]) == ("1", "mp4", "video", "1")
    assert (body["StartTime"], body["EndTime"]) == (got["c1"]["start_time"], got["c1"]["end_time"])
    bare = simulator.calls_for("cloud-bare")[0]
    assert bare.query["DomainName"] == DOMAIN, "HIGHLIGHT_DOMAIN_NAME when the moment names none"
    assert "FileFormat" not in bare.query
    assert got["c2"]["request_id"] == bare.request_id, "RequestId is kept for Tencent support"


async def test_switching_the_api_by_environment_keeps_the_dedup_state(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    first = moment("before", "switch-chan")
    await produce(bootstrap, names.moments, [first])
    async with running(settings_for(bootstrap, names, simulator.url)):
        (before,) = await results(bootstrap, names.results, 1)

    # The same deployment, restarted with only HIGHLIGHT_LIVE_API and the Cloud API credentials changed.
    switched = settings_for(bootstrap, names, simulator.url_for("create_live_record"), live_api="create_live_record")
    await produce(bootstrap, names.moments, [first | {"event_id": "after-dup"}, moment("after-new", "switch-new")])
    async with running(switched):
        got = by_event(await results(bootstrap, names.results, 3))
    assert before["api"] == "live_tape_start"
    assert got["after-dup"]["status"] == "duplicate", "the key recorded through the old API is still taken"
    assert got["after-dup"]["task_id"] == before["task_id"]
    assert got["after-dup"]["api"] == "live_tape_start", "the api that made that recording"
    assert (got["after-new"]["status"], got["after-new"]["api"]) == ("started", "create_live_record")
    assert [c.api for c in simulator.calls] == ["live_tape_start", "create_live_record"]


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(orjson.loads(raw))
    return lines


async def test_logs_of_a_full_run_hold_no_key_and_no_signature(
    bootstrap: str, names: Names, simulator: LiveSimulator, api: str, tmp_path: Path
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    simulator.inject("auth:sign invalid", channel="log-auth")
    simulator.inject("http:503", channel="log-retry")
    simulator.inject("garbage", channel="log-doubt")
    sent = [
        moment("l-ok", "log-ok"),
        moment("l-auth", "log-auth"),
        moment("l-retry", "log-retry"),
        moment("l-doubt", "log-doubt"),
    ]
    await produce(bootstrap, names.moments, sent)
    await produce(bootstrap, names.moments, [b"not json"], key=None)
    env = service_env(bootstrap, names, simulator.url_for(api), live_api=api, log_level="debug")
    async with processes(tmp_path) as instances:
        process = instances.spawn(env, "run")
        got = by_event(await results(bootstrap, names.results, 4, timeout=60))
        await read_topic(bootstrap, names.dlq, 1)
        assert await instances.terminate(process, 30) == 0
    log_path = instances.log_path("run")
    text = log_path.read_text()
    assert {e: d["status"] for e, d in got.items()} == {
        "l-ok": "started",
        "l-auth": "started",
        "l-retry": "started",
        "l-doubt": "in_doubt",
    }
    signatures = [c.signature for c in simulator.calls]
    assert all(signatures), "every call was signed"
    assert len(signatures) >= 6
    for secret in [KEY, SECRET_KEY, *signatures]:
        assert secret is not None
        assert secret not in text, f"{secret[:6]}… leaked into the logs"

    lines = _log_lines(log_path)
    canonical = {line["event_id"]: line for line in lines if line["event"] in ("moment_recorded", "moment_answered")}
    assert set(canonical) == {"l-ok", "l-auth", "l-retry", "l-doubt"}
    ok = canonical["l-ok"]
    for field in ("channel_id", "bucket", "status", "task_id", "attempts", "latency_ms", "api", "topic", "offset"):
        assert field in ok, field
    assert (ok["status"], ok["task_id"], ok["api"], ok["topic"]) == (
        "started",
        got["l-ok"]["task_id"],
        api,
        names.moments,
    )
    assert canonical["l-auth"]["attempts"] == 2
    assert sum(line["event"] == "live_api_unavailable" for line in lines) == 1
    assert sum(line["event"] == "live_api_recovered" for line in lines) == 1

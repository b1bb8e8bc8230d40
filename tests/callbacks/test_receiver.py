"""`highlight callbacks` over real HTTP on a real broker: what it answers, what it stores, and when.

One receiver serves most of the module; the durable-ingest tests run their own broker so they can stop it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from highlight import signing
from highlight.broker import EmbeddedBroker, free_port
from highlight.callbacks.notification import MAX_BODY_BYTES
from highlight.callbacks.receiver import PATH, Receiver
from highlight.kafka import home_partition
from highlight.simulator import LiveSimulator
from tests.conftest import simulator_config
from tests.harness import (
    CALLBACK_KEY,
    Names,
    clips,
    create_topics,
    moment,
    produce,
    read_all,
    read_until,
    readyz,
    receiver_settings_for,
    receiving,
    result_of,
    running,
    scrape,
    settings_for,
    spawn,
    value,
    wait_ready,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PARTITIONS = 3


def signed(*, key: str = CALLBACK_KEY, t: int | str | None = None, **fields: Any) -> dict[str, Any]:
    """A notification as Live signs it: `t` (default 10 minutes from now) and `sign = md5(key + t)`."""
    expiry: int | str = int(time.time()) + 600 if t is None else t
    return {**fields, "t": expiry, "sign": signing.sign(key, expiry)}


def file_notification(stream: str, file_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    fields: dict[str, Any] = {
        "event_type": 100,
        "appid": 1234,
        "stream_id": stream,
        "channel_id": stream,
        "file_id": file_id,
        "video_url": f"http://1234.vod2.myqcloud.com/x/{file_id}/f0.mp4",
        "file_format": "mp4",
        "file_size": 1000,
        "duration": 300,
        "start_time": now - 5,
        "end_time": now + 295,
    }
    return signed(**(fields | changes))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def names(bootstrap: str) -> Names:
    topics = Names.unique("receiver")
    await create_topics(bootstrap, {topics.moments: PARTITIONS})
    return topics


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def receiver(bootstrap: str, names: Names) -> AsyncIterator[Receiver]:
    async with receiving(receiver_settings_for(bootstrap, names, metrics_port=free_port())) as running_receiver:
        yield running_receiver


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, body: bytes | dict[str, Any], **kwargs: Any) -> tuple[int, Any]:
    data = orjson.dumps(body) if isinstance(body, dict) else body
    async with http.post(url, data=data, headers={"Content-Type": "application/json"}, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def stored(bootstrap: str, topic: str, *bodies: bytes) -> list[Any]:
    """Every record of the topic, once each of `bodies` is among them."""
    return await read_until(bootstrap, topic, lambda rs: set(bodies) <= {r.value for r in rs}, timeout=10)


# --- answers -------------------------------------------------------------------------------------------


async def test_an_authentic_notification_is_stored_byte_for_byte_on_its_channels_home_partition_then_200(
    bootstrap: str, names: Names, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    body = orjson.dumps(file_notification("home-chan", "file-home"), option=orjson.OPT_INDENT_2)
    assert await post(http, receiver.url, body) == (200, {"code": 0})
    (record,) = [r for r in await stored(bootstrap, names.callbacks, body) if r.key == b"home-chan"]
    assert record.value == body, "the original bytes, whitespace and all"
    assert record.partition == home_partition("home-chan", PARTITIONS), "the channel's moments' partition"


async def test_every_event_type_is_acknowledged_and_stored_keyed_by_stream_else_channel(
    bootstrap: str, names: Names, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    started = signed(event_type=1, channel_id="stream-evt-chan", appid="1234")
    no_channel = signed(event_type=332, appid=1234)
    for body in (started, no_channel):
        assert await post(http, receiver.url, body) == (200, {"code": 0})
    records = await stored(bootstrap, names.callbacks, orjson.dumps(started), orjson.dumps(no_channel))
    values = {r.value: r for r in records}
    assert values[orjson.dumps(started)].key == b"stream-evt-chan"
    assert values[orjson.dumps(no_channel)].key is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(lambda: signed(key="not-the-callback-key", event_type=100), 401, id="bad-sign"),
        pytest.param(lambda: {**signed(event_type=100), "sign": "0" * 32}, 401, id="wrong-sign"),
        pytest.param(lambda: {"event_type": 100, "t": int(time.time()) + 600}, 401, id="no-sign"),
        pytest.param(lambda: signed(t=int(time.time()) - 901, event_type=100), 401, id="t-past-the-grace"),
        pytest.param(lambda: b"this is not json", 400, id="not-json"),
        pytest.param(lambda: b"[1, 2, 3]", 400, id="json-array"),
        pytest.param(lambda: b'{"t": 1' + b" " * MAX_BODY_BYTES + b"}", 413, id="too-large"),
    ],
)
async def test_a_rejected_notification_is_answered_and_nothing_is_stored(
    bootstrap: str, names: Names, receiver: Receiver, http: aiohttp.ClientSession, body: Any, status: int
) -> None:
    before = len(await stored(bootstrap, names.callbacks))
    made = body()
    answer = await post(http, receiver.url, made)
    assert answer[0] == status
    assert answer[1]["code"] == status
    assert answer[1]["message"]
    # A marker afterwards: once it is there, anything stored before it would be too.
    marker = file_notification("marker-chan", f"marker-{status}-{time.monotonic_ns()}")
    assert (await post(http, receiver.url, marker))[0] == 200
    # Stored before its answer as every notification is: anything stored for the rejected one is there too.
    after = await stored(bootstrap, names.callbacks, orjson.dumps(marker))
    assert len(after) == before + 1, "only the marker was stored"


async def test_a_body_over_64_kib_without_a_length_is_refused_too(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    async with http.post(receiver.url, data=chunks()) as response:
        assert response.status == 413


async def test_a_notification_within_the_grace_after_t_is_accepted(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    late = signed(t=int(time.time()) - 800, event_type=0, stream_id="late-chan")
    assert await post(http, receiver.url, late) == (200, {"code": 0})
    legacy = signed(t=str(int(time.time()) + 600), event_type="0", stream_id="late-chan")
    assert await post(http, receiver.url, legacy) == (200, {"code": 0}), "t as a decimal string"


async def test_only_post_on_the_callback_path_is_served(receiver: Receiver, http: aiohttp.ClientSession) -> None:
    async with http.get(receiver.url) as response:
        assert response.status == 405
    async with http.post(receiver.url.replace(PATH, "/other"), data=b"{}") as response:
        assert response.status == 404


async def test_metrics_count_notifications_by_event_type_and_verdict_and_readiness_is_200(
    receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    assert receiver.ops_port is not None
    before = await scrape(receiver.ops_port)
    await post(http, receiver.url, file_notification("metrics-chan", "metrics-1"))
    await post(http, receiver.url, signed(key="wrong", event_type=100))
    await post(http, receiver.url, signed(t=1, event_type=100))
    await post(http, receiver.url, b"nope")
    await post(http, receiver.url, signed(event_type=321, stream_id="metrics-chan"))
    after = await scrape(receiver.ops_port)

    def grew(event_type: str, verdict: str) -> float:
        name = "highlight_callback_notifications_total"
        return value(after, name, event_type=event_type, verdict=verdict) - value(
            before, name, event_type=event_type, verdict=verdict
        )

    assert grew("100", "stored") == 1
    assert grew("100", "bad_sign") == 1
    assert grew("100", "expired") == 1
    assert grew("unknown", "malformed") == 1
    assert grew("321", "stored") == 1
    assert value(after, "highlight_callbacks_ready") == 1
    assert (await readyz(receiver.ops_port))[0] == 200


# --- durable ingest: a broker that stops and comes back ----------------------------------------------------


async def test_with_the_broker_down_503_and_nothing_stored_then_the_resent_notification_is_stored_once_and_clipped(
    http: aiohttp.ClientSession,
) -> None:
    broker = EmbeddedBroker(port=free_port()).start()
    names = Names.unique("ingest")
    try:
        await create_topics(broker.bootstrap, {names.moments: 2, names.callbacks: 2})
        ops = free_port()
        async with receiving(receiver_settings_for(broker.bootstrap, names, metrics_port=ops)) as receiver:
            broker.stop()
            # No task id: the recording it belongs to is started only once the broker is back.
            note = file_notification("ingest-chan", "ingest-file-1")
            started = time.monotonic()
            assert (await post(http, receiver.url, note))[0] == 503
            assert time.monotonic() - started < 15, "answered well within Live's 20 s"
            await wait_ready(ops, 503, containing="Kafka")
            # Memory storage: the restarted broker is empty, so the topics are made again.
            broker.start()
            await create_topics(broker.bootstrap, {names.moments: 2, names.callbacks: 2})
            await wait_ready(ops, 200)
            async with (
                LiveSimulator(simulator_config()) as sim,
                running(settings_for(broker.bootstrap, names, sim.url)),
            ):
                await produce(broker.bootstrap, names.moments, [moment("ingest-1", "ingest-chan")])
                assert (await result_of(broker.bootstrap, names.results, "ingest-1"))["status"] == "started"
                assert await post(http, receiver.url, note) == (200, {"code": 0})
                found = await clips(broker.bootstrap, names.clips, 1)
                records = await read_all(broker.bootstrap, names.callbacks)
        assert [r.value for r in records] == [orjson.dumps(note)], "stored once: the refused delivery never landed"
        assert [(c["file_id"], c["started_by"], c["matched_by"]) for c in found] == [
            ("ingest-file-1", "ingest-1", "window")
        ]
    finally:
        broker.close()


# --- the command, as a process ---------------------------------------------------------------------------


async def test_highlight_callbacks_serves_logs_each_notification_without_the_key_and_stops_on_sigterm(
    bootstrap: str, tmp_path: Path
) -> None:
    names = Names.unique("cmd")
    await create_topics(bootstrap, {names.moments: 2})
    port, ops = free_port(), free_port()
    env = {
        "HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HIGHLIGHT_MOMENTS_TOPIC": names.moments,
        "HIGHLIGHT_CALLBACKS_TOPIC": names.callbacks,
        "HIGHLIGHT_CALLBACK_KEY": CALLBACK_KEY,
        "HIGHLIGHT_CALLBACK_PORT": str(port),
        "HIGHLIGHT_METRICS_PORT": str(ops),
        "HIGHLIGHT_LOG_FORMAT": "json",
    }
    log = tmp_path / "callbacks.log"
    process = spawn(env, log, command="callbacks")
    try:
        await wait_ready(ops, 200, timeout=30)
        url = f"http://127.0.0.1:{port}{PATH}"
        async with aiohttp.ClientSession() as http:
            assert (await post(http, url, file_notification("cmd-chan", "cmd-file")))[0] == 200
            assert (await post(http, url, signed(key="wrong", event_type=100)))[0] == 401
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert code == 0, text
    lines = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    received = [line for line in lines if line["event"] == "callback_received"]
    assert [(line["verdict"], line["status"]) for line in received] == [("stored", 200), ("bad_sign", 401)]
    assert received[0]["channel_id"] == "cmd-chan"
    assert received[0]["file_id"] == "cmd-file"
    assert CALLBACK_KEY not in text
    assert signing.sign(CALLBACK_KEY, received[0]["t"]) not in text, "nor the sign"
    assert "callbacks_stopped" in text

"""`highlight dlq replay` end to end, on the real broker and the simulator.

The module's dead letters are made the way an operator meets them: the recorder runs with a small
HIGHLIGHT_MAX_MOMENT_BYTES, so three moments are dead-lettered as `too_large` (next to one `invalid_json`
record); it is then restarted with the default limit, and the tests replay. Counts are taken before and after
each replay, so the tests hold in any order.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from highlight.dead_letters import dead_letter_headers, fit
from highlight.kafka import record_size
from highlight.moment import InvalidMoment
from highlight.service import Service
from highlight.simulator import LiveSimulator
from highlight.tools.replay import replay
from highlight.tools.selection import selection_from
from tests.conftest import simulator_config
from tests.harness import (
    Names,
    by_event,
    create_topics,
    moment,
    read_topic,
    results,
    running,
    service_env,
    settings_for,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SMALL_LIMIT = 200
# Long enough that no moment of the module expires while it is replayed: the clock is not what is tested here.
MAX_AGE = 3600
CHANNELS = ("big-a", "big-b", "big-c")
NOT_JSON = b'{"event_id": "broken"'
LIVE_SETTINGS = (
    "HIGHLIGHT_LIVE_URL",
    "HIGHLIGHT_LIVE_APPID",
    "HIGHLIGHT_LIVE_KEY",
    "HIGHLIGHT_SECRET_ID",
    "HIGHLIGHT_SECRET_KEY",
    "HIGHLIGHT_REGION",
    "HIGHLIGHT_DOMAIN_NAME",
)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim() -> AsyncIterator[LiveSimulator]:
    async with LiveSimulator(simulator_config(seed=11)) as simulator:
        yield simulator


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def topics(bootstrap: str, sim: LiveSimulator) -> Names:
    """Three too-large moments and one unreadable record, dead-lettered by a recorder with a small limit."""
    names = Names.unique("replay")
    await create_topics(bootstrap, {names.moments: 2})
    big = [moment(f"evt-{channel}", channel, attributes={"pad": "x" * SMALL_LIMIT}) for channel in CHANNELS]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for document in big:
            # The producer's own headers travel with the moment, through the dead letter and back.
            headers = [("trace", f"trace-{document['channel_id']}".encode())]
            key = document["channel_id"].encode()
            await producer.send_and_wait(names.moments, orjson.dumps(document), key=key, headers=headers)
        await producer.send_and_wait(names.moments, NOT_JSON, key=b"broken-key")
    finally:
        await producer.stop()
    small = settings_for(bootstrap, names, sim.url, max_moment_bytes=SMALL_LIMIT, max_event_age_seconds=MAX_AGE)
    async with running(small):
        dead = await read_topic(bootstrap, names.dlq, len(CHANNELS) + 1)
    reasons = sorted(dict(record.headers)["highlight.dlq.reason"] for record in dead)
    assert reasons == [b"invalid_json", b"too_large", b"too_large", b"too_large"]
    assert sim.calls == [], "nothing was recorded with the small limit"
    return names


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def recorder(bootstrap: str, topics: Names, sim: LiveSimulator) -> AsyncIterator[Service]:
    """The recorder again, with the default HIGHLIGHT_MAX_MOMENT_BYTES."""
    async with running(settings_for(bootstrap, topics, sim.url, max_event_age_seconds=MAX_AGE)) as service:
        yield service


def _settings(bootstrap: str, topics: Names, sim: LiveSimulator) -> Any:
    return settings_for(bootstrap, topics, sim.url, max_event_age_seconds=MAX_AGE)


async def _replay(bootstrap: str, topics: Names, sim: LiveSimulator, *, dry_run: bool = False, **flags: Any) -> str:
    out = io.StringIO()
    await replay(_settings(bootstrap, topics, sim), selection_from(**flags), dry_run=dry_run, out=out)
    return out.getvalue()


async def _count(bootstrap: str, topic: str) -> int:
    return len(await read_topic(bootstrap, topic, 0, timeout=0))


async def test_replayed_too_large_moments_get_their_results_and_a_second_replay_makes_no_second_call(
    bootstrap: str, topics: Names, sim: LiveSimulator, recorder: Service
) -> None:
    dead_before = await _count(bootstrap, topics.dlq)
    moments_before = await read_topic(bootstrap, topics.moments, 0, timeout=0)

    output = await _replay(bootstrap, topics, sim, reasons=["too_large"])

    answers = by_event(await results(bootstrap, topics.results, len(CHANNELS)))
    assert {event: answer["status"] for event, answer in answers.items()} == {
        f"evt-{channel}": "started" for channel in CHANNELS
    }
    assert sorted(call.channel_id or "" for call in sim.calls) == sorted(CHANNELS), "one call per moment"
    assert f"{topics.dlq}: 3 selected, 3 replayed to {topics.moments}, 1 skipped" in output
    assert sum(line.startswith("replayed ") for line in output.splitlines()) == 3

    seen = {(record.partition, record.offset) for record in moments_before}
    published = await read_topic(bootstrap, topics.moments, len(moments_before) + 3)
    replayed = [record for record in published if (record.partition, record.offset) not in seen]
    assert len(replayed) == 3
    dead = {record.value: record for record in await read_topic(bootstrap, topics.dlq, dead_before)}
    for record in replayed:
        source = dead[record.value]
        assert record.key == source.key, "the original key"
        channel = orjson.loads(record.value)["channel_id"]
        assert record.key == channel.encode()
        assert record.headers[0] == ("trace", f"trace-{channel}".encode()), "the original headers, first"
        headers = dict(record.headers)
        assert not any(name.startswith(("__connect.errors.", "kafka_dlt-", "highlight.dlq.")) for name in headers)
        assert headers["highlight.replay.topic"] == topics.dlq.encode()
        assert headers["highlight.replay.partition"] == str(source.partition).encode()
        assert headers["highlight.replay.offset"] == str(source.offset).encode()
    assert NOT_JSON not in [record.value for record in replayed], "invalid_json dead letters are left alone"

    calls = len(sim.calls)
    await _replay(bootstrap, topics, sim, reasons=["too_large"])
    again = await results(bootstrap, topics.results, 2 * len(CHANNELS))
    assert len(again) == 2 * len(CHANNELS), "the second replay is answered too"
    assert by_event(again).keys() == answers.keys(), "with the same answers (by_event compares them)"
    assert len(sim.calls) == calls, "and no second call"
    assert len(sim.tasks) == len(CHANNELS)
    assert await _count(bootstrap, topics.dlq) == dead_before, "nothing was dead-lettered again"


async def test_a_dead_letter_still_invalid_is_dead_lettered_again_as_a_new_one(
    bootstrap: str, topics: Names, sim: LiveSimulator, recorder: Service
) -> None:
    before = await read_topic(bootstrap, topics.dlq, 0, timeout=0)
    (source,) = [record for record in before if record.value == NOT_JSON]

    output = await _replay(bootstrap, topics, sim, reasons=["invalid_json"])

    assert f"{topics.dlq}: 1 selected, 1 replayed to {topics.moments}" in output
    after = await read_topic(bootstrap, topics.dlq, len(before) + 1)
    seen = {(record.partition, record.offset) for record in before}
    (new,) = [record for record in after if (record.partition, record.offset) not in seen]
    assert new.value == NOT_JSON, "the original bytes"
    headers = dict(new.headers)
    assert headers["highlight.dlq.reason"] == b"invalid_json"
    assert headers["highlight.replay.offset"] == str(source.offset).encode(), "it names the dead letter it was"
    assert new.key == b"broken-key"


async def test_a_dry_run_prints_the_selection_and_publishes_nothing(
    bootstrap: str, topics: Names, sim: LiveSimulator, recorder: Service
) -> None:
    moments_before = await _count(bootstrap, topics.moments)
    calls = len(sim.calls)

    output = await _replay(bootstrap, topics, sim, dry_run=True, reasons=["too_large"])
    limited = await _replay(bootstrap, topics, sim, dry_run=True, limit="1")

    lines = output.splitlines()
    assert sum(line.startswith("would replay ") for line in lines) == 3
    assert all("too_large" in line for line in lines if line.startswith("would replay "))
    assert f"{topics.dlq}: 3 selected, nothing published (dry run)" in output
    would = [line for line in limited.splitlines() if line.startswith("would replay ")]
    assert would == [min(would)], "the first record, partitions then offsets ascending"
    assert len(would) == 1
    assert await _count(bootstrap, topics.moments) == moments_before
    assert len(sim.calls) == calls


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "highlight", "dlq", "replay", *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _replay_env(bootstrap: str, topics: Names, sim: LiveSimulator) -> dict[str, str]:
    env = service_env(bootstrap, topics, sim.url, max_event_age_seconds=MAX_AGE)
    # The replay never calls the Live API: it must not ask for its credentials.
    return {name: value for name, value in env.items() if name not in LIVE_SETTINGS}


async def test_the_command_needs_no_live_credentials_and_exits_0(
    bootstrap: str, topics: Names, sim: LiveSimulator
) -> None:
    dead = await _count(bootstrap, topics.dlq)
    # In a thread: the module's recorder keeps heartbeating from this event loop meanwhile.
    result = await asyncio.to_thread(
        _cli, _replay_env(bootstrap, topics, sim), "--dry-run", "--reason", "too_large", "invalid_json"
    )
    assert result.returncode == 0, result.stderr
    assert f"{topics.dlq}: {dead} selected, nothing published (dry run), 0 skipped" in result.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--reason", "too_big"], "--reason 'too_big' is not a dead-letter reason"),
        (["--from-offset", "9", "--to-offset", "3"], "--from-offset 9 is after --to-offset 3: the range is empty"),
        (["--since", "2026-11-22T20:00:00+08:00", "--until", "2026-11-22T12:00:00Z"], "the time range is empty"),
        (["--since", "last tuesday"], "--since must be an RFC 3339 time with an offset"),
        (["--partition", "2"], "--partition 2 does not exist: the dead-letter topic has 2 partitions (0..1)"),
    ],
)
async def test_a_bad_selection_exits_2_with_one_line_before_publishing_anything(
    bootstrap: str, topics: Names, sim: LiveSimulator, flags: list[str], message: str
) -> None:
    result = await asyncio.to_thread(_cli, _replay_env(bootstrap, topics, sim), *flags)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("highlight: error: ")
    assert message in lines[0]
    assert result.stdout == "", "not one record listed, so none published"


async def test_truncated_copies_and_records_too_large_to_send_are_counted_not_replayable(
    bootstrap: str, names: Names
) -> None:
    await create_topics(bootstrap, {names.moments: 1, names.dlq: 1})
    ours = dead_letter_headers(InvalidMoment("too_large", "big"), names.moments, 0, 7)
    cut = fit(b"ch-cut", b"x" * 100_000, [], ours, budget=70_000, size_of=record_size)
    whole = dead_letter_headers(InvalidMoment("too_large", "big"), names.moments, 0, 8)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2**20)
    await producer.start()
    try:
        await producer.send_and_wait(names.dlq, cut.value, key=cut.key, headers=cut.headers)
        # Written under a larger limit than the replay's producer takes.
        await producer.send_and_wait(names.dlq, b"y" * 100_000, key=b"ch-big", headers=whole)
    finally:
        await producer.stop()
    settings = settings_for(
        bootstrap, names, "http://127.0.0.1:9/common_access", kafka_max_request_bytes=65_536, max_moment_bytes=1000
    )
    out = io.StringIO()

    tally = await replay(settings, selection_from(reasons=["too_large"]), dry_run=False, out=out)

    assert (tally.taken, sum(tally.replayed.values()), sum(tally.unreplayable.values())) == (2, 0, 2)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"not replayable, a truncated copy: {names.dlq}/0@0")
    assert lines[1].startswith("not replayable, Kafka send to")
    assert f"{names.dlq}/0@1" in lines[1]
    assert f"{names.dlq}: 2 selected, 0 replayed to {names.moments}, 2 not replayable, 0 skipped" in lines
    assert await _count(bootstrap, names.moments) == 0

"""End to end: malformed input reaches the dead-letter topic untouched; awkward ids and host zones are handled."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from highlight.recording import CST, parse_cst
from highlight.simulator import LiveSimulator
from tests.harness import (
    Names,
    by_event,
    create_topics,
    moment,
    produce,
    read_all,
    read_topic,
    results,
    running,
    settings_for,
)

NOW = datetime.now(UTC).isoformat()
MALFORMED: dict[str, tuple[bytes, str]] = {
    "invalid-json": (b'{"event_id": "x", "channel_id": ', "invalid_json"),
    "non-object": (b'["event_id", "channel_id"]', "not_an_object"),
    "non-utf8": (
        b'{"event_id": "\xff\xfe", "channel_id": "c", "occurred_at": "' + NOW.encode() + b'"}',
        "invalid_utf8",
    ),
    "empty-event-id": (orjson.dumps({"event_id": "", "channel_id": "c", "occurred_at": NOW}), "schema_violation"),
    "blank-channel-id": (orjson.dumps({"event_id": "e", "channel_id": "  ", "occurred_at": NOW}), "schema_violation"),
    "missing-occurred-at": (orjson.dumps({"event_id": "e", "channel_id": "c"}), "schema_violation"),
    "no-offset": (
        orjson.dumps({"event_id": "e", "channel_id": "c", "occurred_at": "2026-01-01T10:00:00"}),
        "schema_violation",
    ),
    "zero-duration": (
        orjson.dumps({"event_id": "e", "channel_id": "c", "occurred_at": NOW, "duration_seconds": 0}),
        "schema_violation",
    ),
    "string-duration": (
        orjson.dumps({"event_id": "e", "channel_id": "c", "occurred_at": NOW, "duration_seconds": "60"}),
        "schema_violation",
    ),
    "bad-format": (
        orjson.dumps({"event_id": "e", "channel_id": "c", "occurred_at": NOW, "file_format": "avi"}),
        "schema_violation",
    ),
    # Invalid and old: validation comes first, so it is a dead letter, not `expired`.
    "invalid-and-old": (
        orjson.dumps({"event_id": "e", "channel_id": "", "occurred_at": "2001-01-01T00:00:00Z"}),
        "schema_violation",
    ),
    "control-character-in-channel": (
        orjson.dumps({"event_id": "e", "channel_id": "a\nb", "occurred_at": NOW}),
        "schema_violation",
    ),
    "channel-id-too-long": (
        orjson.dumps({"event_id": "e", "channel_id": "c" * 257, "occurred_at": NOW}),
        "schema_violation",
    ),
    # Larger than HIGHLIGHT_MAX_MOMENT_BYTES (64 KiB): refused before it is decoded.
    "too-large": (
        orjson.dumps({"event_id": "e", "channel_id": "c", "occurred_at": NOW, "attributes": {"x": "y" * 70_000}}),
        "too_large",
    ),
}


async def test_malformed_moments_reach_the_dead_letter_topic_with_original_bytes_and_reasons(
    bootstrap: str, names: Names, simulator: LiveSimulator, api: str
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    settings = settings_for(bootstrap, names, simulator.url_for(api), live_api=api)
    values = [value for value, _ in MALFORMED.values()]
    await produce(bootstrap, names.moments, [*values, None, moment("good-1", "good-chan")], key=b"some-key")
    async with running(settings) as service:
        dead = await read_topic(bootstrap, names.dlq, len(values) + 1)
        (good,) = await results(bootstrap, names.results, 1)
        assert not service._stopping.is_set(), "bad input never stops the service"
    assert good["event_id"] == "good-1", "the service kept going after the bad input"
    assert [r.value for r in dead] == [*values, None], "dead letters keep the original bytes, in order"
    for offset, (record, (label, (_, reason))) in enumerate(zip(dead, MALFORMED.items(), strict=False)):
        headers = dict(record.headers)
        assert headers["__connect.errors.exception.class.name"] == reason.encode(), label
        assert headers["kafka_dlt-exception-fqcn"] == reason.encode(), label
        assert headers["__connect.errors.topic"] == headers["kafka_dlt-original-topic"] == names.moments.encode()
        assert headers["__connect.errors.partition"] == b"0"
        assert headers["kafka_dlt-original-partition"] == struct.pack(">i", 0)
        assert headers["__connect.errors.offset"] == str(offset).encode(), "the source offset, not the DLQ's"
        assert headers["kafka_dlt-original-offset"] == struct.pack(">q", offset)
        assert headers["__connect.errors.exception.message"], label
        assert record.key == b"some-key"
    tombstone = dict(dead[-1].headers)
    assert tombstone["highlight.dlq.reason"] == b"empty_value"
    assert simulator.calls_for("c") == []
    assert len(simulator.calls) == 1
    assert len(await read_all(bootstrap, names.results)) == 1, "nothing reaches the results topic for dead letters"


AWKWARD = [
    "a&b=c+d%20e/f g",
    "频道/直播 1",
    "emoji-🎮-chan",
    "100%+",
    "=&=",
    "slash/and\\back",
    # Each API's own parameter names: they must arrive as the channel's text, never as parameters.
    "x&appid=9&sign=0&interface=Live_Tape_Start",
    "x&Action=DescribeInstances&Signature=abc&Nonce=1",
    '{"StreamName": "other"}',
]


async def test_awkward_channel_ids_reach_the_api_intact_and_inject_no_parameter(
    bootstrap: str, names: Names, simulator: LiveSimulator, api: str
) -> None:
    await create_topics(bootstrap, {names.moments: 2})
    settings = settings_for(bootstrap, names, simulator.url_for(api), live_api=api)
    await produce(bootstrap, names.moments, [moment(f"e{i}", channel) for i, channel in enumerate(AWKWARD)])
    async with running(settings):
        got = by_event(await results(bootstrap, names.results, len(AWKWARD)))
    assert sorted(c.channel_id or "" for c in simulator.calls) == sorted(AWKWARD)
    assert {t.channel_id for t in simulator.tasks} == set(AWKWARD)
    for i, channel in enumerate(AWKWARD):
        assert got[f"e{i}"]["status"] == "started", channel
        assert got[f"e{i}"]["channel_id"] == channel
    parameters = {frozenset(c.query) for c in simulator.calls}
    assert len(parameters) == 1, "every call carries the same parameter names, whatever its channel id"


@pytest.fixture
def far_away_host_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Pretend the host runs in UTC+14, far from China Standard Time (UTC+8)."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        yield "Pacific/Kiritimati"
    finally:
        monkeypatch.undo()
        time.tzset()


async def test_times_are_china_standard_time_whatever_the_host_zone(
    bootstrap: str, names: Names, simulator: LiveSimulator, far_away_host_zone: str, api: str
) -> None:
    assert time.localtime().tm_gmtoff == 14 * 3600, "the host zone really is not CST"
    await create_topics(bootstrap, {names.moments: 1})
    settings = settings_for(bootstrap, names, simulator.url_for(api), live_api=api)
    await produce(bootstrap, names.moments, [moment("e1", "tz-chan")])
    async with running(settings):
        (result,) = await results(bootstrap, names.results, 1)
    (call,) = simulator.calls_for("tz-chan")
    assert call.start_time is not None
    sent = parse_cst(call.start_time)
    received = datetime.fromtimestamp(call.received_at, CST)
    assert abs(sent - received) < timedelta(seconds=2), "start_time is now, in CST"
    assert result["status"] == "started"

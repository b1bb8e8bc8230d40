"""End to end: no record stops the recorder. Deep attributes, records too large to dead-letter whole, records that
fail in our own code path, results too large for the topic, header names that are not UTF-8."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from highlight.dead_letters import (
    DLQ_EXCEPTION_HEADER,
    HEADERS_DROPPED_HEADER,
    ORIGINAL_SHA256_HEADER,
    ORIGINAL_SIZE_HEADER,
    TRUNCATED_HEADER,
)
from highlight.kafka import record_size
from highlight.simulator import LiveSimulator
from tests.harness import (
    Names,
    by_event,
    create_topics,
    read_topic,
    results,
    running,
    scrape,
    settings_for,
    value,
    wait_ready,
)
from tests.hostile import Raw, RawName, deep_json, nested, produce_raw, valid_moment


def _moment(event_id: str, channel: str, **fields: object) -> bytes:
    return valid_moment(event_id, channel, datetime.now(UTC).isoformat(), **fields)


async def test_attributes_nested_too_deep_are_a_dead_letter_before_any_call_and_64_levels_are_answered(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    # The record from the issue: a valid moment whose attributes nest 254+ levels (orjson reads them, cannot
    # write them back), then one at the limit, then an ordinary one.
    now = datetime.now(UTC).isoformat()  # per test: a moment older than 120 s would be answered `expired`
    head = f'{{"event_id": "too-deep", "channel_id": "deep-chan", "occurred_at": "{now}", "attributes": '
    too_deep = head.encode() + deep_json(300) + b"}"
    at_limit = _moment("at-limit", "limit-chan", attributes=nested(64))
    await produce_raw(
        bootstrap,
        names.moments,
        [Raw(b"deep-chan", too_deep), Raw(b"limit-chan", at_limit), Raw(b"after", _moment("after", "after"))],
    )
    async with running(settings_for(bootstrap, names, simulator.url)) as service:
        got = by_event(await results(bootstrap, names.results, 2))
        (dead,) = await read_topic(bootstrap, names.dlq, 1)
        assert not service._stopping.is_set()
    assert dead.value == too_deep, "the original bytes"
    headers = dict(dead.headers)
    assert headers["highlight.dlq.reason"] == b"schema_violation"
    assert b"nested more than 64 levels" in headers["__connect.errors.exception.message"]
    assert simulator.calls_for("deep-chan") == [], "refused before any call"
    assert got["at-limit"]["status"] == "started"
    assert got["at-limit"]["attributes"] == nested(64)
    assert got["after"]["status"] == "started"


async def test_a_record_larger_than_a_request_is_dead_lettered_as_a_truncated_copy_and_the_service_goes_on(
    bootstrap: str, names: Names, simulator: LiveSimulator, ops_port: int
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    # The other record from the issue: larger than the producer's default 1 MiB request, accepted by the broker.
    big = b'{"event_id": "big", "pad": "' + bytes(range(97, 123)) * 45_000 + b'"}'
    assert len(big) > 1024 * 1024
    await produce_raw(
        bootstrap,
        names.moments,
        [Raw(b"big-key", big, (("trace", b"t-1"),)), Raw(b"next", _moment("next", "next"))],
    )
    settings = settings_for(bootstrap, names, simulator.url, metrics_port=ops_port)
    async with running(settings) as service:
        await wait_ready(ops_port, 200)
        (answer,) = await results(bootstrap, names.results, 1)
        (dead,) = await read_topic(bootstrap, names.dlq, 1)
        samples = await scrape(ops_port)
        assert not service._stopping.is_set()
    assert answer["event_id"] == "next"
    headers = dict(dead.headers)
    assert headers["highlight.dlq.reason"] == b"too_large"
    assert headers[TRUNCATED_HEADER] == b"true"
    assert headers[ORIGINAL_SIZE_HEADER] == str(len(big)).encode()
    assert headers[ORIGINAL_SHA256_HEADER] == hashlib.sha256(big).hexdigest().encode()
    assert headers["trace"] == b"t-1"
    assert dead.key == b"big-key"
    assert big.startswith(dead.value)
    assert 900_000 < len(dead.value) < 1024 * 1024, "as much as fits in one request"
    assert value(samples, "highlight_dead_letters_total", reason="too_large") == 1
    assert value(samples, "highlight_moments_total", outcome="dead_letter") == 1


async def test_a_record_kafka_refuses_to_forward_is_unprocessable_dead_lettered_and_counted(
    bootstrap: str, names: Names, simulator: LiveSimulator, ops_port: int
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    # Valid, but keyed by nothing: it must be re-keyed through the repartition topic, and its header is larger
    # than a request may be. The same would happen on every retry: a deterministic failure of this record.
    hostile = _moment("fat-header", "fat-chan")
    header = ("trace", b"h" * 100_000)
    await produce_raw(
        bootstrap,
        names.moments,
        [Raw(None, hostile, (header, ("small", b"1"))), Raw(b"next", _moment("after-fat", "next"))],
    )
    settings = settings_for(
        bootstrap, names, simulator.url, metrics_port=ops_port, kafka_max_request_bytes=65536, max_moment_bytes=32768
    )
    async with running(settings) as service:
        await wait_ready(ops_port, 200)
        (answer,) = await results(bootstrap, names.results, 1)
        (dead,) = await read_topic(bootstrap, names.dlq, 1)
        samples = await scrape(ops_port)
        assert not service._stopping.is_set()
    assert answer["event_id"] == "after-fat"
    headers = dict(dead.headers)
    assert headers["highlight.dlq.reason"] == b"unprocessable"
    assert headers[DLQ_EXCEPTION_HEADER] == b"highlight.errors.RecordTooLarge"
    assert headers["__connect.errors.exception.class.name"] == b"highlight.errors.RecordTooLarge"
    assert b"MessageSizeTooLarge" in headers["__connect.errors.exception.message"]
    assert dead.value == hostile, "the moment's own bytes are kept whole; the oversized header is left out"
    assert dead.key is None
    assert headers[TRUNCATED_HEADER] == b"true"
    assert headers[HEADERS_DROPPED_HEADER] == b"1"
    assert headers["small"] == b"1"
    assert simulator.calls_for("fat-chan") == []
    assert value(samples, "highlight_dead_letters_total", reason="unprocessable") == 1
    assert value(samples, "highlight_moments_total", outcome="dead_letter") == 1
    assert value(samples, "highlight_moments_total", outcome="started") == 1


async def test_a_started_recording_whose_result_is_too_large_is_published_without_its_attributes(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    # `1e9` is three bytes in; `1000000000.0` is twelve out: the result outgrows the request limit.
    numbers = b"[" + b",".join([b"1e9"] * 8000) + b"]"
    now = datetime.now(UTC).isoformat()
    head = f'{{"event_id": "grows", "channel_id": "grow-chan", "occurred_at": "{now}", "attributes": {{"n": '
    moment = head.encode() + numbers + b"}}"
    assert len(moment) < 32768
    await produce_raw(bootstrap, names.moments, [Raw(b"grow-chan", moment)])
    settings = settings_for(bootstrap, names, simulator.url, kafka_max_request_bytes=65536, max_moment_bytes=32768)
    async with running(settings):
        (answer,) = await results(bootstrap, names.results, 1)
    (task,) = simulator.tasks
    assert answer["status"] == "started"
    assert answer["task_id"] == str(task.task_id), "a recording that was started is never lost"
    assert answer["dropped"] == ["attributes"]
    assert "attributes" not in answer
    assert await read_topic(bootstrap, names.dlq, 0) == []


async def test_header_names_that_are_not_utf8_do_not_stop_the_partition(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    odd = (RawName(b"\xff\xfe-trace"), b"\x00\x01")
    await produce_raw(
        bootstrap,
        names.moments,
        [
            Raw(b"odd-chan", _moment("odd-valid", "odd-chan"), (odd,)),
            Raw(None, _moment("odd-keyless", "odd-chan-2"), (odd,)),  # re-keyed with the header
            Raw(b"odd-chan", b"not json", (odd, ("null", None))),
            Raw(b"odd-chan", _moment("odd-after", "odd-chan-3")),
        ],
    )
    async with running(settings_for(bootstrap, names, simulator.url)):
        got = by_event(await results(bootstrap, names.results, 3))
        (dead,) = await read_topic(bootstrap, names.dlq, 1)
    assert {event: document["status"] for event, document in got.items()} == {
        "odd-valid": "started",
        "odd-keyless": "started",
        "odd-after": "started",
    }
    assert dead.value == b"not json"
    assert ("\\xff\\xfe-trace", b"\x00\x01") in dead.headers, "the name escaped, the value untouched"
    assert ("null", None) in dead.headers


async def test_a_dead_letter_topic_smaller_than_a_request_is_warned_about_and_dead_letters_are_cut_to_it(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(names.dlq, 1, 1, topic_configs={"max.message.bytes": "100000"})])
    finally:
        await admin.close()
    big = b'{"event_id": "x", "pad": "' + b"z" * 300_000 + b'"}'
    await produce_raw(bootstrap, names.moments, [Raw(b"k", big)])
    with structlog.testing.capture_logs() as logs:
        async with running(settings_for(bootstrap, names, simulator.url)):
            (dead,) = await read_topic(bootstrap, names.dlq, 1)
    (warning,) = [line for line in logs if line["event"] == "dlq_topic_smaller_than_requests"]
    assert (warning["max_message_bytes"], warning["max_request_bytes"]) == (100_000, 1_048_576)
    assert warning["log_level"] == "warning"
    assert dict(dead.headers)["highlight.dlq.truncated"] == b"true"
    assert 90_000 < record_size(dead.key, dead.value, list(dead.headers)) <= 100_000

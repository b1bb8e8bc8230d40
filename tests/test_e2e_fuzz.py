"""A long-running `highlight run` fed thousands of seeded hostile records on the real broker: it never stops,
every record is answered or dead-lettered, every valid moment has its result, and the metrics account for all."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from highlight.moment import InvalidMoment, parse_moment
from highlight.simulator import LiveSimulator
from tests.harness import (
    Names,
    by_event,
    create_topics,
    read_topic,
    results,
    scrape,
    service_env,
    spawn,
    value,
    wait_ready,
)
from tests.hostile import KINDS, Raw, RawName, deep_json, events, hostile_stream, produce_raw, reaped, valid_moment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SEED = 20261122
COUNT = 3000
PARTITIONS = 3
MAX_MOMENT_BYTES = 65536  # the default


def _specials(occurred: str) -> tuple[list[Raw], set[str]]:
    """The two records from the issue, and valid moments our own path cannot forward (kept as unprocessable)."""
    head = f'{{"event_id": "issue-deep", "channel_id": "fuzz-1", "occurred_at": "{occurred}", "attributes": '
    records = [
        Raw(b"fuzz-1", head.encode() + deep_json(254) + b"}", kind="issue_deep"),
        Raw(b"fuzz-2", b'{"event_id": "issue-big", "pad": "' + b"p" * (1024 * 1024 + 100) + b'"}', kind="issue_big"),
        Raw(b"fuzz-3", valid_moment("odd-header", "fuzz-3", occurred), ((RawName(b"\xc3\x28"), b"\xff"),), "valid"),
    ]
    unprocessable = set()
    for n in range(3):
        event_id = f"fat-header-{n}"
        header = ("trace", b"t" * (1024 * 1024 + 1))
        records.append(Raw(None, valid_moment(event_id, f"fuzz-{n}", occurred), (header,), "unprocessable"))
        unprocessable.add(event_id)
    return records, unprocessable


async def test_a_seeded_stream_of_hostile_records_never_stops_the_recorder(
    bootstrap: str, names: Names, simulator: LiveSimulator, ops_port: int, tmp_path: Path
) -> None:
    await create_topics(bootstrap, {names.moments: PARTITIONS})
    now = datetime.now(UTC)
    stream = hostile_stream(SEED, COUNT, now=now)
    specials, unprocessable = _specials(now.isoformat())
    for offset, record in enumerate(specials):
        stream.insert(200 + offset * 500, record)

    # What each record must become, by the parser's own verdict.
    expected_results: set[str] = set()
    expected_dead: dict[int, str] = {}  # by position in the stream: the dead-letter reason
    for position, record in enumerate(stream):
        try:
            moment = parse_moment(record.value, max_bytes=MAX_MOMENT_BYTES)
        except InvalidMoment as invalid:
            expected_dead[position] = invalid.reason
            continue
        if moment.event_id in unprocessable:
            expected_dead[position] = "unprocessable"
        else:
            assert moment.event_id not in expected_results, "the stream's valid moments have unique ids"
            expected_results.add(moment.event_id)
    assert set(Counter(record.kind for record in stream)) == {
        *KINDS,
        "valid",
        "issue_deep",
        "issue_big",
        "unprocessable",
    }
    assert len(expected_results) > 250
    assert len(expected_dead) > 2400

    log = tmp_path / "fuzz.log"
    env = service_env(bootstrap, names, simulator.url, metrics_port=ops_port)
    async with reaped(spawn(env, log)) as process:
        await wait_ready(ops_port, 200)
        # Fed while it runs, in bursts, as producers would.
        landed: list[tuple[int, int]] = []
        for start in range(0, len(stream), 500):
            landed += await produce_raw(bootstrap, names.moments, stream[start : start + 500], partitions=PARTITIONS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 150
        while True:
            assert process.poll() is None, "the recorder stopped:\n" + log.read_text()[-3000:]
            samples = await scrape(ops_port)
            accounted = sum(value(samples, "highlight_moments_total", outcome=o) for o in OUTCOMES)
            if accounted >= len(stream) or loop.time() > deadline:
                break
            await asyncio.sleep(0.5)
        dead = await read_topic(bootstrap, names.dlq, len(expected_dead))
        answered = by_event(await results(bootstrap, names.results, len(expected_results)))
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 40)
    assert code == 0, log.read_text()[-3000:]
    assert len(events(log, "service_started")) == 1, "never restarted"

    # Every record: answered, or dead-lettered with the reason the parser gives (unprocessable for our failures).
    assert set(answered) == expected_results, sorted(set(answered) ^ expected_results)[:10]
    position_of = {where: position for position, where in enumerate(landed)}
    letters = {}
    for record in dead:
        headers = dict(record.headers)
        assert headers["__connect.errors.topic"] == names.moments.encode()
        where = (int(headers["__connect.errors.partition"] or b""), int(headers["__connect.errors.offset"] or b""))
        letters[position_of[where]] = record
    assert len(letters) == len(dead), "each record dead-lettered once"
    assert {p: dict(r.headers)["highlight.dlq.reason"].decode() for p, r in letters.items()} == expected_dead

    # The two records from the issue: the deep one refused before any call, the big one cut to fit.
    kinds = {record.kind: position for position, record in enumerate(stream)}
    assert letters[kinds["issue_deep"]].value == stream[kinds["issue_deep"]].value
    big = dict(letters[kinds["issue_big"]].headers)
    assert big["highlight.dlq.truncated"] == b"true"
    assert big["highlight.dlq.original.size"] == str(len(stream[kinds["issue_big"]].value or b"")).encode()
    assert "odd-header" in answered

    # The metrics account for every record.
    outcomes = {o: value(samples, "highlight_moments_total", outcome=o) for o in OUTCOMES}
    assert sum(outcomes.values()) == len(stream), outcomes
    assert outcomes["dead_letter"] == len(expected_dead)
    reasons = Counter(expected_dead.values())
    for reason, count in reasons.items():
        assert value(samples, "highlight_dead_letters_total", reason=reason) == count, reason
    assert sum(1 for d in answered.values() if d["status"] == "started") == len(simulator.tasks)


OUTCOMES = ("started", "duplicate", "failed", "expired", "in_doubt", "dead_letter")

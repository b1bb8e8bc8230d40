"""Taking records in (highlight.intake) against the real broker: what a smaller fetch chunk must not break."""

from __future__ import annotations

import orjson

from highlight.kafka import FETCH_CHUNK_BYTES
from highlight.simulator import LiveSimulator
from tests.harness import Names, by_event, create_topics, moment, produce, read_topic, results, running, settings_for


async def test_a_record_larger_than_a_fetch_chunk_is_still_read_and_those_after_it_too(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    huge = orjson.dumps(moment("huge-1", "big-chan") | {"attributes": {"x": "y" * (FETCH_CHUNK_BYTES + 4096)}})
    assert len(huge) > FETCH_CHUNK_BYTES
    await produce(bootstrap, names.moments, [moment("before-1", "big-chan"), huge, moment("after-1", "big-chan")])
    async with running(settings_for(bootstrap, names, simulator.url)):
        got = by_event(await results(bootstrap, names.results, 2))
        (dead,) = await read_topic(bootstrap, names.dlq, 1)
    assert set(got) == {"before-1", "after-1"}
    assert dead.value == huge, "dead-lettered whole: too large for a moment, not for the fetch"
    assert dict(dead.headers)["highlight.dlq.reason"] == b"too_large"

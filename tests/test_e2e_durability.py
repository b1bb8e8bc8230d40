"""End to end: dedup survives restarts and kill -9, at most one call per key, clean SIGTERM, refused credentials."""

from __future__ import annotations

import time
from pathlib import Path

from highlight.dedup import Entry, Phase, encode_entry, encode_key
from highlight.kafka import home_partition
from highlight.moment import bucket_of, parse_rfc3339
from highlight.simulator import LiveSimulator
from tests.harness import (
    Names,
    by_event,
    committed_offset,
    create_topics,
    moment,
    produce,
    result_of,
    results,
    running,
    service_env,
    settings_for,
    wait_until,
)
from tests.multiprocess import processes


async def test_redelivered_and_replayed_moments_are_answered_from_state_without_a_new_call(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 2})
    first = [moment("s1", "chan-a"), moment("s2", "chan-a"), moment("s3", "chan-b")]
    await produce(bootstrap, names.moments, first)
    async with running(settings_for(bootstrap, names, simulator.url)):
        before = by_event(await results(bootstrap, names.results, 3))
    calls = len(simulator.calls)
    assert calls == 2

    # A new group re-reads everything from the beginning, as after a crash before any commit; the same
    # moments are also published again. The state topic is all that remembers.
    regrouped = Names(**{**names.__dict__, "group": names.group + "-again"})
    await produce(bootstrap, names.moments, [moment("s1", "chan-a") | {"occurred_at": first[0]["occurred_at"]}])
    async with running(settings_for(bootstrap, regrouped, simulator.url)):
        after = await results(bootstrap, names.results, 3 + 4)
    assert len(simulator.calls) == calls, "no second call for any key"
    for document in after[3:]:
        original = before[document["event_id"]]
        assert document["status"] == original["status"], document
        assert document.get("task_id") == original.get("task_id")
    assert before["s1"]["status"] == "started", "the starter stays `started`, not `duplicate`"


async def test_an_intent_without_outcome_makes_the_key_in_doubt_forever(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    partitions = 2
    await create_topics(bootstrap, {names.moments: partitions, names.state: partitions})
    crashed = moment("crashed-1", "chan-x")
    bucket = bucket_of(parse_rfc3339(crashed["occurred_at"]), 300)
    intent = Entry(Phase.INTENT, "crashed-1", "2026-01-01 10:00:00", "2026-01-01 10:05:00", attempts=1)
    # What a service killed mid-call leaves behind: the intent, acknowledged, and no outcome.
    await produce(
        bootstrap,
        names.state,
        [encode_entry(intent)],
        key=encode_key(("chan-x", bucket)),
        partition=home_partition("chan-x", partitions),
    )
    await produce(
        bootstrap, names.moments, [crashed, moment("later-1", "chan-x") | {"occurred_at": crashed["occurred_at"]}]
    )
    async with running(settings_for(bootstrap, names, simulator.url)):
        got = by_event(await results(bootstrap, names.results, 2))
    assert got["crashed-1"]["status"] == "in_doubt"
    assert got["later-1"]["status"] == "in_doubt"
    assert got["crashed-1"]["start_time"] == "2026-01-01 10:00:00", "the window the cut-off call carried"
    assert simulator.calls == [], "an in-doubt key is never called again"


async def test_kill_9_during_a_call_never_leads_to_a_second_call(
    bootstrap: str, names: Names, simulator: LiveSimulator, tmp_path: Path
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    simulator.inject("hang", channel="kill-chan")
    env = service_env(bootstrap, names, simulator.url)
    first = moment("k1", "kill-chan")
    async with processes(tmp_path) as instances:
        process = instances.spawn(env, "killed")
        await produce(bootstrap, names.moments, [first])
        await wait_until(lambda: bool(simulator.calls_for("kill-chan")), what="the call to arrive")
        await instances.kill(process)
    # Same occurred_at: seconds later the clock may have crossed into the next bucket, another key.
    await produce(bootstrap, names.moments, [moment("k2", "kill-chan") | {"occurred_at": first["occurred_at"]}])
    async with running(settings_for(bootstrap, names, simulator.url)):
        got = by_event(await results(bootstrap, names.results, 2))
    assert got["k1"]["status"] == "in_doubt", "the redelivered moment whose call was cut off"
    assert got["k2"]["status"] == "in_doubt", "a later moment of the same key"
    assert len(simulator.calls_for("kill-chan")) == 1


async def test_sigterm_finishes_in_flight_work_commits_and_exits_0(
    bootstrap: str, names: Names, simulator: LiveSimulator, tmp_path: Path
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    simulator.set_config(latency_ms=(2000, 2000))
    async with processes(tmp_path) as instances:
        process = instances.spawn(service_env(bootstrap, names, simulator.url), "term")
        await produce(bootstrap, names.moments, [moment("t1", "term-chan")])
        await wait_until(lambda: bool(simulator.calls_for("term-chan")), what="the call to arrive")
        started = time.monotonic()
        code = await instances.terminate(process, 30)
    assert code == 0, instances.log("term")
    assert time.monotonic() - started < 30
    result = await result_of(bootstrap, names.results, "t1", timeout=5)
    assert result["status"] == "started", "the in-flight call was finished, not dropped"
    assert await committed_offset(bootstrap, names.group, names.moments, 0) == 1

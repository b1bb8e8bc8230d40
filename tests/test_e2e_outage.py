"""End to end: outages of the Live API burn nothing: pause, probe, resume, or restart with a fixed key."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from highlight.broker import free_port
from highlight.service import Service
from highlight.simulator import LiveSimulator
from tests.conftest import simulator_config
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
    scrape,
    service_env,
    settings_for,
    value,
    wait_ready,
    wait_until,
)
from tests.multiprocess import processes


async def test_a_30_second_credential_outage_loses_no_moment_and_fails_none(
    bootstrap: str, names: Names, simulator: LiveSimulator, ops_port: int
) -> None:
    await create_topics(bootstrap, {names.moments: 2})
    settings = settings_for(bootstrap, names, simulator.url, metrics_port=ops_port)
    async with running(settings):
        await wait_ready(ops_port, 200)
        simulator.set_config(refuse_credentials=True)
        outage_began = time.monotonic()
        first = moment("o-1", "outage-a")
        sent = [first, first | {"event_id": "o-1-dup"}, moment("o-2", "outage-b"), moment("o-3", "outage-c")]
        await produce(bootstrap, names.moments, sent)
        await wait_ready(ops_port, 503, containing="credentials", timeout=15)
        samples = await scrape(ops_port)
        assert value(samples, "highlight_live_available") == 0
        assert value(samples, "highlight_ready") == 0
        for _ in range(20):  # the consumer loop pauses on its next turn
            if value(samples := await scrape(ops_port), "highlight_consumer_paused") == 1:
                break
            await asyncio.sleep(0.1)
        assert value(samples, "highlight_consumer_paused") == 1

        await asyncio.sleep(30 - (time.monotonic() - outage_began))
        assert await results(bootstrap, names.results, 0, timeout=0.5) == [], "nothing is answered during it"
        refused = len(simulator.calls)
        simulator.set_config(refuse_credentials=False)

        got = by_event(await results(bootstrap, names.results, 4, timeout=60))
        await wait_ready(ops_port, 200, timeout=5)
        samples = await scrape(ops_port)

    assert {e: d["status"] for e, d in got.items()} == {
        "o-1": "started",
        "o-1-dup": "duplicate",
        "o-2": "started",
        "o-3": "started",
    }
    assert len(simulator.tasks) == 3, "one recording per key, none twice"
    # Probes back off (3 s, 6 s, 12 s, 24 s): a handful of refused calls in 30 s, not a storm.
    assert refused <= 8, refused
    assert value(samples, "highlight_live_outages_total", reason="credentials") == 1
    assert value(samples, "highlight_moments_total", outcome="failed") == 0
    assert value(samples, "highlight_live_available") == 1


async def test_an_unreachable_endpoint_pauses_the_service_until_it_comes_up(
    bootstrap: str, names: Names, ops_port: int
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    port = free_port()
    settings = settings_for(
        bootstrap, names, f"http://127.0.0.1:{port}/common_access", metrics_port=ops_port, live_max_attempts=2
    )
    await produce(bootstrap, names.moments, [moment("u-1", "down-chan")])
    async with running(settings):
        await wait_ready(ops_port, 503, containing="unreachable", timeout=20)
        async with LiveSimulator(simulator_config()) as simulator:
            await simulator.stop()
            await simulator.start(port=port)
            result = await result_of(bootstrap, names.results, "u-1", timeout=30)
            await wait_ready(ops_port, 200, timeout=5)
    assert result["status"] == "started"
    assert result["attempts"] >= 3, "two refused connections, then the probe that worked"


async def test_an_operator_who_fixes_the_key_and_restarts_finds_every_waiting_moment_handled(
    bootstrap: str, names: Names, simulator: LiveSimulator, tmp_path: Path
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    await produce(bootstrap, names.moments, [moment(f"k-{i}", f"key-chan-{i}") for i in range(3)])
    port = free_port()
    wrong = service_env(bootstrap, names, simulator.url) | {
        "HIGHLIGHT_LIVE_KEY": "not-the-key",
        "HIGHLIGHT_METRICS_PORT": str(port),
    }
    async with processes(tmp_path) as instances:
        process = instances.spawn(wrong, "wrong-key")
        await wait_until(lambda: any(c.outcome == "sign invalid" for c in simulator.calls), what="a refused call")
        await wait_ready(port, 503, containing="credentials", timeout=10)
        code = await instances.terminate(process, 20)
    output = instances.log("wrong-key")
    assert code == 0, output
    assert "sign invalid" in output
    assert await results(bootstrap, names.results, 0, timeout=0.5) == [], "no moment burned as failed"
    assert await committed_offset(bootstrap, names.group, names.moments, 0) in (None, 0)

    async with running(settings_for(bootstrap, names, simulator.url)):
        got = by_event(await results(bootstrap, names.results, 3))
    assert {d["status"] for d in got.values()} == {"started"}
    assert len(simulator.tasks) == 3


async def test_refused_credentials_do_not_stop_run_in_process(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    simulator.inject("auth:appid is invalid", channel="appid-chan")
    await produce(bootstrap, names.moments, [moment("p1", "appid-chan")])
    async with Service(settings_for(bootstrap, names, simulator.url)) as service:
        run = asyncio.create_task(service.run())
        result = await result_of(bootstrap, names.results, "p1", timeout=30)
        assert not run.done()
        service.request_stop()
        await run
    assert result["status"] == "started", "the probe 3 s later found the API accepting us again"
    assert result["attempts"] == 2


async def test_a_moment_that_outlives_an_outage_is_answered_expired_not_recorded_late(
    bootstrap: str, names: Names, simulator: LiveSimulator, ops_port: int
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    settings = settings_for(bootstrap, names, simulator.url, metrics_port=ops_port, max_event_age_seconds=4)
    async with running(settings):
        await wait_ready(ops_port, 200)
        simulator.set_config(refuse_credentials=True)
        await produce(bootstrap, names.moments, [moment("late-1", "late-chan")])
        await wait_ready(ops_port, 503, containing="credentials", timeout=15)
        await asyncio.sleep(5)
        simulator.set_config(refuse_credentials=False)
        result = await result_of(bootstrap, names.results, "late-1", timeout=30)
        # Its probe turn found it too old, so it made no call; with no moment left to probe, fetching resumes.
        await wait_ready(ops_port, 200, timeout=5)
        await produce(bootstrap, names.moments, [moment("fresh-1", "fresh-chan")])
        fresh = await result_of(bootstrap, names.results, "fresh-1", timeout=30)
    assert result["status"] == "expired"
    assert simulator.tasks == [t for t in simulator.tasks if t.channel_id == "fresh-chan"]
    assert fresh["status"] == "started"

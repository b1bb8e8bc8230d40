"""End to end: how each kind of failure is classified, retried (never within 3 s) or not, and answered.

One service and one simulator serve the whole module per recording API (the module's fixtures are
parametrized over HIGHLIGHT_LIVE_API); each test uses its own channel. Faults are the simulator's neutral
ones (`busy`, `http:503`, `reset`, …), which every API answers in its own words.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from highlight.service import Service
from highlight.simulator import LiveSimulator
from tests.conftest import simulator_config
from tests.harness import (
    APIS,
    NOT_LIVE,
    REFUSE_ONCE,
    Names,
    create_topics,
    moment,
    produce,
    result_of,
    running,
    settings_for,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module", params=APIS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim(backend: str) -> AsyncIterator[LiveSimulator]:
    async with LiveSimulator(simulator_config(seed=3, offline_channels=frozenset({"offline-chan"}))) as simulator:
        yield simulator


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def topics(bootstrap: str, backend: str) -> Names:
    names = Names.unique(f"retries-{backend}")
    await create_topics(bootstrap, {names.moments: 2})
    return names


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def service(bootstrap: str, topics: Names, sim: LiveSimulator, backend: str) -> AsyncIterator[Service]:
    async with running(settings_for(bootstrap, topics, sim.url_for(backend), live_api=backend)) as svc:
        yield svc


async def record(
    bootstrap: str, topics: Names, event_id: str, channel: str, *, like: dict[str, object] | None = None
) -> dict[str, object]:
    """Publish a moment and wait for its result; `like` reuses another moment's occurred_at (same key)."""
    fields = {} if like is None else {"occurred_at": like["occurred_at"]}
    await produce(bootstrap, topics.moments, [moment(event_id, channel) | fields])
    return await result_of(bootstrap, topics.results, event_id)


def gaps(sim: LiveSimulator, channel: str) -> list[float]:
    times = [c.received_monotonic for c in sim.calls_for(channel)]
    return [b - a for a, b in itertools.pairwise(times)]


async def test_http_5xx_is_retried_no_sooner_than_3_seconds_after_the_last_attempt(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service
) -> None:
    sim.inject("http:503", "http:502", channel="retry-chan")
    result = await record(bootstrap, topics, "r1", "retry-chan")
    assert result["status"] == "started"
    assert result["attempts"] == 3
    assert len(sim.calls_for("retry-chan")) == 3
    assert all(gap >= 3.0 for gap in gaps(sim, "retry-chan")), gaps(sim, "retry-chan")
    first, _, last = sim.calls_for("retry-chan")
    assert first.start_time != last.start_time, "start_time is recomputed"
    assert result["start_time"] == last.start_time


async def test_frequency_limit_is_retried(bootstrap: str, topics: Names, sim: LiveSimulator, service: Service) -> None:
    sim.inject("busy", channel="freq-chan")
    result = await record(bootstrap, topics, "f1", "freq-chan")
    assert (result["status"], result["attempts"]) == ("started", 2)
    assert all(gap >= 3.0 for gap in gaps(sim, "freq-chan"))


async def test_other_api_refusals_fail_without_a_retry(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service, backend: str
) -> None:
    result = await record(bootstrap, topics, "b1", "offline-chan")
    assert result["status"] == "failed"
    assert result["error"]["code"] == NOT_LIVE[backend]  # type: ignore[index]
    assert result["api"] == backend
    assert len(sim.calls_for("offline-chan")) == 1


async def test_an_endpoint_failing_past_the_retry_budget_pauses_and_the_moment_is_recorded_later(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service
) -> None:
    sim.inject("http:503", "http:503", "http:503", channel="exhaust-chan")
    result = await record(bootstrap, topics, "x1", "exhaust-chan")
    assert result["status"] == "started", "an unreachable API is an outage, not the moment's failure"
    assert result["attempts"] == 4, "three attempts, then the probe 3 s later"
    assert len(sim.calls_for("exhaust-chan")) == 4
    assert all(gap >= 3.0 for gap in gaps(sim, "exhaust-chan")), gaps(sim, "exhaust-chan")


@pytest.mark.parametrize("fault", ["reset", "garbage"])
async def test_a_call_that_may_have_been_received_is_in_doubt_and_never_resent(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service, fault: str
) -> None:
    channel = f"{fault}-chan"
    sim.inject(fault, channel=channel)
    result = await record(bootstrap, topics, f"{fault}-1", channel)
    assert result["status"] == "in_doubt"
    later = await record(bootstrap, topics, f"{fault}-2", channel, like=result)
    assert later["status"] == "in_doubt", "every later moment of the key is in_doubt too"
    assert len(sim.calls_for(channel)) == 1


async def test_a_failed_key_does_not_block_a_later_moment(
    bootstrap: str, topics: Names, sim: LiveSimulator, service: Service, backend: str
) -> None:
    sim.inject(REFUSE_ONCE[backend], channel="flaky-chan")
    first = await record(bootstrap, topics, "fl1", "flaky-chan")
    second = await record(bootstrap, topics, "fl2", "flaky-chan", like=first)
    assert (first["status"], second["status"]) == ("failed", "started")
    assert first["bucket"] == second["bucket"]

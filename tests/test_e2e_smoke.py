from __future__ import annotations

from highlight.simulator import LiveSimulator
from tests.harness import Names, by_event, create_topics, moment, produce, results, running, settings_for


async def test_smoke_started_duplicate_expired(bootstrap: str, names: Names, simulator: LiveSimulator) -> None:
    await create_topics(bootstrap, {names.moments: 2})
    settings = settings_for(bootstrap, names, simulator.url)
    await produce(
        bootstrap,
        names.moments,
        [moment("e1", "chan-a"), moment("e2", "chan-a"), moment("e3", "chan-b", age_seconds=600)],
    )
    async with running(settings):
        got = by_event(await results(bootstrap, names.results, 3))
    assert got["e1"]["status"] == "started"
    assert got["e2"]["status"] == "duplicate"
    assert got["e2"]["task_id"] == got["e1"]["task_id"]
    assert got["e3"]["status"] == "expired"
    assert len(simulator.tasks) == 1

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from highlight.broker import EmbeddedBroker
from highlight.simulator import LiveSimulator, SimulatorConfig
from tests.harness import APPID, KEY, Names


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One tansu per test session; every test uses its own topics and group."""
    with EmbeddedBroker() as embedded:
        yield embedded


@pytest.fixture(scope="session")
def bootstrap(broker: EmbeddedBroker) -> str:
    return broker.bootstrap


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Names:
    return Names.unique(request.node.name[:24].replace("[", "-").replace("]", ""))


@pytest.fixture
async def simulator() -> AsyncIterator[LiveSimulator]:
    async with LiveSimulator(SimulatorConfig(appid=APPID, key=KEY, seed=7)) as sim:
        yield sim

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from highlight.broker import EmbeddedBroker, free_port
from highlight.simulator import LiveSimulator, SimulatorConfig
from tests.harness import APIS, APPID, KEY, SECRET_ID, SECRET_KEY, Names


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


def simulator_config(**changes: object) -> SimulatorConfig:
    """The simulator holding the same credentials as every test instance (tests.harness.service_env)."""
    return SimulatorConfig(appid=APPID, key=KEY, secret_id=SECRET_ID, secret_key=SECRET_KEY, **changes)  # type: ignore[arg-type]  # changes are SimulatorConfig fields


@pytest.fixture
async def simulator() -> AsyncIterator[LiveSimulator]:
    async with LiveSimulator(simulator_config(seed=7)) as sim:
        yield sim


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest) -> str:
    """The recording backend: tests that take it run once per HIGHLIGHT_LIVE_API."""
    return str(request.param)


@pytest.fixture
def ops_port() -> int:
    """A free port for an instance's /metrics, /healthz and /readyz."""
    return free_port()

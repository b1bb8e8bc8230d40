from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, settings

from highlight.broker import EmbeddedBroker, free_port
from highlight.simulator import LiveSimulator, SimulatorConfig
from tests.harness import APIS, APPID, KEY, SECRET_ID, SECRET_KEY, Names

# The properties are about values, not speed: on a busy 2-core machine a slow example is not a failure.
settings.register_profile("local", deadline=None, suppress_health_check=[HealthCheck.too_slow])
# CI replays the same examples every run, so a landing never turns on a newly drawn example; exploring new ones is
# what local runs are for (a failure found there prints the example to pin with @example).
settings.register_profile("ci", parent=settings.get_profile("local"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "local")


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

"""HTTPS to the Live endpoint (highlight.live): certificates verified by default, a private CA on request."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from highlight import config
from highlight.apis import backend_for
from highlight.config import LiveSettings
from highlight.errors import ConfigError, LiveUnreachable
from highlight.live import LiveClient
from highlight.recording import RecordingOptions, window_at
from highlight.simulator import LiveSimulator, SimulatorConfig
from tests.harness import APPID, KEY


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_simulator(ca: trustme.CA) -> AsyncIterator[LiveSimulator]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    simulator = LiveSimulator(SimulatorConfig(appid=APPID, key=KEY))
    await simulator.start(ssl_context=server)
    try:
        yield simulator
    finally:
        await simulator.stop()


def live_settings(url: str, **changes: object) -> LiveSettings:
    settings = config.load({"HIGHLIGHT_LIVE_URL": url, "HIGHLIGHT_LIVE_APPID": APPID, "HIGHLIGHT_LIVE_KEY": KEY})
    return replace(settings.live, **changes)  # type: ignore[arg-type]


async def call(settings: LiveSettings) -> int:
    now = datetime.now(UTC)
    async with LiveClient(settings, backend_for(settings)) as live:
        started = await live.start(RecordingOptions("tls-chan", 300), window_at(now, 300), now)
    return started.task_id


async def test_an_untrusted_certificate_is_refused_before_anything_is_sent(https_simulator: LiveSimulator) -> None:
    assert https_simulator.url.startswith("https://")
    with pytest.raises(LiveUnreachable) as refused:
        await call(live_settings(https_simulator.url))
    assert refused.value.code == "connect_failed"
    assert "certificate" in refused.value.message.lower()
    assert https_simulator.calls == [], "the request never left the client"


async def test_a_private_ca_bundle_verifies_the_endpoint(
    https_simulator: LiveSimulator, ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    task_id = await call(live_settings(https_simulator.url, ca_file=str(bundle)))
    assert [c.task_id for c in https_simulator.calls] == [task_id]


async def test_verification_can_be_turned_off_for_testing_only(https_simulator: LiveSimulator) -> None:
    await call(live_settings(https_simulator.url, tls_verify=False))
    assert len(https_simulator.calls) == 1


async def test_a_ca_file_that_is_not_a_bundle_is_a_config_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(ConfigError, match="HIGHLIGHT_LIVE_CA_FILE"):
        await call(live_settings("https://127.0.0.1:1/common_access", ca_file=str(bogus)))

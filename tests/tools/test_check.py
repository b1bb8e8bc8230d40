"""`highlight check`: each rule as a pure verdict, then the whole preflight against the real broker and the
simulator: a good setup holds, and each kind of misconfiguration fails its own line (and nothing is recorded).
"""

from __future__ import annotations

import asyncio
import io
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from highlight.broker import free_port
from highlight.simulator import LiveSimulator
from highlight.tools import check
from highlight.tools.check import FAIL, OK, SKIPPED, Line, Report
from highlight.tools.cluster import PartitionLag, TopicView
from tests.conftest import simulator_config
from tests.harness import APIS, Names, produce, service_env, settings_for

# --- the verdicts, pure ------------------------------------------------------------------------------------------


def _view(name: str, partitions: int = 6, **configs: str) -> TopicView:
    return TopicView(name, partitions, {k.replace("_", "."): v for k, v in configs.items()})


MOMENTS = _view("m", 6)


def test_a_report_holds_unless_a_line_failed_and_says_how_many_did() -> None:
    holding = Report((Line("a", OK, "fine"), Line("bb", SKIPPED, "n/a")))
    failing = Report((*holding.lines, Line("c", FAIL, "broken"), Line("d", FAIL, "broken too")))
    assert holding.ok
    assert not failing.ok
    assert holding.render() == ["ok       a   fine", "skipped  bb  n/a", "every check holds"]
    assert failing.render()[-1] == "2 checks failed"
    assert failing.line("c").detail == "broken"


@pytest.mark.parametrize(
    ("view", "moments", "status"),
    [
        (None, MOMENTS, OK),  # absent: highlight creates it right
        (_view("s", 6), MOMENTS, OK),
        (_view("s", 4), MOMENTS, FAIL),
        (_view("s", 4), None, SKIPPED),  # nothing to compare with
    ],
)
def test_a_copartitioned_topic_must_have_the_moments_topics_partition_count(
    view: TopicView | None, moments: TopicView | None, status: str
) -> None:
    line = check.copartitioned_line("state-topic", "s", view, moments)
    assert (line.name, line.status) == ("state-topic", status)
    if status == FAIL:
        assert "4 partitions but m has 6" in line.detail


@pytest.mark.parametrize(
    ("configs", "status"),
    [
        ({"cleanup.policy": "compact"}, OK),
        ({"cleanup.policy": "compact,delete"}, OK),
        ({"cleanup.policy": "delete, compact"}, OK),
        ({"cleanup.policy": "delete"}, FAIL),
        ({}, SKIPPED),  # the broker did not say (tansu reports only what was set)
    ],
)
def test_the_state_topic_must_be_compacted(configs: Mapping[str, str], status: str) -> None:
    assert check.compaction_line("s", TopicView("s", 6, configs)).status == status
    assert check.compaction_line("s", None).status == OK, "absent: highlight creates it compacted"


@pytest.mark.parametrize(
    ("value", "status"),
    [("1048588", OK), ("1048576", OK), ("1048575", FAIL), ("1000", FAIL), ("lots", FAIL), (None, SKIPPED)],
)
def test_the_dead_letter_topic_must_take_the_largest_request_we_send(value: str | None, status: str) -> None:
    configs = {} if value is None else {"max.message.bytes": value}
    line = check.dead_letter_size_line("d", TopicView("d", 6, configs), 1_048_576)
    assert line.status == status
    if status == FAIL and value != "lots":
        assert "raise it to at least 1048576" in line.detail
    absent = check.dead_letter_size_line("d", None, 1_048_576)
    assert absent.status == OK, "highlight creates it with max.message.bytes = the largest request"
    assert "max.message.bytes=1048576" in absent.detail


def test_lag_is_reported_per_topic_and_fails_only_when_it_cannot_be_told() -> None:
    lags = [
        PartitionLag("m", 0, 5, 12, 7),
        PartitionLag("m", 1, None, 3, 3),
        PartitionLag("m.repartition", 0, 2, 2, 0),
    ]
    line = check.lag_line("g", lags)
    assert line == Line(
        "consumer-lag", OK, "group g: 10 behind (m 10, m.repartition 0); 1 of 3 partitions never committed"
    )
    assert check.lag_line("g", [*lags, PartitionLag("m", 2, 1, None, None)]).status == FAIL
    assert check.lag_line("g", []).status == SKIPPED


# --- against the broker and the simulator ------------------------------------------------------------------------

CERTIFICATE_HOSTS = ("127.0.0.1", "localhost")


async def _create(bootstrap: str, topics: Mapping[str, tuple[int, Mapping[str, str]]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, count, 1, topic_configs=dict(configs)) for name, (count, configs) in topics.items()]
        )
    finally:
        await admin.close()


def _layout(names: Names, **changes: tuple[int, Mapping[str, str]] | None) -> dict[str, tuple[int, Mapping[str, str]]]:
    """Every topic as `topics-init` makes them; `changes` by role replace one (None leaves it out)."""
    good: dict[str, tuple[int, Mapping[str, str]] | None] = {
        "moments": (2, {}),
        "results": (2, {}),
        "dlq": (2, {"max.message.bytes": "1048588"}),
        "state": (2, {"cleanup.policy": "compact"}),
        "repartition": (2, {}),
        "callbacks": (2, {}),
        "clips": (2, {}),
    } | changes
    topics = {role: getattr(names, role) for role in good}
    return {topics[role]: shape for role, shape in good.items() if shape is not None}


@pytest.fixture
async def sim() -> AsyncIterator[LiveSimulator]:
    async with LiveSimulator(simulator_config(seed=9)) as simulator:
        yield simulator


async def _check(bootstrap: str, names: Names, url: str, **overrides: Any) -> Report:
    out = io.StringIO()
    report = await check.run(settings_for(bootstrap, names, url, **overrides), out=out)
    assert out.getvalue().splitlines() == report.render(), "what is printed is the report"
    assert [line.name for line in report.lines] == list(check.names()), "every check, in order, every time"
    return report


def _failed(report: Report) -> list[str]:
    return [line.name for line in report.lines if line.status == FAIL]


@pytest.mark.parametrize("api", APIS)
async def test_a_good_setup_passes_every_check_without_recording_anything(
    bootstrap: str, names: Names, sim: LiveSimulator, api: str
) -> None:
    await _create(bootstrap, _layout(names))

    report = await _check(bootstrap, names, sim.url_for(api), live_api=api)

    assert report.ok, report.render()
    statuses = {line.name: line.status for line in report.lines}
    assert statuses["live-tls"] == SKIPPED, "the simulator speaks plain http here"
    assert all(status == OK for name, status in statuses.items() if name != "live-tls")
    assert "accepted" in report.line("live-credentials").detail
    assert sim.tasks == []
    assert sim.calls == []
    assert [read.api for read in sim.reads] == [api]


async def test_the_lag_counts_what_the_group_has_yet_to_read(bootstrap: str, names: Names, sim: LiveSimulator) -> None:
    await _create(bootstrap, _layout(names))
    await produce(bootstrap, names.moments, [b"1", b"2", b"3", b"4", b"5"], key=b"k", partition=0)
    await produce(bootstrap, names.moments, [b"6"], key=b"k", partition=1)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=names.group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(names.moments, 0)])
        await consumer.commit({TopicPartition(names.moments, 0): 2})
    finally:
        await consumer.stop()

    line = (await _check(bootstrap, names, sim.url)).line("consumer-lag")

    assert line.status == OK
    assert f"4 behind ({names.moments} 4, {names.repartition} 0)" in line.detail, "3 on p0, 1 never committed on p1"
    assert "3 of 4 partitions never committed" in line.detail


async def test_an_unreachable_broker_fails_and_skips_every_kafka_check(names: Names, sim: LiveSimulator) -> None:
    report = await _check(f"127.0.0.1:{free_port()}", names, sim.url)
    assert _failed(report) == ["broker"]
    assert all(report.line(name).status == SKIPPED for name in check.KAFKA_CHECKS[1:])
    assert report.line("live-credentials").status == OK, "the Live checks still run"


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({"moments": None}, "moments-topic"),
        ({"state": (3, {"cleanup.policy": "compact"})}, "state-topic"),
        ({"state": (2, {"cleanup.policy": "delete"})}, "state-compaction"),
        ({"repartition": (1, {})}, "repartition-topic"),
        ({"callbacks": (4, {})}, "callbacks-topic"),
        ({"dlq": (2, {"max.message.bytes": "65536"})}, "dead-letter-size"),
    ],
)
async def test_each_misconfigured_topic_fails_its_own_line(
    bootstrap: str, names: Names, sim: LiveSimulator, changes: dict[str, Any], failing: str
) -> None:
    await _create(bootstrap, _layout(names, **changes))
    report = await _check(bootstrap, names, sim.url)
    assert not report.ok
    assert _failed(report) == [failing], report.render()


async def test_the_dead_letter_size_follows_the_producers_largest_request(
    bootstrap: str, names: Names, sim: LiveSimulator
) -> None:
    await _create(bootstrap, _layout(names))  # max.message.bytes=1048588: enough for the default 1 MiB
    report = await _check(bootstrap, names, sim.url, kafka_max_request_bytes=2 * 1024 * 1024)
    assert _failed(report) == ["dead-letter-size"]
    assert "HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES (2097152)" in report.line("dead-letter-size").detail


@pytest.mark.parametrize("api", APIS)
async def test_refused_credentials_fail_the_credentials_line(
    bootstrap: str, names: Names, sim: LiveSimulator, api: str
) -> None:
    await _create(bootstrap, _layout(names))
    wrong = {"live_key": "wrong-key"} if api == "live_tape_start" else {"secret_key": "wrong-secret"}
    report = await _check(bootstrap, names, sim.url_for(api), live_api=api, **wrong)
    assert _failed(report) == ["live-credentials"]
    assert "refused" in report.line("live-credentials").detail
    assert sim.tasks == []


async def test_an_endpoint_that_is_not_the_live_api_fails_the_credentials_line(
    bootstrap: str, names: Names, sim: LiveSimulator
) -> None:
    await _create(bootstrap, _layout(names))
    report = await _check(bootstrap, names, sim.url.replace("/common_access", "/elsewhere"))
    assert _failed(report) == ["live-credentials"]
    assert "HTTP 404" in report.line("live-credentials").detail


async def test_a_host_that_does_not_resolve_fails_dns_and_skips_what_needs_it(bootstrap: str, names: Names) -> None:
    await _create(bootstrap, _layout(names))
    report = await _check(bootstrap, names, "https://live.highlight-check.invalid/")
    assert _failed(report) == ["live-dns"]
    assert report.line("live-tls").status == SKIPPED
    assert report.line("live-credentials").status == SKIPPED


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_sim(ca: trustme.CA) -> AsyncIterator[LiveSimulator]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*CERTIFICATE_HOSTS).configure_cert(server)
    simulator = LiveSimulator(simulator_config())
    await simulator.start(ssl_context=server)
    try:
        yield simulator
    finally:
        await simulator.stop()


async def test_tls_is_verified_with_the_configured_ca_bundle_and_fails_without_it(
    bootstrap: str, names: Names, https_sim: LiveSimulator, ca: trustme.CA, tmp_path: Path
) -> None:
    await _create(bootstrap, _layout(names))
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))

    untrusted = await _check(bootstrap, names, https_sim.url)
    trusted = await _check(bootstrap, names, https_sim.url, live_ca_file=str(bundle))
    unverified = await _check(bootstrap, names, https_sim.url, live_tls_verify="false")

    assert _failed(untrusted) == ["live-tls"]
    assert "certificate not verified by the system CAs" in untrusted.line("live-tls").detail
    assert untrusted.line("live-credentials").status == SKIPPED, "no call over a connection we cannot trust"
    assert trusted.ok, trusted.render()
    assert trusted.line("live-tls").detail.startswith("127.0.0.1:")
    assert trusted.line("live-credentials").status == OK
    assert unverified.line("live-tls").status == SKIPPED, "verification off is for testing, and said so"
    assert "HIGHLIGHT_LIVE_TLS_VERIFY=false" in unverified.line("live-tls").detail
    assert unverified.line("live-credentials").status == OK
    assert https_sim.tasks == []


# --- the command -------------------------------------------------------------------------------------------------


def _cli(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "highlight", "check"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_command_exits_0_when_every_check_holds_and_1_naming_the_failing_line(
    bootstrap: str, names: Names, sim: LiveSimulator
) -> None:
    # Absent callbacks and clips topics are fine: highlight creates them.
    await _create(bootstrap, _layout(names, callbacks=None, clips=None))
    env = service_env(bootstrap, names, sim.url)

    # In a thread: the simulator answers from this test's event loop.
    good = await asyncio.to_thread(_cli, env)
    bad = await asyncio.to_thread(_cli, {**env, "HIGHLIGHT_LIVE_KEY": "wrong-key"})

    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines()[-1] == "every check holds"
    assert bad.returncode == 1
    failing = [line for line in bad.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1
    assert failing[0].split()[1] == "live-credentials"
    assert bad.stdout.splitlines()[-1] == "1 check failed"


def test_invalid_settings_exit_2_with_the_same_one_line_as_run(tmp_path: Path) -> None:
    result = _cli({"HIGHLIGHT_LIVE_API": "create_record"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "highlight: error: HIGHLIGHT_SECRET_ID is required when HIGHLIGHT_LIVE_API=create_record (or pass --secret-id)"
    ]
    assert result.stdout == ""

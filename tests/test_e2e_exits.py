"""`highlight run` as a real process: truthful exit codes, waiting for brokers that come up late, and the stop when
records fail one after another in our own code."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from highlight.broker import EmbeddedBroker, free_port
from highlight.simulator import LiveSimulator
from tests.harness import (
    Names,
    committed_offset,
    create_topics,
    moment,
    produce,
    read_topic,
    result_of,
    service_env,
    spawn,
    wait_until,
)
from tests.hostile import Raw, events, produce_raw, reaped, valid_moment


def _last_line(log: Path) -> str:
    return log.read_text().strip().splitlines()[-1]


async def test_brokers_unreachable_past_the_startup_wait_exit_69_after_one_line_per_attempt(
    names: Names, tmp_path: Path
) -> None:
    log = tmp_path / "unreachable.log"
    env = service_env(f"127.0.0.1:{free_port()}", names, "http://127.0.0.1:9/", kafka_startup_timeout_seconds=3)
    async with reaped(spawn(env, log)) as process:
        code = await asyncio.to_thread(process.wait, 60)
    assert code == 69, log.read_text()
    attempts = events(log, "kafka_unreachable")
    assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
    assert len(attempts) >= 3, "retried with backoff (0.5 s, 1 s, ...) for the whole wait"
    assert all(a["level"] == "warning" and a["brokers"] == env["HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS"] for a in attempts)
    assert _last_line(log).startswith("highlight: error: ")
    assert "HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS" in _last_line(log)
    assert "Traceback" not in log.read_text()


async def test_a_moments_topic_that_never_appears_exits_78_after_waiting_for_it(
    bootstrap: str, names: Names, tmp_path: Path
) -> None:
    log = tmp_path / "no-topic.log"
    env = service_env(bootstrap, names, "http://127.0.0.1:9/", kafka_startup_timeout_seconds=2.5)
    async with reaped(spawn(env, log)) as process:
        code = await asyncio.to_thread(process.wait, 60)
    assert code == 78, log.read_text()
    assert len(events(log, "moments_topic_missing")) >= 2
    assert names.moments in _last_line(log)


async def test_sigterm_while_waiting_for_the_brokers_exits_0_at_once(names: Names, tmp_path: Path) -> None:
    log = tmp_path / "waiting.log"
    env = service_env(f"127.0.0.1:{free_port()}", names, "http://127.0.0.1:9/", kafka_startup_timeout_seconds=120)
    async with reaped(spawn(env, log)) as process:
        await wait_until(lambda: bool(events(log, "kafka_unreachable")), what="the first attempt")
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 10)
    assert code == 0, log.read_text()


async def test_a_broker_that_comes_up_late_is_waited_for_and_moments_then_flow(
    names: Names, simulator: LiveSimulator, tmp_path: Path
) -> None:
    """Compose and Kubernetes start everything at once: a broker still starting is normal."""
    port = free_port()
    log = tmp_path / "late.log"
    env = service_env(f"127.0.0.1:{port}", names, simulator.url, kafka_startup_timeout_seconds=60)
    async with reaped(spawn(env, log)) as process:
        await wait_until(lambda: len(events(log, "kafka_unreachable")) >= 2, what="two attempts", timeout=60)
        with EmbeddedBroker(port=port) as late:
            # The topic appears a moment after the broker, as a set-up job would create it: waited for too.
            await create_topics(late.bootstrap, {names.moments: 1})
            await produce(late.bootstrap, names.moments, [moment("late-1", "late-chan")])
            result = await result_of(late.bootstrap, names.results, "late-1", timeout=60)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 30)
    assert code == 0, log.read_text()
    assert result["status"] == "started"
    assert len(events(log, "service_started")) == 1
    assert len(simulator.calls_for("late-chan")) == 1


async def test_records_that_fail_one_after_another_stop_the_service_with_exit_70(
    bootstrap: str, names: Names, simulator: LiveSimulator, tmp_path: Path
) -> None:
    """A bug that fails every record must not dead-letter the whole stream: N are dead-lettered, then it stops."""
    await create_topics(bootstrap, {names.moments: 1})
    occurred = moment("x", "x")["occurred_at"]
    # Valid moments keyed by nothing, each with a header larger than a request may be: re-keying them fails,
    # the same way every time (a stand-in for a bug that fails every record).
    failing = [
        Raw(None, valid_moment(f"fat-{n}", f"fat-{n}", occurred), (("trace", b"t" * 100_000),)) for n in range(5)
    ]
    await produce_raw(bootstrap, names.moments, failing)
    log = tmp_path / "streak.log"
    env = service_env(
        bootstrap,
        names,
        simulator.url,
        max_unprocessable_in_a_row=2,
        kafka_max_request_bytes=65536,
        max_moment_bytes=32768,
    )
    async with reaped(spawn(env, log)) as process:
        code = await asyncio.to_thread(process.wait, 60)
    assert code == 70, log.read_text()
    dead = await read_topic(bootstrap, names.dlq, 2)
    assert len(dead) == 2, "exactly N dead-lettered; the one that broke the streak and the rest are not"
    assert {dict(r.headers)["highlight.dlq.reason"] for r in dead} == {b"unprocessable"}
    assert len(events(log, "moment_unprocessable")) == 2
    (limit,) = events(log, "unprocessable_limit_reached")
    assert limit["in_a_row"] == 3
    assert "HIGHLIGHT_MAX_UNPROCESSABLE_IN_A_ROW" in _last_line(log)
    assert "a bug to report" in _last_line(log)
    dead_offsets = {int(dict(r.headers)["__connect.errors.offset"]) for r in dead}
    left = min(set(range(5)) - dead_offsets)
    committed = await committed_offset(bootstrap, names.group, names.moments, 0)
    assert committed is None or committed <= left, "what was not dead-lettered stays uncommitted for the fix"
    assert simulator.calls == []

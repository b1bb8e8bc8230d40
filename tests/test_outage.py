"""The outage gate (highlight.outage): pause instead of burning moments, one probe at a time, backoff, logs."""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from highlight.errors import LiveAccessRefused, LiveUnreachable
from highlight.outage import LiveGate

REFUSED = LiveAccessRefused("the Live API refused our credentials: sign invalid", code="sign invalid")


def _gate(changes: list[bool] | None = None, outages: list[str] | None = None, **kwargs: float) -> LiveGate:
    return LiveGate(
        on_change=(changes if changes is not None else []).append,
        on_outage=(outages if outages is not None else []).append,
        first_probe_seconds=kwargs.pop("first", 0.05),
        max_probe_seconds=kwargs.pop("max", 0.2),
        log_interval_seconds=kwargs.pop("log_interval", 60.0),
    )


async def _fail(gate: LiveGate, reason: str = "credentials") -> None:
    async with gate.attempt() as attempt:
        attempt.unavailable(reason, REFUSED)


async def _succeed(gate: LiveGate) -> None:
    async with gate.attempt() as attempt:
        attempt.reached()


async def test_available_gate_admits_at_once() -> None:
    gate = _gate()
    async with asyncio.timeout(0.05):
        await _succeed(gate)
    assert gate.available


async def test_outage_closes_the_gate_and_reports_it_once() -> None:
    changes: list[bool] = []
    outages: list[str] = []
    gate = _gate(changes, outages)
    await _fail(gate)
    assert not gate.available
    assert (changes, outages) == ([False], ["credentials"])


async def test_during_an_outage_a_call_waits_for_its_probe_turn() -> None:
    gate = _gate(first=0.3)
    await _fail(gate)
    started = time.monotonic()
    await _succeed(gate)
    assert time.monotonic() - started >= 0.25
    assert gate.available


async def test_probe_success_reopens_the_gate_and_releases_every_waiter() -> None:
    changes: list[bool] = []
    gate = _gate(changes)
    await _fail(gate)
    waiters = [asyncio.create_task(_succeed(gate)) for _ in range(5)]
    async with asyncio.timeout(2):
        await asyncio.gather(*waiters)
    assert gate.available
    assert changes == [False, True]


async def test_only_one_probe_runs_at_a_time() -> None:
    gate = _gate(first=0.02)
    await _fail(gate)
    inside = 0
    most = 0

    async def probe() -> None:
        nonlocal inside, most
        async with gate.attempt() as attempt:
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.05)
            inside -= 1
            attempt.unavailable("unreachable", LiveUnreachable("refused", code="connect_failed"))

    tasks = [asyncio.create_task(probe()) for _ in range(4)]
    await asyncio.sleep(0.4)
    assert most == 1
    gate.release_waiting()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_failed_probes_back_off_doubling_up_to_the_cap() -> None:
    gate = _gate(first=0.05, max=0.2)
    await _fail(gate)
    admitted: list[float] = []
    start = time.monotonic()
    for _ in range(5):
        async with gate.attempt() as attempt:
            admitted.append(time.monotonic() - start)
            attempt.unavailable("credentials", REFUSED)
    gaps = [b - a for a, b in zip([0.0, *admitted], admitted, strict=False)]
    # 0.05, then 0.1, 0.2, 0.2 (capped), 0.2
    assert gaps[0] == pytest.approx(0.05, abs=0.04)
    assert gaps[1] == pytest.approx(0.1, abs=0.04)
    assert all(gap == pytest.approx(0.2, abs=0.05) for gap in gaps[2:])


async def test_a_cancelled_probe_frees_the_turn_for_the_next_waiter() -> None:
    gate = _gate(first=0.01)
    await _fail(gate)
    holding = asyncio.Event()

    async def hang() -> None:
        async with gate.attempt():
            holding.set()
            await asyncio.sleep(10)

    prober = asyncio.create_task(hang())
    await holding.wait()
    waiter = asyncio.create_task(_succeed(gate))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    prober.cancel()
    async with asyncio.timeout(1):
        await waiter
    assert gate.available


async def test_release_waiting_cancels_only_the_chosen_waiters() -> None:
    gate = _gate(first=10)
    await _fail(gate)
    first = asyncio.create_task(_succeed(gate))
    second = asyncio.create_task(_succeed(gate))
    await asyncio.sleep(0.02)
    assert gate.waiting == 2
    assert gate.release_waiting({first}) == 1
    await asyncio.sleep(0.01)
    assert first.cancelled()
    assert not second.done()
    gate.release_waiting()
    await asyncio.gather(second, return_exceptions=True)
    assert second.cancelled()


async def test_a_non_probe_answer_during_an_outage_also_proves_recovery() -> None:
    gate = _gate(first=10)
    async with gate.attempt() as in_flight:
        await _fail(gate)  # another moment's call found the outage meanwhile
        in_flight.reached()
    assert gate.available


async def test_outage_is_logged_once_per_interval_not_per_probe() -> None:
    gate = _gate(first=0.01, max=0.01, log_interval=0.25)
    with capture_logs() as logs:
        await _fail(gate)
        for _ in range(10):
            await _fail(gate)
        await asyncio.sleep(0.3)
        await _fail(gate)
        await _succeed(gate)
    events = [entry["event"] for entry in logs]
    assert events.count("live_api_unavailable") == 2
    assert events[-1] == "live_api_recovered"
    assert logs[0]["log_level"] == "error"


async def test_a_probe_abandoned_with_nobody_else_waiting_reopens_the_gate_unproven() -> None:
    changes: list[bool] = []
    gate = _gate(changes, first=0.01)
    await _fail(gate)
    async with gate.attempt():
        pass  # its moment expired meanwhile: no call, no answer
    assert gate.available, "with fetching paused, nothing else would ever probe"
    assert changes == [False, True]


async def test_releasing_the_last_waiter_reopens_the_gate_so_new_moments_can_probe() -> None:
    gate = _gate(first=10)
    await _fail(gate)
    waiter = asyncio.create_task(_succeed(gate))
    await asyncio.sleep(0.02)
    gate.release_waiting({waiter})
    await asyncio.gather(waiter, return_exceptions=True)
    assert gate.available


async def test_after_shutdown_no_new_call_is_admitted_and_the_gate_stays_as_it_was() -> None:
    gate = _gate(first=10)
    await _fail(gate)
    waiter = asyncio.create_task(_succeed(gate))
    await asyncio.sleep(0.02)
    gate.release_waiting()
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled()
    assert not gate.available
    with pytest.raises(asyncio.CancelledError):
        await _succeed(gate)


async def test_retry_spacing_is_kept_by_the_gate_even_while_available() -> None:
    gate = _gate()
    started = time.monotonic()
    async with gate.attempt(not_before=started + 0.2) as attempt:
        attempt.reached()
    assert time.monotonic() - started >= 0.19

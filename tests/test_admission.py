"""Waiting for room in the budget (highlight.admission): order, the reserve, deadlines, releases."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import pytest

from highlight.admission import Admissions
from highlight.budget import DAILY_LIMIT, RUNNING_LIMIT, Budget, Charge, Limits
from highlight.recording import CST
from tests.harness import wait_until


def admissions(running: int = 1, daily: int = 0, *, share: float = 0.0) -> tuple[Budget, Admissions]:
    holder: list[Admissions] = []
    budget = Budget(
        Limits(running=running, daily=daily, reserved_share=share, reserved_priority=80),
        partitions=1,
        on_change=lambda: holder[0].changed() if holder else None,
    )
    gate = Admissions(budget, clock=time.time)
    holder.append(gate)
    budget.restore(0, [], time.time())
    return budget, gate


async def waiting(gate: Admissions, count: int) -> None:
    await wait_until(lambda: gate.waiting >= count, timeout=5, what=f"{count} waiting")


async def test_a_moment_with_room_holds_a_slot_until_its_call_is_over() -> None:
    budget, gate = admissions(running=1)
    assert await gate.admit(0, "a", 50, deadline=time.time() + 5, seconds=300) is None
    assert budget.room(50, time.time()) == RUNNING_LIMIT
    gate.done(0, "a")
    assert budget.room(50, time.time()) is None


async def test_waiting_moments_get_freed_slots_in_arrival_order() -> None:
    _, gate = admissions(running=1)
    assert await gate.admit(0, "first", 50, deadline=time.time() + 5, seconds=300) is None
    order: list[str] = []

    async def wait_for_slot(key: str) -> None:
        assert await gate.admit(0, key, 50, deadline=time.time() + 5, seconds=300) is None
        order.append(key)
        gate.done(0, key)

    second = asyncio.create_task(wait_for_slot("second"))
    await waiting(gate, 1)
    third = asyncio.create_task(wait_for_slot("third"))
    await waiting(gate, 2)
    gate.done(0, "first")
    await asyncio.gather(second, third)
    assert order == ["second", "third"]


async def test_a_high_priority_moment_passes_the_waiting_ones_into_the_reserve() -> None:
    _, gate = admissions(running=2, share=0.5)
    assert await gate.admit(0, "normal", 50, deadline=time.time() + 5, seconds=300) is None
    refused = asyncio.create_task(gate.admit(0, "refused", 50, deadline=time.time() + 0.3, seconds=300))
    await waiting(gate, 1)
    assert await gate.admit(0, "urgent", 90, deadline=time.time() + 5, seconds=300) is None
    assert await refused == RUNNING_LIMIT


async def test_a_moment_without_room_is_answered_with_the_limit_at_its_deadline_not_before() -> None:
    _, gate = admissions(running=1)
    await gate.admit(0, "a", 50, deadline=time.time() + 5, seconds=300)
    started = time.monotonic()
    assert await gate.admit(0, "b", 50, deadline=time.time() + 0.3, seconds=300) == RUNNING_LIMIT
    assert time.monotonic() - started >= 0.25
    assert gate.waiting == 0


async def test_a_moment_the_day_has_no_room_for_is_answered_at_once_unless_the_day_ends_before_its_deadline() -> None:
    # A clock that runs from 30 s before midnight in China, and that the test can move forward.
    midnight = datetime(2026, 11, 23, 0, 0, 0, tzinfo=CST).timestamp()
    offset = [midnight - 30 - time.monotonic()]

    def clock() -> float:
        return time.monotonic() + offset[0]

    holder: list[Admissions] = []
    budget = Budget(
        Limits(running=0, daily=1, reserved_share=0, reserved_priority=80),
        partitions=1,
        on_change=lambda: holder[0].changed() if holder else None,
    )
    gate = Admissions(budget, clock=clock)
    holder.append(gate)
    budget.restore(0, [("today", Charge(clock() - 60, clock() - 30))], clock())
    # Its deadline (10 s away) comes before midnight (30 s away): answered at once, not at its deadline.
    soon_too_old = gate.admit(0, "soon-too-old", 50, deadline=clock() + 10, seconds=300)
    assert await asyncio.wait_for(soon_too_old, timeout=5) == DAILY_LIMIT
    offset[0] += 29.5
    # Its deadline comes after midnight: it waits for the new day, and gets its slot then.
    assert await gate.admit(0, "new-day", 50, deadline=clock() + 60, seconds=300) is None
    assert clock() >= midnight


async def test_released_waiters_are_cancelled_and_hold_nothing() -> None:
    budget, gate = admissions(running=1)
    await gate.admit(0, "a", 50, deadline=time.time() + 5, seconds=300)
    blocked = asyncio.create_task(gate.admit(0, "b", 50, deadline=time.time() + 30, seconds=300))
    await waiting(gate, 1)
    assert gate.release_waiting({blocked}) == 1
    with pytest.raises(asyncio.CancelledError):
        await blocked
    gate.done(0, "a")
    assert budget.usage(RUNNING_LIMIT, time.time()).in_use == 0
    gate.release_waiting()
    with pytest.raises(asyncio.CancelledError):
        await gate.admit(0, "c", 50, deadline=time.time() + 5, seconds=300)

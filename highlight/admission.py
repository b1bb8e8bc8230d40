"""Waiting for room in the budget: a moment that finds none makes no call and waits, in order, for a while.

A moment about to call asks `Admissions.admit`. With room, it leaves at once holding a slot (`Budget.hold`) that
it gives back (`done`) when its call is over, whatever the outcome: the slot cannot be taken twice meanwhile.
Without room it waits for a running slot, at most until its deadline (HIGHLIGHT_MAX_EVENT_AGE_SECONDS after it
occurred: a late real-time recording captures the wrong minutes), and is then answered `skipped` with the limit
that had no room. A moment the day has no room for waits only if the CST day ends before its deadline.

Waiters are served in arrival order; one of high priority may take the reserve while those before it wait for
a slot they are allowed. Room is looked for again whenever the budget says it may have appeared (a charge went,
a partition came or went) and when the budget's next scheduled change is due (a window ends, the day turns).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from highlight.budget import DAILY_LIMIT, Budget, Charge, Key
from highlight.recording import next_cst_midnight


@dataclass(eq=False, slots=True)
class _Waiter:
    index: int
    key: Key
    priority: int
    seconds: float
    granted: bool = False
    blocked_by: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Admissions:
    def __init__(self, budget: Budget, *, clock: Callable[[], float]) -> None:
        self._budget = budget
        self._clock = clock
        self._queue: list[_Waiter] = []
        self._waiting: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def changed(self) -> None:
        """Room may have appeared: hand it out (the budget calls this)."""
        self._grant()

    async def admit(self, index: int, key: Key, priority: int, *, deadline: float, seconds: float) -> str | None:
        """None: a slot is held for `key` until `done`. Otherwise the limit that had no room by `deadline`
        (UNIX seconds), and nothing is held. Cancelled while waiting, nothing is held either."""
        if self._closed:
            raise asyncio.CancelledError("the service is stopping: no new call")
        waiter = _Waiter(index, key, priority, seconds)
        self._queue.append(waiter)
        task = asyncio.current_task()
        try:
            while True:
                self._grant()
                if waiter.granted:
                    return None
                now = self._clock()
                reason = waiter.blocked_by
                if now >= deadline or (reason == DAILY_LIMIT and next_cst_midnight(now) > deadline):
                    return reason
                wake = min(deadline, self._budget.next_change(now) or math.inf)
                waiter.wake.clear()
                if task is not None:
                    self._waiting.add(task)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, wake - now)):
                        await waiter.wake.wait()
        except BaseException:
            if waiter.granted:
                # Granted by another waiter's pass, then cancelled before it could call: give the slot back.
                self.done(index, key)
            raise
        finally:
            if task is not None:
                self._waiting.discard(task)
            if waiter in self._queue:
                self._queue.remove(waiter)

    def refused_by_api(self, reason: str) -> None:
        """The API answered that a limit is reached: the share is full for now (`Budget.refused_by_api`)."""
        self._budget.refused_by_api(reason, self._clock())

    def done(self, index: int, key: Key) -> None:
        """The call of a moment admitted for `key` is over: its entry (if any) counts from now on."""
        self._budget.unhold(index, key, self._clock())

    def release_waiting(self, tasks: set[asyncio.Task[Any]] | None = None) -> int:
        """Cancel moments waiting here (all, or those among `tasks`): on a revoke or shutdown they must not hold
        the drain. They made no call, so they stay uncommitted for the next owner. Releasing all also turns
        away every later moment."""
        if tasks is None:
            self._closed = True
        chosen = [task for task in self._waiting if tasks is None or task in tasks]
        for task in chosen:
            task.cancel()
        return len(chosen)

    def _grant(self) -> None:
        """Slots to the waiters that may have one, in arrival order."""
        if not self._queue:
            return
        now = self._clock()
        reserved_priority = self._budget.limits.reserved_priority
        # Room depends only on whether a moment may use the reserve: asked once per class until a grant.
        room: dict[bool, str | None] = {}
        for waiter in list(self._queue):
            high = waiter.priority >= reserved_priority
            if high not in room:
                room[high] = self._budget.room(waiter.priority, now)
            reason = room[high]
            if reason is None:
                self._budget.hold(waiter.index, waiter.key, Charge(now, now + waiter.seconds), now)
                waiter.granted = True
                self._queue.remove(waiter)
                waiter.wake.set()
                room.clear()
            else:
                waiter.blocked_by = reason

"""Degrade, do not burn: while the Live API refuses our credentials or stays unreachable, moments wait.

A refused credential or an endpoint down for longer than the retry budget is not any moment's fault, so no
moment is answered `failed` for it. The gate closes instead: the service pauses fetching and reports itself
not ready, every moment that reaches a call waits here, and one of them at a time probes the API with its
own real call, backing off from 3 s to 60 s. A probe is as safe as any attempt: an access refusal or a
connection that never opened created nothing. The first probe the API answers on its merits (a recording, a
refusal of that moment, even an unknown outcome) reopens the gate and the waiting moments go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from highlight.errors import LiveError

log = structlog.get_logger("highlight.outage")

FIRST_PROBE_SECONDS = 3.0
MAX_PROBE_SECONDS = 60.0
# An outage is one problem: say so once a minute, not once per waiting moment.
LOG_INTERVAL_SECONDS = 60.0


@dataclass(slots=True)
class Attempt:
    """What the caller learned from one admitted call; unreported (cancelled, crashed) counts as nothing."""

    outage: tuple[str, LiveError] | None = None
    answered: bool = False

    def unavailable(self, reason: str, error: LiveError) -> None:
        self.outage = (reason, error)

    def reached(self) -> None:
        self.answered = True


class LiveGate:
    def __init__(
        self,
        *,
        on_change: Callable[[bool], None] = lambda available: None,
        on_outage: Callable[[str], None] = lambda reason: None,
        clock: Callable[[], float] = time.monotonic,
        first_probe_seconds: float = FIRST_PROBE_SECONDS,
        max_probe_seconds: float = MAX_PROBE_SECONDS,
        log_interval_seconds: float = LOG_INTERVAL_SECONDS,
    ) -> None:
        self._on_change = on_change
        self._on_outage = on_outage
        self._clock = clock
        self._first = first_probe_seconds
        self._max = max_probe_seconds
        self._log_interval = log_interval_seconds
        self._available = True
        self._closed = False
        self._since = 0.0
        self._delay = first_probe_seconds
        self._next_probe = 0.0
        self._last_logged = 0.0
        self._reason = ""
        self._error: LiveError | None = None
        self._probes = 0
        self._prober: asyncio.Task[Any] | None = None
        self._waiting: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()

    @property
    def available(self) -> bool:
        return self._available

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @asynccontextmanager
    async def attempt(self, *, not_before: float | None = None) -> AsyncIterator[Attempt]:
        """Admit one call: not before `not_before` (the caller's retry spacing, on this gate's clock), and then
        at once while the API is available; during an outage, when this caller's probe is due. The caller
        reports what the call showed on the yielded `Attempt`."""
        await self._admit(not_before)
        attempt = Attempt()
        try:
            yield attempt
        finally:
            self._settle(attempt)

    def release_waiting(self, tasks: set[asyncio.Task[Any]] | None = None) -> int:
        """Cancel callers waiting here (all, or those among `tasks`): on shutdown or a revoke they must not hold
        the drain. They are between calls, so nothing is outstanding and they stay uncommitted for the next
        owner. Releasing all also turns away every later caller: a stopping service starts no new call."""
        if tasks is None:
            self._closed = True
        chosen = [task for task in self._waiting if tasks is None or task in tasks]
        for task in chosen:
            task.cancel()
        return len(chosen)

    async def _admit(self, not_before: float | None) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 -- always called from a task
        while True:
            if self._closed:
                raise asyncio.CancelledError("the service is stopping: no new call")
            now = self._clock()
            wait: float | None
            if not_before is not None and now < not_before:
                wait = not_before - now
            elif self._available:
                return
            elif self._prober is None and now >= self._next_probe:
                self._prober = task
                self._probes += 1
                return
            else:
                wait = max(0.0, self._next_probe - now) if self._prober is None else None
            self._waiting.add(task)
            try:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
            except BaseException:
                self._waiting.discard(task)
                self._reopen_if_nobody_can_probe()
                raise
            self._waiting.discard(task)

    def _settle(self, attempt: Attempt) -> None:
        probing = self._prober is not None and self._prober is asyncio.current_task()
        if probing:
            self._prober = None
        if attempt.outage is not None:
            reason, error = attempt.outage
            if self._available:
                self._enter(reason, error)
            elif probing:
                self._probe_failed(reason, error)
        elif attempt.answered and not self._available:
            self._recover()
        elif probing:
            # A probe that ended without an answer (cancelled, or its moment too old by now) frees the turn for
            # the next waiter, if there is one.
            self._reopen_if_nobody_can_probe()
        self._changed.set()

    def _reopen_if_nobody_can_probe(self) -> None:
        """Probes are made by waiting moments, and fetching is paused meanwhile: with none left (released by a
        revoke, expired) nothing would ever probe again. Reopen unproven; the next call shows whether the
        outage persists, and closes the gate again if it does."""
        if self._available or self._closed or self._waiting or self._prober is not None:
            return
        self._available = True
        self._on_change(True)
        log.info("live_api_gate_reopened", reason=self._reason, note="no moment left to probe with; unproven")

    def _enter(self, reason: str, error: LiveError) -> None:
        now = self._clock()
        self._available = False
        self._since = now
        self._delay = self._first
        self._next_probe = now + self._delay
        self._reason, self._error = reason, error
        self._probes = 0
        self._last_logged = now
        self._on_outage(reason)
        self._on_change(False)
        log.error(
            "live_api_unavailable",
            reason=reason,
            code=error.code,
            error=error.message,
            request_id=error.request_id,
            next_probe_seconds=self._delay,
            note="consumption paused; no moment is answered failed for this; probing with backoff",
        )

    def _probe_failed(self, reason: str, error: LiveError) -> None:
        now = self._clock()
        self._delay = min(self._delay * 2, self._max)
        self._next_probe = now + self._delay
        self._reason, self._error = reason, error
        if now - self._last_logged >= self._log_interval:
            self._last_logged = now
            log.error(
                "live_api_unavailable",
                reason=reason,
                code=error.code,
                error=error.message,
                request_id=error.request_id,
                outage_seconds=round(now - self._since, 1),
                probes=self._probes,
                waiting=len(self._waiting),
                next_probe_seconds=self._delay,
            )

    def _recover(self) -> None:
        now = self._clock()
        self._available = True
        self._on_change(True)
        log.warning(
            "live_api_recovered",
            reason=self._reason,
            outage_seconds=round(now - self._since, 1),
            probes=self._probes,
            waiting=len(self._waiting),
        )
        self._error = None

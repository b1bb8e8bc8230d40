"""The call protocol: at most one recording per dedup key, whatever crashes, stalls or rebalances.

Room in the budget first (`highlight.admission`), then every attempt: the lease checked, the intent written and
acknowledged, the lease checked again, the request, and the outcome written only while the lease still holds.
Retries, the gate during an outage, and the withdrawal of an intent whose request never left are decided here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

import structlog
from aiolimiter import AsyncLimiter
from structlog.typing import FilteringBoundLogger

from highlight.admission import Admissions
from highlight.apis import Started
from highlight.config import Settings
from highlight.dedup import DedupKey, Entry, Phase
from highlight.errors import (
    Fenced,
    LiveAccessRefused,
    LiveError,
    LiveInDoubt,
    LiveLimitReached,
    LiveUnreachable,
)
from highlight.lease import Lease
from highlight.live import LiveClient
from highlight.metrics import Metrics
from highlight.moment import Moment
from highlight.outage import LiveGate
from highlight.recording import clamp_record_seconds, window_at
from highlight.state import StateStore

log = structlog.get_logger("highlight.call")


class Caller:
    """Makes the call a moment's decision asks for (`highlight.recorder` decides, this calls) and keeps the key's
    state entry in step with it: the intent before, the outcome after."""

    def __init__(
        self,
        settings: Settings,
        *,
        live: LiveClient,
        state: StateStore,
        limiter: AsyncLimiter,
        gate: LiveGate,
        admissions: Admissions,
        lease: Lease,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._rec = settings.recorder
        self._live = live
        self._state = state
        self._limiter = limiter
        self._gate = gate
        self._admissions = admissions
        self._lease = lease
        self._api = live.backend.name
        self._metrics = metrics
        self._clock = clock

    async def record(
        self, moment: Moment, index: int, key: DedupKey, mlog: FilteringBoundLogger
    ) -> tuple[Entry | None, str]:
        """Room in the budget first (waiting for a running slot at most until the moment is too old), then the
        call. A moment with no room makes no call: `skipped`, kept in state so a redelivery is answered alike."""
        seconds = clamp_record_seconds(moment.recording_options(self._rec.record_seconds).record_seconds)
        deadline = moment.occurred_at.timestamp() + self._rec.max_event_age_seconds
        reason = await self._admissions.admit(index, key, moment.priority, deadline=deadline, seconds=seconds)
        if reason is not None:
            entry = Entry(Phase.SKIPPED, moment.event_id, reason=reason)
            await self._lease.writable()  # a member that cannot prove it owns the key writes nothing
            await self._state.put(index, key, entry)
            return entry, "skipped"
        try:
            entry = await self._call(moment, index, key, mlog)
        except _OutlivedOutage:
            return None, "expired"
        finally:
            self._admissions.done(index, key)
        return entry, entry.phase.value

    async def _call(self, moment: Moment, index: int, key: DedupKey, mlog: FilteringBoundLogger) -> Entry:
        """At most one recording per key: an acknowledged intent before every attempt, the outcome after.

        Every attempt: the lease checked (cheap: a fenced member writes nothing), the intent written and
        acknowledged, the lease checked again, and then at once the request. A member that passes the second
        check and stalls before its request leaves has its intent in the log already, so whoever takes the
        partition over after the lease ran out answers in_doubt for the key instead of calling it.

        Cancelled while waiting (rate limit, backoff, an outage), nothing is outstanding: the intent is withdrawn
        and the moment stays uncommitted for the next owner. Cancelled mid-request, the intent stays: in_doubt.
        While the API refuses our credentials or stays unreachable past the retry budget, the moment waits at
        the gate instead of failing; the state meanwhile holds what it held before this moment. Fenced, the
        moment is given up as it stands (`Fenced`): no outcome, no result, and the intent withdrawn only while
        the lease still covers writes.
        """
        previous = self._state.get(index, key)
        options = moment.recording_options(self._rec.record_seconds)
        live = self._settings.live
        budget = live.max_attempts
        held = False  # waited out an outage: the moment may have grown too old meanwhile
        tries = 0
        last_try: float | None = None
        written = False
        putting: asyncio.Future[None] | None = None
        while True:
            sending = False
            outcome: Started | LiveError
            try:
                # Never two attempts of one moment closer than the retry delay: that can record twice.
                not_before = None if last_try is None else last_try + live.retry_delay_seconds
                async with self._gate.attempt(not_before=not_before) as attempt:
                    async with self._limiter:
                        pass
                    now = self._clock()
                    if held and (now - moment.occurred_at).total_seconds() > self._rec.max_event_age_seconds:
                        # A real-time recording now would capture the wrong minutes, as for any late moment.
                        raise _OutlivedOutage
                    await self._lease.callable()
                    window = window_at(now, options.record_seconds)
                    tries += 1
                    budget -= 1
                    intent = Entry(
                        Phase.INTENT, moment.event_id, window.start_time, window.end_time, attempts=tries, api=self._api
                    )
                    written = True  # from here on, the log may hold the intent even if the put is cancelled
                    # Shielded: if we are cancelled meanwhile, its acknowledgement still decides the withdrawal.
                    putting = asyncio.ensure_future(self._state.put(index, key, intent))
                    await asyncio.shield(putting)
                    try:
                        await self._lease.callable()  # the safety check: nothing but the request after it
                    except Fenced:
                        await _withdraw(self._state, self._lease, index, key, previous)
                        raise
                    mlog.debug("live_call_sending", attempt=tries)
                    sending = True
                    call_started = time.monotonic()
                    try:
                        outcome = await self._live.start(options, window, now)
                    except LiveError as exc:
                        outcome = exc
                    finally:
                        # Spacing counts from the end of an attempt: its request may have arrived late.
                        last_try = time.monotonic()
                        self._metrics.call_seconds.labels(self._api).observe(last_try - call_started)
                    sending = False
                    unavailable = _unavailable(outcome, budget, self._gate.available)
                    if isinstance(outcome, LiveError) and unavailable is not None:
                        attempt.unavailable(unavailable, outcome)
                    elif not isinstance(outcome, LiveUnreachable):
                        attempt.reached()
            except asyncio.CancelledError:
                if written and not sending:
                    if putting is not None:
                        # Where the intent stands decides whether a withdrawal is safe: wait for its answer.
                        await asyncio.wait([putting])
                        if not putting.cancelled():
                            putting.exception()  # a failed put is withdrawn all the same; seen, not re-raised
                    await _withdraw(self._state, self._lease, index, key, previous)
                raise
            self._metrics.calls.labels(self._api, _result_class(outcome)).inc()
            if isinstance(outcome, Started):
                self._metrics.call_succeeded()
                entry = Entry(
                    Phase.STARTED,
                    moment.event_id,
                    window.start_time,
                    window.end_time,
                    task_id=str(outcome.task_id),
                    attempts=tries,
                    api=self._api,
                    request_id=outcome.request_id,
                )
                break
            if unavailable is not None:
                # Not this moment's fault: put the key back as it was, wait for the API, then a fresh budget.
                await self._lease.writable()
                await self._state.put(index, key, previous)
                budget = live.max_attempts
                held = True
                continue
            if outcome.retriable and budget > 0:
                self._metrics.retries.labels(self._api, _result_class(outcome)).inc()
                mlog.info("live_call_retrying", attempt=tries, code=outcome.code, error=outcome.message)
                continue
            reason = None
            if isinstance(outcome, LiveLimitReached):
                # The API has the last word on the account's limits: the share is full for now.
                self._admissions.refused_by_api(outcome.reason)
                phase, reason = Phase.SKIPPED, outcome.reason
            else:
                phase = Phase.IN_DOUBT if isinstance(outcome, LiveInDoubt) else Phase.FAILED
            entry = Entry(
                phase,
                moment.event_id,
                window.start_time,
                window.end_time,
                error_code=outcome.code,
                error_message=outcome.message,
                attempts=tries,
                api=self._api,
                request_id=outcome.request_id,
                reason=reason,
            )
            break
        try:
            await self._lease.writable()
        except Fenced:
            # The call was made, but a new owner may have read its intent and answered in_doubt already: this
            # outcome must not contradict it. Logged, so the recording can still be found.
            mlog.warning(
                "live_call_outcome_dropped",
                status=entry.phase.value,
                task_id=entry.task_id,
                request_id=entry.request_id,
                error=entry.error_code,
            )
            raise
        await self._state.put(index, key, entry)
        return entry


class _OutlivedOutage(Exception):
    """The moment waited out an outage for longer than HIGHLIGHT_MAX_EVENT_AGE_SECONDS: `expired`."""


def _unavailable(outcome: Started | LiveError, budget: int, available: bool) -> str | None:
    """Whether this outcome shows the API unusable for every moment, not just this one."""
    if isinstance(outcome, LiveAccessRefused):
        return "credentials"
    if isinstance(outcome, LiveUnreachable) and (budget <= 0 or not available):
        return "unreachable"
    return None


def _result_class(outcome: Started | LiveError) -> str:
    if isinstance(outcome, Started):
        return "started"
    if isinstance(outcome, LiveAccessRefused):
        return "credentials"
    if isinstance(outcome, LiveUnreachable):
        return "unreachable"
    if isinstance(outcome, LiveInDoubt):
        return "in_doubt"
    if isinstance(outcome, LiveLimitReached):
        return "limit_reached"
    return "rate_limited" if outcome.retriable else "refused"


async def _withdraw(state: StateStore, lease: Lease, index: int, key: DedupKey, previous: Entry | None) -> None:
    """Put the key back as it was before an intent whose request never left.

    Only while the lease holds: then the intent was acknowledged within it, so any later owner read the intent
    and never called the key, and this write cannot hide anybody's call. Without the lease, the intent stays:
    in_doubt for a call that was never made, which costs a recording but never pays for two.
    """
    if not lease.may_write():
        return
    try:
        await state.put(index, key, previous)
    except Exception:
        log.warning("intent_withdraw_failed", channel=key[0], bucket=key[1])

"""Taking partition indexes over and handing them on: when a new owner may process them, and the release record.

An index handed over cleanly (its state partition ends with the previous generation's release record), or taken
in the group's first generation, is processed at once. Any other waits, in a task of its own, until every
earlier owner's lease has run out, then reads its state partition to the end again; the others go on meanwhile.
The rules are in `highlight.lease`; this is their bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from highlight.errors import Fenced, HighlightError
from highlight.lease import Lease, Membership, Release, takeover
from highlight.metrics import Metrics
from highlight.state import RestoreReport, StateStore

log = structlog.get_logger("highlight.handover")


@dataclass(frozen=True, slots=True)
class Takeover:
    """What an assignment found: the restore, the in_doubt keys resolved, and the indexes that must wait."""

    restore: RestoreReport
    in_doubt: int
    waits: dict[int, float]


class Handovers:
    def __init__(
        self,
        state: StateStore,
        lease: Lease,
        metrics: Metrics,
        *,
        full_wait: float,
        static: bool,
        on_ready: Callable[[int], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._state = state
        self._lease = lease
        self._metrics = metrics
        self._full_wait = full_wait
        self._static = static
        self._on_ready = on_ready
        self._on_error = on_error
        # Indexes still waiting: their task, and the monotonic time the wait ends.
        self._waits: dict[int, tuple[asyncio.Task[None], float]] = {}

    @property
    def waiting(self) -> set[int]:
        return set(self._waits)

    async def take_over(self, indexes: set[int], membership: Membership) -> Takeover:
        """Restore `indexes` as assigned in `membership`; those that must wait get a task that calls `on_ready`."""
        self._state.drop_kept(indexes)
        report = await self._state.restore(indexes)
        waits: dict[int, float] = {}
        for index in sorted(indexes):
            handover, wait = takeover(
                report.tails[index], membership.generation, full_wait=self._full_wait, static=self._static
            )
            self._metrics.takeovers.labels(handover.value).inc()
            if wait > 0:
                waits[index] = wait
        now = indexes - waits.keys()
        try:
            # Claimed before anything is decided there, in_doubt answers included: from the claim on, a stalled
            # earlier owner's late writes do not count.
            await self._state.claim(now, membership, self._lease, wait=False)
        except Fenced:
            # A rebalance is on its way: wait as if the index had not been handed over cleanly (the revoke that
            # follows cancels the waits; if the indexes stay ours, they are claimed after it).
            log.info("partition_claim_fenced", partitions=sorted(now))
            waits |= dict.fromkeys(now, self._full_wait)
            now = set()
        in_doubt = await self._state.resolve_intents(now)
        for index, wait in waits.items():
            task = asyncio.create_task(self._wait(index, wait, membership), name=f"takeover:{index}")
            self._waits[index] = (task, time.monotonic() + wait)
        return Takeover(report, in_doubt, waits)

    async def _wait(self, index: int, wait: float, membership: Membership) -> None:
        """Wait out earlier owners' leases, read the state partition to its end again, claim it, then hand it on."""
        started = time.monotonic()
        try:
            await asyncio.sleep(wait)
            # Whatever an earlier owner wrote while its lease held is in the log by now, every intent included.
            report = await self._state.restore({index})
            await self._state.claim({index}, membership, self._lease, wait=True)
            in_doubt = await self._state.resolve_intents({index})
        except asyncio.CancelledError:
            raise
        except Fenced:
            # A rebalance is on its way, and its revoke takes the index back; nothing here was decided.
            log.info("partition_claim_fenced", partitions=[index])
            return
        except BaseException as exc:
            self._on_error(exc)
            return
        self._waits.pop(index, None)
        waited = time.monotonic() - started
        self._metrics.takeover_wait.observe(waited)
        log.info(
            "partition_taken_over",
            partition=index,
            waited_seconds=round(waited, 3),
            state_records=report.records,
            in_doubt=in_doubt,
        )
        self._on_ready(index)

    async def cancel(self, indexes: set[int]) -> dict[int, float]:
        """Stop the takeover waits of `indexes`; what was left of each."""
        left: dict[int, float] = {}
        now = time.monotonic()
        for index in sorted(indexes & self._waits.keys()):
            task, ends = self._waits.pop(index)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            left[index] = max(0.0, ends - now)
        return left

    async def hand_over(self, indexes: set[int]) -> None:
        """After draining `indexes`: write each one's release record, "nothing more of ours follows".

        The next owner, if it is of the next generation and finds it last, starts at once (or waits what was
        left of our own takeover wait). Without it, it waits out our lease, which is always safe.
        """
        left = await self.cancel(indexes)
        # The generation the indexes were assigned in: aiokafka forgets it when the coordinator refuses us.
        membership = self._lease.membership
        if membership is None or not indexes or self._lease.lost:
            # Told our membership is over: the indexes were given away already, and whoever has them waits
            # out our lease. A release would be sound (everything of ours is before it) but could only land
            # after the new owner's writes, where it only costs the owner after that a wait.
            return

        async def release(index: int) -> None:
            try:
                await self._state.write_release(
                    index, Release(membership.generation, membership.member_id, left.get(index, 0.0))
                )
            except HighlightError as exc:
                log.warning("partition_release_failed", partition=index, error=str(exc), note="the next owner waits")

        await asyncio.gather(*(release(index) for index in sorted(indexes)))

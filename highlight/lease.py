"""Fencing: a member calls the API only while it can prove it owns the key's partition. Pure, clock injected.

Kafka never promises a member exclusive ownership of its partitions: a member that stalls past the session
timeout (a GC pause, CPU throttling, SIGSTOP), or that hears of a rebalance late, may still be working on
partitions the group has already handed to someone else. The side effect here is an HTTP call, which no Kafka
transaction can fence, so two rules keep "at most one call per key" true without exclusive ownership:

**The member side: a lease.** A heartbeat (or the SyncGroup that delivered the assignment) that succeeds proves
the member was in the group, in its generation, when it was *sent*: the coordinator hands its partitions to
another member only in a later generation, and it answers the member's later heartbeats with an error. So the
member may start a call only within `LEASE_FRACTION` of the session timeout after the sending of its last proof,
and only while no coordinator answer has told it it may have lost its membership (a rebalance, an unknown
member id, an illegal generation, a fenced instance id, leaving the group). A call is started only after its
intent is acknowledged *and* the lease still holds: a member that stalls after that check has its intent in the
log already. A member that cannot prove its ownership writes nothing to the state topic and publishes nothing.

**The new owner's side: a takeover wait.** A partition index taken over without a clean handover is processed
only `session timeout + margin` after the assignment, and only after its state partition has been read again to
its end. Every earlier owner's lease has run out by then (its last proof was sent before the generation that
took the partition away was formed, and a lease lasts half a session), so every intent whose call may have been
started is in what the new owner reads, and it answers `in_doubt` for those keys instead of calling.

What a stalled owner had already queued can still land after the new owner has read the log: the new owner
therefore claims the index first (`Claim`), and records put under an earlier claim that land after it count for
nothing when the state is read.

A clean handover needs no wait: the owner that gave the index up drained it and then wrote a *release* record
to its state partition. A new owner trusts it only when it is the partition's last record and comes from the
generation just before its own: from an older one, some owner in between may have held the index without
writing anything, and may still be about to. Two assumptions: the clocks of the members advance at the same rate
give or take the margin (no wall-clock agreement is needed), and the coordinator tells a member its generation
is over when it gives its partitions away (Apache Kafka does; so does tansu in the cases the tests exercise).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from highlight.errors import Fenced

# Half a session: heartbeats go every quarter session, so one lost heartbeat does not stop calls, and whatever
# the lease allows is over long before a new owner's wait (a whole session and a margin) ends.
LEASE_FRACTION = 0.5

# The key of the state partition's record that hands an index over: a JSON object, where every dedup key is a
# JSON array, so none can equal it.
RELEASE_KEY = b'{"highlight":"release"}'

# The first generation tansu hands out. Apache Kafka starts at 1, so there this never matches and the group's
# very first assignment waits like any other takeover.
FIRST_GENERATION = 0


class FenceReason(enum.StrEnum):
    REBALANCE = "rebalance"  # the coordinator is forming a new generation; ours may be over already
    MEMBERSHIP_LOST = "membership_lost"  # unknown member id, illegal generation, fenced instance id
    LEFT_GROUP = "left_group"  # we sent LeaveGroup (shutdown, or aiokafka's poll-interval guard)
    COORDINATOR = "coordinator"  # the coordinator cannot be reached: nothing proves membership until it can


@dataclass(frozen=True, slots=True)
class Membership:
    generation: int
    member_id: str


class Lease:
    """What this member can prove about owning its assigned partitions, on its own monotonic clock.

    Fed by the Kafka adapter (`proved`, `fenced`, `doubted`, `assigned`); consulted before every state write,
    call and result. A proof counts only for the membership the current assignment came with.
    """

    def __init__(
        self,
        session_timeout_seconds: float,
        *,
        fraction: float = LEASE_FRACTION,
        clock: Callable[[], float] = time.monotonic,
        on_fence: Callable[[FenceReason], None] = lambda reason: None,
    ) -> None:
        self.length = session_timeout_seconds * fraction
        self._clock = clock
        self._on_fence = on_fence
        self.membership: Membership | None = None
        self._proofs: dict[Membership, float] = {}
        # Why calls are off until the next assignment (None: they are not).
        self._fence: FenceReason | None = FenceReason.REBALANCE
        # Why calls are off until the next proof (the coordinator could not be reached).
        self._doubt: FenceReason | None = None
        self._changed = asyncio.Event()

    def now(self) -> float:
        """The lease's clock: proofs are stamped with it when their request is sent."""
        return self._clock()

    # --- what the group coordinator told us --------------------------------------------------------------

    def proved(self, membership: Membership, sent_at: float) -> None:
        """A heartbeat or SyncGroup of `membership`, sent at `sent_at`, was answered without error."""
        if sent_at > self._proofs.get(membership, float("-inf")):
            self._proofs[membership] = sent_at
        if membership == self.membership:
            self._doubt = None
        self._notify()

    def fenced(self, reason: FenceReason, membership: Membership | None = None) -> None:
        """The coordinator said our generation may be over: no call until the next assignment."""
        if self._older(membership):
            return  # about a generation we have already left behind
        if self._fence is None:
            self._fence = reason
            self._on_fence(reason)
        self._notify()

    def doubted(self, reason: FenceReason, membership: Membership | None = None) -> None:
        """Membership could not be proven just now: no call until a heartbeat succeeds again."""
        if self._older(membership):
            return
        if self._fence is None and self._doubt is None:
            self._doubt = reason
            self._on_fence(reason)
        self._notify()

    def assigned(self, membership: Membership) -> None:
        """Partitions were assigned under `membership` (the SyncGroup that brought them is its first proof)."""
        self.membership = membership
        self._proofs = {m: t for m, t in self._proofs.items() if m == membership}
        self._fence = None
        self._doubt = None
        self._notify()

    # --- what we may do ----------------------------------------------------------------------------------

    def remaining(self) -> float:
        """Seconds the last proof still covers; zero or less when it covers nothing."""
        sent_at = self._proofs.get(self.membership) if self.membership is not None else None
        if sent_at is None:
            return float("-inf")
        return sent_at + self.length - self._clock()

    @property
    def fence(self) -> FenceReason | None:
        """Why no call may start until the next assignment, if the coordinator has said so."""
        return self._fence

    @property
    def lost(self) -> bool:
        """The coordinator said our membership is over: our partitions are someone else's already."""
        return self._fence is FenceReason.MEMBERSHIP_LOST

    def may_write(self) -> bool:
        """Whether a state write or a result now would be seen by any later owner before it decides anything."""
        return self.remaining() > 0

    def may_call(self) -> bool:
        return self._fence is None and self._doubt is None and self.may_write()

    async def callable(self) -> None:
        """Return once a call may start; raise `Fenced` once none may until the next assignment.

        A lease that merely ran out (the loop stalled, the coordinator was slow) waits for the next heartbeat:
        a heartbeat that succeeds in the same membership proves nobody else was given the partitions meanwhile.
        """
        while True:
            if self._fence is not None:
                raise Fenced(f"cannot prove this member still owns its partitions ({self._fence})")
            if self.may_call():
                return
            await self._next_change()

    async def writable(self) -> None:
        """Return while the lease covers a write or a result; raise `Fenced` once it cannot any more.

        Unlike calls, writes go on after a rebalance signal for as long as the last proof covers them: that is
        how a rebalance drains, and a new owner reads them all before it decides anything.
        """
        while True:
            if self.may_write():
                return
            if self._fence is not None:
                raise Fenced(f"the lease ran out and cannot be renewed ({self._fence})")
            await self._next_change()

    def _older(self, membership: Membership | None) -> bool:
        return (
            membership is not None
            and self.membership is not None
            and membership.generation < self.membership.generation
        )

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _next_change(self) -> None:
        await self._changed.wait()


# --- handing a partition index over -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Release:
    """The record an owner writes to an index's state partition after draining it: "everything I wrote is before
    this, and I start nothing more here". `wait_seconds` is what was left of its own takeover wait, if it gave
    the index up before that wait was over: a duration, so no clock needs to agree with the releaser's."""

    generation: int
    member_id: str
    wait_seconds: float = 0.0


def encode_release(release: Release) -> bytes:
    wait_ms = round(release.wait_seconds * 1000)
    return orjson.dumps({"generation": release.generation, "member_id": release.member_id, "wait_ms": wait_ms})


def decode_release(raw: bytes | None) -> Release:
    document = orjson.loads(raw or b"null")
    if not isinstance(document, dict):
        raise ValueError("a release record is a JSON object")
    generation, member_id, wait_ms = document.get("generation"), document.get("member_id"), document.get("wait_ms", 0)
    if not isinstance(generation, int) or not isinstance(member_id, str) or not isinstance(wait_ms, int):
        raise ValueError(f"not a release record: {document!r}")
    return Release(generation, member_id, max(0, wait_ms) / 1000)


class Handover(enum.StrEnum):
    FIRST_GENERATION = "first_generation"  # the group's first assignment: nobody owned the index before
    RELEASED = "released"  # the previous generation's owner released it (maybe with a wait left over)
    LEASE_WAIT = "lease_wait"  # nothing proves the previous owner stopped: wait out every lease


def takeover(tail: Release | None, generation: int, *, full_wait: float, static: bool) -> tuple[Handover, float]:
    """How a new owner in `generation` may start on an index whose state partition ends with `tail` (the release
    record, if the last record is one): how the handover counts, and how many seconds to wait first."""
    # Static members share a generation across restarts (no rebalance), so "first" proves nothing for them.
    if generation == FIRST_GENERATION and not static:
        return Handover.FIRST_GENERATION, 0.0
    if tail is not None and tail.generation == generation - 1:
        return Handover.RELEASED, min(tail.wait_seconds, full_wait)
    return Handover.LEASE_WAIT, full_wait


# --- claiming a partition index: which writes count ---------------------------------------------------

# Every record an owner writes to the state topic carries the token of its claim on the index in this header.
OWNER_HEADER = "highlight.owner"
# Claim records' keys start so (the rest names the token: every claim is kept by compaction, so the chain holds);
# a JSON object, as RELEASE_KEY is, so no dedup key (a JSON array) can equal one.
CLAIM_KEY_PREFIX = b'{"highlight":"claim","owner":"'


@dataclass(frozen=True, slots=True)
class Claim:
    """The record a new owner writes to an index's state partition before it decides anything there.

    A stalled owner's writes can land late: put while its lease held, sent only when it wakes, after a new owner
    has read the log and decided from it. From a claim on, only records carrying the claim's token (`OWNER_HEADER`)
    count, so such a write can neither undo nor overwrite what the new owner does (a withdrawn intent would make
    the owner after it call again). A claim counts only if it names the claim it follows (`after`): a stalled
    owner's late claim names an older one and counts for nothing.
    """

    owner: str
    after: str | None
    generation: int
    member_id: str

    @property
    def key(self) -> bytes:
        return CLAIM_KEY_PREFIX + self.owner.encode() + b'"}'


def encode_claim(claim: Claim) -> bytes:
    return orjson.dumps(
        {"owner": claim.owner, "after": claim.after, "generation": claim.generation, "member_id": claim.member_id}
    )


def decode_claim(raw: bytes | None) -> Claim:
    document = orjson.loads(raw or b"null")
    if not isinstance(document, dict):
        raise ValueError("a claim record is a JSON object")
    owner, after = document.get("owner"), document.get("after")
    generation, member_id = document.get("generation"), document.get("member_id")
    if (
        not isinstance(owner, str)
        or not (after is None or isinstance(after, str))
        or not isinstance(generation, int)
        or not isinstance(member_id, str)
    ):
        raise ValueError(f"not a claim record: {document!r}")
    return Claim(owner, after, generation, member_id)

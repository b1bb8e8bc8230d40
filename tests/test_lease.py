"""The lease and the takeover decision, on an injected clock: no broker, no network."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight.dedup import decode_key, encode_key
from highlight.errors import Fenced
from highlight.lease import (
    FIRST_GENERATION,
    RELEASE_KEY,
    FenceReason,
    Handover,
    Lease,
    Membership,
    Release,
    decode_release,
    encode_release,
    takeover,
)

SESSION = 10.0
ME = Membership(4, "member-a")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def assigned_lease(clock: Clock, *, proof_at: float | None = None, fences: list[FenceReason] | None = None) -> Lease:
    lease = Lease(SESSION, clock=clock, on_fence=(fences.append if fences is not None else lambda reason: None))
    lease.proved(ME, clock.now if proof_at is None else proof_at)  # the SyncGroup that brought the assignment
    lease.assigned(ME)
    return lease


def test_nothing_may_be_called_or_written_before_the_first_assignment() -> None:
    clock = Clock()
    lease = Lease(SESSION, clock=clock)
    lease.proved(ME, clock.now)
    assert not lease.may_call()
    assert not lease.may_write()


def test_a_member_may_call_only_within_half_a_session_of_sending_its_last_proof() -> None:
    clock = Clock()
    lease = assigned_lease(clock)
    assert lease.length == SESSION / 2
    clock.now += SESSION / 2 - 0.001
    assert lease.may_call()
    assert lease.may_write()
    clock.now += 0.002
    assert not lease.may_call()
    assert not lease.may_write()


def test_the_lease_counts_from_when_the_proof_was_sent_not_from_when_it_was_answered() -> None:
    clock = Clock()
    lease = assigned_lease(clock)
    sent = clock.now + 1
    clock.now += 4  # a slow heartbeat: sent at +1, answered at +4
    lease.proved(ME, sent)
    assert lease.remaining() == pytest.approx(sent + SESSION / 2 - clock.now)
    clock.now = sent + SESSION / 2
    assert not lease.may_call()


def test_an_older_proof_answered_late_does_not_shorten_a_newer_one() -> None:
    clock = Clock()
    lease = assigned_lease(clock)
    lease.proved(ME, clock.now + 2)
    lease.proved(ME, clock.now + 1)
    clock.now += SESSION / 2 + 1.5
    assert lease.may_call()


def test_a_proof_of_another_membership_proves_nothing() -> None:
    clock = Clock()
    lease = assigned_lease(clock)
    clock.now += SESSION
    lease.proved(Membership(ME.generation + 1, ME.member_id), clock.now)
    lease.proved(Membership(ME.generation, "someone-else"), clock.now)
    assert not lease.may_write()


def test_a_rebalance_stops_calls_at_once_but_writes_go_on_while_the_proof_holds() -> None:
    clock = Clock()
    fences: list[FenceReason] = []
    lease = assigned_lease(clock, fences=fences)
    lease.fenced(FenceReason.REBALANCE, ME)
    assert not lease.may_call()
    assert lease.may_write(), "in-flight calls of a draining revoke still record their outcomes"
    assert fences == [FenceReason.REBALANCE]


@pytest.mark.parametrize("reason", [FenceReason.REBALANCE, FenceReason.MEMBERSHIP_LOST, FenceReason.LEFT_GROUP])
def test_a_fence_lasts_until_the_next_assignment_whatever_heartbeats_say(reason: FenceReason) -> None:
    clock = Clock()
    lease = assigned_lease(clock)
    lease.fenced(reason, ME)
    lease.proved(ME, clock.now + 1)
    assert not lease.may_call()
    new = Membership(ME.generation + 1, ME.member_id)
    lease.proved(new, clock.now + 2)  # the SyncGroup of the next generation
    lease.assigned(new)
    assert lease.may_call()


def test_a_coordinator_error_stops_calls_until_a_heartbeat_succeeds_again() -> None:
    clock = Clock()
    fences: list[FenceReason] = []
    lease = assigned_lease(clock, fences=fences)
    lease.doubted(FenceReason.COORDINATOR, ME)
    assert not lease.may_call()
    assert lease.may_write()
    lease.proved(ME, clock.now + 1)
    assert lease.may_call()
    assert fences == [FenceReason.COORDINATOR]


def test_news_about_an_older_generation_is_ignored() -> None:
    clock = Clock()
    lease = assigned_lease(clock)
    old = Membership(ME.generation - 1, ME.member_id)
    lease.fenced(FenceReason.MEMBERSHIP_LOST, old)
    lease.doubted(FenceReason.COORDINATOR, old)
    assert lease.may_call()


def test_each_fence_is_reported_once_until_lifted() -> None:
    clock = Clock()
    fences: list[FenceReason] = []
    lease = assigned_lease(clock, fences=fences)
    lease.fenced(FenceReason.REBALANCE, ME)
    lease.fenced(FenceReason.MEMBERSHIP_LOST, ME)
    lease.doubted(FenceReason.COORDINATOR, ME)
    assert fences == [FenceReason.REBALANCE]


async def test_a_stale_lease_waits_for_the_next_heartbeat_and_a_fenced_one_raises() -> None:
    clock = Clock()
    lease = assigned_lease(clock)
    clock.now += SESSION
    waiting = asyncio.create_task(lease.callable())
    await asyncio.sleep(0)
    assert not waiting.done(), "a lease that merely ran out waits"
    lease.proved(ME, clock.now)
    await asyncio.wait_for(waiting, 1)

    clock.now += SESSION
    waiting = asyncio.create_task(lease.callable())
    writing = asyncio.create_task(lease.writable())
    await asyncio.sleep(0)
    lease.fenced(FenceReason.MEMBERSHIP_LOST, ME)
    with pytest.raises(Fenced):
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(Fenced):
        await asyncio.wait_for(writing, 1)


async def test_a_fenced_member_may_still_write_while_its_last_proof_holds() -> None:
    clock = Clock()
    lease = assigned_lease(clock)
    lease.fenced(FenceReason.REBALANCE, ME)
    with pytest.raises(Fenced):
        await lease.callable()
    await asyncio.wait_for(lease.writable(), 1)


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.floats(0, SESSION)),
        st.tuples(st.just("proof"), st.floats(-SESSION, 1)),
        st.tuples(st.just("fence"), st.sampled_from(list(FenceReason))),
        st.tuples(st.just("doubt"), st.just(FenceReason.COORDINATOR)),
        st.tuples(st.just("assign"), st.integers(0, 2)),
    ),
    max_size=40,
)


@given(EVENTS)
def test_calls_are_allowed_only_with_a_fresh_proof_of_the_current_membership_and_no_fence_since_assignment(
    events: list[tuple[str, object]],
) -> None:
    clock = Clock()
    lease = Lease(SESSION, clock=clock)
    current: Membership | None = None
    sent: dict[Membership, float] = {}  # the latest proof of each membership
    fenced_since_assignment = True
    doubt = False
    for kind, value in events:
        if kind == "tick":
            assert isinstance(value, float)
            clock.now += value
        elif kind == "proof":
            assert isinstance(value, float)
            membership = current or ME  # before any assignment: the SyncGroup proof of the first one
            sent[membership] = max(sent.get(membership, float("-inf")), clock.now + value)
            lease.proved(membership, clock.now + value)
            if membership == current:
                doubt = False
        elif kind == "fence":
            assert isinstance(value, FenceReason)
            lease.fenced(value, current)
            fenced_since_assignment = True
        elif kind == "doubt":
            lease.doubted(FenceReason.COORDINATOR, current)
            doubt = True
        else:
            assert isinstance(value, int)
            current = Membership(ME.generation + value, ME.member_id)
            lease.assigned(current)
            sent = {m: t for m, t in sent.items() if m == current}
            fenced_since_assignment = doubt = False
        fresh = current is not None and clock.now < sent.get(current, float("-inf")) + SESSION / 2
        assert lease.may_write() == fresh
        assert lease.may_call() == (fresh and not fenced_since_assignment and not doubt)


# --- release records and the takeover ---------------------------------------------------------------

releases = st.builds(
    Release,
    generation=st.integers(-1, 2**31 - 1),
    member_id=st.text(max_size=60),
    wait_seconds=st.integers(0, 3_600_000).map(lambda ms: ms / 1000),
)


@given(releases)
def test_a_release_record_reads_back_as_written(release: Release) -> None:
    assert decode_release(encode_release(release)) == release


@pytest.mark.parametrize("raw", [None, b"", b"[]", b"{}", b'{"generation": "1", "member_id": "m"}', b"not json"])
def test_anything_else_is_not_a_release_record(raw: bytes | None) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- orjson's decode error is a ValueError too
        decode_release(raw)


@given(st.text(max_size=40), st.integers(-(2**63), 2**63 - 1))
def test_no_dedup_key_can_be_mistaken_for_the_release_key(channel: str, bucket: int) -> None:
    assert encode_key((channel, bucket)) != RELEASE_KEY


def test_the_release_key_does_not_decode_as_a_dedup_key() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- orjson's decode error is a ValueError too
        decode_key(RELEASE_KEY)


FULL = SESSION + 1


def test_the_groups_first_generation_starts_at_once() -> None:
    assert takeover(None, FIRST_GENERATION, full_wait=FULL, static=False) == (Handover.FIRST_GENERATION, 0.0)


def test_a_static_member_waits_even_in_the_first_generation_since_its_restarts_share_it() -> None:
    assert takeover(None, FIRST_GENERATION, full_wait=FULL, static=True) == (Handover.LEASE_WAIT, FULL)
    same = Release(FIRST_GENERATION, "previous-incarnation")
    assert takeover(same, FIRST_GENERATION, full_wait=FULL, static=True) == (Handover.LEASE_WAIT, FULL)


def test_a_release_of_the_previous_generation_hands_over_with_what_was_left_of_its_own_wait() -> None:
    assert takeover(Release(6, "m"), 7, full_wait=FULL, static=False) == (Handover.RELEASED, 0.0)
    assert takeover(Release(6, "m", 2.5), 7, full_wait=FULL, static=True) == (Handover.RELEASED, 2.5)


@pytest.mark.parametrize("generation", [1, 5, 7, 8])
def test_a_release_of_any_other_generation_proves_nothing(generation: int) -> None:
    # From further back, an owner in between may have held the index without writing a thing.
    assert takeover(Release(generation, "m"), 7, full_wait=FULL, static=False) == (Handover.LEASE_WAIT, FULL)


def test_without_a_release_the_new_owner_waits_a_session_and_the_margin() -> None:
    assert takeover(None, 3, full_wait=FULL, static=False) == (Handover.LEASE_WAIT, FULL)


@given(st.none() | releases, st.integers(-1, 2**31 - 1), st.booleans())
def test_the_wait_is_never_negative_nor_longer_than_a_full_takeover(
    tail: Release | None, generation: int, static: bool
) -> None:
    handover, wait = takeover(tail, generation, full_wait=FULL, static=static)
    assert 0 <= wait <= FULL
    assert (wait == FULL) or handover is not Handover.LEASE_WAIT

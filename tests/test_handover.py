"""Taking indexes over and handing them on, against the broker: who waits, for how long, what a release says."""

from __future__ import annotations

import asyncio
import time

from highlight.dedup import Entry, Phase, encode_entry, encode_key
from highlight.handover import Handovers
from highlight.lease import FenceReason, Lease, Membership, Release
from highlight.metrics import Metrics
from highlight.state import StateStore
from tests.harness import Names, create_topics, state_store, wait_until

FULL_WAIT = 1.0


def handovers(state: StateStore, lease: Lease, ready: list[int], *, full_wait: float = FULL_WAIT) -> Handovers:
    def failed(exc: BaseException) -> None:
        raise AssertionError(f"a takeover failed: {exc!r}")

    return Handovers(state, lease, Metrics(), full_wait=full_wait, static=False, on_ready=ready.append, on_error=failed)


def assigned(generation: int) -> Lease:
    lease = Lease(6.0)
    membership = Membership(generation, "member-b")
    lease.proved(membership, lease.now())
    lease.assigned(membership)
    return lease


async def test_only_indexes_without_the_previous_generations_release_wait_and_then_read_what_came_meanwhile(
    bootstrap: str, names: Names
) -> None:
    await create_topics(bootstrap, {names.state: 3})
    key = ("late-chan", int(time.time()) // 300)
    async with state_store(bootstrap, names) as (state, producer):
        await state.restore({0, 1, 2})
        await state.write_release(0, Release(4, "member-a"))  # the previous generation: clean
        await state.write_release(1, Release(3, "member-a"))  # older: an owner in between may be silent
        lease, ready = assigned(5), []
        owner = handovers(state, lease, ready)
        started = time.monotonic()
        taken = await owner.take_over({0, 1, 2}, Membership(5, "member-b"))
        assert taken.waits == {1: FULL_WAIT, 2: FULL_WAIT}
        assert owner.waiting == {1, 2}
        # A stalled previous owner's intent, acknowledged within its lease but after our first read.
        intent = encode_entry(Entry(Phase.INTENT, "e-zombie"))
        await producer.send(names.state, intent, key=encode_key(key), partition=2)
        await wait_until(lambda: sorted(ready) == [1, 2], timeout=10, what="both waits to end")
        assert time.monotonic() - started >= FULL_WAIT
        assert not owner.waiting
    entry = state.get(2, key)
    assert entry is not None
    assert entry.phase is Phase.IN_DOUBT, "read again after the wait: its call may have been made"


async def test_an_index_given_up_during_its_wait_hands_what_was_left_of_it_on(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.state: 1})
    async with state_store(bootstrap, names) as (state, _producer):
        await state.restore({0})
        lease, ready = assigned(7), []
        owner = handovers(state, lease, ready, full_wait=30.0)
        before = time.monotonic()
        await owner.take_over({0}, Membership(7, "member-b"))
        after = time.monotonic()
        await asyncio.sleep(0.2)
        given_up = time.monotonic()
        await owner.hand_over({0})
        handed_over = time.monotonic()
        assert ready == [], "given up before its wait ended: never processed"
        state.release({0}, keep=False)

        report = await state.restore({0})
    (tail,) = report.tails.values()
    assert tail is not None
    assert (tail.generation, tail.member_id) == (7, "member-b")
    left = tail.wait_seconds
    assert 30 - (handed_over - before) - 0.01 <= left <= 30 - (given_up - after) + 0.01, "the rest, not a new wait"


async def test_a_member_told_it_lost_its_membership_writes_no_release(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.state: 1})
    async with state_store(bootstrap, names) as (state, _producer):
        await state.restore({0})
        lease = assigned(2)
        lease.fenced(FenceReason.MEMBERSHIP_LOST)
        await handovers(state, lease, []).hand_over({0})
        state.release({0}, keep=False)
        report = await state.restore({0})
    assert report.tails == {0: None}
    assert report.records == 0


async def test_indexes_are_claimed_before_anything_is_decided_and_a_fenced_claim_waits_instead(
    bootstrap: str, names: Names
) -> None:
    await create_topics(bootstrap, {names.state: 2})
    async with state_store(bootstrap, names) as (state, _producer):
        await state.restore({0, 1})
        await state.write_release(0, Release(4, "member-a"))
        await state.write_release(1, Release(4, "member-a"))
        lease, ready = assigned(5), []
        taken = await handovers(state, lease, ready).take_over({0}, Membership(5, "member-b"))
        assert taken.waits == {}
        assert set(state._tokens) == {0}, "claimed at once: the previous generation released it"

        # Told of a rebalance before the claim: nothing is claimed or decided there; it waits like any takeover.
        fenced, waiting = assigned(5), []
        fenced.fenced(FenceReason.REBALANCE)
        other = handovers(state, fenced, waiting)
        taken = await other.take_over({1}, Membership(5, "member-b"))
        assert taken.waits == {1: FULL_WAIT}
        assert 1 not in state._tokens
        await other.cancel({1})

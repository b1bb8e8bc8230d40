"""The lease reads what the group coordinator answers through aiokafka internals: pin them, then watch it live."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator

import aiokafka
from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance, GroupCoordinator

from highlight.kafka import GroupConsumer, Partition, RebalanceHandler
from highlight.lease import FenceReason, Lease
from highlight.simulator import LiveSimulator
from tests.harness import Names, create_topics, settings_for, wait_until


def test_every_group_request_aiokafka_sends_goes_through_send_req_with_the_coordinators_membership() -> None:
    # highlight.kafka.group._watch_membership replaces GroupCoordinator._send_req on the instance and reads the
    # coordinator's `generation` and `member_id` as the request's: if aiokafka changes either, this fails.
    sources = {
        "heartbeat": inspect.getsource(GroupCoordinator._do_heartbeat),
        "commit": inspect.getsource(GroupCoordinator._do_commit_offsets),
        "leave": inspect.getsource(GroupCoordinator._maybe_leave_group),
        "join": inspect.getsource(CoordinatorGroupRebalance.perform_group_join),
        "sync": inspect.getsource(CoordinatorGroupRebalance._send_sync_group_request),
    }
    assert "await self._send_req(request)" in sources["heartbeat"]
    assert "HeartbeatRequest(self.group_id, self.generation, self.member_id)" in sources["heartbeat"]
    assert "await self._send_req(request)" in sources["commit"]
    assert "self.generation,\n            self.member_id," in sources["commit"]
    assert "await self._send_req(request)" in sources["leave"]
    assert "await self._coordinator._send_req(request)" in sources["join"]
    assert "req_generation = self._coordinator.generation" in sources["sync"]
    assert "await self._coordinator._send_req(request)" in sources["sync"]
    assert "self._coordinator = GroupCoordinator(" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)


class Assignments(RebalanceHandler):
    def __init__(self) -> None:
        self.assigned: list[set[Partition]] = []

    async def partitions_assigned(self, assigned: set[Partition]) -> None:
        self.assigned.append(assigned)


@contextlib.asynccontextmanager
async def member(consumer: GroupConsumer) -> AsyncIterator[GroupConsumer]:
    """A started group member that keeps polling, as the service does."""
    await consumer.start()

    async def poll() -> None:
        while True:
            await consumer.fetch(100, 10)

    polling = asyncio.create_task(poll())
    try:
        yield consumer
    finally:
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        await consumer.stop()


async def test_heartbeats_renew_the_lease_a_rebalance_fences_it_and_the_next_assignment_lifts_the_fence(
    bootstrap: str, names: Names, simulator: LiveSimulator
) -> None:
    await create_topics(bootstrap, {names.moments: 2})
    # A short session: every join waits half of it on tansu, and this test joins three times.
    kafka = settings_for(bootstrap, names, simulator.url, kafka_session_timeout_ms=4000).kafka
    topics = [names.moments]
    fences: list[FenceReason] = []
    lease = Lease(kafka.session_timeout_ms / 1000, on_fence=fences.append)
    first = Assignments()
    async with member(GroupConsumer(kafka, topics, first, lease)) as consumer:
        await wait_until(lambda: bool(first.assigned), what="the first assignment")
        assert lease.may_call(), "the SyncGroup that brought the assignment proves membership"
        generation = consumer.membership.generation
        assert lease.membership == consumer.membership
        # The next heartbeats (every quarter session) renew it: it ends later and later, and never runs out.
        ends = lease.now() + lease.remaining()

        def renewed_twice() -> bool:
            assert lease.may_call(), "heartbeats keep the lease from running out"
            return lease.now() + lease.remaining() > ends + lease.length / 2 + 0.5

        await wait_until(renewed_twice, timeout=10, what="heartbeats to renew the lease")

        other = Assignments()
        async with member(GroupConsumer(kafka, topics, other, Lease(kafka.session_timeout_ms / 1000))):
            await wait_until(lambda: FenceReason.REBALANCE in fences, timeout=20, what="the rebalance to fence")
            assert not lease.may_call()
            await wait_until(lambda: len(first.assigned) == 2 and bool(other.assigned), timeout=30, what="both")
            assert lease.may_call(), "assigned again: calls may start"
            assert consumer.membership.generation > generation
        await wait_until(lambda: fences.count(FenceReason.REBALANCE) == 2, timeout=20, what="the second rebalance")
    assert fences[-1] is FenceReason.LEFT_GROUP, fences
    assert not lease.may_call()

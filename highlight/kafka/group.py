"""The group consumer: this member's fetches and commits, rebalances handed to a `RebalanceHandler`, and what
the group coordinator answers fed to the lease (`highlight.lease`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiokafka
import aiokafka.errors
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.protocol.group import HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest

from highlight import kafka_records
from highlight.config import KafkaSettings
from highlight.kafka.client import CLIENT_ID, CLOSE_TIMEOUT_SECONDS, _close_within, broker_errors, client_options
from highlight.kafka.partitions import Partition, Record, _record
from highlight.lease import FenceReason, Lease, Membership


class RebalanceHandler:
    """What the group consumer calls around a rebalance; both hooks may take their time."""

    async def partitions_revoked(self, revoked: set[Partition]) -> None:
        """Called before giving partitions up: drain and commit here."""

    async def partitions_assigned(self, assigned: set[Partition]) -> None:
        """Called before the first record of new partitions is fetched: restore here."""


class _Listener(aiokafka.ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, handler: RebalanceHandler, lease: Lease, membership: Callable[[], Membership]) -> None:
        self._handler = handler
        self._lease = lease
        self._membership = membership

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self._handler.partitions_revoked({Partition(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        self._lease.assigned(self._membership())
        await self._handler.partitions_assigned({Partition(tp.topic, tp.partition) for tp in assigned})


# Coordinator error codes that say our generation may be over (illegal generation, unknown member id, fenced
# instance id) or that a new one is being formed (rebalance in progress). Any other error proves nothing.
_MEMBERSHIP_LOST = frozenset({22, 25, 82})
_REBALANCE_IN_PROGRESS = 27


def _watch_membership(coordinator: Any, lease: Lease) -> None:
    """Feed the lease what the group coordinator answers.

    aiokafka has no hook for it, and its heartbeat loop treats "rebalance in progress" as a success. Every group
    request passes through one private method, `GroupCoordinator._send_req` (aiokafka 0.12 to 0.14), and the
    request's generation and member id are the coordinator's own `generation` and `member_id` when it is sent;
    tests/test_lease_kafka.py pins both. A commit proves nothing: tansu accepts any member's commit.
    """
    send = coordinator._send_req

    async def watched(request: Any) -> Any:
        membership = Membership(coordinator.generation, coordinator.member_id)
        sent_at = lease.now()
        if isinstance(request, LeaveGroupRequest):
            lease.fenced(FenceReason.LEFT_GROUP, membership)
        elif isinstance(request, JoinGroupRequest):
            # Re-joining: whatever we were assigned is revoked, whatever made aiokafka decide to re-join.
            lease.fenced(FenceReason.REBALANCE, membership)
        try:
            response = await send(request)
        except aiokafka.errors.KafkaError:
            if isinstance(request, HeartbeatRequest | OffsetCommitRequest):
                lease.doubted(FenceReason.COORDINATOR, membership)
            raise
        if isinstance(request, HeartbeatRequest | SyncGroupRequest):
            codes = [response.error_code]
        elif isinstance(request, OffsetCommitRequest):
            codes = [code for _topic, partitions in response.topics for _partition, code in partitions]
        else:
            return response
        if any(code in _MEMBERSHIP_LOST for code in codes):
            lease.fenced(FenceReason.MEMBERSHIP_LOST, membership)
        elif _REBALANCE_IN_PROGRESS in codes:
            lease.fenced(FenceReason.REBALANCE, membership)
        elif any(codes):
            lease.doubted(FenceReason.COORDINATOR, membership)
        elif not isinstance(request, OffsetCommitRequest):
            lease.proved(membership, sent_at)
        return response

    coordinator._send_req = watched


# Per partition and fetch; a larger record still comes whole (brokers return at least one record batch).
FETCH_CHUNK_BYTES = 64 * 1024


class GroupConsumer:
    """The group member: manual commits only, range assignment so equal partition numbers go together."""

    def __init__(self, settings: KafkaSettings, topics: Sequence[str], handler: RebalanceHandler, lease: Lease) -> None:
        kafka_records.install()  # a header name that is not UTF-8 must not stop a partition
        self._topics = list(topics)
        self._lease = lease
        self._listener = _Listener(handler, lease, lambda: self.membership)
        self._consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=CLIENT_ID,
            group_id=settings.group_id,
            group_instance_id=settings.group_instance_id,
            enable_auto_commit=False,
            auto_offset_reset=settings.auto_offset_reset,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(100, settings.session_timeout_ms // 4),
            # A revoke may wait for in-flight calls to drain; the group must wait for it.
            rebalance_timeout_ms=max(60_000, settings.session_timeout_ms),
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            # A sixteenth of aiokafka's default chunk: a flood's chunk is taken in and decoded in one step of the
            # event loop (highlight.intake), and a smaller one keeps that step, and a fetch, short (bench/ANALYSIS.md).
            max_partition_fetch_bytes=FETCH_CHUNK_BYTES,
            # Partition i of the moments and repartition topics carry the same channels: they must land on
            # the same member, which is what range assignment does for equal partition counts.
            partition_assignment_strategy=(RangePartitionAssignor,),
            isolation_level="read_uncommitted",
            **client_options(settings),
        )
        self._started = False
        # Commits that outlived their caller's timeout: each ends on its own (see `commit`).
        self._commits: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        async with broker_errors("consumer start"):
            await self._consumer.start()
            # Before subscribing: until then the coordinator has sent no group request.
            _watch_membership(self._consumer._coordinator, self._lease)
            self._consumer.subscribe(self._topics, listener=self._listener)
        self._started = True

    @property
    def membership(self) -> Membership:
        """The generation and member id of the current assignment (aiokafka's coordinator keeps them)."""
        coordinator = self._consumer._coordinator
        return Membership(int(coordinator.generation), str(coordinator.member_id))

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await _close_within(self._consumer.stop(), "consumer")
        if self._commits:
            # A stopped consumer fails what it still had to commit at once; each outcome is retrieved as it ends.
            await asyncio.wait(self._commits, timeout=CLOSE_TIMEOUT_SECONDS)

    async def fetch(
        self, timeout_ms: int, max_records: int, partitions: Iterable[Partition] | None = None
    ) -> list[Record]:
        """Prefetched records of `partitions` (all assigned if None), waiting up to `timeout_ms` for the first.

        aiokafka hands out one partition's prefetched records before the next partition's, so a caller that must
        share fairly asks partition by partition. Polling a paused partition drops what was prefetched for it.
        """
        tps = () if partitions is None else [aiokafka.TopicPartition(*p) for p in partitions]
        if partitions is not None and not tps:
            return []  # aiokafka reads no partitions as every partition
        async with broker_errors("fetch"):
            batches = await self._consumer.getmany(*tps, timeout_ms=timeout_ms, max_records=max_records)
        return [_record(message) for messages in batches.values() for message in messages]

    def assignment(self) -> set[Partition]:
        return {Partition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause(self, partitions: Iterable[Partition]) -> None:
        self._consumer.pause(*(aiokafka.TopicPartition(*p) for p in partitions))

    def resume(self, partitions: Iterable[Partition]) -> None:
        self._consumer.resume(*(aiokafka.TopicPartition(*p) for p in partitions))

    def rewind(self, offsets: dict[Partition, int]) -> None:
        """Fetch these partitions again from these offsets (records returned but not processed)."""
        assigned = self._consumer.assignment()
        for partition, offset in offsets.items():
            tp = aiokafka.TopicPartition(*partition)
            if tp in assigned:
                self._consumer.seek(tp, offset)

    async def commit(self, offsets: dict[Partition, int], *, timeout: float) -> None:  # noqa: ASYNC109 -- the commit must never be cancelled, so no cancellation scope can bound it
        """Commit `offsets`; `TimeoutError` if the brokers have not answered within `timeout` seconds.

        The commit itself is never cancelled. aiokafka commits in a shielded task of its own, and a cancelled shield
        leaves that task's error unretrieved (asyncio then logs a traceback: a member stalled past its session, say,
        whose late commit is refused). So it runs in a task of ours that a timeout leaves running; its outcome is
        retrieved whenever it comes, and `stop()` waits for it.
        """
        if not offsets:
            return
        commit = asyncio.ensure_future(self._commit(offsets))
        self._commits.add(commit)
        commit.add_done_callback(self._commit_ended)
        await asyncio.wait({commit}, timeout=timeout)
        if not commit.done():
            raise TimeoutError
        commit.result()

    async def _commit(self, offsets: dict[Partition, int]) -> None:
        async with broker_errors("commit"):
            await self._consumer.commit({aiokafka.TopicPartition(*p): offset for p, offset in offsets.items()})

    def _commit_ended(self, commit: asyncio.Future[None]) -> None:
        self._commits.discard(commit)
        if not commit.cancelled():
            commit.exception()  # retrieved: a caller that timed out has counted the commit as failed already

    def highwater(self, partition: Partition) -> int | None:
        """The partition's high-water mark as last seen in a fetch response; None before one, or if not assigned.

        Lag must come from here: `end_offsets()` undercounts on tansu.
        """
        tp = aiokafka.TopicPartition(*partition)
        # aiokafka asserts on an unassigned partition, and a rebalance can take one away between our calls.
        if tp not in self._consumer.assignment():
            return None
        highwater: int | None = self._consumer.highwater(tp)
        return highwater

    async def committed(self, partition: Partition) -> int | None:
        async with broker_errors("reading committed offset"):
            offset: int | None = await self._consumer.committed(aiokafka.TopicPartition(*partition))
        return offset

"""The Kafka adapter: aiokafka behind a small surface, its exceptions mapped to ours where they enter.

Everything here works on Apache Kafka and on tansu alike: no idempotent producer, no transactions, and no
trust in `end_offsets()` (tansu undercounts it): reading "to the end" means reaching the fetch high-water mark.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, NamedTuple

import aiokafka
import aiokafka.errors
import structlog
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.protocol.group import HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from highlight import kafka_records
from highlight.config import KafkaSettings
from highlight.errors import BrokerError, BrokerUnavailable, ConfigError, RecordRejected, RecordTooLarge
from highlight.lease import FenceReason, Lease, Membership

log = structlog.get_logger("highlight.kafka")

CLIENT_ID = "highlight"


class Partition(NamedTuple):
    topic: str
    partition: int


class Record(NamedTuple):
    """A consumed record. A named tuple, not a frozen dataclass: one is built for every record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # A header's value may be null; a name that is not UTF-8 arrives escaped (`highlight.kafka_records`).
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int

    @property
    def source(self) -> Partition:
        return Partition(self.topic, self.partition)


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """The security keyword arguments every aiokafka client gets: one place, so no client connects differently.

    `load()` has already refused incomplete or contradictory combinations; a file that cannot be loaded into
    the TLS context (not PEM, a wrong key password) is a `ConfigError` naming the settings.
    """
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        # aiokafka names the credentials `sasl_plain_*` for every mechanism, SCRAM included.
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.reveal() if settings.sasl_password else None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        try:
            # Verification and hostname checks on; no cafile means the system CAs.
            options["ssl_context"] = create_ssl_context(
                cafile=settings.ssl_cafile,
                certfile=settings.ssl_certfile,
                keyfile=settings.ssl_keyfile,
                # Never None: OpenSSL would prompt on the terminal for an encrypted key; "" fails fast instead
                # and is ignored for a key that is not encrypted.
                password=settings.ssl_key_password.reveal() if settings.ssl_key_password else "",
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                "HIGHLIGHT_KAFKA_SSL_CAFILE/_CERTFILE/_KEYFILE/_KEY_PASSWORD could not be loaded into a TLS "
                f"context ({exc}); check the files are PEM and the key password matches"
            ) from None
    return options


# Hot channels repeat: remembering the hash of recent keys saves a pure-Python murmur2 per record.
KEY_HASH_CACHE = 65_536


@functools.lru_cache(maxsize=KEY_HASH_CACHE)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


@functools.lru_cache(maxsize=KEY_HASH_CACHE)
def home_partition(channel_id: str, partitions: int) -> int:
    """Where Kafka's default partitioner puts a record keyed by `channel_id`: the channel's one home."""
    return _key_hash(channel_id.encode()) % partitions


_unkeyed = itertools.count()


def partition_for(key: bytes | None, partitions: int) -> int:
    """Kafka's default partitioner (aiokafka's and Java's) for a keyed record; unkeyed records take turns."""
    return next(_unkeyed) % partitions if key is None else _key_hash(key) % partitions


# Kafka refuses these for the record sent, whatever the brokers' state: sending it again fails the same way.
_TOO_LARGE = (
    aiokafka.errors.MessageSizeTooLargeError,
    aiokafka.errors.RecordListTooLargeError,
    aiokafka.errors.RecordTooLargeError,
)
_REJECTED = (aiokafka.errors.CorruptRecordException, aiokafka.errors.InvalidTimestampError)


def _mapped(exc: aiokafka.errors.KafkaError, action: str, *, sending: bool = False) -> BrokerError:
    detail = str(exc)
    if not detail.startswith(type(exc).__name__):
        detail = f"{type(exc).__name__}: {detail}"
    message = f"Kafka {action} failed: {detail}"
    if sending and isinstance(exc, _TOO_LARGE):
        return RecordTooLarge(message)
    if sending and isinstance(exc, _REJECTED):
        return RecordRejected(message)
    if isinstance(exc, aiokafka.errors.KafkaConnectionError | aiokafka.errors.KafkaTimeoutError) or getattr(
        exc, "retriable", False
    ):
        return BrokerUnavailable(message)
    return BrokerError(message)


@asynccontextmanager
async def broker_errors(action: str, *, sending: bool = False) -> AsyncIterator[None]:
    """Map aiokafka's errors to ours; `sending` one record, the errors that are that record's own are told apart."""
    try:
        yield
    except aiokafka.errors.KafkaError as exc:
        raise _mapped(exc, action, sending=sending) from exc


# A vanished broker must not hold a shutdown forever: aiokafka's stop waits for it indefinitely.
CLOSE_TIMEOUT_SECONDS = 10.0


async def _close_within(closing: Coroutine[Any, Any, None], client: str) -> None:
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await closing
    except TimeoutError:
        log.warning("kafka_close_timed_out", client=client, seconds=CLOSE_TIMEOUT_SECONDS)


# --- producer -------------------------------------------------------------------------------------


class RecordBatch:
    """Records for one partition, published together (`Producer.publish`): one acknowledgement for all."""

    __slots__ = ("builder", "count")

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.count = 0

    def append(self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]] = ()) -> bool:
        """False when the batch is full (it always takes its first record)."""
        # aiokafka's C record builder takes headers as a list only.
        listed = headers if isinstance(headers, list) else list(headers)
        if self.builder.append(timestamp=None, key=key, value=value, headers=listed) is None:
            return False
        self.count += 1
        return True

    def close(self) -> None:
        """Nothing else may join a batch once it is queued."""
        self.builder.close()


class Producer:
    """acks=all and await every send: callers act only on records the brokers hold.

    `request_timeout_ms` bounds how long a record may wait for the brokers: past it, aiokafka fails the record
    instead of holding it for a later delivery, so a caller told "failed" can trust nothing went out later.
    """

    def __init__(self, settings: KafkaSettings, *, request_timeout_ms: int | None = None) -> None:
        timeouts = {} if request_timeout_ms is None else {"request_timeout_ms": request_timeout_ms}
        self._producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=CLIENT_ID,
            acks="all",
            # Idempotence needs InitProducerId, which tansu lacks; dedup makes redelivery harmless instead.
            enable_idempotence=False,
            # aiokafka keeps one request in flight per broker, so records batch behind it anyway; lingering
            # would only add its delay to every acknowledged write on a moment's path.
            linger_ms=0,
            max_batch_size=256 * 1024,
            # Set, not left at aiokafka's default: dead letters are cut to fit it (`highlight.results`).
            max_request_size=settings.max_request_bytes,
            **timeouts,
            **client_options(settings),
        )
        self._started = False

    async def reachable(self, topic: str) -> bool:
        """Whether any broker answers a metadata request for `topic` now.

        Only `topic`, and never creating it: metadata for every topic can be megabytes on a large cluster, and a
        broker that auto-creates topics would create a missing one with its default partition count.
        """
        client = self._producer.client
        nodes = [broker.nodeId for broker in client.cluster.brokers()]
        random.shuffle(nodes)
        for node in nodes:
            try:
                await client.send(node, MetadataRequest([topic], allow_auto_topic_creation=False))
            except aiokafka.errors.KafkaError:
                continue
            return True
        return False

    async def __aenter__(self) -> Producer:
        async with broker_errors("producer start"):
            await self._producer.start()
        self._started = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await _close_within(self._producer.stop(), "producer")

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> int:
        """The record's offset, once the brokers acknowledged it."""
        async with broker_errors(f"send to {topic}", sending=True):
            future = await self._producer.send(
                topic, value, key=key, partition=partition, headers=list(headers) if headers else None
            )
            metadata = await future
        return int(metadata.offset)

    # The batch side, for records published pipelined (highlight.outbox): whole batches are queued, and each
    # one's acknowledgement arrives later as a future.

    def batch(self) -> RecordBatch:
        return RecordBatch(self._producer.create_batch())

    async def partitions(self, topic: str) -> int:
        """The topic's partition count, from the producer's metadata (fetched once, then kept up to date)."""
        async with broker_errors(f"metadata of {topic}"):
            return len(await self._producer.partitions_for(topic))

    async def publish(self, batch: RecordBatch, topic: str, partition: int) -> asyncio.Future[None]:
        """Queue `batch`; the future resolves when the brokers acknowledge it, or fails with our error. Batches of
        one partition are sent in the order they were queued, the records of each in the order appended."""
        batch.close()
        async with broker_errors(f"send to {topic}", sending=True):
            delivery = await self._producer.send_batch(batch.builder, topic, partition=partition)
        return _acknowledgement(delivery, f"send to {topic}")


def _acknowledgement(delivery: asyncio.Future[Any], action: str) -> asyncio.Future[None]:
    """aiokafka's delivery future as ours: resolved on acknowledgement, its error mapped where it enters."""
    acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(done: asyncio.Future[Any]) -> None:
        if acked.done():
            return
        if done.cancelled():
            acked.cancel()
        elif (exc := done.exception()) is not None:
            mapped = _mapped(exc, action, sending=True) if isinstance(exc, aiokafka.errors.KafkaError) else exc
            acked.set_exception(mapped)
        else:
            acked.set_result(None)

    delivery.add_done_callback(settle)
    return acked


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    """A record's size as the producer checks it against its request limit (an upper bound of the broker's)."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers))
    return size


# --- consumers ------------------------------------------------------------------------------------


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

    async def commit(self, offsets: dict[Partition, int]) -> None:
        if not offsets:
            return
        async with broker_errors("commit"):
            await self._consumer.commit({aiokafka.TopicPartition(*p): offset for p, offset in offsets.items()})

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


def _record(message: Any) -> Record:
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=tuple(message.headers or ()),
        timestamp_ms=message.timestamp,
    )


class ChangelogReader:
    """Reads partitions of a topic to their end, outside any group: the dedup state at restore (`read`), the
    dead-letter topic for a replay (`records`)."""

    def __init__(
        self, settings: KafkaSettings, *, fetch_max_wait_ms: int = 50, client_id: str = f"{CLIENT_ID}-restore"
    ) -> None:
        kafka_records.install()
        self._consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=fetch_max_wait_ms,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **client_options(settings),
        )
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with broker_errors("restore consumer start"):
            await self._consumer.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await _close_within(self._consumer.stop(), "consumer")

    async def read(
        self,
        partitions: Sequence[Partition],
        apply: Callable[[Partition, bytes | None, bytes | None], None],
        start_offsets: dict[Partition, int] | None = None,
    ) -> tuple[int, dict[Partition, int]]:
        """Feed every record from the start offset (default: the beginning) to the end to
        `apply(partition, key, value)`, in log order. Returns how many were read and where each partition ended.
        """
        if not partitions:
            return 0, {}
        starts = start_offsets or {}
        tps = [aiokafka.TopicPartition(*p) for p in partitions]
        read = 0
        ends: dict[Partition, int] = {}
        async with self._lock, broker_errors("restoring state"):
            self._consumer.assign(tps)
            for tp in tps:
                start = starts.get(Partition(tp.topic, tp.partition), 0)
                if start:
                    self._consumer.seek(tp, start)
                else:
                    await self._consumer.seek_to_beginning(tp)
            pending = set(tps)
            while pending:
                batches = await self._consumer.getmany(*pending, timeout_ms=200, max_records=50_000)
                for tp, messages in batches.items():
                    partition = Partition(tp.topic, tp.partition)
                    for message in messages:
                        apply(partition, message.key, message.value)
                    read += len(messages)
                for tp in list(pending):
                    if await self._caught_up(tp, fetched=bool(batches.get(tp))):
                        pending.discard(tp)
                        ends[Partition(tp.topic, tp.partition)] = int(await self._consumer.position(tp))
            # Paused rather than unassigned: aiokafka's fetcher, dropping an assignment while a fetch is still out,
            # swallows a stop() that comes in the meantime and hangs it (until our close timeout).
            self._consumer.pause(*tps)
        return read, ends

    async def records(self, partition: Partition, start: int = 0) -> AsyncGenerator[list[Record], None]:
        """Batches of one partition's records, from `start` to the end the partition had at the first fetch.

        The end is fixed when reading begins: records appended meanwhile are left for a later read, so a reader
        whose work writes back into the topic it reads (a replayed dead letter dead-lettered again) still ends.
        A `start` past the end, or below the log's start, is reset by the consumer and may yield records before
        `start`: callers filter by offset.
        """
        tp = aiokafka.TopicPartition(*partition)
        async with self._lock:
            try:
                async with broker_errors(f"reading {partition.topic}"):
                    self._consumer.assign([tp])
                    if start:
                        self._consumer.seek(tp, start)
                    else:
                        await self._consumer.seek_to_beginning(tp)
                end: int | None = None
                while True:
                    async with broker_errors(f"reading {partition.topic}"):
                        batches = await self._consumer.getmany(tp, timeout_ms=200, max_records=1_000)
                        messages = batches.get(tp, [])
                        if end is None:
                            end = self._consumer.highwater(tp)
                        position = await self._consumer.position(tp)
                        # No fetch answered yet: an empty partition never reports a high-water mark on some brokers.
                        finished = position >= end if end is not None else not messages and await self._empty(tp)
                    batch = [_record(m) for m in messages if end is None or m.offset < end]
                    if batch:
                        yield batch
                    if finished:
                        return
            finally:
                self._consumer.assign([])

    async def _caught_up(self, tp: aiokafka.TopicPartition, *, fetched: bool) -> bool:
        highwater = self._consumer.highwater(tp)
        position = await self._consumer.position(tp)
        if highwater is not None:
            return bool(position >= highwater)
        # No fetch answered yet: an empty partition never reports a high-water mark on some brokers.
        return not fetched and position == 0 and await self._empty(tp)

    async def _empty(self, tp: aiokafka.TopicPartition) -> bool:
        beginning = (await self._consumer.beginning_offsets([tp]))[tp]
        end = (await self._consumer.end_offsets([tp]))[tp]
        return bool(beginning == end)

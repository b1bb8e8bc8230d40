"""The topics highlight reads and writes: waited for at start-up, checked, and created where highlight owns them.

Compose and Kubernetes start everything at once, so brokers that are still starting, or a moments topic that a
set-up job has not created yet, are normal at start-up: both are waited for, up to
HIGHLIGHT_KAFKA_STARTUP_TIMEOUT_SECONDS, with one log line per attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from highlight.config import KafkaSettings
from highlight.errors import BrokerError, BrokerUnavailable, TopicMisconfigured
from highlight.kafka import CLIENT_ID, broker_errors, client_options

log = structlog.get_logger("highlight.topics")

FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 5.0
MAX_MESSAGE_BYTES = "max.message.bytes"


@dataclass(frozen=True, slots=True)
class Topics:
    partitions: int  # of the moments topic, and so of the state, repartition and callbacks topics
    # The dead-letter topic's largest record batch, when the brokers say (tansu reports only explicit settings).
    dlq_max_message_bytes: int | None = None


def retry_delay(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: doubling from 0.5 s, at most 5 s. Pure."""
    return float(min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** min(attempt - 1, 16)))


async def prepare_topics(settings: KafkaSettings) -> Topics:
    """Wait for the brokers and the moments topic, check it, create what highlight owns if missing.

    The state, repartition and callbacks topics must have exactly the moments topic's partition count: a
    channel's moments, its re-keyed moments, its dedup state and its recording files all live at the same
    partition index.
    """
    deadline = asyncio.get_running_loop().time() + settings.startup_timeout_seconds
    admin = await _connect(settings, deadline)
    try:
        existing = await _wait_for_moments_topic(admin, settings, deadline)
        shapes = await _shapes(admin, [settings.moments_topic, *(existing & _owned(settings))])
        partitions, replicas = shapes[settings.moments_topic]
        wanted: dict[str, dict[str, str]] = {
            settings.state_topic: {"cleanup.policy": "compact"},
            settings.repartition_topic: {},
            settings.results_topic: {},
            # Whatever the producer may send, the dead-letter topic we create takes.
            settings.dlq_topic: {MAX_MESSAGE_BYTES: str(settings.max_request_bytes)},
            settings.callbacks_topic: {},
            settings.clips_topic: {},
        }
        await _create_missing(admin, wanted, existing, partitions, replicas)
        _check_copartitioned(settings, _owned(settings), shapes, partitions)
        dlq_limit = await _max_message_bytes(admin, settings.dlq_topic)
        if dlq_limit is not None and dlq_limit < settings.max_request_bytes:
            log.warning(
                "dlq_topic_smaller_than_requests",
                topic=settings.dlq_topic,
                max_message_bytes=dlq_limit,
                max_request_bytes=settings.max_request_bytes,
                note="dead letters are cut to the topic's limit; raise its max.message.bytes to keep them whole",
            )
        return Topics(partitions, dlq_limit)
    finally:
        await admin.close()


async def prepare_callbacks_topic(settings: KafkaSettings) -> int:
    """`highlight callbacks`: wait as `run` does, create the callbacks topic if missing; the partition count.

    Its partition count must be the moments topic's, where a notification's channel has its home.
    """
    deadline = asyncio.get_running_loop().time() + settings.startup_timeout_seconds
    admin = await _connect(settings, deadline)
    try:
        existing = await _wait_for_moments_topic(admin, settings, deadline)
        ours = {settings.callbacks_topic}
        shapes = await _shapes(admin, [settings.moments_topic, *(existing & ours)])
        partitions, replicas = shapes[settings.moments_topic]
        await _create_missing(admin, {settings.callbacks_topic: {}}, existing, partitions, replicas)
        _check_copartitioned(settings, ours, shapes, partitions)
        return partitions
    finally:
        await admin.close()


async def _create_missing(
    admin: AIOKafkaAdminClient, wanted: dict[str, dict[str, str]], existing: set[str], partitions: int, replicas: int
) -> None:
    missing = [
        # The moments topic's replication is the operator's choice for this cluster: follow it.
        NewTopic(name, partitions, replication_factor=replicas, topic_configs=configs)
        for name, configs in wanted.items()
        if name not in existing
    ]
    if not missing:
        return
    async with broker_errors("creating topics"):
        response = await admin.create_topics(missing)
    for topic, code, message in getattr(response, "topic_errors", []):
        # 36: another instance created it first, which is fine.
        if code not in (0, 36):
            raise BrokerError(f"creating topic {topic!r} failed: error {code} {message or ''}".strip())


def _check_copartitioned(
    settings: KafkaSettings, names: set[str], shapes: dict[str, tuple[int, int]], partitions: int
) -> None:
    for name in sorted(names):
        count = shapes.get(name, (partitions, 0))[0]
        if count != partitions:
            raise TopicMisconfigured(
                f"topic {name!r} has {count} partitions but {settings.moments_topic!r} has {partitions}; "
                "they must match (delete and recreate it, or point the setting at a new topic)"
            )


async def _connect(settings: KafkaSettings, deadline: float) -> AIOKafkaAdminClient:
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        attempt += 1
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, client_id=CLIENT_ID, **client_options(settings)
        )
        try:
            # aiokafka's own connect timeout may outlast the start-up budget (a host that drops packets).
            async with asyncio.timeout(max(10.0, deadline - loop.time())):
                async with broker_errors("admin connection"):
                    await admin.start()
            return admin
        except (BrokerUnavailable, TimeoutError) as exc:
            await admin.close()
            error = str(exc) or f"no answer from {settings.bootstrap_servers}"
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BrokerUnavailable(error) from exc
            delay = min(retry_delay(attempt), remaining)
            log.warning(
                "kafka_unreachable",
                brokers=settings.bootstrap_servers,
                attempt=attempt,
                error=error,
                retry_in_seconds=round(delay, 1),
                gives_up_in_seconds=round(remaining, 1),
            )
            await asyncio.sleep(delay)
        except BaseException:
            await admin.close()
            raise


async def _wait_for_moments_topic(admin: AIOKafkaAdminClient, settings: KafkaSettings, deadline: float) -> set[str]:
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        attempt += 1
        async with broker_errors("listing topics"):
            # Listing, not describing: a metadata request for a missing topic may auto-create it.
            existing = set(await admin.list_topics())
        if settings.moments_topic in existing:
            return existing
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TopicMisconfigured(
                f"HIGHLIGHT_MOMENTS_TOPIC {settings.moments_topic!r} does not exist on "
                f"{settings.bootstrap_servers}; create it first (its partition count fixes the state topic's)"
            )
        delay = min(retry_delay(attempt), remaining)
        log.warning(
            "moments_topic_missing",
            topic=settings.moments_topic,
            attempt=attempt,
            retry_in_seconds=round(delay, 1),
            gives_up_in_seconds=round(remaining, 1),
        )
        await asyncio.sleep(delay)


@asynccontextmanager
async def admin_client(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on exit. It does not wait for the brokers: the one-shot tools report."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=CLIENT_ID, **client_options(settings)
    )
    try:
        async with broker_errors("admin connection"):
            await admin.start()
        yield admin
    finally:
        await admin.close()


async def topic_partitions(settings: KafkaSettings, topics: Iterable[str]) -> dict[str, int]:
    """The partition count of each of these topics that exists; a missing one is left out, never created."""
    async with admin_client(settings) as admin:
        async with broker_errors("listing topics"):
            # Listing first: a metadata request for a missing topic may auto-create it.
            existing = set(await admin.list_topics())
        present = [topic for topic in dict.fromkeys(topics) if topic in existing]
        shapes = await _shapes(admin, present) if present else {}
    return {topic: partitions for topic, (partitions, _) in shapes.items()}


def _owned(settings: KafkaSettings) -> set[str]:
    """The topics highlight creates that must have the moments topic's partition count."""
    return {settings.state_topic, settings.repartition_topic, settings.callbacks_topic}


async def _shapes(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Partition count and replication factor of each topic."""
    async with broker_errors("describing topics"):
        described = await admin.describe_topics(list(topics))
    shapes = {}
    for entry in described:
        partitions = entry["partitions"]
        replicas = max((len(p.get("replicas") or ()) for p in partitions), default=1)
        shapes[entry["topic"]] = (len(partitions), max(1, replicas))
    return shapes


async def _max_message_bytes(admin: AIOKafkaAdminClient, topic: str) -> int | None:
    """The topic's `max.message.bytes`, or None when the brokers do not say (an advisory check: never fatal)."""
    try:
        async with broker_errors("describing the dead-letter topic's configuration"):
            responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    except BrokerError as exc:
        log.info("dlq_topic_config_unknown", topic=topic, error=str(exc))
        return None
    return max_message_bytes(responses, topic)


def max_message_bytes(responses: Sequence[Any], topic: str) -> int | None:
    """`max.message.bytes` of `topic` from DescribeConfigs responses, if present and readable. Pure."""
    for response in responses:
        for resource in getattr(response, "resources", ()):
            error_code, _, _, name, entries = resource[:5]
            if name != topic or error_code != 0:
                continue
            for entry in entries:
                if entry[0] == MAX_MESSAGE_BYTES:
                    try:
                        return int(entry[1])
                    except (TypeError, ValueError):
                        return None
    return None

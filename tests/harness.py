"""Test helpers: settings for a broker and simulator, producing moments, collecting results, a running service."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from highlight import config, schemas
from highlight.callbacks.receiver import Receiver
from highlight.config import ReceiverSettings, Settings
from highlight.kafka import ChangelogReader, Producer
from highlight.lease import Lease, Membership
from highlight.service import Service
from highlight.state import StateStore

APPID = "1234"
KEY = "test-secret-key-5d41402abc4b2a76"
# Cloud API credentials (create_record, create_live_record); every test instance carries all of them, and
# HIGHLIGHT_LIVE_API (the `live_api=` override) picks the backend.
SECRET_ID = "AKIDtestsecretid0123456789"  # noqa: S105 -- a made-up test credential
SECRET_KEY = "test-cloud-secret-key-9f8e7d6c5b4a"  # noqa: S105 -- a made-up test credential
REGION = "gz"
DOMAIN = "play.example.com"
# The Live callback template's key (HIGHLIGHT_CALLBACK_KEY, the simulator's callback_key).
CALLBACK_KEY = "test-callback-key-7c4a8d09ca3762af"
APIS = ("live_tape_start", "create_record", "create_live_record")
# The code each API answers for a stream that is not pushing (the simulator's offline_channels).
NOT_LIVE = {
    "live_tape_start": "1301",
    "create_record": "5100",
    "create_live_record": "ResourceUnavailable.StreamNotExist",
}
# A one-shot fault that refuses a moment for good, in each API's own words.
REFUSE_ONCE = {
    "live_tape_start": "ret:1301",
    "create_record": "ret:5100",
    "create_live_record": "error:ResourceUnavailable.StreamNotExist",
}


@dataclass(frozen=True)
class Names:
    moments: str
    results: str
    dlq: str
    state: str
    repartition: str
    group: str
    callbacks: str
    clips: str

    @classmethod
    def unique(cls, label: str = "t") -> Names:
        tag = f"{label}-{uuid.uuid4().hex[:10]}"
        return cls(
            moments=f"{tag}.moments",
            results=f"{tag}.results",
            dlq=f"{tag}.dlq",
            state=f"{tag}.state",
            repartition=f"{tag}.repartition",
            group=f"{tag}.group",
            callbacks=f"{tag}.callbacks",
            clips=f"{tag}.clips",
        )

    def env(self) -> dict[str, str]:
        return {
            "HIGHLIGHT_MOMENTS_TOPIC": self.moments,
            "HIGHLIGHT_RESULTS_TOPIC": self.results,
            "HIGHLIGHT_DLQ_TOPIC": self.dlq,
            "HIGHLIGHT_STATE_TOPIC": self.state,
            "HIGHLIGHT_REPARTITION_TOPIC": self.repartition,
            "HIGHLIGHT_GROUP_ID": self.group,
            "HIGHLIGHT_CALLBACKS_TOPIC": self.callbacks,
            "HIGHLIGHT_CLIPS_TOPIC": self.clips,
        }


def service_env(bootstrap: str, names: Names, live_url: str, **overrides: Any) -> dict[str, str]:
    """The environment of a test instance: fast group joins and fetches, no ops port."""
    env = {
        "HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HIGHLIGHT_LIVE_URL": live_url,
        "HIGHLIGHT_LIVE_APPID": APPID,
        "HIGHLIGHT_LIVE_KEY": KEY,
        "HIGHLIGHT_SECRET_ID": SECRET_ID,
        "HIGHLIGHT_SECRET_KEY": SECRET_KEY,
        "HIGHLIGHT_REGION": REGION,
        "HIGHLIGHT_DOMAIN_NAME": DOMAIN,
        # tansu holds every JoinGroup for about half the session timeout.
        "HIGHLIGHT_KAFKA_SESSION_TIMEOUT_MS": "6000",
        # tansu answers a fetch only when its wait expires.
        "HIGHLIGHT_KAFKA_FETCH_MAX_WAIT_MS": "20",
        "HIGHLIGHT_METRICS_PORT": "0",
        "HIGHLIGHT_DRAIN_TIMEOUT_SECONDS": "5",
        "HIGHLIGHT_LIVE_MAX_RPS": "1000",
        # The account's limits are lifted, as tests lift the simulator's quotas, unless a test is about them.
        "HIGHLIGHT_MAX_RUNNING_RECORDINGS": "0",
        "HIGHLIGHT_MAX_RECORDINGS_PER_DAY": "0",
        "HIGHLIGHT_LOG_FORMAT": "json",
        # One machine, one clock: no drift to cover.
        "HIGHLIGHT_TAKEOVER_MARGIN_SECONDS": "0.5",
        **names.env(),
    }
    env.update({f"HIGHLIGHT_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


def settings_for(bootstrap: str, names: Names, live_url: str, **overrides: Any) -> Settings:
    return config.load(service_env(bootstrap, names, live_url, **overrides))


def receiver_settings_for(bootstrap: str, names: Names, **overrides: Any) -> ReceiverSettings:
    """`highlight callbacks` on a free port, with the test callback key and no ops port."""
    env = {
        "HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HIGHLIGHT_MOMENTS_TOPIC": names.moments,
        "HIGHLIGHT_CALLBACKS_TOPIC": names.callbacks,
        "HIGHLIGHT_CALLBACK_KEY": CALLBACK_KEY,
        "HIGHLIGHT_CALLBACK_PORT": "0",
        "HIGHLIGHT_METRICS_PORT": "0",
        "HIGHLIGHT_LOG_FORMAT": "json",
    }
    env.update({f"HIGHLIGHT_{k.upper()}": str(v) for k, v in overrides.items()})
    return config.load_receiver(env)


@contextlib.asynccontextmanager
async def receiving(settings: ReceiverSettings) -> AsyncIterator[Receiver]:
    """The callback receiver on 127.0.0.1, stopped on exit."""
    async with Receiver(settings, host="127.0.0.1") as receiver:
        yield receiver


def iso(instant: datetime) -> str:
    return instant.isoformat()


def moment(event_id: str, channel_id: str, *, age_seconds: float = 0, **fields: Any) -> dict[str, Any]:
    occurred = datetime.now(UTC) - timedelta(seconds=age_seconds)
    return {"event_id": event_id, "channel_id": channel_id, "occurred_at": iso(occurred), **fields}


async def create_topics(bootstrap: str, topics: Mapping[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, count, 1) for name, count in topics.items()])
    finally:
        await admin.close()


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[dict[str, Any] | bytes | None],
    *,
    key: bytes | str | None = "channel",
    partition: int | None = None,
) -> None:
    """Moments keyed by their channel (as upstream should) unless `key` says otherwise."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for record in records:
            if isinstance(record, dict):
                value: bytes | None = orjson.dumps(record)
                record_key = record["channel_id"].encode() if key == "channel" else key
            else:
                value = record
                record_key = None if key == "channel" else key
            assert not isinstance(record_key, str)
            await producer.send_and_wait(topic, value, key=record_key, partition=partition)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, count: int, *, timeout: float = 30.0) -> list[Any]:
    """At least `count` records of `topic` from the beginning (raw ConsumerRecords), or fail after `timeout`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    records: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        # A topic its writer has not created yet (a `highlight run` still starting on a loaded machine) is waited
        # for within the same timeout; one expected to stay empty (count 0) only briefly.
        topic_deadline = min(deadline, loop.time() + 5.0) if count == 0 else deadline
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and loop.time() < topic_deadline:
            await asyncio.sleep(0.1)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return records
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(records) < count and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            for messages in batch.values():
                records.extend(messages)
        if count == 0:
            # Give stragglers a moment to show up: an empty topic is part of the assertion.
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    return records


async def read_all(bootstrap: str, topic: str, *, timeout: float = 30.0) -> list[Any]:
    """Every record of `topic` now, to the high-water mark of each partition (tansu's `end_offsets()` undercounts)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        for _ in range(50):
            if partitions:
                break
            await asyncio.sleep(0.1)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or [])]
        assert tps, f"no topic {topic}"
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = set(tps)
        while pending:
            assert loop.time() < deadline, f"{topic} not read to its end within {timeout} s"
            batch = await consumer.getmany(*pending, timeout_ms=100)
            for messages in batch.values():
                records.extend(messages)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is None:
                    # An empty partition may never report one.
                    beginning = (await consumer.beginning_offsets([tp]))[tp]
                    if beginning == (await consumer.end_offsets([tp]))[tp]:
                        pending.discard(tp)
                elif await consumer.position(tp) >= highwater:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return records


async def results(bootstrap: str, topic: str, count: int, *, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Result documents, each checked against the published schema and keyed by its channel."""
    documents = []
    validate = schemas.validator(schemas.RESULT_SCHEMA)
    for record in await read_topic(bootstrap, topic, count, timeout=timeout):
        document = orjson.loads(record.value)
        validate(document)
        assert record.key == document["channel_id"].encode(), "results are keyed by channel_id"
        documents.append(document)
    return documents


async def read_until(
    bootstrap: str, topic: str, done: Callable[[list[Any]], bool], *, timeout: float = 30.0
) -> list[Any]:
    """Every record of `topic` once `done(records)` holds (read again from the beginning until it does)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done(records := await read_topic(bootstrap, topic, 0, timeout=0.2)):
        assert loop.time() < deadline, f"{topic} never held what was awaited within {timeout} s"
    return records


async def clips(bootstrap: str, topic: str, count: int, *, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Clip events, each checked against the published schema and keyed by its channel."""
    documents = []
    validate = schemas.validator(schemas.CLIP_SCHEMA)
    for record in await read_topic(bootstrap, topic, count, timeout=timeout):
        document = orjson.loads(record.value)
        validate(document)
        assert record.key == document["channel_id"].encode(), "clips are keyed by channel_id"
        documents.append(document)
    return documents


async def clips_of(
    bootstrap: str, topic: str, channel_id: str, count: int = 1, *, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """At least `count` clips of one channel, from a clips topic other tests' channels share."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = [d for d in await clips(bootstrap, topic, 0, timeout=0.2) if d["channel_id"] == channel_id]
        if len(found) >= count or loop.time() > deadline:
            assert len(found) >= count, f"{len(found)} clips of {channel_id} within {timeout} s, wanted {count}"
            return found
        await asyncio.sleep(0.2)


def by_event(documents: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Results by event id; a moment answered twice (redelivery) must get the same answer both times."""
    table: dict[str, dict[str, Any]] = {}
    for document in documents:
        first = table.setdefault(document["event_id"], document)
        assert first | {"processed_at": None} == document | {"processed_at": None}, (
            f"two different results for {document['event_id']}: {first} then {document}"
        )
    return table


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Service]:
    """A service consuming in the background; stopped cleanly (drain, commit) on exit."""
    async with Service(settings) as service:
        task = asyncio.create_task(service.run())
        try:
            yield service
        finally:
            service.request_stop()
            await task


async def result_of(bootstrap: str, topic: str, event_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """The result of one moment, from a results topic that other tests' moments share."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = [d for d in await results(bootstrap, topic, 0, timeout=0.2) if d["event_id"] == event_id]
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no result for {event_id} within {timeout} s")


def spawn(env: Mapping[str, str], log_path: Path, *args: str, command: str = "run") -> subprocess.Popen[bytes]:
    """`highlight run` (or another command) as a real process (so it can be SIGTERMed or SIGKILLed)."""
    full_env = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1", **env}
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "highlight", command, *args],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        log.close()


@contextlib.asynccontextmanager
async def state_store(bootstrap: str, names: Names) -> AsyncIterator[tuple[StateStore, Producer]]:
    """The service's dedup state store on `names.state` (300 s buckets, 120 s age), and its producer."""
    kafka = settings_for(bootstrap, names, "http://127.0.0.1:9/unused").kafka
    async with Producer(kafka) as producer:
        reader = ChangelogReader(kafka)
        await reader.start()
        try:
            yield StateStore(names.state, producer, reader, bucket_seconds=300, max_event_age_seconds=120), producer
        finally:
            await reader.stop()


async def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(topic, partition))
        return offset
    finally:
        await consumer.stop()


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# --- the ops endpoint ------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def reading(samples: Samples, name: str, **labels: str) -> float | None:
    """A sample's value, or None where the family has no such sample yet (lag before the first commit)."""
    return samples.get((name, frozenset(labels.items())))


async def scrape_until(port: int, predicate: Callable[[Samples], bool], *, what: str, timeout: float = 30.0) -> Samples:
    """The first scrape that satisfies `predicate`: gauges such as lag move with commits, not with results."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        samples = await scrape(port)
        if predicate(samples):
            return samples
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def readyz(port: int) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as response:
        return response.status, await response.text()


async def wait_ready(port: int, want: int, *, containing: str = "", timeout: float = 30.0) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            status, text = await readyz(port)
        except aiohttp.ClientConnectionError:
            status, text = 0, "not listening"
        if status == want and containing in text:
            return text
        if loop.time() > deadline:
            raise AssertionError(f"/readyz stayed {status} ({text.strip()}), wanted {want} {containing}")
        await asyncio.sleep(0.1)


# --- external tools (installed by .ci/run) ---------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
# Where .ci/run installs the npm tools it pins; git-ignored.
LOCAL_TOOLS = ROOT / ".ci" / "npm" / "node_modules" / ".bin"


def tool(name: str, install: str) -> str:
    """The path of an external tool; a missing one skips the test saying how to install it, but fails in CI.

    CI (CI=true) installs every tool in .ci/run: a tool missing there is a broken install step, and a skip
    would hide it.
    """
    found = shutil.which(name, path=os.pathsep.join([str(LOCAL_TOOLS), os.environ.get("PATH", "")]))
    if found is not None:
        return found
    reason = f"{name} is not installed ({install}; .ci/run does it)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}, and CI must run this test", pytrace=False)
    pytest.skip(reason)


def held_lease(session_timeout_seconds: float = 10.0) -> Lease:
    """A lease assigned and proven on a clock that never moves: it covers every call and write (for tests of
    something else than fencing)."""
    membership = Membership(1, "member-under-test")
    lease = Lease(session_timeout_seconds, clock=lambda: 0.0)
    lease.proved(membership, 0.0)
    lease.assigned(membership)
    return lease

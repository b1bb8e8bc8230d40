"""`highlight demo`: the whole job on one machine with nothing to set up.

One asyncio loop holds everything: the embedded tansu broker (a child process), the Live simulator, the
callback receiver, the recorder service, a producer for a burst of moments and a reader of results, dead
letters and clips. The simulator ends its recordings TIME_SCALE times sooner than real and announces their
files to the receiver, so each recording's clip arrives within seconds. Every exit path, Ctrl-C included,
unwinds one exit stack; the broker goes last, since it is the one thing that would outlive us.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any, TextIO, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from highlight import config
from highlight.broker import EmbeddedBroker
from highlight.callbacks.receiver import Receiver
from highlight.config import ReceiverSettings, Settings
from highlight.dead_letters import CONNECT_MESSAGE, DLQ_REASON_HEADER
from highlight.demo.moments import (
    BURST_HEADER,
    Burst,
    Tally,
    intro_lines,
    make_burst,
    summary_document,
    summary_lines,
)
from highlight.demo.view import PlainView, View, make_view
from highlight.errors import HighlightError
from highlight.recording import now_utc
from highlight.simulator import LiveSimulator, SimulatorConfig

APPID = "1234"
KEY = "demo-secret-key"
CALLBACK_KEY = "demo-callback-key"
PARTITIONS = 3
# A 5-minute recording ends in 3 s, and its file is announced then.
TIME_SCALE = 100
# The service's own logs would drown the table; warnings (a dead letter, a failed commit) still show.
LOG_FORMAT, LOG_LEVEL = "auto", "warning"
EXIT_OK, EXIT_FAILURE = 0, 1

T = TypeVar("T")


class Demo:
    def __init__(self, args: argparse.Namespace, latency: tuple[float, float], human: TextIO, stop: asyncio.Event):
        self.args = args
        self.latency = latency
        self.human = human
        self.stop = stop
        # One `now` for the whole burst, so its live moments cannot straddle a bucket boundary.
        self.burst: Burst = make_burst(args.moments, args.channels, now_utc(), args.seed)
        self.tally = Tally(self.burst)
        self.complete = asyncio.Event()
        self.started = time.monotonic()
        self.finished: float | None = None
        self.view: View = PlainView(human)
        self.broker: EmbeddedBroker | None = None

    async def run(self) -> int:
        async with AsyncExitStack() as stack:
            broker = self.broker = stack.enter_context(EmbeddedBroker())
            offline = frozenset({self.burst.offline_channel} if self.burst.offline_channel else ())
            sim_config = SimulatorConfig(
                APPID,
                KEY,
                latency_ms=self.latency,
                offline_channels=offline,
                callback_key=CALLBACK_KEY,
                time_scale=TIME_SCALE,
            )
            simulator = LiveSimulator(sim_config)
            url = await simulator.start()
            stack.push_async_callback(simulator.stop)
            settings = _settings(broker.bootstrap, url)
            self._introduce(settings, url)
            self.view = make_view(self.human, self.tally, self.burst, self.started)
            stack.callback(lambda: self.view.close())
            tasks = await self._unless_stopped(self._start(stack, settings, simulator))
            if tasks is None:
                return self._report(interrupted=True)
            runner, reader = tasks
            code = await self._watch(runner, reader)
            if code is None:
                return self._report(interrupted=True)
            if self.args.keep_running and not runner.done():
                self.view.note("still running: produce your own moments; Ctrl-C stops broker, simulator, recorder")
                stopper = asyncio.ensure_future(self.stop.wait())
                await asyncio.wait({runner, reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                code = max(code, self._failure(runner, reader))
            return code
        raise AssertionError("unreachable")  # pragma: no cover -- mypy cannot see that `async with` returns

    def broker_listening(self) -> bool:
        """True until the broker stops answering (or if it has not started: nothing waits on it then)."""
        if self.broker is None:
            return True
        try:
            socket.create_connection((self.broker.host, self.broker.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    # --- start-up ---------------------------------------------------------------------------------

    def _introduce(self, settings: Settings, url: str) -> None:
        kafka = settings.kafka
        lines = intro_lines(self.burst, self.latency)
        if self.args.keep_running:
            lines += [
                f"bootstrap: {kafka.bootstrap_servers}",
                "  clients: aiokafka, kafka-python, librdkafka 2.2.0 or later (confluent-kafka; set"
                " partitioner=murmur2_random); older librdkafka, e.g. Debian 12's kcat, fails with"
                " 'ApiVersionRequest failed: Local: Read underflow'",
                f"simulator: {url} (appid {APPID}, key {KEY})",
                f"topics: moments {kafka.moments_topic} ({PARTITIONS} partitions, key = channel_id),"
                f" results {kafka.results_topic}, dead letters {kafka.dlq_topic}, clips {kafka.clips_topic}",
                f"recordings end {TIME_SCALE} times sooner than real; their files are announced to the receiver",
            ]
        for line in lines:
            print(line, file=self.human, flush=True)

    async def _start(
        self, stack: AsyncExitStack, settings: Settings, simulator: LiveSimulator
    ) -> tuple[asyncio.Task[None], asyncio.Task[None]]:
        """Topics, the receiver, the reader, the burst, the recorder: each registered on `stack` as it starts."""
        from highlight.service import Service

        kafka = settings.kafka
        topics = [kafka.moments_topic, kafka.results_topic, kafka.dlq_topic, kafka.callbacks_topic, kafka.clips_topic]
        await _create_topics(kafka.bootstrap_servers, topics)
        receiver = await stack.enter_async_context(
            Receiver(_receiver_settings(kafka.bootstrap_servers), host="127.0.0.1")
        )
        simulator.set_config(callback_url=receiver.url)
        if self.args.keep_running:
            self.view.note(f"callback receiver: {receiver.url} (callback key {CALLBACK_KEY})")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
        )
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        read = (kafka.results_topic, kafka.dlq_topic, kafka.clips_topic)
        consumer.assign([TopicPartition(t, p) for t in read for p in range(PARTITIONS)])
        reader = asyncio.create_task(self._read(consumer, kafka.dlq_topic, kafka.clips_topic), name="demo-results")
        stack.push_async_callback(_cancel, reader)
        await _publish(kafka.bootstrap_servers, kafka.moments_topic, self.burst)
        self.view.phase("recorder joining its group")
        service = await stack.enter_async_context(Service(settings))
        runner = asyncio.create_task(service.run(), name="demo-service")

        async def stop_service() -> None:
            service.request_stop()
            await asyncio.wait({runner})

        stack.push_async_callback(stop_service)
        return runner, reader

    async def _unless_stopped(self, work: Coroutine[Any, Any, T]) -> T | None:
        """`work`'s result, or None if a stop was asked first (then `work` is cancelled and has unwound)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if task.cancelled() or (self.stop.is_set() and task.exception() is not None):
            return None  # failing because the broker took the same Ctrl-C is no failure
        return task.result()

    # --- results ----------------------------------------------------------------------------------

    async def _read(self, consumer: AIOKafkaConsumer, dlq_topic: str, clips_topic: str) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            if batches:
                self.view.phase("recording" if self.tally.answered < len(self.burst.records) else "awaiting clips")
            for messages in batches.values():
                for message in messages:
                    if message.topic == dlq_topic:
                        self._dead_letter(message)
                    elif message.topic == clips_topic:
                        self._clip(message.value)
                    else:
                        self._result(message.value)
            if self.tally.complete and not self.complete.is_set():
                self.finished = time.monotonic()
                self.complete.set()

    def _result(self, value: bytes | None) -> None:
        try:
            document = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return  # someone else's junk on the results topic (--keep-running): not ours to show
        if isinstance(document, dict) and self.tally.add_result(document):
            self.view.result(document)

    def _clip(self, value: bytes | None) -> None:
        try:
            document = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return
        if isinstance(document, dict) and self.tally.add_clip(document):
            self.view.clip(document)

    def _dead_letter(self, message: Any) -> None:
        headers = dict(message.headers or ())
        reason = headers.get(DLQ_REASON_HEADER, b"?").decode(errors="replace")
        self.tally.add_dead_letter(reason, from_burst=BURST_HEADER in headers)
        self.view.dead_letter(message.key, reason, headers.get(CONNECT_MESSAGE, b"").decode(errors="replace"))

    async def _watch(self, runner: asyncio.Task[None], reader: asyncio.Task[None]) -> int | None:
        """The exit code once the burst is answered (or is not in time); None if stopped first."""
        stopper = asyncio.ensure_future(self.stop.wait())
        done = asyncio.ensure_future(self.complete.wait())
        try:
            await asyncio.wait(
                {stopper, done, runner, reader}, timeout=self.args.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
            done.cancel()
        if self.complete.is_set():
            return self._report(interrupted=False)
        if self.stop.is_set():
            return None
        self.view.close()
        if not self._failure(runner, reader):
            self.view.note(
                f"highlight demo: error: not every moment was answered, nor every clip in, in {self.args.timeout:g} s"
            )
        self._report(interrupted=False)
        return EXIT_FAILURE

    def _failure(self, runner: asyncio.Task[None], reader: asyncio.Task[None]) -> int:
        for name, task in (("recorder", runner), ("result reader", reader)):
            if task.done() and not task.cancelled() and task.exception() is not None:
                error = task.exception()
                kind = "" if isinstance(error, HighlightError) else f"{type(error).__name__}: "
                self.view.note(f"highlight demo: error: the {name} stopped: {kind}{error}")
                return EXIT_FAILURE
        if runner.done() and not self.stop.is_set():
            self.view.note("highlight demo: error: the recorder stopped on its own")
            return EXIT_FAILURE
        return EXIT_OK

    # --- the end ----------------------------------------------------------------------------------

    def _report(self, *, interrupted: bool) -> int:
        """Print what came back; EXIT_FAILURE if the burst is answered but not as its shape says it must be."""
        self.view.close()
        self.view = PlainView(self.human)
        seconds = (self.finished or time.monotonic()) - self.started
        for line in summary_lines(self.burst, self.tally, seconds, interrupted=interrupted):
            print(line, file=self.human, flush=True)
        if self.args.json:
            document = summary_document(self.burst, self.tally, seconds, interrupted=interrupted)
            document["bootstrap"] = self.broker.bootstrap if self.broker else None
            print(orjson.dumps(document).decode(), flush=True)
        return EXIT_OK if self.tally.as_expected or interrupted else EXIT_FAILURE


def _settings(bootstrap: str, live_url: str) -> Settings:
    return config.load(
        {
            "HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HIGHLIGHT_LIVE_URL": live_url,
            "HIGHLIGHT_LIVE_APPID": APPID,
            "HIGHLIGHT_LIVE_KEY": KEY,
            # tansu holds every JoinGroup for about half the session timeout, and answers a fetch only when
            # its wait expires: both short, or the demo spends its time waiting on the broker.
            "HIGHLIGHT_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "HIGHLIGHT_KAFKA_FETCH_MAX_WAIT_MS": "20",
            "HIGHLIGHT_METRICS_PORT": "0",
            # The simulator has no rate limit worth modelling here; a burst should not queue behind ours.
            "HIGHLIGHT_LIVE_MAX_RPS": "1000",
            "HIGHLIGHT_DRAIN_TIMEOUT_SECONDS": "5",
            "HIGHLIGHT_LOG_FORMAT": LOG_FORMAT,
            "HIGHLIGHT_LOG_LEVEL": LOG_LEVEL,
        }
    )


def _receiver_settings(bootstrap: str) -> ReceiverSettings:
    return config.load_receiver(
        {
            "HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HIGHLIGHT_CALLBACK_KEY": CALLBACK_KEY,
            "HIGHLIGHT_CALLBACK_PORT": "0",
            "HIGHLIGHT_METRICS_PORT": "0",
            "HIGHLIGHT_LOG_FORMAT": LOG_FORMAT,
            "HIGHLIGHT_LOG_LEVEL": LOG_LEVEL,
        }
    )


async def _create_topics(bootstrap: str, topics: list[str]) -> None:
    # Explicitly: tansu would auto-create with 4 partitions, and the service refuses a missing moments topic.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in topics])
    finally:
        await admin.close()


async def _publish(bootstrap: str, topic: str, burst: Burst) -> None:
    # No idempotence: tansu lacks InitProducerId.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, record.value, key=record.key, headers=[(BURST_HEADER, b"1")])
            for record in burst.records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: it was reported, or it is moot now

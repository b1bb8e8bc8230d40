"""`highlight callbacks`: the aiohttp server Tencent Cloud Live POSTs its event notifications to.

Stateless, meant to sit behind a public load balancer (HTTPS in front) and scaled apart from the recorders.
`POST /live/callback` answers:
- 200 `{"code":0}` only once the notification is stored: its original bytes in the callbacks topic, keyed by
  its channel (`stream_id`, else `channel_id`) on that channel's home partition, acknowledged by the brokers;
- 401 for a wrong or missing sign or an expired `t`, 400 for a body that is not a JSON object, 413 for a body
  over 64 KiB: nothing is stored;
- 503 when Kafka does not acknowledge within STORE_TIMEOUT_SECONDS: Live sends it again.
Every authentic notification is stored, whatever its event type: the recorder makes clips of recording files
(`event_type` 100) and counts the others; the topic is also the record of everything Live said.

Lifecycle: `async with Receiver(settings) as receiver: ...`. Leaving stops taking notifications, lets those
being stored finish, then flushes and closes the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType

import structlog
from aiohttp import web

from highlight.callbacks import notification
from highlight.callbacks.notification import AUTHENTIC, MAX_BODY_BYTES, Inspected, event_type_label
from highlight.config import ReceiverSettings
from highlight.errors import BrokerError
from highlight.kafka import Producer, home_partition
from highlight.metrics import ReceiverMetrics
from highlight.ops import OpsServer
from highlight.topics import prepare_callbacks_topic

log = structlog.get_logger("highlight.callbacks")

PATH = "/live/callback"
# Live waits 20 s for an answer; a store that has not been acknowledged by then is answered 503. The producer
# fails a record it could not deliver within this time, so a 503 never hides a record that lands later.
STORE_TIMEOUT_SECONDS = 5.0
# A last resort above the producer's own deadline (retries included), still well inside Live's 20 s.
ANSWER_DEADLINE_SECONDS = 15.0
PROBE_INTERVAL_SECONDS = 2.0
# Answers to notifications being stored may take this long when the server stops.
SHUTDOWN_TIMEOUT_SECONDS = ANSWER_DEADLINE_SECONDS + 1.0

_STATUS = {
    "stored": 200,
    notification.BAD_SIGN: 401,
    notification.EXPIRED: 401,
    notification.MALFORMED: 400,
    notification.TOO_LARGE: 413,
    "kafka_unavailable": 503,
}
_REASONS = {
    notification.BAD_SIGN: "wrong or missing sign",
    notification.EXPIRED: "t is past its expiry and the grace period",
    notification.MALFORMED: "the body is not a JSON object",
    notification.TOO_LARGE: f"the body is over {MAX_BODY_BYTES} bytes",
    "kafka_unavailable": "not stored: Kafka did not acknowledge in time; send it again",
}


class Receiver:
    def __init__(
        self,
        settings: ReceiverSettings,
        *,
        host: str = "0.0.0.0",  # noqa: S104 -- Live (through the load balancer) calls from outside
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = ReceiverMetrics()
        self._host = host
        self._clock = clock
        self._key = settings.callbacks.key.reveal()
        self._topic = settings.kafka.callbacks_topic
        self._stack = AsyncExitStack()
        self._kafka_available = False
        self._closed = False
        self.partitions = 0
        self.port: int | None = None
        self.ops_port: int | None = None

    @property
    def url(self) -> str:
        """The callback URL on this host (what a load balancer forwards to)."""
        if self.port is None:
            raise RuntimeError("the receiver is not started")
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host  # noqa: S104 -- compared, not bound
        return f"http://{host}:{self.port}{PATH}"

    @property
    def ready(self) -> bool:
        return self._kafka_available

    async def __aenter__(self) -> Receiver:
        stack = self._stack
        try:
            self.partitions = await prepare_callbacks_topic(self.settings.kafka)
            producer = Producer(self.settings.kafka, request_timeout_ms=int(STORE_TIMEOUT_SECONDS * 1000))
            self._producer = await stack.enter_async_context(producer)
            self._set_available(True)
            probe = asyncio.create_task(self._probe_forever(), name="callbacks-kafka-probe")
            stack.push_async_callback(_cancel, probe)
            if self.settings.metrics_port:
                ops = OpsServer(
                    self.metrics,
                    self.settings.metrics_port,
                    host=self._host,
                    ready=self._readiness,
                    # No consumer loop here: a live event loop answers /healthz at all.
                    last_poll=time.monotonic,
                )
                await stack.enter_async_context(ops)
                self.ops_port = ops.port
            # Entered last, so left first: no notification is taken once the producer starts closing.
            await self._serve(stack)
        except BaseException:
            await stack.aclose()
            raise
        log.info(
            "callbacks_started",
            url_path=PATH,
            port=self.port,
            brokers=self.settings.kafka.bootstrap_servers,
            callbacks_topic=self._topic,
            partitions=self.partitions,
            grace_seconds=self.settings.callbacks.grace_seconds,
            ops_port=self.ops_port,
        )
        return self

    async def _serve(self, stack: AsyncExitStack) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(PATH, self._notification)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, self._host, self.settings.callbacks.port)
        await site.start()
        self.port = runner.addresses[0][1]

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._stack.aclose()
        log.info("callbacks_stopped")

    # --- readiness ----------------------------------------------------------------------------------

    def _readiness(self) -> tuple[bool, str]:
        if self._kafka_available:
            return True, "ready"
        return False, "Kafka is unavailable: notifications are answered 503"

    def _set_available(self, available: bool) -> None:
        if available != self._kafka_available:
            self._kafka_available = available
            if not available:
                log.warning("callbacks_kafka_unavailable", brokers=self.settings.kafka.bootstrap_servers)
            elif self.port is not None:
                log.info("callbacks_kafka_available")
        self.metrics.ready.set(1 if available else 0)

    async def _probe_forever(self) -> None:
        """Readiness follows the brokers even when no notification comes."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
            try:
                async with asyncio.timeout(STORE_TIMEOUT_SECONDS):
                    self._set_available(await self._producer.reachable(self._topic))
            except TimeoutError:
                self._set_available(False)

    # --- one notification ---------------------------------------------------------------------------

    async def _notification(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await _body(request)
        if body is None:
            inspected = Inspected(notification.TOO_LARGE)
        else:
            inspected = notification.inspect(body, self._key, self._clock(), self.settings.callbacks.grace_seconds)
        partition: int | None = None
        offset: int | None = None
        if body is not None and inspected.verdict == AUTHENTIC:
            # No channel (a stream event without one): any partition will do, no clip comes of it.
            partition = home_partition(inspected.channel, self.partitions) if inspected.channel else None
            offset = await self._store(body, inspected, partition)
            verdict = "stored" if offset is not None else "kafka_unavailable"
        else:
            verdict = inspected.verdict
        self.metrics.notifications.labels(event_type_label(inspected.event_type), verdict).inc()
        status = _STATUS[verdict]
        # The one canonical line per notification. Never the key, nor the sign.
        (log.info if status == 200 else log.warning)(
            "callback_received",
            verdict=verdict,
            status=status,
            event_type=inspected.event_type,
            channel_id=inspected.channel,
            file_id=inspected.file_id,
            task_id=inspected.task_id,
            t=inspected.t,
            partition=partition,
            offset=offset,
            remote=request.headers.get("X-Forwarded-For", request.remote),
            bytes=request.content_length if body is None else len(body),
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        if status == 200:
            # Byte for byte what the legacy documents show.
            return web.Response(body=b'{"code":0}', content_type="application/json")
        return web.json_response({"code": status, "message": _REASONS[verdict]}, status=status)

    async def _store(self, body: bytes, inspected: Inspected, partition: int | None) -> int | None:
        """The record's offset once acknowledged; None if Kafka did not acknowledge in time (nothing stored)."""
        started = time.perf_counter()
        key = inspected.channel.encode() if inspected.channel else None
        try:
            async with asyncio.timeout(ANSWER_DEADLINE_SECONDS):
                offset = await self._producer.send(self._topic, body, key=key, partition=partition)
        except (BrokerError, TimeoutError) as exc:
            self._set_available(False)
            log.warning("callback_not_stored", error=str(exc) or "timed out", channel_id=inspected.channel)
            return None
        finally:
            self.metrics.store_seconds.observe(time.perf_counter() - started)
        self._set_available(True)
        return offset


async def _body(request: web.Request) -> bytes | None:
    """The body, or None when it is over MAX_BODY_BYTES (refused unread when its length is declared)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return None
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

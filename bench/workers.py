"""Processes the benchmark starts next to `highlight run`, each measured the same way (as its own process).

    python bench/workers.py sim     --port P --appid A --key K        the Live API simulator, per-call logs off
    python bench/workers.py pipe    --bootstrap B --src T --dst T --group G
    python bench/workers.py naive   --bootstrap B --src T --dst T --group G --url U --appid A --key K
    python bench/workers.py restore --bootstrap B --topic T --partitions P
    python bench/workers.py calls   --url U --appid A --key K --count N --concurrency C
    python bench/workers.py probe   [--threshold-ms 20]                 prints machine-wide stalls until SIGTERM

`pipe` and `naive` run until SIGTERM; `restore` and `calls` print one JSON line and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

SESSION_TIMEOUT_MS = 6000  # tansu holds every JoinGroup for about half of it
FETCH_MAX_WAIT_MS = 20  # tansu answers a fetch only when its wait expires


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM: the process's peak resident set, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _consumer(args: argparse.Namespace) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        args.src,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=SESSION_TIMEOUT_MS // 4,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )


def _producer(bootstrap: str) -> AIOKafkaProducer:
    # The settings of highlight's own producer (highlight.kafka.Producer), so the comparison is fair.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=0, max_batch_size=256 * 1024
    )


def _until_sigterm(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def supervise() -> None:
        task = asyncio.create_task(main())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(supervise())


# --- bare pipe: consume, produce every value unchanged, commit ------------------------------------------------


async def pipe(args: argparse.Namespace) -> None:
    consumer, producer = _consumer(args), _producer(args.bootstrap)
    await producer.start()
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            futures = [
                await producer.send(args.dst, message.value, key=message.key)
                for messages in batches.values()
                for message in messages
            ]
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


# --- naive: one moment at a time, what a quick script would do -----------------------------------------------


async def naive(args: argparse.Namespace) -> None:
    import aiohttp
    from yarl import URL

    from highlight.apis.live_tape_start import parse_reply, query_string
    from highlight.moment import bucket_of
    from highlight.recording import RecordingOptions, window_at

    consumer, producer = _consumer(args), _producer(args.bootstrap)
    await producer.start()
    await consumer.start()
    session = aiohttp.ClientSession()
    try:
        while True:
            message = await consumer.getone()
            moment = orjson.loads(message.value)
            now = datetime.now(UTC)
            window = window_at(now, 300)
            query = query_string(args.appid, args.key, RecordingOptions(moment["channel_id"], 300), window, now)
            async with session.get(URL(f"{args.url}?{query}", encoded=True)) as response:
                body = await response.read()
            try:
                status, task_id = "started", str(parse_reply(response.status, body))
            except Exception as exc:
                status, task_id = f"failed: {exc}", None
            result = {
                "event_id": moment["event_id"],
                "channel_id": moment["channel_id"],
                "bucket": bucket_of(datetime.fromisoformat(moment["occurred_at"]), 300),
                "status": status,
                "task_id": task_id,
                "start_time": window.start_time,
                "end_time": window.end_time,
            }
            await producer.send_and_wait(args.dst, orjson.dumps(result), key=message.key)
            await consumer.commit()
    finally:
        await session.close()
        await consumer.stop()
        await producer.stop()


# --- calls only: the same signed GETs through highlight's LiveClient, no Kafka at all ---------------------------


async def calls(args: argparse.Namespace) -> None:
    """`--concurrency` workers each make calls back to back: the HTTP + simulator ceiling for all-unique."""
    from highlight import config
    from highlight.apis import backend_for
    from highlight.live import LiveClient
    from highlight.recording import RecordingOptions, window_at

    settings = config.load(
        {"HIGHLIGHT_LIVE_URL": args.url, "HIGHLIGHT_LIVE_APPID": args.appid, "HIGHLIGHT_LIVE_KEY": args.key}
    )
    done = 0
    async with LiveClient(settings.live, backend_for(settings.live), max_connections=args.concurrency) as live:

        async def worker(number: int) -> None:
            nonlocal done
            while done < args.count:
                done += 1
                now = datetime.now(UTC)
                await live.start(RecordingOptions(f"calls-{number}-{done}", 300), window_at(now, 300), now)

        cpu, started = time.process_time(), time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
        cpu, elapsed = time.process_time() - cpu, time.monotonic() - started
    out = {"calls": done, "rate": done / elapsed, "cpu_us": cpu / done * 1e6, "cpu_share": cpu / elapsed}
    print(orjson.dumps(out | {"peak_rss_mb": peak_rss_mb()}).decode(), flush=True)


# --- probe: an idle process that notices when the machine does not run it on time ----------------------------


def probe(args: argparse.Namespace) -> None:
    """Sleep 5 ms in a loop; print `<unix time> <ms late>` whenever a wake-up is more than 20 ms late. Such a
    stall hits every process on the machine, so it explains outliers in the delay measurement."""
    last = time.monotonic()
    while True:
        time.sleep(0.005)
        now = time.monotonic()
        late_ms = (now - last - 0.005) * 1000
        if late_ms > args.threshold_ms:
            print(f"{time.time():.3f} {late_ms:.0f}", flush=True)
        last = now


# --- the Live API simulator, without its per-call info log line ----------------------------------------------


def sim(args: argparse.Namespace) -> None:
    from highlight import logs, simulator
    from highlight.simulator import SimulatorConfig

    # `highlight simulate-live` logs every call at info; at a thousand calls a second that rendering would take
    # CPU from the measured process on a small machine. Same simulator, warnings only.
    logs.configure("json", "warning")
    config = SimulatorConfig(appid=args.appid, key=args.key, max_running=10**9, daily_quota=10**9)

    async def main() -> None:
        await simulator.serve(config, "127.0.0.1", args.port, ready=lambda url: print(url, flush=True))

    _until_sigterm(main)


# --- state restore: StateStore.restore over a pre-filled state topic, wired as highlight.service wires it ------


async def restore(args: argparse.Namespace) -> None:
    from highlight import config
    from highlight.kafka import ChangelogReader, Producer
    from highlight.service import tune_garbage_collector
    from highlight.state import StateStore

    tune_garbage_collector()  # as `highlight run` does

    settings = config.load(
        {
            "HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
            "HIGHLIGHT_STATE_TOPIC": args.topic,
            "HIGHLIGHT_LIVE_APPID": "1234",
            "HIGHLIGHT_LIVE_KEY": "unused",
        }
    )
    rss_before = peak_rss_mb()
    async with Producer(settings.kafka) as producer:
        reader = ChangelogReader(settings.kafka)
        await reader.start()
        try:
            store = StateStore(
                args.topic,
                producer,
                reader,
                bucket_seconds=settings.recorder.bucket_seconds,
                max_event_age_seconds=settings.recorder.max_event_age_seconds,
            )
            started, cpu = time.perf_counter(), time.process_time()
            # As a takeover does: read the partitions to their end, then resolve intents without an outcome.
            report = await store.restore(set(range(args.partitions)))
            in_doubt = await store.resolve_intents(set(range(args.partitions)))
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            await reader.stop()
    # A full collection scans every tracked object: with a million entries in memory this is the pause the service
    # takes each time the collector reaches its oldest generation (the first one also untracks what it can).
    pauses = []
    for _ in range(2):
        collected = time.perf_counter()
        gc.collect()
        pauses.append((time.perf_counter() - collected) * 1000)
    assert store.entries() == report.entries  # the tables are still alive during the collections
    out = {
        "gc_full_ms": pauses[-1],
        "seconds": report.seconds,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "records": report.records,
        "entries": report.entries,
        "in_doubt": in_doubt,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
    }
    print(orjson.dumps(out).decode(), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="workers")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("pipe", "naive"):
        command = commands.add_parser(name)
        command.add_argument("--bootstrap", required=True)
        command.add_argument("--src", required=True)
        command.add_argument("--dst", required=True)
        command.add_argument("--group", required=True)
        if name == "naive":
            command.add_argument("--url", required=True)
            command.add_argument("--appid", required=True)
            command.add_argument("--key", required=True)
    command = commands.add_parser("calls")
    command.add_argument("--url", required=True)
    command.add_argument("--appid", required=True)
    command.add_argument("--key", required=True)
    command.add_argument("--count", type=int, required=True)
    command.add_argument("--concurrency", type=int, required=True)
    command = commands.add_parser("probe")
    command.add_argument("--threshold-ms", type=float, default=20.0)
    command = commands.add_parser("sim")
    command.add_argument("--port", type=int, required=True)
    command.add_argument("--appid", required=True)
    command.add_argument("--key", required=True)
    command = commands.add_parser("restore")
    command.add_argument("--bootstrap", required=True)
    command.add_argument("--topic", required=True)
    command.add_argument("--partitions", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "sim":
        sim(args)
    elif args.command == "probe":
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            probe(args)
    elif args.command == "calls":
        asyncio.run(calls(args))
    elif args.command == "restore":
        asyncio.run(restore(args))
    else:
        work = pipe if args.command == "pipe" else naive
        _until_sigterm(lambda: work(args))


if __name__ == "__main__":
    main()

"""`highlight run | callbacks | check | dlq replay | simulate-live | demo`: the only place that reads the
environment and handles signals."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from highlight import __version__, config, logs
from highlight.errors import BrokerError, BrokerUnavailable, ConfigError, TooManyUnprocessable, TopicMisconfigured

# Exit codes (sysexits.h where one fits).
EXIT_OK = 0
EXIT_FAILURE = 1  # a bug outside any one record: the traceback says where
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # the brokers could not be reached (at start-up, after HIGHLIGHT_KAFKA_STARTUP_TIMEOUT_SECONDS)
EXIT_SOFTWARE = 70  # records failed one after another in our own code (HIGHLIGHT_MAX_UNPROCESSABLE_IN_A_ROW)
EXIT_PROTOCOL = 76  # Kafka refused a request, for another reason than reachability (authorization, say)
EXIT_CONFIG = 78  # a topic is misconfigured (a refused Live credential pauses the service instead)
EXIT_INTERRUPTED = 130  # a one-shot command stopped by Ctrl-C


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="highlight",
        description="Highlight moments from Kafka start real-time Tencent Cloud Live recordings (Live_Tape_Start, "
        "CreateRecord or CreateLiveRecord), one result per moment.",
    )
    parser.add_argument("--version", action="version", version=f"highlight {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the recorder service",
        description="Consume moments, record, publish one result per moment. Every flag has an environment "
        "variable; the flag wins.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_arguments(run)

    check = commands.add_parser(
        "check",
        help="preflight before `highlight run`: settings, broker, topics, lag, the Live endpoint and credentials",
        description="One line per check (ok, FAIL or skipped, and why); exit 0 when every check holds, 1 "
        "otherwise, 2 for an invalid setting. Never starts a recording. Configured exactly like `highlight run`.",
    )
    config.add_arguments(check)

    from highlight.tools import replay

    dlq = commands.add_parser("dlq", help="the dead-letter topic: replay dead letters")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    dlq_replay = dlq_commands.add_parser(
        "replay",
        help="publish selected dead letters' original bytes to the moments topic again",
        description="Read the dead-letter topic, select records by reason, partition, offsets and time, and publish "
        "each one's original key, bytes and headers to the moments topic, where dedup answers a moment recorded "
        "before without a second call. Configured exactly like `highlight run`; needs no Live API credentials.",
    )
    replay.add_arguments(dlq_replay)
    config.add_arguments(dlq_replay, uses_live=False)

    callbacks = commands.add_parser(
        "callbacks",
        help="serve the receiver of Tencent Cloud Live's recording notifications",
        description="Take Live's event notifications on POST /live/callback (the callback template's URL, behind "
        "HTTPS), check their signature, and store them in the callbacks topic before answering 200; `highlight "
        "run` turns recording files into clip events. Every flag has an environment variable; the flag wins.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_arguments(callbacks, config.CALLBACKS)

    from highlight import simulator

    simulate = commands.add_parser(
        "simulate-live",
        help="serve a faithful simulator of the Live recording APIs",
        description="A local stand-in for Live_Tape_Start (/common_access), CreateRecord (/v2/index.php) and "
        "CreateLiveRecord (POST /): checks signatures, parameters and CST times, enforces real-time limits and "
        "quotas, and can inject faults.",
    )
    simulator.add_arguments(simulate)

    from highlight import demo

    demo_parser = commands.add_parser(
        "demo",
        help="run the whole pipeline locally: embedded broker, simulator, recorder, a burst of moments",
    )
    demo.add_arguments(demo_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "check":
        return _check(args)
    if args.command == "dlq":
        return _dlq_replay(args)
    if args.command == "callbacks":
        return _callbacks(args)
    if args.command == "simulate-live":
        return _simulate(args)
    from highlight import demo

    return demo.main(args)


def _fail(message: str, code: int) -> int:
    print(f"highlight: error: {message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        settings = config.load(os.environ, args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    logs.configure(settings.log_format, settings.log_level, secrets=logs.secrets_of(settings))

    from highlight.service import Service, tune_garbage_collector

    tune_garbage_collector()

    async def serve(stop: asyncio.Event) -> None:
        service = Service(settings)
        # Start-up may wait a while for the brokers: a signal meanwhile ends it there.
        if not await _unless_stopped(service.__aenter__(), stop):
            return
        try:
            waiter = asyncio.create_task(stop.wait())
            runner = asyncio.create_task(service.run())
            try:
                await asyncio.wait({waiter, runner}, return_when=asyncio.FIRST_COMPLETED)
                service.request_stop()
                await runner
            finally:
                waiter.cancel()
                runner.cancel()
                await asyncio.gather(waiter, runner, return_exceptions=True)
        finally:
            await service.stop()

    return _serve_with_signals(serve)


async def _unless_stopped(starting: Coroutine[Any, Any, object], stop: asyncio.Event) -> bool:
    """Run `starting` to its end (True), or cancel it when `stop` is set first (False)."""
    task = asyncio.ensure_future(starting)
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()  # a second signal: no task outlives its owner
        raise
    finally:
        waiter.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()  # its error, if it failed
    return True


def _callbacks(args: argparse.Namespace) -> int:
    try:
        settings = config.load_receiver(os.environ, args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    logs.configure(settings.log_format, settings.log_level, secrets=logs.secrets_of(settings))

    from highlight.callbacks.receiver import Receiver

    async def serve(stop: asyncio.Event) -> None:
        receiver = Receiver(settings)
        # Start-up may wait a while for the brokers and the moments topic: a signal meanwhile ends it there.
        if not await _unless_stopped(receiver.__aenter__(), stop):
            return
        try:
            await stop.wait()
        finally:
            await receiver.stop()

    return _serve_with_signals(serve)


def _serve_with_signals(serve: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> int:
    """SIGTERM/SIGINT ask for a clean stop; a second one cancels outright."""

    async def supervise() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()

        def on_signal(signum: int) -> None:
            if stop.is_set() and main_task is not None:
                main_task.cancel()
            stop.set()
            structlog.get_logger("highlight").info("signal_received", signal=signal.Signals(signum).name)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await serve(stop)

    try:
        asyncio.run(supervise())
    except TopicMisconfigured as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except BrokerUnavailable as exc:
        return _fail(f"{exc} (HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS)", EXIT_UNAVAILABLE)
    except BrokerError as exc:
        return _fail(str(exc), EXIT_PROTOCOL)
    except TooManyUnprocessable as exc:
        return _fail(f"{exc}; a bug to report: the dead-letter topic holds the records", EXIT_SOFTWARE)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (KeyboardInterrupt, asyncio.CancelledError):
        return EXIT_OK
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    try:
        settings = config.load(os.environ, args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    logs.configure(settings.log_format, settings.log_level, secrets=logs.secrets_of(settings))

    from highlight.tools import check

    async def work() -> int:
        report = await check.run(settings)
        return EXIT_OK if report.ok else EXIT_FAILURE

    return _one_shot(work)


def _dlq_replay(args: argparse.Namespace) -> int:
    from highlight.tools import replay

    try:
        settings = config.load(os.environ, args, uses_live=False)
        selection = replay.selection_of(args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    logs.configure(settings.log_format, settings.log_level, secrets=logs.secrets_of(settings))

    async def work() -> int:
        await replay.replay(settings, selection, dry_run=args.dry_run)
        return EXIT_OK

    return _one_shot(work)


def _one_shot(work: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """A command that ends by itself: its own exit code, or the one its error calls for, as for `run`."""
    try:
        return asyncio.run(work())
    except TopicMisconfigured as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except BrokerUnavailable as exc:
        return _fail(f"{exc} (HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS)", EXIT_UNAVAILABLE)
    except BrokerError as exc:
        return _fail(str(exc), EXIT_PROTOCOL)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)


def _simulate(args: argparse.Namespace) -> int:
    from highlight import simulator

    try:
        sim_config = simulator.config_from_args(args)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    logs.configure("auto", "info")

    async def serve(stop: asyncio.Event) -> None:
        def ready(url: str) -> None:
            origin = url.removesuffix("/common_access")
            print(
                f"Live API simulator listening on {url} (appid {sim_config.appid}), "
                f"{origin}/v2/index.php and {origin}/ (SecretId {sim_config.secret_id})",
                flush=True,
            )

        server = asyncio.create_task(simulator.serve(sim_config, args.host, args.port, ready=ready))
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({server, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            server.cancel()
            waiter.cancel()
            results = await asyncio.gather(server, waiter, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result

    try:
        return _serve_with_signals(serve)
    except OSError as exc:
        return _fail(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", EXIT_UNAVAILABLE)


if __name__ == "__main__":
    sys.exit(main())

"""The `highlight demo` command: its arguments, its exit codes, and the signals that stop it (the demo itself is
`highlight.demo.runner.Demo`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TextIO, cast

from aiokafka.errors import KafkaError

from highlight import logs
from highlight.broker import BrokerUnavailableError
from highlight.demo.moments import check_sizes
from highlight.demo.runner import EXIT_FAILURE, EXIT_OK, LOG_FORMAT, LOG_LEVEL, Demo
from highlight.demo.view import CurrentStderr
from highlight.errors import HighlightError
from highlight.simulator.config import parse_latency

# How long a clean stop may take (the service drains in-flight calls for up to 5 s) before it is cut short.
CLEAN_STOP_SECONDS = 10.0
PROBE_SECONDS = 0.5
EXIT_USAGE, EXIT_UNAVAILABLE = 2, 69


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Start an embedded Kafka-protocol broker, the Live API simulator and the recorder; publish a burst of "
        "moments (duplicates, a stale one, a malformed one, an offline channel) and show every answer."
    )
    add = parser.add_argument
    add("--moments", type=int, default=40, metavar="N", help="records in the burst, 0 for none [%(default)s]")
    add("--channels", type=int, default=6, metavar="N", help="channels, one of them offline [%(default)s]")
    add("--latency-ms", default="100-300", metavar="MS", help="simulator latency, MS or MIN-MAX [%(default)s]")
    add("--seed", type=int, default=7, metavar="N", help="seed of the burst's shape [%(default)s]")
    add("--timeout", type=float, default=60.0, metavar="S", help="seconds to wait for every answer [%(default)g]")
    add("--keep-running", action="store_true", help="print the addresses and keep everything running until Ctrl-C")
    add("--json", action="store_true", help="print the summary as one JSON object on stdout")


def main(args: argparse.Namespace) -> int:
    try:
        check_sizes(args.moments, args.channels)
        latency = parse_latency(args.latency_ms)
    except ValueError as exc:
        print(f"highlight demo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # With --json, stdout carries only the JSON, so `highlight demo --json | jq` works; people read stderr.
    human = sys.stderr if args.json else sys.stdout
    logs.configure(LOG_FORMAT, LOG_LEVEL, cast(TextIO, CurrentStderr()))
    try:
        return asyncio.run(_supervise(args, latency, human))
    except BrokenPipeError:
        # `highlight demo | head`: the reader left, which is how pipes end, not an error. Everything started has
        # been stopped by then; point stdout at /dev/null so the interpreter's final flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except BrokerUnavailableError as exc:
        print(f"highlight demo: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (HighlightError, KafkaError, OSError) as exc:
        print(f"highlight demo: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (KeyboardInterrupt, asyncio.CancelledError):
        # A second Ctrl-C: the exit stack has still run, broker included.
        return EXIT_OK


async def _supervise(args: argparse.Namespace, latency: tuple[float, float], human: TextIO) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None  # noqa: S101 -- asyncio.run runs us in a task
    demo = Demo(args, latency, human, asyncio.Event())
    shutdown = _Shutdown(main_task, demo.stop, demo.broker_listening)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, shutdown.signal)
    try:
        return await demo.run()
    finally:
        # Only now: until everything is stopped, a signal must not turn into a KeyboardInterrupt.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


class _Shutdown:
    """The first SIGINT/SIGTERM asks for a clean stop. A second one, or a clean stop that stalls, cancels the
    main task again and again until it ends: each cancel cuts one awaited cleanup step short and the exit stack
    goes on with the next, so every step still runs, and the broker's stop, being synchronous, is never skipped.

    A clean stop stalls when the broker is gone first: Ctrl-C in a terminal reaches the whole process group,
    tansu included, and aiokafka then waits for a coordinator (commit, flush) that never comes back.
    """

    def __init__(self, main: asyncio.Task[int], stop: asyncio.Event, broker_listening: Callable[[], bool]) -> None:
        self._main = main
        self._stop = stop
        self._broker_listening = broker_listening
        self._loop = main.get_loop()
        self._deadline = 0.0
        self._forcing = False

    def signal(self) -> None:
        if self._stop.is_set():
            self._force()
            return
        self._stop.set()
        # The broker may be gone already; its clients' reconnect errors would only bury the summary.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        self._deadline = self._loop.time() + CLEAN_STOP_SECONDS
        self._loop.call_later(PROBE_SECONDS, self._watch)

    def _watch(self) -> None:
        if self._main.done() or self._forcing:
            return
        if self._loop.time() >= self._deadline or not self._broker_listening():
            self._force()
        else:
            self._loop.call_later(PROBE_SECONDS, self._watch)

    def _force(self) -> None:
        self._forcing = True
        if not self._main.done():
            self._main.cancel()
            self._loop.call_later(PROBE_SECONDS / 2, self._force)

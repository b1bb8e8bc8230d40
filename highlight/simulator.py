"""A faithful stand-in for Tencent Cloud Live's `Live_Tape_Start` endpoint, with faults on demand.

The real `common_access` endpoint cannot be reached from tests or a developer's machine, so this serves its
contract over real HTTP (the checks are in `highlight.simulator_rules`), records every call, and can be told
to fail in each way a client must survive: refusals, 5xx, silence, resets, unreadable bodies, slowness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import date
from typing import Literal
from urllib.parse import parse_qsl

import orjson
import structlog
from aiohttp import web

from highlight import simulator_rules as rules
from highlight.simulator_rules import SimulatorConfig

__all__ = [
    "LiveSimulator",
    "SimCall",
    "SimTask",
    "SimulatorConfig",
    "add_arguments",
    "config_from_args",
    "serve",
]

log = structlog.get_logger()

PATH = "/common_access"
DEFAULT_CONFIG = SimulatorConfig()
# Long enough for an answer already on its way, short enough that a test or Ctrl-C never waits on latency.
SHUTDOWN_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class SimCall:
    received_at: float
    received_monotonic: float
    query: dict[str, str]
    raw_query: str
    channel_id: str | None
    outcome: str
    task_id: int | None
    # Why a call was refused ("bad parameter: Param.s.start_time"); empty for a success.
    message: str = ""


@dataclass(frozen=True)
class SimTask:
    task_id: int
    channel_id: str
    start_time: str
    end_time: str
    effective_end: float
    created_at: float
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to do with one call, all decided the moment it arrives so `calls` is complete at arrival."""

    outcome: str
    body: bytes = b""
    status: int = 200
    message: str = ""
    ending: Literal["answer", "hang", "reset"] = "answer"
    extra_delay_s: float = 0.0
    task: SimTask | None = None


class LiveSimulator:
    def __init__(self, config: SimulatorConfig = DEFAULT_CONFIG, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self.calls: list[SimCall] = []
        self.tasks: list[SimTask] = []
        self._faults: dict[str | None, deque[rules.Fault]] = {}
        # Not security: seeded so a run of random faults and task ids can be replayed.
        self._rng = random.Random(config.seed)  # noqa: S311
        self._task_ids: set[int] = set()
        self._running_ends: list[float] = []
        self._created_per_day: Counter[date] = Counter()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self.app = web.Application()
        self.app.router.add_route("GET", PATH, self._common_access)
        self.app.router.add_route("POST", PATH, self._common_access)
        self.app.router.add_get("/_sim/tasks", self._get_tasks)
        self.app.router.add_get("/_sim/calls", self._get_calls)
        self.app.router.add_get("/_sim/config", self._get_config)
        self.app.router.add_post("/_sim/config", self._post_config)
        self.app.router.add_post("/_sim/faults", self._post_faults)
        self.app.router.add_post("/_sim/reset", self._post_reset)
        self.app.router.add_get("/_sim/healthz", self._healthz)

    # --- control ----------------------------------------------------------------------------------

    def set_config(self, **changes: object) -> None:
        """Change settings at runtime; lists are accepted for the channel sets and latency_ms."""
        self.config = replace(self.config, **rules.coerce_changes(changes))  # type: ignore[arg-type]
        if "seed" in changes:
            self._rng.seed(self.config.seed)

    def inject(self, *faults: str, channel: str | None = None) -> None:
        """Queue one-shot faults for the next calls (of `channel` only, if given) that pass every check."""
        parsed = [rules.parse_fault(fault) for fault in faults]
        self._faults.setdefault(channel, deque()).extend(parsed)

    def reset(self) -> None:
        self.calls.clear()
        self.tasks.clear()
        self._faults.clear()
        self._task_ids.clear()
        self._running_ends.clear()
        self._created_per_day.clear()
        self._rng.seed(self.config.seed)

    def calls_for(self, channel_id: str) -> list[SimCall]:
        return [call for call in self.calls if call.channel_id == channel_id]

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the simulator is not started")
        return self._url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._runner is not None:
            raise RuntimeError("the simulator is already started")
        self._stopping = asyncio.Event()
        # handler_cancellation: a hanging call ends when its client gives up, not at stop().
        runner = web.AppRunner(
            self.app, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        # The bound address, not `host`: "localhost" with port 0 may bind ::1 and 127.0.0.1 on two ports.
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._url = f"http://{shown}:{bound_port}{PATH}"
        return self._url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        # Wakes hanging calls (they drop their connection) and cuts latency short, so cleanup is prompt.
        self._stopping.set()
        await runner.cleanup()
        self._url = None

    async def __aenter__(self) -> LiveSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- the endpoint -----------------------------------------------------------------------------

    async def _common_access(self, request: web.Request) -> web.StreamResponse:
        raw_query = request.rel_url.raw_query_string
        # Like a CGI form parser, a POST body counts only when it is declared a form.
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            body = (await request.read()).decode("utf-8", errors="replace")
            raw_query = "&".join(part for part in (raw_query, body) if part)
        query = _decode_query(raw_query)
        now, monotonic = self._clock(), time.monotonic()
        plan = self._plan(query, now)
        task_id = plan.task.task_id if plan.task is not None else None
        channel_id = query.get(rules.CHANNEL_ID)
        self.calls.append(SimCall(now, monotonic, query, raw_query, channel_id, plan.outcome, task_id, plan.message))
        log.debug("sim.call", channel_id=channel_id, outcome=plan.outcome, task_id=task_id, message=plan.message)
        if plan.ending == "hang":
            # Never answers: ends when the client goes away (handler cancellation) or the simulator stops.
            await self._stopping.wait()
            return _drop_connection(request)
        await self._pause(self._latency_s() + plan.extra_delay_s)
        if plan.ending == "reset":
            return _drop_connection(request)
        # The real endpoint labels its JSON text/html; clients must not rely on the Content-Type.
        return web.Response(status=plan.status, body=plan.body, content_type="text/html", charset="utf-8")

    def _plan(self, query: dict[str, str], now: float) -> _Plan:
        verdict = rules.check_call(query, self.config, now)
        if isinstance(verdict, rules.Accepted):
            refusal = rules.check_quota(self._running(now), self._created_per_day[rules.cst_day(now)], self.config)
            if refusal is None:
                return self._fault_plan(self._next_fault(verdict.channel_id), verdict, query, now)
            verdict = refusal
        return _Plan(verdict.outcome, verdict.body(), message=verdict.message)

    def _fault_plan(
        self, fault: rules.Fault | None, accepted: rules.Accepted, query: dict[str, str], now: float
    ) -> _Plan:
        match fault:
            case None | rules.Fault(kind="ok" | "delay"):
                task = self._create_task(accepted, query, now)
                delay = fault.delay_s if fault is not None else 0.0
                return _Plan("started", rules.success_body(task.task_id), extra_delay_s=delay, task=task)
            # The backend created the recording; only its answer is lost, so the client cannot know.
            case rules.Fault(kind="hang"):
                return _Plan("hang", ending="hang", task=self._create_task(accepted, query, now))
            case rules.Fault(kind="reset"):
                return _Plan("reset", ending="reset", task=self._create_task(accepted, query, now))
            case rules.Fault(kind="ret"):
                message = rules.ret_message(fault.code)
                return _Plan(f"ret:{fault.code}", rules.reply_body(fault.code, message), message=message)
            case rules.Fault(kind="http"):
                return _Plan(f"http:{fault.code}", rules.http_error_body(fault.code), status=fault.code)
            case rules.Fault(kind="auth"):
                body = rules.reply_body(rules.RET_ACCESS, fault.message)
                return _Plan(fault.message, body, message=fault.message)
            case _:
                return _Plan("garbage", rules.GARBAGE_BODY)

    def _next_fault(self, channel_id: str) -> rules.Fault | None:
        for key in (channel_id, None):
            queue = self._faults.get(key)
            if queue:
                return queue.popleft()
        config = self.config
        if config.error_rate or config.http_error_rate or config.hang_rate:
            return rules.random_fault(config, self._rng.random())
        return None

    def _create_task(self, accepted: rules.Accepted, query: dict[str, str], now: float) -> SimTask:
        # Always above 2**62, so mostly above 2**53: a client that parses through a float loses digits.
        task_id = self._rng.getrandbits(64) | (1 << 62)
        while task_id in self._task_ids:
            task_id = self._rng.getrandbits(64) | (1 << 62)
        self._task_ids.add(task_id)
        task = SimTask(
            task_id,
            accepted.channel_id,
            accepted.start_time,
            accepted.end_time,
            accepted.effective_end,
            now,
            dict(query),
        )
        self.tasks.append(task)
        heapq.heappush(self._running_ends, task.effective_end)
        self._created_per_day[rules.cst_day(now)] += 1
        return task

    def _running(self, now: float) -> int:
        ends = self._running_ends
        while ends and ends[0] <= now:
            heapq.heappop(ends)
        return len(ends)

    def _latency_s(self) -> float:
        low, high = self.config.latency_ms
        return self._rng.uniform(low, high) / 1000 if high > 0 else 0.0

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    # --- control routes ---------------------------------------------------------------------------

    async def _get_tasks(self, request: web.Request) -> web.Response:
        return _json([{**asdict(task), "task_id": str(task.task_id)} for task in self.tasks])

    async def _get_calls(self, request: web.Request) -> web.Response:
        return _json([_call_json(call) for call in self.calls])

    async def _get_config(self, request: web.Request) -> web.Response:
        return _json(rules.config_json(self.config))

    async def _post_config(self, request: web.Request) -> web.Response:
        changes = await _json_object(request)
        try:
            self.set_config(**changes)
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, status=400)
        return _json(rules.config_json(self.config))

    async def _post_faults(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        faults, channel = body.get("faults"), body.get("channel")
        if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
            return _json({"error": "faults must be a list of strings"}, status=400)
        if channel is not None and not isinstance(channel, str):
            return _json({"error": "channel must be a string"}, status=400)
        try:
            self.inject(*faults, channel=channel)
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        return _json({"queued": len(faults), "channel": channel})

    async def _post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json({"reset": True})

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json("ok")


def _decode_query(raw: str) -> dict[str, str]:
    # Form decoding, as the documents' examples encode: `+` is a space, %xx are UTF-8 bytes. First value wins.
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True, errors="replace"):
        query.setdefault(name, value)
    return query


def _drop_connection(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # Never sent: aiohttp sees the closed transport and treats it as a client disconnection.
    return web.Response()


def _call_json(call: SimCall) -> dict[str, object]:
    return {**asdict(call), "task_id": None if call.task_id is None else str(call.task_id)}


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


async def _json_object(request: web.Request) -> dict[str, object]:
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            body=orjson.dumps({"error": "expected a JSON object"}), content_type="application/json"
        )
    return data


# --- standalone ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: %(default)s)")
    parser.add_argument("--appid", default="1234", help="the appid calls must carry (default: %(default)s)")
    parser.add_argument("--key", default="sim-secret-key", help="the key signatures use (default: %(default)s)")
    parser.add_argument(
        "--latency-ms",
        default="0",
        metavar="MS|MIN-MAX",
        help="delay before each answer, e.g. 200 or 100-300",
    )
    channel_sets = (
        ("--offline", "a channel that is not pushing: ret 1301 (repeatable)"),
        ("--live", "a pushing channel; if given, every other channel is offline (repeatable)"),
        ("--missing", "a channel that does not exist: ret 20601 (repeatable)"),
    )
    for flag, help_text in channel_sets:
        parser.add_argument(flag, action="append", metavar="CHANNEL", help=help_text)
    rates = (
        ("--error-rate", "fraction of calls answered ret 1201 internal error"),
        ("--http-error-rate", "fraction of calls answered HTTP 503"),
        ("--hang-rate", "fraction of calls that start a recording and never answer"),
    )
    for flag, help_text in rates:
        parser.add_argument(flag, type=float, default=0.0, metavar="0..1", help=help_text)
    parser.add_argument("--max-running", type=int, default=400, help="running tasks at once (default: %(default)s)")
    parser.add_argument("--daily-quota", type=int, default=4000, help="tasks per CST day (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible random faults and task ids")


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Raises ValueError naming the bad setting."""
    try:
        latency = rules.parse_latency(args.latency_ms)
    except ValueError as exc:
        raise ValueError(f"--latency-ms: {exc}") from None
    return SimulatorConfig(
        appid=args.appid,
        key=args.key,
        latency_ms=latency,
        offline_channels=frozenset(args.offline or ()),
        live_channels=None if args.live is None else frozenset(args.live),
        missing_channels=frozenset(args.missing or ()),
        error_rate=args.error_rate,
        http_error_rate=args.http_error_rate,
        hang_rate=args.hang_rate,
        max_running=args.max_running,
        daily_quota=args.daily_quota,
        seed=args.seed,
    )


async def serve(config: SimulatorConfig, host: str, port: int, *, ready: Callable[[str], None] | None = None) -> None:
    """Serve until cancelled."""
    simulator = LiveSimulator(config)
    url = await simulator.start(host, port)
    try:
        log.info("sim.listening", url=url, appid=config.appid, control=url.removesuffix(PATH) + "/_sim/")
        if ready is not None:
            ready(url)
        await asyncio.Event().wait()
    finally:
        await simulator.stop()
        log.info("sim.stopped", calls=len(simulator.calls), tasks=len(simulator.tasks))

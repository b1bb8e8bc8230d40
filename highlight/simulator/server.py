"""The simulator's server: a faithful stand-in for Tencent Cloud Live's recording APIs, with faults on demand.

One server answers the three APIs highlight can call: the legacy `Live_Tape_Start` (`/common_access`), v2
`CreateRecord` (`GET /v2/index.php`) and Cloud API 3.0 `CreateLiveRecord` (`POST /`). The real endpoints cannot
be reached from tests or a developer's machine, so this serves their contracts over real HTTP (or HTTPS; the
checks are in `highlight.simulator.rules`, `.v2` and `.cloud`), records every call, and can
be told to fail in each way a client must survive: refusals, 5xx, silence, resets, unreadable bodies,
slowness. Channel rules, quotas and faults are shared: each API answers them in its own protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import re
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal

import structlog
from aiohttp import web

from highlight.simulator import cloud, http, readonly, rules, v2
from highlight.simulator.config import SimulatorConfig, coerce_changes
from highlight.simulator.control import add_control_routes
from highlight.simulator.journal import SimCall, SimRead, SimTask
from highlight.simulator.notifier import Notifier, SimNotification
from highlight.simulator.rules import Accepted, Answer

log = structlog.get_logger()

PATH = "/common_access"
APIS = {"live_tape_start": PATH, v2.API: v2.PATH, cloud.API: cloud.PATH}
DEFAULT_CONFIG = SimulatorConfig()
# Long enough for an answer already on its way, short enough that a test or Ctrl-C never waits on latency.
SHUTDOWN_TIMEOUT_S = 1.0


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
        self.reads: list[SimRead] = []
        self._faults: dict[str | None, deque[rules.Fault]] = {}
        # Not security: seeded so a run of random faults and task ids can be replayed.
        self._rng = random.Random(config.seed)  # noqa: S311
        self._task_ids: set[int] = set()
        self._running_ends: list[float] = []
        self._created_per_day: Counter[date] = Counter()
        # v2 Nonces seen lately, and the order to forget them in.
        self._nonces: dict[str, float] = {}
        self._nonce_order: deque[tuple[float, str]] = deque()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._base: str | None = None
        # Announces each recording's files to the callback URL when it ends (SimulatorConfig.callback_*).
        self._notifier = Notifier(clock)
        self.app = web.Application()
        self.app.router.add_route("GET", PATH, self._live_tape_start)
        self.app.router.add_route("POST", PATH, self._live_tape_start)
        self.app.router.add_get(v2.PATH, self._create_record)
        self.app.router.add_post(cloud.PATH, self._create_live_record)
        add_control_routes(self.app, self)

    # --- control ----------------------------------------------------------------------------------

    def set_config(self, **changes: object) -> None:
        """Change settings at runtime; lists are accepted for the channel sets and latency_ms."""
        self.config = replace(self.config, **coerce_changes(changes))  # type: ignore[arg-type]
        if "seed" in changes:
            self._rng.seed(self.config.seed)

    def inject(self, *faults: str, channel: str | None = None) -> None:
        """Queue one-shot faults for the next calls (of `channel` only, if given) that pass every check."""
        parsed = [rules.parse_fault(fault) for fault in faults]
        self._faults.setdefault(channel, deque()).extend(parsed)

    @property
    def notifications(self) -> list[SimNotification]:
        """Every recording-file notification announced, with the HTTP status of each delivery."""
        return self._notifier.sent

    def reset(self) -> None:
        self._notifier.reset()
        self.calls.clear()
        self.tasks.clear()
        self.reads.clear()
        self._faults.clear()
        self._task_ids.clear()
        self._running_ends.clear()
        self._created_per_day.clear()
        self._nonces.clear()
        self._nonce_order.clear()
        self._rng.seed(self.config.seed)

    def calls_for(self, channel_id: str) -> list[SimCall]:
        return [call for call in self.calls if call.channel_id == channel_id]

    @property
    def url(self) -> str:
        """The legacy Live_Tape_Start URL."""
        return self.url_for("live_tape_start")

    def url_for(self, api: str) -> str:
        """The URL of one API: `live_tape_start`, `create_record` or `create_live_record`."""
        if api not in APIS:
            raise ValueError(f"unknown api {api!r}; known: {', '.join(APIS)}")
        if self._base is None:
            raise RuntimeError("the simulator is not started")
        return self._base + APIS[api]

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None) -> str:
        """Serve (over HTTPS when `ssl_context` is given); returns the legacy URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already started")
        self._stopping = asyncio.Event()
        # handler_cancellation: a hanging call ends when its client gives up, not at stop().
        runner = web.AppRunner(
            self.app, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        except BaseException:
            await runner.cleanup()
            raise
        await self._notifier.start()
        self._runner = runner
        # The bound address, not `host`: "localhost" with port 0 may bind ::1 and 127.0.0.1 on two ports.
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        scheme = "http" if ssl_context is None else "https"
        self._base = f"{scheme}://{shown}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        # Wakes hanging calls (they drop their connection) and cuts latency short, so cleanup is prompt.
        self._stopping.set()
        await self._notifier.stop()
        await runner.cleanup()
        self._base = None

    async def __aenter__(self) -> LiveSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- the endpoints ----------------------------------------------------------------------------

    # The monotonic stamp is taken first thing: retry-spacing tests measure arrivals, not our checks.

    async def _live_tape_start(self, request: web.Request) -> web.StreamResponse:
        monotonic = time.monotonic()
        if (await http.read_form(request))[1].get("interface") == readonly.LEGACY_INTERFACE:
            return self._read(await http.read_legacy_list(request, self.config, self._clock))
        incoming = await http.read_live_tape_start(request, self.config, self._clock)
        return await self._serve(request, incoming, monotonic)

    async def _create_record(self, request: web.Request) -> web.StreamResponse:
        monotonic = time.monotonic()
        if request.query.get("Action") == readonly.V2_ACTION:
            return self._read(http.read_v2_list(request, self.config, self._clock, self._fresh_nonce))
        incoming = http.read_create_record(request, self.config, self._clock, self._fresh_nonce)
        return await self._serve(request, incoming, monotonic)

    async def _create_live_record(self, request: web.Request) -> web.StreamResponse:
        monotonic = time.monotonic()
        if request.headers.get("X-TC-Action") == readonly.CLOUD_ACTION:
            return self._read(await http.read_cloud_list(request, self.config, self._clock))
        incoming = await http.read_create_live_record(request, self.config, self._clock)
        return await self._serve(request, incoming, monotonic)

    def _read(self, call: http.ReadOnly) -> web.Response:
        """A read-only call: recorded apart from the recording calls, answered at once (no fault, no latency)."""
        answer, api = call.answer, call.dialect.api
        self.reads.append(SimRead(call.received_at, api, call.action, answer.outcome, answer.message))
        log.debug("sim.read", api=api, action=call.action, outcome=answer.outcome)
        return web.Response(
            status=answer.status, body=answer.body, content_type=call.dialect.content_type, charset="utf-8"
        )

    async def _serve(self, request: web.Request, incoming: http.Incoming, monotonic: float) -> web.StreamResponse:
        dialect, now = incoming.dialect, incoming.received_at
        plan = self._plan(incoming)
        task_id = plan.task.task_id if plan.task is not None else None
        call = SimCall(
            now,
            monotonic,
            incoming.query,
            incoming.raw_query,
            incoming.channel_id,
            plan.outcome,
            task_id,
            plan.message,
            api=dialect.api,
            start_time=incoming.start_time,
            end_time=incoming.end_time,
            request_id=incoming.request_id,
            signature=_signature_of(request, incoming.query),
        )
        self.calls.append(call)
        log.debug(
            "sim.call",
            api=dialect.api,
            channel_id=call.channel_id,
            outcome=plan.outcome,
            task_id=task_id,
            message=plan.message,
        )
        if plan.ending == "hang":
            # Never answers: ends when the client goes away (handler cancellation) or the simulator stops.
            await self._stopping.wait()
            return _drop_connection(request)
        await self._pause(self._latency_s() + plan.extra_delay_s)
        if plan.ending == "reset":
            return _drop_connection(request)
        return web.Response(status=plan.status, body=plan.body, content_type=dialect.content_type, charset="utf-8")

    def _plan(self, incoming: http.Incoming) -> _Plan:
        dialect, verdict, now = incoming.dialect, incoming.verdict, incoming.received_at
        if isinstance(verdict, Answer):
            return _answered(verdict)
        config = self.config
        denial = rules.channel_denial(verdict.channel_id, config) or rules.quota_denial(
            self._running(now), self._created_per_day[rules.cst_day(now)], config
        )
        if denial is not None:
            return _answered(dialect.deny(denial))
        fault = self._next_fault(verdict.channel_id)
        match fault:
            case None | rules.Fault(kind="ok" | "delay"):
                task = self._create_task(verdict, incoming)
                delay = fault.delay_s if fault is not None else 0.0
                return _Plan("started", dialect.started(task.task_id), extra_delay_s=delay, task=task)
            # The backend created the recording; only its answer is lost, so the client cannot know.
            case rules.Fault(kind="hang"):
                return _Plan("hang", ending="hang", task=self._create_task(verdict, incoming))
            case rules.Fault(kind="reset"):
                return _Plan("reset", ending="reset", task=self._create_task(verdict, incoming))
            case rules.Fault(kind="http"):
                return _Plan(f"http:{fault.code}", rules.http_error_body(fault.code), status=fault.code)
            case rules.Fault(kind="garbage"):
                return _Plan("garbage", rules.GARBAGE_BODY)
            case _:
                return _answered(dialect.fail(fault))

    def _next_fault(self, channel_id: str) -> rules.Fault | None:
        for key in (channel_id, None):
            queue = self._faults.get(key)
            if queue:
                return queue.popleft()
        config = self.config
        if config.error_rate or config.http_error_rate or config.hang_rate:
            return rules.random_fault(config, self._rng.random())
        return None

    def _fresh_nonce(self, nonce: str, now: float) -> bool:
        """Whether a v2 Nonce is unseen within the replay window; a fresh one is remembered from now on."""
        order = self._nonce_order
        while order and order[0][0] <= now - v2.NONCE_MEMORY_S:
            seen_at, old = order.popleft()
            if self._nonces.get(old) == seen_at:
                del self._nonces[old]
        if nonce in self._nonces:
            return False
        self._nonces[nonce] = now
        order.append((now, nonce))
        return True

    def _create_task(self, accepted: Accepted, incoming: http.Incoming) -> SimTask:
        now = incoming.received_at
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
            dict(incoming.query),
            incoming.dialect.api,
        )
        self.tasks.append(task)
        heapq.heappush(self._running_ends, task.effective_end)
        self._created_per_day[rules.cst_day(now)] += 1
        # A real-time recording starts at the call; a scheduled one at its start time.
        start = max(now, rules.cst_seconds(accepted.start_time) or now)
        self._notifier.schedule(
            task.channel_id, task_id, int(start), int(task.effective_end), now, task.params,
            config=self.config, appid=self.config.appid,
        )  # fmt: skip
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


def _signature_of(request: web.Request, query: dict[str, str]) -> str | None:
    found = re.search(r"Signature=([0-9A-Fa-f]+)", request.headers.get("Authorization", ""))
    return found[1] if found else query.get("sign") or query.get("Signature")


def _answered(answer: Answer) -> _Plan:
    return _Plan(answer.outcome, answer.body, status=answer.status, message=answer.message)


def _drop_connection(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # Never sent: aiohttp sees the closed transport and treats it as a client disconnection.
    return web.Response()


# --- standalone ---------------------------------------------------------------------------------------


async def serve(
    config: SimulatorConfig,
    host: str,
    port: int,
    *,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled. `ready` receives the legacy URL; the others share its origin (see `APIS`)."""
    simulator = LiveSimulator(config)
    url = await simulator.start(host, port)
    try:
        log.info(
            "sim.listening",
            live_tape_start=url,
            create_record=simulator.url_for(v2.API),
            create_live_record=simulator.url_for(cloud.API),
            appid=config.appid,
            secret_id=config.secret_id,
            control=url.removesuffix(PATH) + "/_sim/",
        )
        if ready is not None:
            ready(url)
        await asyncio.Event().wait()
    finally:
        await simulator.stop()
        log.info("sim.stopped", calls=len(simulator.calls), tasks=len(simulator.tasks))

"""The operations endpoint: /metrics for Prometheus, /healthz for liveness, /readyz for readiness."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from highlight.metrics import Metrics, ReceiverMetrics

# The consumer loop polls at least every second; silence this long means it is stuck.
STALL_SECONDS = 30.0


class OpsServer:
    def __init__(
        self,
        metrics: Metrics | ReceiverMetrics,
        port: int,
        *,
        host: str = "0.0.0.0",  # noqa: S104 -- probes and scrapers come from outside the container
        ready: Callable[[], tuple[bool, str]],
        last_poll: Callable[[], float],
    ) -> None:
        self._metrics = metrics
        self._port = port
        self._host = host
        self._ready = ready
        self._last_poll = last_poll
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def __aenter__(self) -> OpsServer:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        silent = time.monotonic() - self._last_poll()
        if silent > STALL_SECONDS:
            return web.Response(status=503, text=f"consumer loop silent for {silent:.0f} s\n")
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, reason = self._ready()
        if ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

"""The simulator's `/_sim/` control routes: what it recorded and announced, its settings, its faults, a reset, a
health check.

Tests in another process (and the bench) drive the simulator through these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Protocol

import orjson
from aiohttp import web

from highlight.simulator.config import SimulatorConfig, config_json
from highlight.simulator.notifier import describe


class Controlled(Protocol):
    """What the routes reach of the simulator that serves them (the server adds them to its own application)."""

    config: SimulatorConfig

    @property
    def tasks(self) -> Sequence[Any]: ...

    @property
    def calls(self) -> Sequence[Any]: ...

    @property
    def notifications(self) -> Sequence[Any]: ...

    def set_config(self, **changes: object) -> None: ...

    def inject(self, *faults: str, channel: str | None = None) -> None: ...

    def reset(self) -> None: ...


def add_control_routes(app: web.Application, sim: Controlled) -> None:
    async def get_tasks(request: web.Request) -> web.Response:
        return _json([{**asdict(task), "task_id": str(task.task_id)} for task in sim.tasks])

    async def get_calls(request: web.Request) -> web.Response:
        calls = [{**asdict(call), "task_id": None if call.task_id is None else str(call.task_id)} for call in sim.calls]
        return _json(calls)

    async def get_notifications(request: web.Request) -> web.Response:
        return _json([describe(note) for note in sim.notifications])

    async def get_config(request: web.Request) -> web.Response:
        return _json(config_json(sim.config))

    async def post_config(request: web.Request) -> web.Response:
        changes = await _json_object(request)
        try:
            sim.set_config(**changes)
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, status=400)
        return _json(config_json(sim.config))

    async def post_faults(request: web.Request) -> web.Response:
        body = await _json_object(request)
        faults, channel = body.get("faults"), body.get("channel")
        if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
            return _json({"error": "faults must be a list of strings"}, status=400)
        if channel is not None and not isinstance(channel, str):
            return _json({"error": "channel must be a string"}, status=400)
        try:
            sim.inject(*faults, channel=channel)
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        return _json({"queued": len(faults), "channel": channel})

    async def post_reset(request: web.Request) -> web.Response:
        sim.reset()
        return _json({"reset": True})

    async def healthz(request: web.Request) -> web.Response:
        return _json("ok")

    app.router.add_get("/_sim/tasks", get_tasks)
    app.router.add_get("/_sim/calls", get_calls)
    app.router.add_get("/_sim/notifications", get_notifications)
    app.router.add_get("/_sim/config", get_config)
    app.router.add_post("/_sim/config", post_config)
    app.router.add_post("/_sim/faults", post_faults)
    app.router.add_post("/_sim/reset", post_reset)
    app.router.add_get("/_sim/healthz", healthz)


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

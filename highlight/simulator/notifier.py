"""The simulator's callback sender: when a simulated recording ends, its files are announced as Live does.

Each announcement is a task owned here: it sleeps until the recording ends (sooner by the time scale), then
POSTs each file's notification to the callback URL, again every interval until it gets HTTP 200 within the
timeout, up to the retry budget. `stop()` cancels and awaits every one of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import structlog

from highlight.simulator.config import SimulatorConfig
from highlight.simulator.notifications import RecordedFile, files_of, notification

log = structlog.get_logger()

NO_ANSWER = 0  # a delivery that got no HTTP answer (refused, reset, too slow)


@dataclass
class SimNotification:
    """One file's notification and what became of each delivery."""

    url: str
    stream_id: str
    file_id: str
    task_id: int | None  # the simulated task's; None for a file of an unrelated stream
    body: dict[str, Any]
    deliveries: list[int] = field(default_factory=list)  # HTTP status of each, NO_ANSWER for none

    @property
    def acknowledged(self) -> bool:
        return 200 in self.deliveries


class Notifier:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.sent: list[SimNotification] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # A fresh connection per delivery, as a separate Live sender would make: a receiver restarted between
        # deliveries must not see a stale keep-alive connection.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))

    async def stop(self) -> None:
        """Idempotent: cancel every announcement still waiting or delivering, then close the session."""
        self.cancel_all()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def reset(self) -> None:
        self.cancel_all()
        self.sent.clear()

    def schedule(
        self,
        stream_id: str,
        task_id: int,
        start: int,
        end: int,
        created_at: float,
        params: dict[str, str],
        *,
        config: SimulatorConfig,
        appid: str,
    ) -> None:
        """Announce the recording's files when it ends, with the settings of the moment it was created."""
        if config.callback_url is None or self._session is None:
            return
        file_format = params.get("Param.s.file_format") or params.get("FileFormat") or "flv"
        domain = params.get("Param.s.domain") or params.get("DomainName") or ""
        files = files_of(stream_id, task_id, start, end, file_format, config, domain=domain)
        due = created_at + (end - created_at + config.callback_delay_s) / config.time_scale
        task = asyncio.create_task(self._announce(files, due, config, appid), name=f"sim-callback:{stream_id[:40]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce(self, files: list[RecordedFile], due: float, config: SimulatorConfig, appid: str) -> None:
        await asyncio.sleep(max(0.0, due - self._clock()))
        assert config.callback_url is not None  # noqa: S101 -- checked by schedule()
        notes = [
            SimNotification(
                config.callback_url,
                file.stream_id,
                file.file_id,
                file.task_id,
                notification(file, config, appid=appid, now=self._clock()),
            )
            for file in files
        ]
        self.sent.extend(notes)
        await asyncio.gather(*(self._deliver(note, config) for note in notes))

    async def _deliver(self, note: SimNotification, config: SimulatorConfig) -> None:
        body = orjson.dumps(note.body)
        for attempt in range(1 + config.callback_retries):
            if attempt:
                await asyncio.sleep(config.callback_interval_s)
            note.deliveries.append(await self._post(note.url, body, config.callback_timeout_s))
            if note.acknowledged:
                break
        else:
            log.warning("sim.callback_abandoned", stream_id=note.stream_id, file_id=note.file_id)
            return
        for _ in range(config.callback_duplicates):
            note.deliveries.append(await self._post(note.url, body, config.callback_timeout_s))

    async def _post(self, url: str, body: bytes, timeout_s: float) -> int:
        session = self._session
        if session is None:
            return NO_ANSWER
        try:
            async with (
                asyncio.timeout(timeout_s),
                session.post(url, data=body, headers={"Content-Type": "application/json"}) as response,
            ):
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("sim.callback_failed", url=url, error=f"{type(exc).__name__}: {exc}")
            return NO_ANSWER
        log.debug("sim.callback_delivered", url=url, status=status)
        return status


def describe(note: SimNotification) -> dict[str, Any]:
    """A notification as the control route shows it."""
    return {
        "url": note.url,
        "stream_id": note.stream_id,
        "file_id": note.file_id,
        "task_id": None if note.task_id is None else str(note.task_id),
        "body": note.body,
        "deliveries": note.deliveries,
        "acknowledged": note.acknowledged,
    }

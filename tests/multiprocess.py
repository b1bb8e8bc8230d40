"""Tests that run several `highlight run` processes: the owner of those processes, and the accounting that
proves every moment was answered and no key was sent to the API twice."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from highlight.simulator import LiveSimulator
from tests.harness import Names, by_event, results, spawn

_NOT_IN_STORY = frozenset({"timestamp", "event", "level", "logger", "processed_at", "latency_ms"})


class Processes:
    """The `highlight run` processes of one test, each logging to `<directory>/<name>.log`.

    Waiting happens off the event loop: the simulator serving their calls runs on it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._started: list[subprocess.Popen[bytes]] = []

    def spawn(self, env: Mapping[str, str], name: str, *args: str) -> subprocess.Popen[bytes]:
        process = spawn(env, self.log_path(name), *args)
        self._started.append(process)
        return process

    def log_path(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def lines(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines of an instance (HIGHLIGHT_LOG_FORMAT=json)."""
        found = []
        for raw in self.log(name).splitlines():
            if raw.startswith("{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    found.append(orjson.loads(raw))
        return found

    def story(self, names: Iterable[str]) -> str:
        """Every instance's log lines merged in time order, one short line each, for a failure report: CI keeps
        no files, so what a rare failure leaves behind is what the report prints. Duplicates are left out."""
        merged = []
        for name in names:
            for line in self.lines(name):
                if line.get("status") == "duplicate":
                    continue
                stamp = str(line.get("timestamp", ""))[11:23]
                rest = " ".join(f"{k}={v}" for k, v in line.items() if k not in _NOT_IN_STORY)
                merged.append((stamp, f"{stamp} {name} {line.get('event')} {rest}"))
        return "\n".join(text for _, text in sorted(merged))

    async def kill(self, process: subprocess.Popen[bytes]) -> int:
        process.send_signal(signal.SIGKILL)
        return await asyncio.to_thread(process.wait)

    async def terminate(self, process: subprocess.Popen[bytes], timeout: float = 30) -> int:
        """SIGTERM, and its exit code; killed if it has not exited within `timeout`."""
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(process.wait, timeout)
        except subprocess.TimeoutExpired:
            await self.kill(process)
            raise AssertionError(f"pid {process.pid} ignored SIGTERM for {timeout} s") from None

    async def close(self, grace: float = 30) -> None:
        """Every process still running: resumed if stopped, SIGTERM, SIGKILL after `grace` s, and waited for."""
        running = [p for p in self._started if p.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                await asyncio.to_thread(process.wait, grace)
            except subprocess.TimeoutExpired:
                await self.kill(process)
        for process in self._started:
            await asyncio.to_thread(process.wait)


@contextlib.asynccontextmanager
async def processes(directory: Path) -> AsyncIterator[Processes]:
    """Own the processes a test starts: none outlives it, and none is dropped unwaited (ResourceWarning)."""
    owner = Processes(directory)
    try:
        yield owner
    finally:
        await owner.close()


async def all_answered(bootstrap: str, names: Names, expected: set[str], *, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        # Redelivery after a kill may answer a moment twice: wait for every event, not for a count.
        got = by_event(await results(bootstrap, names.results, len(expected), timeout=5))
        missing = expected - got.keys()
        if not missing or loop.time() > deadline:
            break
    assert not missing, f"{len(missing)} moments without a result, e.g. {sorted(missing)[:5]}"
    return got


def assert_no_key_called_twice(
    documents: Iterable[dict[str, Any]], simulator: LiveSimulator
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """At most one API call per (channel, bucket), every answer of a key consistent with it; the answers by key.

    A call is accounted for by the answers that carry its task id, or else, if its outcome never came back, as
    the one call of a key answered in_doubt with the window that call sent.
    """
    keyed: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for document in documents:
        keyed[(document["channel_id"], document["bucket"])].append(document)
    key_of_task: dict[str, tuple[str, int]] = {}
    cut_off: Counter[tuple[str, str]] = Counter()
    for key, answers in keyed.items():
        statuses = [d["status"] for d in answers]
        assert set(statuses) <= {"started", "duplicate", "in_doubt"}, (key, statuses)
        assert statuses.count("started") <= 1, (key, statuses)
        if "in_doubt" in statuses:
            # Cut off, before or after the request left: never called again. A member that stalled with the
            # outcome on its way may have it land later; the key's later answers then carry that one call.
            assert "started" not in statuses, (key, statuses)
        else:
            assert statuses.count("started") == 1, f"{key}: the moment that made the call answers `started`"
        recorded = {d["task_id"] for d in answers if d["status"] in ("started", "duplicate")}
        assert len(recorded) <= 1, f"{key} answered with two recordings: {recorded}"
        for task in recorded:
            assert task not in key_of_task, f"one recording answers two keys: {task}"
            key_of_task[task] = key
        if not recorded:
            windows = {d["start_time"] for d in answers}
            assert len(windows) == 1, (key, windows)
            cut_off[(key[0], windows.pop())] += 1
    for call in simulator.calls:
        if str(call.task_id) in key_of_task:
            assert key_of_task[str(call.task_id)][0] == call.channel_id
            continue
        window = (call.channel_id, call.start_time)
        assert cut_off[window] > 0, (
            f"a call no key accounts for (a second call of a key?): {window}, task {call.task_id}; the channel's "
            f"keys: {_answers_of(keyed, call.channel_id)}"
        )
        cut_off[window] -= 1
    calls = Counter(str(call.task_id) for call in simulator.calls)
    assert all(calls[task] == 1 for task in key_of_task), "each recording was made by exactly one call"
    return keyed


def _answers_of(keyed: Mapping[tuple[str, int], list[dict[str, Any]]], channel_id: str) -> dict[int, set[str]]:
    """Per bucket of a channel, its distinct answers as `status task_id start_time`."""
    return {
        key[1]: {f"{d['status']} {d.get('task_id')} {d['start_time']}" for d in answers}
        for key, answers in sorted(keyed.items())
        if key[0] == channel_id
    }

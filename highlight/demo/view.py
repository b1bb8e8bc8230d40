"""How `highlight demo` shows answers: a live per-channel table on a terminal, one plain line each otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from highlight.demo.moments import Burst, ChannelRow, Tally, clip_line, dead_letter_line, header_line, result_line

if TYPE_CHECKING:
    from rich.table import Table

REFRESH_SECONDS = 0.1
STYLES = {"started": "green", "failed": "red", "in_doubt": "yellow", "skipped": "magenta", "expired": "dim", "": "dim"}


class View:
    def phase(self, text: str) -> None:
        """What the demo is doing now, for views that show it."""

    def note(self, text: str) -> None:
        raise NotImplementedError

    def result(self, document: dict[str, Any]) -> None:
        raise NotImplementedError

    def dead_letter(self, key: bytes | None, reason: str, message: str) -> None:
        raise NotImplementedError

    def clip(self, document: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Idempotent."""


class PlainView(View):
    """One line per answer: for pipes, logs and tests."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._headed = False

    def note(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def result(self, document: dict[str, Any]) -> None:
        self._line(result_line(document))

    def dead_letter(self, key: bytes | None, reason: str, message: str) -> None:
        self._line(dead_letter_line(key, reason, message))

    def clip(self, document: dict[str, Any]) -> None:
        self._line(clip_line(document))

    def _line(self, line: str) -> None:
        if not self._headed:
            self._headed = True
            self.note(header_line())
        self.note(line)


class LiveTable(View):
    """A row per channel, redrawn in place; rich is imported here only, so it stays an optional extra."""

    def __init__(self, stream: TextIO, tally: Tally, burst: Burst, started: float) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=stream)
        self._tally = tally
        self._burst = burst
        self._started = started
        self._phase = "starting"
        self.active = self._console.is_terminal
        self._ticker: asyncio.Task[None] | None = None
        # Refreshed from the event loop, not rich's thread: the tally changes in the loop, unlocked.
        self._live = Live(console=self._console, auto_refresh=False, get_renderable=self._render)
        if self.active:
            self._live.start(refresh=True)
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="demo-table")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            self._live.refresh()

    def phase(self, text: str) -> None:
        self._phase = text

    def note(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False)

    def result(self, document: dict[str, Any]) -> None:
        pass  # the next tick draws it

    def dead_letter(self, key: bytes | None, reason: str, message: str) -> None:
        pass

    def clip(self, document: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is None:
            return
        ticker.cancel()
        with contextlib.suppress(Exception):
            self._live.refresh()
        self._live.stop()

    def _render(self) -> Table:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        tally = self._tally
        elapsed = time.monotonic() - self._started
        # No cell padding: the box's column gap is enough, and the whole row then fits 80 columns.
        table = Table(
            box=box.SIMPLE_HEAD,
            padding=0,
            show_edge=False,
            caption=f"{self._phase} · {tally.answered}/{len(self._burst.records)} answered · "
            f"{len(tally.clips)}/{tally.expected.clips} clips · {elapsed:.1f} s",
            caption_justify="left",
        )
        for name, justify in (
            ("channel", "left"),
            ("status", "left"),
            ("task_id", "left"),
            ("window (CST)", "left"),
            ("all", "right"),
            ("dup", "right"),
            ("fail", "right"),
            ("exp", "right"),
        ):
            table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        # The video URL folds onto more lines rather than squeeze the columns before it.
        table.add_column("clip (video URL)", overflow="fold")
        rows = {name: ChannelRow(name) for name in self._burst.channels} | tally.rows
        for row in sorted(rows.values(), key=lambda r: r.channel_id):
            counts = row.counts
            table.add_row(
                row.channel_id,
                Text(row.status or "waiting", style=STYLES.get(row.status, "")),
                row.task_id or row.error or "-",
                row.window.removesuffix(" CST"),
                str(sum(counts.values())),
                str(counts["duplicate"] or ""),
                str(counts["failed"] or ""),
                str(counts["expired"] or ""),
                row.video_url or "-",
            )
        if tally.dead_letter_reasons:
            reasons = ", ".join(sorted(tally.dead_letter_reasons))
            total = str(sum(tally.dead_letter_reasons.values()))
            table.add_row("(malformed)", Text("dead letter", style="magenta"), reasons, "-", total, "", "", "", "")
        return table


def make_view(stream: TextIO, tally: Tally, burst: Burst, started: float) -> View:
    """The live table on a terminal (when rich is installed), plain lines otherwise."""
    try:
        table = LiveTable(stream, tally, burst, started)
    except ImportError:
        return PlainView(stream)
    return table if table.active else PlainView(stream)


class CurrentStderr(io.TextIOBase):
    """Logs go to whatever `sys.stderr` is at the time, so the live table's redirection catches them."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return self._tty

"""The demo's pure half: the burst `highlight demo` publishes, what it should get back, what it did get back,
and how one answer reads as a line. No I/O, so the test can recompute every number independently.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from highlight.recording import CST, format_cst

# Far beyond HIGHLIGHT_MAX_EVENT_AGE_SECONDS (120 s by default), and in another dedup bucket than the rest.
STALE_AGE = timedelta(hours=1)
# Marks the burst's records; dead letters keep the original headers, so a user's own junk is told apart.
BURST_HEADER = "highlight.demo.burst"
KINDS = ("goal", "save", "dunk", "ace", "knockout", "comeback")
STATUS_WIDTH = 11
CHANNEL_WIDTH = 10
WHAT_WIDTH = 25
WINDOW_WIDTH = 21


@dataclass(frozen=True, slots=True)
class BurstRecord:
    key: bytes
    value: bytes
    channel_id: str
    # None for the malformed record: its bytes name an event the recorder can never read.
    event_id: str | None
    kind: str  # live | stale | malformed


@dataclass(frozen=True, slots=True)
class Summary:
    moments: int
    started: int
    duplicates: int
    failed: int
    expired: int
    in_doubt: int
    dead_letters: int
    # Clip events: each started recording's file, with its video URL, announced when the recording ends.
    clips: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Burst:
    records: tuple[BurstRecord, ...]
    channels: tuple[str, ...]
    offline_channel: str | None
    occurred_at: datetime

    @property
    def event_ids(self) -> frozenset[str]:
        return frozenset(r.event_id for r in self.records if r.event_id is not None)

    def expected(self) -> Summary:
        """One recording per online channel (every live moment shares one bucket), a failure per moment of the
        offline channel (a failed key does not block the next moment, which calls and fails again), and a clip per
        recording (it arrives as one file)."""
        live = [r for r in self.records if r.kind == "live"]
        failed = sum(1 for r in live if r.channel_id == self.offline_channel)
        started = len({r.channel_id for r in live if r.channel_id != self.offline_channel})
        return Summary(
            moments=len(self.records),
            started=started,
            duplicates=len(live) - failed - started,
            failed=failed,
            expired=sum(1 for r in self.records if r.kind == "stale"),
            in_doubt=0,
            dead_letters=sum(1 for r in self.records if r.kind == "malformed"),
            clips=started,
        )


def check_sizes(moments: int, channels: int) -> None:
    """Raise ValueError unless a burst of this shape can hold every case the demo promises."""
    if moments < 0:
        raise ValueError("--moments must not be negative")
    if moments == 0:
        return
    if channels < 2:
        raise ValueError("--channels must be at least 2: one of them is offline")
    if moments < channels + 2:
        raise ValueError(
            f"--moments must be 0 or at least --channels + 2 = {channels + 2}: "
            "a moment per channel, a stale one and a malformed one"
        )


def make_burst(moments: int, channels: int, now: datetime, seed: int = 7) -> Burst:
    """`moments` records over `channels` channels, shuffled, deterministic for a seed and `now`.

    Every live moment carries the same `occurred_at`, so a bucket boundary cannot fall inside the burst.
    """
    check_sizes(moments, channels)
    if moments == 0:
        return Burst((), (), None, now)
    rng = random.Random(seed)  # noqa: S311 -- a reproducible burst, not a secret
    width = max(2, len(str(channels)))
    names = tuple(f"chan-{i:0{width}d}" for i in range(1, channels + 1))
    offline = rng.choice(names)
    online = [name for name in names if name != offline]
    # Every channel at least once; the rest lean towards the first channels, as real traffic does.
    weights = [1 / (i + 1) for i in range(channels)]
    plan = [(name, "live") for name in names]
    plan += [(name, "live") for name in rng.choices(names, weights=weights, k=moments - 2 - channels)]
    plan += [(rng.choice(online), "stale"), (rng.choice(online), "malformed")]
    rng.shuffle(plan)
    when = now.astimezone(CST)
    records = []
    for index, (channel, kind) in enumerate(plan, 1):
        event_id = f"m-{index:04d}"
        occurred = when - STALE_AGE if kind == "stale" else when
        document = {
            "event_id": event_id,
            "channel_id": channel,
            "occurred_at": occurred.isoformat(timespec="milliseconds"),
            "attributes": {"kind": rng.choice(KINDS)},
        }
        value = orjson.dumps(document)
        if kind == "malformed":
            # Cut mid-document, as a producer that died mid-write leaves it: never valid JSON.
            value = value[: len(value) // 2]
        records.append(BurstRecord(channel.encode(), value, channel, None if kind == "malformed" else event_id, kind))
    return Burst(tuple(records), names, offline, now)


# --- what came back -------------------------------------------------------------------------------

# Which status a channel's row shows when its moments got several: the recording, if there is one.
_RANK = {"started": 4, "in_doubt": 3, "failed": 2, "expired": 1}


@dataclass
class ChannelRow:
    channel_id: str
    status: str = ""
    task_id: str | None = None
    window: str = "-"
    error: str = ""
    counts: Counter[str] = field(default_factory=Counter)
    video_url: str = ""


class Tally:
    """Answers to the burst, one per event id: a redelivered moment is answered again, identically."""

    def __init__(self, burst: Burst) -> None:
        self._burst_ids = burst.event_ids
        self._sent = len(burst.records)
        self.expected = burst.expected()
        self.statuses: dict[str, str] = {}
        self.dead_letters = 0
        self.rows: dict[str, ChannelRow] = {}
        self.dead_letter_reasons: Counter[str] = Counter()
        # Clips by file id: a clip repeated after a crash is the same clip.
        self.clips: dict[str, dict[str, Any]] = {}

    def add_result(self, document: dict[str, Any]) -> bool:
        """Count a result; False if this moment was answered before (the line need not show twice)."""
        event_id, status = str(document.get("event_id")), str(document.get("status"))
        if event_id in self._burst_ids:
            if event_id in self.statuses:
                return False
            self.statuses[event_id] = status
        channel = str(document.get("channel_id"))
        row = self.rows.setdefault(channel, ChannelRow(channel))
        row.counts[status] += 1
        if _RANK.get(status if status != "duplicate" else "started", 0) >= _RANK.get(row.status, 0):
            row.status = "started" if status == "duplicate" else status
            row.task_id = document.get("task_id") or row.task_id
            row.window = window_cst(document.get("start_time"), document.get("end_time"))
            error = document.get("error")
            row.error = error_code(error) if isinstance(error, dict) else ""
        return True

    def add_clip(self, document: dict[str, Any]) -> bool:
        """Count a clip of one of the burst's recordings; False if it is not one, or was seen before."""
        file_id, started_by = str(document.get("file_id")), str(document.get("started_by"))
        if started_by not in self._burst_ids or file_id in self.clips:
            return False
        self.clips[file_id] = document
        channel = str(document.get("channel_id"))
        self.rows.setdefault(channel, ChannelRow(channel)).video_url = str(document.get("video_url", ""))
        return True

    def add_dead_letter(self, reason: str, *, from_burst: bool) -> None:
        self.dead_letter_reasons[reason] += 1
        if from_burst:
            self.dead_letters += 1

    @property
    def answered(self) -> int:
        return len(self.statuses) + self.dead_letters

    @property
    def complete(self) -> bool:
        """Every moment answered, and every recording's clip in."""
        return self.answered >= self._sent and len(self.clips) >= self.expected.clips

    def video_urls(self) -> dict[str, str]:
        return {
            row.channel_id: row.video_url
            for row in sorted(self.rows.values(), key=lambda r: r.channel_id)
            if row.video_url
        }

    @property
    def as_expected(self) -> bool:
        return self.complete and self.observed() == self.expected

    def observed(self) -> Summary:
        counts = Counter(self.statuses.values())
        return Summary(
            moments=self.answered,
            started=counts["started"],
            duplicates=counts["duplicate"],
            failed=counts["failed"],
            expired=counts["expired"],
            in_doubt=counts["in_doubt"],
            dead_letters=self.dead_letters,
            clips=len(self.clips),
        )


# --- the start and the end -----------------------------------------------------------------------


def intro_lines(burst: Burst, latency_ms: tuple[float, float]) -> list[str]:
    low, high = latency_ms
    latency = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    if not burst.records:
        return [f"highlight demo: no burst, Live latency {latency} ms"]
    return [
        f"highlight demo: {len(burst.records)} moments on {len(burst.channels)} channels ({burst.offline_channel}"
        f" offline), Live latency {latency} ms, windows in CST on {format_cst(burst.occurred_at)[:10]}"
    ]


def summary_lines(burst: Burst, tally: Tally, seconds: float, *, interrupted: bool) -> list[str]:
    """`name: number` lines, so a script can read them as well as a person."""
    observed, expected = tally.observed(), tally.expected
    offline = f" ({burst.offline_channel} is offline: ret 1301)" if burst.offline_channel else ""
    lines = [
        "",
        f"moments: {expected.moments}" + ("" if tally.complete else f" ({observed.moments} answered)"),
        f"recordings started: {observed.started}",
        f"clips: {observed.clips}" + ("" if observed.clips >= expected.clips else f" ({expected.clips} expected)"),
        f"duplicates avoided: {observed.duplicates}",
        f"failures: {observed.failed}{offline}",
        f"expired: {observed.expired}",
        f"in doubt: {observed.in_doubt}",
        f"dead letters: {observed.dead_letters}",
        f"time taken: {seconds:.1f} s",
    ]
    lines += [f"  {channel}: {url}" for channel, url in tally.video_urls().items()]
    if interrupted:
        lines.append("interrupted before every moment was answered")
    elif tally.complete and not tally.as_expected:
        lines.append(f"highlight demo: error: expected {expected.as_dict()}, observed {observed.as_dict()}")
    return lines


def summary_document(burst: Burst, tally: Tally, seconds: float, *, interrupted: bool) -> dict[str, Any]:
    observed = tally.observed()
    return {
        **observed.as_dict(),
        "moments": tally.expected.moments,
        "answered": observed.moments,
        "seconds": round(seconds, 2),
        "expected": tally.expected.as_dict(),
        "matches_expected": tally.as_expected,
        "interrupted": interrupted,
        "offline_channel": burst.offline_channel,
        "video_urls": tally.video_urls(),
    }


# --- lines ----------------------------------------------------------------------------------------


def window_cst(start: object, end: object) -> str:
    """`11:08:34-11:13:34 CST` from the API's `YYYY-MM-DD HH:MM:SS` CST times (the date is in the header)."""
    if not isinstance(start, str) or not isinstance(end, str):
        return "-"
    return f"{start.rpartition(' ')[2]}-{end.rpartition(' ')[2]} CST"


def error_code(error: dict[str, Any]) -> str:
    code = str(error.get("code", ""))
    # A bare number is the API's ret; transport failures have names (read_timeout).
    return f"ret {code}" if code.lstrip("-").isdigit() else code


def header_line() -> str:
    return _columns("status", "channel", "task_id / error", "window", "moment")


def result_line(document: dict[str, Any]) -> str:
    status = str(document.get("status"))
    event_id = str(document.get("event_id"))
    error = document.get("error")
    if document.get("task_id"):
        what = f"task {document['task_id']}"
    elif isinstance(error, dict):
        what = error_code(error)
    else:
        what = "-"
    tail = event_id
    if status == "duplicate" and document.get("started_by"):
        tail += f" (recording of {document['started_by']})"
    elif isinstance(error, dict) and error.get("message"):
        tail += f": {error['message']}"
    elif status == "expired":
        tail += f" (occurred {document.get('occurred_at')})"
    window = window_cst(document.get("start_time"), document.get("end_time"))
    return _columns(status, str(document.get("channel_id")), what, window, tail)


def clip_line(document: dict[str, Any]) -> str:
    """A clip: its recording's channel and window, the file, and where to watch it."""
    window = window_cst(document.get("start_time"), document.get("end_time"))
    what = f"file {document.get('file_id')}"
    return _columns("clip", str(document.get("channel_id")), what, window, str(document.get("video_url")))


def dead_letter_line(key: bytes | None, reason: str, message: str) -> str:
    channel = key.decode(errors="replace") if key else "-"
    return _columns("dead-letter", channel, reason, "-", message)


def _columns(status: str, channel: str, what: str, window: str, tail: str) -> str:
    return (
        f"{status:<{STATUS_WIDTH}} {channel:<{CHANNEL_WIDTH}} {what:<{WHAT_WIDTH}} {window:<{WINDOW_WIDTH}} {tail}"
    ).rstrip()

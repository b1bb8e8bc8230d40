"""Recording files to clips: which recording of ours a file belongs to, and the clip event. Pure.

A recording is a state entry: its key ((channel_id, bucket), or (channel_id, bucket, event_id) in `window`
dedup mode), the window sent to the API (CST strings), its task id and the moment that started it. A file
matches
1. by task id: the notification's `task_id` equals the task id of a recording we started for that channel;
2. else by window: the file's [start_time, end_time] overlaps a recording's window of that channel, and the
   largest overlap wins (ties: a started recording before an in-doubt one, then the earlier window).

Recordings answered `in_doubt` (a call cut off: the recording may exist) take part in window matching: a file
for their window proves the recording exists, and the moment gets its video after all. Template recordings
(`record_temp_id` set) are never ours.

The recordings a file can belong to are found without scanning the state: a recording's call happens within
its bucket (or up to the max event age, plus retries, after it), and lasts at most 30 minutes, so the buckets
whose recording can overlap a file follow from the file's times (`candidate_buckets`); the state looks up
those buckets' keys of the file's channel (`StateStore.recordings`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from highlight.callbacks.notification import RecordingFile
from highlight.dedup import DedupKey, Entry, Phase
from highlight.recording import MAX_RECORD_SECONDS, parse_cst
from highlight.results import LEGACY_API

MATCHED_BY = ("task_id", "window")
RECORDING_STATUSES = ("started", "in_doubt")
# A moment stamped ahead of our clock starts its recording before its bucket does; up to this much ahead, its
# recording is still found by window (by task id, always).
FUTURE_SKEW_SECONDS = 15 * 60
# Retries (attempts seconds apart, each up to its timeout) may put a call after its moment's max age: the same
# generous room `highlight.state` gives a moment's candidates.
CALL_SLACK_SECONDS = 600
# A file longer than this many buckets is matched by task id only: no recording of ours is that long.
MAX_CANDIDATE_BUCKETS = 4096
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,19})", re.ASCII)


@dataclass(frozen=True, slots=True)
class Match:
    key: DedupKey
    entry: Entry
    matched_by: str  # "task_id" or "window"


def candidate_buckets(file: RecordingFile, bucket_seconds: int, max_event_age_seconds: int) -> range:
    """The buckets whose recording can overlap the file (a conservative superset; empty if too many)."""
    # A call for bucket b starts its window in [b*B - skew, (b+1)*B + max age + slack], and the window lasts
    # at most MAX_RECORD_SECONDS: it overlaps the file only if it starts in [file start - MAX, file end].
    first = (file.start_time - MAX_RECORD_SECONDS - max_event_age_seconds - CALL_SLACK_SECONDS) // bucket_seconds - 1
    last = (file.end_time + FUTURE_SKEW_SECONDS) // bucket_seconds
    if last - first + 1 > MAX_CANDIDATE_BUCKETS:
        return range(0)
    return range(first, last + 1)


def window_of(entry: Entry) -> tuple[int, int] | None:
    """The recording's window as UNIX seconds, from the CST strings sent to the API."""
    if entry.start_time is None or entry.end_time is None:
        return None
    try:
        return int(parse_cst(entry.start_time).timestamp()), int(parse_cst(entry.end_time).timestamp())
    except ValueError:
        return None


def match(file: RecordingFile, recordings: Iterable[tuple[DedupKey, Entry | None]]) -> Match | None:
    """The recording `file` belongs to, among `recordings` (the entries of its channel's candidate buckets)."""
    if file.template:
        return None
    best: tuple[tuple[int, int, int, int], DedupKey, Entry] | None = None
    for key, entry in recordings:
        if entry is None or key[0] != file.channel_id:
            continue
        if entry.phase is Phase.STARTED and file.task_id is not None and entry.task_id == file.task_id:
            return Match(key, entry, "task_id")
        if entry.phase not in (Phase.STARTED, Phase.IN_DOUBT):
            continue
        window = window_of(entry)
        if window is None:
            continue
        overlap = _overlap(window, (file.start_time, file.end_time))
        if overlap is None:
            continue
        # Largest overlap first, then a recording known to exist, then the earlier window, then the lower bucket.
        rank = (overlap, 1 if entry.phase is Phase.STARTED else 0, -window[0], -key[1])
        if best is None or rank > best[0]:
            best = (rank, key, entry)
    if best is None:
        return None
    return Match(best[1], best[2], "window")


def _overlap(window: tuple[int, int], file: tuple[int, int]) -> int | None:
    """Seconds the two intervals share; None if they do not meet (a zero-length file inside a window counts)."""
    shared = min(window[1], file[1]) - max(window[0], file[0])
    if shared > 0 or (shared == 0 and file[0] == file[1] and window[0] <= file[0] <= window[1]):
        return shared
    return None


def clip_document(found: Match, file: RecordingFile, bucket_seconds: int) -> dict[str, Any]:
    """The clip event: deterministic in (recording, file), so a repeat after a crash is byte for byte the same."""
    entry = found.entry
    document: dict[str, Any] = {
        "channel_id": found.key[0],
        "bucket": found.key[1],
        "bucket_seconds": bucket_seconds,
        "recording_status": "started" if entry.phase is Phase.STARTED else "in_doubt",
    }
    # An in-doubt recording has no task id of its own: the file's says which task it was, if it is a number.
    task_id = entry.task_id or file.task_id
    if task_id is not None and _DECIMAL.fullmatch(task_id):
        document["task_id"] = task_id
    document |= {
        "started_by": entry.event_id,
        "api": entry.api or LEGACY_API,
        "start_time": entry.start_time,
        "end_time": entry.end_time,
        "file_id": file.file_id,
        "video_url": file.video_url,
    }
    if file.file_format is not None:
        document["file_format"] = file.file_format
    if file.file_size is not None:
        document["file_size"] = file.file_size
    if file.duration is not None:
        document["duration_seconds"] = file.duration
    document |= {
        "file_start": rfc3339(file.start_time),
        "file_end": rfc3339(file.end_time),
        "matched_by": found.matched_by,
    }
    return document


def encode_clip(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)


def rfc3339(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_after_window(entry: Entry, now: float) -> float:
    """How long after the recording's window ended `now` is (0 for a file ready before the end)."""
    window = window_of(entry)
    return 0.0 if window is None else max(0.0, now - window[1])

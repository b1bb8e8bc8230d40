"""What the simulator's Live says when a recording's file is ready: recording-file notifications. Pure.

The fields are those of Tencent's "录制文件事件通知" (event_type 100): `appid`, `app`, `appname`, `stream_id`,
`channel_id`, `file_id`, `record_file_id`, `file_format`, `task_id`, `start_time`, `end_time`, `duration`,
`file_size`, `video_url`, `stream_param`, `media_start_time`, `record_temp_id`, `t`, `sign`, `event_type`.
Current accounts send numbers as JSON numbers (and `task_id` as a string, as a real payload did); older ones
send every number as a decimal string.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from highlight.signing import sign
from highlight.simulator.config import SimulatorConfig

RECORDING_FILE = 100
# `t` is the signature's expiry: by default 10 minutes after sending, as Live does.
SIGNATURE_TTL_S = 600
EXTENSIONS = {"hls": "m3u8"}
# A plausible bitrate for a simulated file's size.
BYTES_PER_SECOND = 250_000


@dataclass(frozen=True, slots=True)
class RecordedFile:
    """One file of a simulated recording, before it is worded as a notification."""

    stream_id: str
    file_id: str
    start_time: int
    end_time: int
    file_format: str
    task_id: int | None  # None: no task of the simulator's (another system's, or a template's)
    domain: str = ""


def files_of(
    stream_id: str,
    task_id: int,
    start: int,
    end: int,
    file_format: str,
    config: SimulatorConfig,
    *,
    domain: str = "",
) -> list[RecordedFile]:
    """The files a recording ends as: one, or two when the stream dropped halfway (`callback_split`); plus a
    file of every unrelated stream over the same time."""
    if config.callback_split and end - start >= 2:
        middle = (start + end) // 2
        spans = [(start, middle), (middle + 1, end)]
    else:
        spans = [(start, end)]
    files = [
        RecordedFile(stream_id, file_id(task_id, index), first, last, file_format, task_id, domain)
        for index, (first, last) in enumerate(spans)
    ]
    for stream in sorted(config.callback_unrelated_streams):
        stranger = _digits(f"{stream}:{task_id}", 19)
        files.append(RecordedFile(stream, file_id(stranger, 0), start, end, file_format, None, domain))
    return files


def file_id(task_id: int, index: int) -> str:
    """A VOD-like file id (19 digits), the same for the same task and file."""
    return str(_digits(f"file:{task_id}:{index}", 19))


def notification(file: RecordedFile, config: SimulatorConfig, *, appid: str, now: float) -> dict[str, Any]:
    """The JSON object Live POSTs for one file, signed with the callback key; `t` expires 10 minutes on."""
    t = int(now) + SIGNATURE_TTL_S
    duration = file.end_time - file.start_time
    extension = EXTENSIONS.get(file.file_format, file.file_format)
    numbers: dict[str, int] = {
        "appid": int(appid) if appid.isdigit() else 0,
        "event_type": RECORDING_FILE,
        "start_time": file.start_time,
        "end_time": file.end_time,
        "duration": duration,
        "file_size": duration * BYTES_PER_SECOND,
        "media_start_time": 0,
        "t": t,
    }
    body: dict[str, Any] = {
        name: str(value) if config.callback_legacy_numbers else value for name, value in numbers.items()
    }
    body |= {
        "app": file.domain or f"{appid}.livepush.myqcloud.com",
        "appname": "live",
        "stream_id": file.stream_id,
        "channel_id": file.stream_id,
        "file_id": file.file_id,
        "record_file_id": file.file_id,
        "file_format": file.file_format,
        "video_url": f"http://{appid}.vod2.myqcloud.com/{file.file_id[-8:]}/{file.file_id}/f0.{extension}",
        "stream_param": "",
        "record_temp_id": "",
        "sign": sign(config.callback_key, t),
    }
    if not config.callback_omit_task_id:
        # Another system's task carries its own id: ours it is not.
        task_id = file.task_id if file.task_id is not None else _digits(f"other:{file.file_id}", 19)
        body["task_id"] = str(task_id)
    return body


def _digits(seed: str, count: int) -> int:
    """A number of `count` digits derived from `seed` (not random: reproducible)."""
    value = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    smallest: int = 10 ** (count - 1)
    return smallest + value % (9 * smallest)

"""The one small interface every recording API sits behind: build a signed request, read its reply. Pure.

The pipeline (dedup, retries, outage handling, results, metrics) is shared; a backend only maps a moment's
recording window to an HTTP request and the HTTP answer to a task id or a classified `LiveError`:
- `LiveRefused` (retriable or not): the API answered and nothing is recording;
- `LiveAccessRefused`: our credentials, clock or endpoint are wrong: not the moment's fault;
- `LiveInDoubt`: a recording may exist but we cannot know;
- `LiveUnreachable`: certainly nothing was created (gateway failure, shed load).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeGuard

if TYPE_CHECKING:  # tape.py's own backend imports this module
    from highlight.tape import TapeOptions, TapeWindow


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str  # "GET" or "POST"
    url: str  # complete and already encoded; sent as is
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Started:
    task_id: int  # 64-bit unsigned
    request_id: str | None = None


class Backend(Protocol):
    """One recording API. `name` is what results carry as `api`."""

    name: str

    def request(self, options: TapeOptions, window: TapeWindow, now: datetime) -> HttpRequest:
        """The signed request of one attempt made at `now` (aware). Fresh nonce per call where there is one."""
        ...

    def parse(self, status: int, body: bytes) -> Started:
        """The started task, or raise the classified `LiveError`."""
        ...


NonceSource = Callable[[], int]

MAX_TASK_ID = 2**64 - 1


def is_json_int(value: object) -> TypeGuard[int]:
    # bool is an int to Python, never to JSON.
    return isinstance(value, int) and not isinstance(value, bool)


def parse_task_id(value: object) -> int | None:
    """A 64-bit unsigned task id, given as a JSON number or a decimal string; None for anything else."""
    # 20 digits hold any 64-bit id; longer strings would only hit int()'s conversion limit.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if is_json_int(value) and 0 <= value <= MAX_TASK_ID:
        return value
    return None


def snippet(body: bytes | str, limit: int = 200) -> str:
    """A reply, on one line and short, for an error message."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

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
from typing import TYPE_CHECKING, Protocol

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

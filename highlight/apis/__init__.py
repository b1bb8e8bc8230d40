"""The recording APIs: one small interface, and one module per API behind it. Pure.

- `live_tape_start`: the legacy fcgi `Live_Tape_Start` (the default), signed with appid and key;
- `create_record`: API 2.0 `CreateRecord`, signed with SecretId/SecretKey (HMAC-SHA1/256);
- `create_live_record`: Cloud API 3.0 `CreateLiveRecord`, signed with TC3-HMAC-SHA256.

The pipeline (dedup, retries, outage handling, results, metrics) is shared; a backend only maps a moment's
recording window to an HTTP request and the HTTP answer to a task id or a classified `LiveError`, and offers
one read-only call that proves the credentials without creating anything (for `highlight check`):
- `LiveRefused` (retriable or not): the API answered and nothing is recording;
- `LiveAccessRefused`: our credentials, clock or endpoint are wrong: not the moment's fault;
- `LiveInDoubt`: a recording may exist but we cannot know;
- `LiveUnreachable`: certainly nothing was created (gateway failure, shed load).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeGuard, TypeVar

from highlight.config import LiveSettings
from highlight.errors import ConfigError
from highlight.recording import RecordingOptions, RecordingWindow

T = TypeVar("T")


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

    def request(self, options: RecordingOptions, window: RecordingWindow, now: datetime) -> HttpRequest:
        """The signed request of one attempt made at `now` (aware). Fresh nonce per call where there is one."""
        ...

    def parse(self, status: int, body: bytes) -> Started:
        """The started task, or raise the classified `LiveError`."""
        ...

    def probe(self, now: datetime) -> HttpRequest:
        """A signed read-only call that the API authenticates like a recording call; it creates nothing."""
        ...

    def parse_probe(self, status: int, body: bytes) -> str:
        """What the API said, once it accepted our credentials; else raise the classified `LiveError`
        (`LiveAccessRefused` when it refused them, any other when the answer proves nothing either way)."""
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


def backend_for(settings: LiveSettings) -> Backend:
    """The backend HIGHLIGHT_LIVE_API names, built from its own settings (config checked they are there).

    Imported on demand: a deployment loads the one protocol it calls.
    """
    if settings.api == "create_record":
        from highlight.apis.create_record import CreateRecord

        return CreateRecord(
            url=settings.url,
            secret_id=_need(settings.secret_id, "HIGHLIGHT_SECRET_ID", settings.api),
            secret_key=_need(settings.secret_key, "HIGHLIGHT_SECRET_KEY", settings.api),
            region=_need(settings.region, "HIGHLIGHT_REGION", settings.api),
            signature_method=settings.signature_method,
        )
    if settings.api == "create_live_record":
        from highlight.apis.create_live_record import CreateLiveRecord

        return CreateLiveRecord(
            url=settings.url,
            secret_id=_need(settings.secret_id, "HIGHLIGHT_SECRET_ID", settings.api),
            secret_key=_need(settings.secret_key, "HIGHLIGHT_SECRET_KEY", settings.api),
            app_name=settings.app_name,
            domain_name=settings.domain_name,
            region=settings.region,
        )
    from highlight.apis.live_tape_start import LiveTapeStart

    return LiveTapeStart(
        url=settings.url,
        appid=_need(settings.appid, "HIGHLIGHT_LIVE_APPID", settings.api),
        key=_need(settings.key, "HIGHLIGHT_LIVE_KEY", settings.api),
    )


def _need(value: T | None, env: str, api: str) -> T:
    # config.load already insists; settings built by hand (tests, the demo) get the same one-line message.
    if value is None:
        raise ConfigError(f"{env} is required when HIGHLIGHT_LIVE_API={api}")
    return value

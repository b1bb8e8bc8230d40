"""The simulator's settings: defaults, validation, and runtime changes coerced from Python or JSON.

Pure, argparse aside.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class SimulatorConfig:
    appid: str = "1234"
    key: str = "sim-secret-key"
    latency_ms: tuple[float, float] = (0.0, 0.0)
    offline_channels: frozenset[str] = frozenset()
    live_channels: frozenset[str] | None = None
    missing_channels: frozenset[str] = frozenset()
    error_rate: float = 0.0
    http_error_rate: float = 0.0
    hang_rate: float = 0.0
    max_running: int = 400
    daily_quota: int = 4000
    clock_skew_tolerance_s: float = 120.0
    seed: int | None = None
    # The v2 (CreateRecord) and 3.0 (CreateLiveRecord) APIs sign with a SecretId/SecretKey pair. These belong
    # to the simulator alone; they are no Tencent Cloud credential.
    secret_id: str = "AKIDsimulator"  # noqa: S105 - the simulator's own development value, not a secret
    secret_key: str = "sim-secret-key-tc3"  # noqa: S105 - the simulator's own development value, not a secret
    # Every API refuses every call as if the key were wrong: an outage of our credentials, on demand.
    refuse_credentials: bool = False
    # --- recording-file notifications, as Live's callback template sends them when a recording ends ---
    # Where to POST them (`highlight callbacks`' /live/callback); None sends none.
    callback_url: str | None = None
    # The callback template's key that signs them; the simulator's own development value.
    callback_key: str = "sim-callback-key"
    # Recordings end, and their files are announced, this many times sooner: at 60 a 5-minute recording ends
    # in 5 s. The notification still gives the recording's real times.
    time_scale: float = 1.0
    # Between deliveries of a notification that got no 200 in time; None: Live's minute, scaled.
    callback_retry_s: float | None = None
    # Deliveries after the first, as Live retries (every interval, up to 12 times) until it gets a 200.
    callback_retries: int = 12
    # An answer slower than this is no answer, as for Live (20 s).
    callback_timeout_s: float = 20.0
    # Simulated seconds between a recording's end and its file's notification (scaled like the recording).
    callback_delay_s: float = 0.0
    # Deliveries of each notification beyond the acknowledged one, as when Live misses our 200.
    callback_duplicates: int = 0
    # Send no task_id, which the documents promise for CreateRecordTask tasks only.
    callback_omit_task_id: bool = False
    # Each recording arrives as two files, as when the stream drops halfway.
    callback_split: bool = False
    # Every number as a decimal string, as older accounts send them.
    callback_legacy_numbers: bool = False
    # With each recording's files, a file of each of these streams, which nobody asked to record.
    callback_unrelated_streams: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # Checked here so that a bad runtime change (set_config, /_sim/config) is refused, not half applied.
        if not self.appid or not self.key:
            raise ValueError("appid and key must not be empty")
        if not self.secret_id or not self.secret_key:
            raise ValueError("secret_id and secret_key must not be empty")
        low, high = self.latency_ms
        if not (math.isfinite(high) and 0 <= low <= high):
            raise ValueError(f"latency_ms must be finite with 0 <= min <= max, got {self.latency_ms!r}")
        rates = (self.error_rate, self.http_error_rate, self.hang_rate)
        if not all(0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError(f"error_rate, http_error_rate and hang_rate must be within [0, 1], got {rates!r}")
        if sum(rates) > 1.0:
            raise ValueError(f"error_rate + http_error_rate + hang_rate must not exceed 1, got {sum(rates)}")
        if self.max_running < 0 or self.daily_quota < 0:
            raise ValueError("max_running and daily_quota must not be negative")
        if not (math.isfinite(self.clock_skew_tolerance_s) and self.clock_skew_tolerance_s >= 0):
            raise ValueError(f"clock_skew_tolerance_s must be >= 0, got {self.clock_skew_tolerance_s!r}")
        self._check_callbacks()

    def _check_callbacks(self) -> None:
        url = self.callback_url
        if url is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
            raise ValueError(f"callback_url must be an http(s) URL, got {url!r}")
        if not self.callback_key:
            raise ValueError("callback_key must not be empty")
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ValueError(f"time_scale must be > 0, got {self.time_scale!r}")
        retry = self.callback_retry_s
        if retry is not None and not (math.isfinite(retry) and retry >= 0):
            raise ValueError(f"callback_retry_s must be >= 0, got {retry!r}")
        if not (math.isfinite(self.callback_timeout_s) and self.callback_timeout_s > 0):
            raise ValueError(f"callback_timeout_s must be > 0, got {self.callback_timeout_s!r}")
        if not (math.isfinite(self.callback_delay_s) and self.callback_delay_s >= 0):
            raise ValueError(f"callback_delay_s must be >= 0, got {self.callback_delay_s!r}")
        if self.callback_retries < 0 or self.callback_duplicates < 0:
            raise ValueError("callback_retries and callback_duplicates must not be negative")

    @property
    def callback_interval_s(self) -> float:
        """Seconds between deliveries of an unacknowledged notification."""
        return self.callback_retry_s if self.callback_retry_s is not None else 60.0 / self.time_scale


def parse_latency(text: str) -> tuple[float, float]:
    """`"200"` or `"100-300"` milliseconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?)\s*)?", text)
    if match is None:
        raise ValueError(f"latency must be MS or MIN-MAX milliseconds, e.g. 200 or 100-300; got {text!r}")
    low = float(match[1])
    high = float(match[2]) if match[2] is not None else low
    if high < low:
        raise ValueError(f"latency range must be MIN-MAX with MIN <= MAX; got {text!r}")
    return low, high


def config_json(config: SimulatorConfig) -> dict[str, object]:
    out: dict[str, object] = {}
    for field in fields(config):
        value = getattr(config, field.name)
        out[field.name] = sorted(value) if isinstance(value, frozenset) else value
    return out


def coerce_changes(changes: Mapping[str, object]) -> dict[str, object]:
    """Runtime changes, from Python or JSON, as SimulatorConfig's field types; ValueError names a bad one."""
    coerced: dict[str, object] = {}
    for name, value in changes.items():
        coerce = _COERCERS.get(name)
        if coerce is None:
            raise ValueError(f"unknown simulator setting {name!r}; known: {', '.join(_COERCERS)}")
        coerced[name] = coerce(name, value)
    return coerced


def _as_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _as_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _as_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _as_optional_int(name: str, value: object) -> int | None:
    return None if value is None else _as_int(name, value)


def _as_latency(name: str, value: object) -> tuple[float, float]:
    if isinstance(value, str):
        return parse_latency(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value), float(value)
    if isinstance(value, list | tuple) and len(value) == 2:
        return _as_number(name, value[0]), _as_number(name, value[1])
    raise ValueError(f"{name} must be [min, max] milliseconds, got {value!r}")


def _as_channels(name: str, value: object) -> frozenset[str]:
    # A bare string is iterable too, and would silently become a set of its characters.
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list of channel ids, got {value!r}")
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"{name} must be a list of channel ids, got {value!r}")
    return frozenset(items)


def _as_optional_channels(name: str, value: object) -> frozenset[str] | None:
    return None if value is None else _as_channels(name, value)


def _as_optional_str(name: str, value: object) -> str | None:
    return None if value is None else _as_str(name, value)


def _as_optional_number(name: str, value: object) -> float | None:
    return None if value is None else _as_number(name, value)


_COERCERS: dict[str, Callable[[str, object], object]] = {
    "appid": _as_str,
    "key": _as_str,
    "latency_ms": _as_latency,
    "offline_channels": _as_channels,
    "live_channels": _as_optional_channels,
    "missing_channels": _as_channels,
    "error_rate": _as_number,
    "http_error_rate": _as_number,
    "hang_rate": _as_number,
    "max_running": _as_int,
    "daily_quota": _as_int,
    "clock_skew_tolerance_s": _as_number,
    "seed": _as_optional_int,
    "secret_id": _as_str,
    "secret_key": _as_str,
    "refuse_credentials": _as_bool,
    "callback_url": _as_optional_str,
    "callback_key": _as_str,
    "time_scale": _as_number,
    "callback_retry_s": _as_optional_number,
    "callback_retries": _as_int,
    "callback_timeout_s": _as_number,
    "callback_delay_s": _as_number,
    "callback_duplicates": _as_int,
    "callback_omit_task_id": _as_bool,
    "callback_split": _as_bool,
    "callback_legacy_numbers": _as_bool,
    "callback_unrelated_streams": _as_channels,
}


# --- `highlight simulate-live` flags ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SimulatorConfig()
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: %(default)s)")
    parser.add_argument(
        "--appid", default=defaults.appid, help="the appid Live_Tape_Start calls must carry (default: %(default)s)"
    )
    parser.add_argument(
        "--key", default=defaults.key, help="the key Live_Tape_Start signatures use (default: %(default)s)"
    )
    parser.add_argument(
        "--secret-id",
        default=defaults.secret_id,
        help="the SecretId CreateRecord (v2) and CreateLiveRecord (3.0) calls must carry (default: %(default)s)",
    )
    parser.add_argument(
        "--secret-key",
        default=defaults.secret_key,
        help="the SecretKey v2 and 3.0 signatures use (default: %(default)s)",
    )
    parser.add_argument(
        "--refuse-credentials",
        action="store_true",
        help="refuse every call of every API as if the key were wrong (a credentials outage)",
    )
    parser.add_argument(
        "--latency-ms",
        default="0",
        metavar="MS|MIN-MAX",
        help="delay before each answer, e.g. 200 or 100-300",
    )
    channel_sets = (
        ("--offline", "a channel that is not pushing: ret 1301, code 5100, StreamNotExist (repeatable)"),
        ("--live", "a pushing channel; if given, every other channel is offline (repeatable)"),
        ("--missing", "a channel that does not exist: ret 20601, code 5000, ChannelNotExist (repeatable)"),
    )
    for flag, help_text in channel_sets:
        parser.add_argument(flag, action="append", metavar="CHANNEL", help=help_text)
    rates = (
        ("--error-rate", "fraction of calls answered an internal error (ret 1201, code 6000, InternalError)"),
        ("--http-error-rate", "fraction of calls answered HTTP 503"),
        ("--hang-rate", "fraction of calls that start a recording and never answer"),
    )
    for flag, help_text in rates:
        parser.add_argument(flag, type=float, default=0.0, metavar="0..1", help=help_text)
    parser.add_argument("--max-running", type=int, default=400, help="running tasks at once (default: %(default)s)")
    parser.add_argument("--daily-quota", type=int, default=4000, help="tasks per CST day (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible random faults and task ids")
    notes = parser.add_argument_group("recording-file notifications (Live's callbacks), sent when a recording ends")
    add = notes.add_argument
    add(
        "--callback-url", metavar="URL", help="POST them here, e.g. http://127.0.0.1:8090/live/callback (default: none)"
    )
    add("--callback-key", default=defaults.callback_key, help="the callback key that signs them (default: %(default)s)")
    add("--time-scale", type=float, default=1.0, metavar="X", help="recordings end X times sooner (60: 5 min in 5 s)")
    add(
        "--callback-retry-seconds",
        type=float,
        metavar="S",
        help="between deliveries until a 200 (default: Live's 60 s divided by the time scale)",
    )
    add("--callback-retries", type=int, default=12, help="deliveries after the first, at most (default: %(default)s)")
    add("--callback-timeout-seconds", type=float, default=20.0, metavar="S", help="an answer must come within S s")
    add("--callback-delay-seconds", type=float, default=0.0, metavar="S", help="a file is ready S s after its end")
    add("--callback-duplicates", type=int, default=0, metavar="N", help="deliver each notification N more times")
    add("--callback-omit-task-id", action="store_true", help="send no task_id (match by time window)")
    add("--callback-split", action="store_true", help="each recording arrives as two files")
    add("--callback-legacy-numbers", action="store_true", help="every number as a decimal string (older accounts)")
    add(
        "--callback-unrelated",
        action="append",
        metavar="STREAM",
        help="also announce a file of this stream (repeatable)",
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Raises ValueError naming the bad setting."""
    try:
        latency = parse_latency(args.latency_ms)
    except ValueError as exc:
        raise ValueError(f"--latency-ms: {exc}") from None
    return SimulatorConfig(
        appid=args.appid,
        key=args.key,
        latency_ms=latency,
        offline_channels=frozenset(args.offline or ()),
        live_channels=None if args.live is None else frozenset(args.live),
        missing_channels=frozenset(args.missing or ()),
        error_rate=args.error_rate,
        http_error_rate=args.http_error_rate,
        hang_rate=args.hang_rate,
        max_running=args.max_running,
        daily_quota=args.daily_quota,
        seed=args.seed,
        secret_id=args.secret_id,
        secret_key=args.secret_key,
        refuse_credentials=args.refuse_credentials,
        callback_url=args.callback_url,
        callback_key=args.callback_key,
        time_scale=args.time_scale,
        callback_retry_s=args.callback_retry_seconds,
        callback_retries=args.callback_retries,
        callback_timeout_s=args.callback_timeout_seconds,
        callback_delay_s=args.callback_delay_seconds,
        callback_duplicates=args.callback_duplicates,
        callback_omit_task_id=args.callback_omit_task_id,
        callback_split=args.callback_split,
        callback_legacy_numbers=args.callback_legacy_numbers,
        callback_unrelated_streams=frozenset(args.callback_unrelated or ()),
    )

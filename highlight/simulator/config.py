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
    )

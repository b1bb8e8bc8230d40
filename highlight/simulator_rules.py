"""The simulator's pure half: its settings, the documented checks of a `Live_Tape_Start` call, its faults.

No I/O and no state: `highlight.simulator` feeds in the decoded query, the settings and the time, and keeps
the tasks. The checks run in the order the real endpoint is observed to apply them: the fcgi gateway's access
checks (appid, t, sign) first, then the backend's parameters, the channel, the quotas.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime

import orjson

from highlight.tape import CST, INTERFACE, MAX_RECORD_SECONDS, parse_cst, sign

RET_ACCESS = -1
RET_INTERNAL = 1201
RET_FREQUENCY = 1202
RET_BAD_PARAMETER = 1204
# The documents give the limits (400 running, 4,000 a day) but not the codes that enforce them: 1206 and 1207
# are this simulator's choice, kept in the documented 12xx family so clients treat them as plain refusals.
RET_RUNNING_LIMIT = 1206
RET_DAILY_LIMIT = 1207
RET_NOT_LIVE = 1301
RET_NO_CHANNEL = 20601

RET_MESSAGES = {
    RET_INTERNAL: "internal error",
    RET_FREQUENCY: "request frequency exceeds limit",
    RET_BAD_PARAMETER: "bad parameter",
    RET_NOT_LIVE: "has not live stream",
    RET_NO_CHANNEL: "channel does not exist",
}

CHANNEL_ID = "Param.s.channel_id"
START_TIME = "Param.s.start_time"
END_TIME = "Param.s.end_time"
TASK_SUB_TYPE = "Param.n.task_sub_type"
FILE_FORMATS = frozenset({"flv", "hls", "mp4", "aac"})
RECORD_TYPES = frozenset({"video", "audio"})
# The documents' table spells it Param.s.mix_stream; their convention (n for int) gives Param.n.mix_stream.
MIX_STREAM = ("Param.n.mix_stream", "Param.s.mix_stream")
SCHEDULED_MAX_SECONDS = 86_400
# Longer than any UNIX time for millennia; bounds int() on hostile input.
MAX_T_DIGITS = 20

GARBAGE_BODY = b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
FAULT_SHAPES = "ok, ret:<code>, http:<status>, hang, reset, garbage, delay:<ms>, auth:<message>"


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

    def __post_init__(self) -> None:
        # Checked here so that a bad runtime change (set_config, /_sim/config) is refused, not half applied.
        if not self.appid or not self.key:
            raise ValueError("appid and key must not be empty")
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


@dataclass(frozen=True, slots=True)
class Refusal:
    ret: int
    message: str

    @property
    def outcome(self) -> str:
        # Access refusals carry no backend code; their message is what a client has to recognise.
        return self.message if self.ret == RET_ACCESS else f"ret:{self.ret}"

    def body(self) -> bytes:
        return reply_body(self.ret, self.message)


@dataclass(frozen=True, slots=True)
class Accepted:
    channel_id: str
    start_time: str
    end_time: str
    effective_end: float


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    code: int = 0
    delay_s: float = 0.0
    message: str = ""


def parse_fault(text: str) -> Fault:
    kind, _, arg = text.partition(":")
    if kind in ("ok", "hang", "reset", "garbage") and not arg:
        return Fault(kind)
    if kind == "ret" and re.fullmatch(r"-?\d{1,9}", arg) and int(arg) != 0:
        return Fault(kind, code=int(arg))
    if kind == "http" and re.fullmatch(r"\d{3}", arg) and 200 <= int(arg) <= 599:
        return Fault(kind, code=int(arg))
    if kind == "delay" and re.fullmatch(r"\d{1,7}(\.\d+)?", arg):
        return Fault(kind, delay_s=float(arg) / 1000)
    if kind == "auth" and arg:
        return Fault(kind, message=arg)
    raise ValueError(f"unknown fault {text!r}; expected one of {FAULT_SHAPES}")


def random_fault(config: SimulatorConfig, draw: float) -> Fault | None:
    """One uniform draw in [0, 1) picks at most one fault, so the rates are exact and add up."""
    if draw < config.error_rate:
        return Fault("ret", code=RET_INTERNAL)
    if draw < config.error_rate + config.http_error_rate:
        return Fault("http", code=503)
    if draw < config.error_rate + config.http_error_rate + config.hang_rate:
        return Fault("hang")
    return None


def ret_message(ret: int) -> str:
    return RET_MESSAGES.get(ret, f"error {ret}")


def reply_body(ret: int, message: str) -> bytes:
    return orjson.dumps({"ret": ret, "retcode": ret, "message": message})


def success_body(task_id: int) -> bytes:
    # orjson writes ints up to 2**64-1 exactly; only a client that parses through float loses digits.
    return orjson.dumps({"ret": 0, "retcode": 0, "message": "", "output": {"task_id": task_id}})


def http_error_body(status: int) -> bytes:
    return f"<html><body><h1>{status}</h1></body></html>".encode()


def check_call(params: Mapping[str, str], config: SimulatorConfig, now: float) -> Refusal | Accepted:
    """Everything but the quotas and the faults, which need the simulator's state."""
    refusal = check_access(params, config, now)
    if refusal is not None:
        return refusal
    verdict = check_parameters(params, now, config.clock_skew_tolerance_s)
    if isinstance(verdict, Refusal):
        return verdict
    return check_channel(verdict.channel_id, config) or verdict


def check_access(params: Mapping[str, str], config: SimulatorConfig, now: float) -> Refusal | None:
    if params.get("appid") != config.appid:
        return Refusal(RET_ACCESS, "appid is invalid")
    t = params.get("t", "")
    # `t` is the signature's expiry, not the time it was made: only a past `t` is refused.
    if not (t.isascii() and t.isdigit() and len(t) <= MAX_T_DIGITS) or int(t) < now:
        return Refusal(RET_ACCESS, "time expired")
    given = params.get("sign", "").lower().encode()
    if not hmac.compare_digest(given, sign(config.key, int(t)).encode()):
        return Refusal(RET_ACCESS, "sign invalid")
    return None


def check_parameters(params: Mapping[str, str], now: float, tolerance_s: float) -> Refusal | Accepted:
    if params.get("interface") != INTERFACE:
        return bad_parameter("interface")
    channel_id = params.get(CHANNEL_ID, "")
    if not channel_id:
        return bad_parameter(CHANNEL_ID)
    start = _cst_seconds(params.get(START_TIME, ""))
    if start is None:
        return bad_parameter(START_TIME)
    end = _cst_seconds(params.get(END_TIME, ""))
    if end is None:
        return bad_parameter(END_TIME)
    sub_type = params.get(TASK_SUB_TYPE)
    if sub_type == "1":
        # The real endpoint ignores start_time in real-time mode; holding it to "now" is what catches a
        # client formatting UTC or host-local time where the documents ask for China Standard Time.
        if abs(start - now) > tolerance_s:
            return bad_parameter("start_time is not now (CST)")
        if end <= start:
            return bad_parameter(f"{END_TIME} must be after {START_TIME}")
        # Longer is not refused: the documents count anything past 30 minutes as 30 minutes.
        effective_end = min(end, now + MAX_RECORD_SECONDS)
    elif sub_type == "0":
        if not 0 < end - start <= SCHEDULED_MAX_SECONDS:
            return bad_parameter(f"{END_TIME} must be after {START_TIME}, by at most one day")
        effective_end = end
    else:
        return bad_parameter(TASK_SUB_TYPE)
    refusal = check_options(params)
    if refusal is not None:
        return refusal
    return Accepted(channel_id, params[START_TIME], params[END_TIME], effective_end)


def check_options(params: Mapping[str, str]) -> Refusal | None:
    file_format = params.get("Param.s.file_format", "flv")
    if file_format not in FILE_FORMATS:
        return bad_parameter("Param.s.file_format")
    record_type = params.get("Param.s.record_type", "video")
    if record_type not in RECORD_TYPES:
        return bad_parameter("Param.s.record_type")
    # video is the default record_type, so a bare file_format=aac is refused too.
    if record_type == "video" and file_format == "aac":
        return bad_parameter("Param.s.file_format aac needs Param.s.record_type audio")
    for name in MIX_STREAM:
        if name in params and params[name] not in ("0", "1"):
            return bad_parameter(name)
    for name in ("Param.s.domain", "Param.s.path"):
        if name in params and not params[name]:
            return bad_parameter(name)
    return None


def check_channel(channel_id: str, config: SimulatorConfig) -> Refusal | None:
    if channel_id in config.missing_channels:
        return Refusal(RET_NO_CHANNEL, ret_message(RET_NO_CHANNEL))
    live = config.live_channels
    # Real-time recording needs the stream to be pushing at the moment of the call.
    if channel_id in config.offline_channels or (live is not None and channel_id not in live):
        return Refusal(RET_NOT_LIVE, ret_message(RET_NOT_LIVE))
    return None


def check_quota(running: int, created_today: int, config: SimulatorConfig) -> Refusal | None:
    if running >= config.max_running:
        return Refusal(RET_RUNNING_LIMIT, f"exceeds the limit of {config.max_running} running tasks")
    if created_today >= config.daily_quota:
        return Refusal(RET_DAILY_LIMIT, f"exceeds the daily limit of {config.daily_quota} tasks")
    return None


def bad_parameter(detail: str) -> Refusal:
    return Refusal(RET_BAD_PARAMETER, f"bad parameter: {detail}")


def cst_day(unix_seconds: float) -> date:
    """The quota day: it turns at midnight in China, whatever the host's zone."""
    return datetime.fromtimestamp(unix_seconds, CST).date()


def _cst_seconds(text: str) -> float | None:
    # parse_cst's pattern uses \d, which also matches non-ASCII digits the real endpoint would not read.
    if not text.isascii():
        return None
    try:
        return parse_cst(text).timestamp()
    except ValueError:
        return None


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
}

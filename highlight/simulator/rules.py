"""The simulator's pure half: the documented checks of a `Live_Tape_Start` call, its faults.

No I/O and no state: `highlight.simulator` feeds in the decoded query, the settings and the time, and keeps
the tasks. The checks run in the order the real endpoint is observed to apply them: the fcgi gateway's access
checks (appid, t, sign) first, then the backend's parameters, the channel, the quotas. The channel and quota
rules and the faults are shared with the v2 and 3.0 APIs (`highlight.simulator.v2`, `.cloud`), which
word them in their own protocols through a `Dialect`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal, Protocol

import orjson

from highlight.apis.live_tape_start import INTERFACE
from highlight.recording import CST, MAX_RECORD_SECONDS, format_cst, parse_cst
from highlight.signing import verify
from highlight.simulator.config import SimulatorConfig

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
FAULT_SHAPES = (
    "ok, busy, internal, auth:<message>, ret:<code>, error:<Code>, http:<status>, hang, reset, garbage, delay:<ms>"
)
# A Cloud API 3.0 error code: dotted CamelCase words ("AuthFailure.SignatureFailure").
ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)*", re.ASCII)


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
class Answer:
    """A refusal in one protocol's words, ready to send."""

    outcome: str  # what `SimCall.outcome` records: "ret:1204", "code:4100", "error:InternalError", ...
    message: str
    body: bytes
    status: int = 200


@dataclass(frozen=True, slots=True)
class Denial:
    """A refusal decided by the channel rules or the quotas, before any protocol words it."""

    kind: Literal["no_channel", "not_live", "running_limit", "daily_limit"]
    message: str


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault.

    `busy`, `internal` and `auth` are protocol-neutral: each API answers them in its own words. `ret` is a
    numeric code (legacy, v2) and `error` a 3.0 Code; an API without such codes answers a plain refusal.
    """

    kind: str
    code: int = 0
    delay_s: float = 0.0
    message: str = ""
    error: str = ""


def parse_fault(text: str) -> Fault:
    kind, _, arg = text.partition(":")
    if kind in ("ok", "hang", "reset", "garbage", "busy", "internal") and not arg:
        return Fault(kind)
    if kind == "error" and ERROR_CODE.fullmatch(arg):
        return Fault(kind, error=arg)
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
        return Fault("internal")
    if draw < config.error_rate + config.http_error_rate:
        return Fault("http", code=503)
    if draw < config.error_rate + config.http_error_rate + config.hang_rate:
        return Fault("hang")
    return None


class Dialect(Protocol):
    """How one API words what the simulator decided: its answers to denials, refusing faults and success."""

    @property
    def api(self) -> str: ...

    @property
    def content_type(self) -> str: ...

    def deny(self, denial: Denial) -> Answer: ...

    def fail(self, fault: Fault) -> Answer: ...

    def started(self, task_id: int) -> bytes: ...


class LegacyDialect:
    api = "live_tape_start"
    # The real endpoint labels its JSON text/html; clients must not rely on the Content-Type.
    content_type = "text/html"

    def deny(self, denial: Denial) -> Answer:
        return legacy_answer(denial_refusal(denial))

    def fail(self, fault: Fault) -> Answer:
        return legacy_answer(fault_refusal(fault))

    def started(self, task_id: int) -> bytes:
        return success_body(task_id)


def legacy_answer(refusal: Refusal) -> Answer:
    return Answer(refusal.outcome, refusal.message, refusal.body())


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
    if config.refuse_credentials:
        return Refusal(RET_ACCESS, "sign invalid")
    if params.get("appid") != config.appid:
        return Refusal(RET_ACCESS, "appid is invalid")
    t = params.get("t", "")
    # `t` is the signature's expiry, not the time it was made: only a past `t` is refused.
    if not (t.isascii() and t.isdigit() and len(t) <= MAX_T_DIGITS) or int(t) < now:
        return Refusal(RET_ACCESS, "time expired")
    if not verify(config.key, int(t), params.get("sign", "")):
        return Refusal(RET_ACCESS, "sign invalid")
    return None


def check_parameters(params: Mapping[str, str], now: float, tolerance_s: float) -> Refusal | Accepted:
    if params.get("interface") != INTERFACE:
        return bad_parameter("interface")
    channel_id = params.get(CHANNEL_ID, "")
    if not channel_id:
        return bad_parameter(CHANNEL_ID)
    start = cst_seconds(params.get(START_TIME, ""))
    if start is None:
        return bad_parameter(START_TIME)
    end = cst_seconds(params.get(END_TIME, ""))
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
    denial = channel_denial(channel_id, config)
    return None if denial is None else denial_refusal(denial)


def check_quota(running: int, created_today: int, config: SimulatorConfig) -> Refusal | None:
    denial = quota_denial(running, created_today, config)
    return None if denial is None else denial_refusal(denial)


def channel_denial(channel_id: str, config: SimulatorConfig) -> Denial | None:
    if channel_id in config.missing_channels:
        return Denial("no_channel", ret_message(RET_NO_CHANNEL))
    live = config.live_channels
    # Real-time recording needs the stream to be pushing at the moment of the call.
    if channel_id in config.offline_channels or (live is not None and channel_id not in live):
        return Denial("not_live", ret_message(RET_NOT_LIVE))
    return None


def quota_denial(running: int, created_today: int, config: SimulatorConfig) -> Denial | None:
    if running >= config.max_running:
        return Denial("running_limit", f"exceeds the limit of {config.max_running} running tasks")
    if created_today >= config.daily_quota:
        return Denial("daily_limit", f"exceeds the daily limit of {config.daily_quota} tasks")
    return None


_DENIAL_RETS = {
    "no_channel": RET_NO_CHANNEL,
    "not_live": RET_NOT_LIVE,
    "running_limit": RET_RUNNING_LIMIT,
    "daily_limit": RET_DAILY_LIMIT,
}


def denial_refusal(denial: Denial) -> Refusal:
    """A channel or quota denial in Live_Tape_Start's words."""
    return Refusal(_DENIAL_RETS[denial.kind], denial.message)


def fault_refusal(fault: Fault) -> Refusal:
    """A refusing fault in Live_Tape_Start's words."""
    match fault.kind:
        case "busy":
            return Refusal(RET_FREQUENCY, ret_message(RET_FREQUENCY))
        case "internal":
            return Refusal(RET_INTERNAL, ret_message(RET_INTERNAL))
        case "auth":
            return Refusal(RET_ACCESS, fault.message)
        case "ret":
            return Refusal(fault.code, ret_message(fault.code))
        case _:
            # A 3.0 Code has no Live_Tape_Start equivalent: a plain refusal that says so, never a success.
            return bad_parameter(f"simulated fault {fault.kind}:{fault.error} does not apply to Live_Tape_Start")


def bad_parameter(detail: str) -> Refusal:
    return Refusal(RET_BAD_PARAMETER, f"bad parameter: {detail}")


def cst_day(unix_seconds: float) -> date:
    """The quota day: it turns at midnight in China, whatever the host's zone."""
    return datetime.fromtimestamp(unix_seconds, CST).date()


def format_cst_seconds(unix_seconds: float) -> str:
    return format_cst(datetime.fromtimestamp(unix_seconds, UTC))


def cst_seconds(text: str) -> float | None:
    """UNIX seconds of a strict `YYYY-MM-DD HH:MM:SS` China Standard Time string, or None."""
    # parse_cst's pattern uses \d, which also matches non-ASCII digits the real endpoint would not read.
    if not text.isascii():
        return None
    try:
        return parse_cst(text).timestamp()
    except ValueError:
        return None

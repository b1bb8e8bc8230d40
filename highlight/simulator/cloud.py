"""The simulator's Cloud API 3.0 `CreateLiveRecord` endpoint (`POST /`), pure: its checks and its answers.

The checks run in the order of the 3.0 gateway: the X-TC-* headers, then the TC3 Authorization (its
credential scope, the signed headers as the client sent them, the signature, the timestamp), then the JSON
body's fields. The canonical request is rebuilt here from whatever headers the client says it signed; only
the key derivation is shared with `highlight.create_live_record`, and that one is pinned by Tencent's SDK.
Every answer is the 3.0 envelope with a RequestId.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

import orjson

from highlight.apis.create_live_record import tc3_signature, utc_date
from highlight.recording import MAX_RECORD_SECONDS
from highlight.simulator.config import SimulatorConfig
from highlight.simulator.rules import (
    Accepted,
    Answer,
    Denial,
    Fault,
    cst_seconds,
    format_cst_seconds,
)
from highlight.simulator.v2 import SIGNATURE_SKEW_S

API = "create_live_record"
PATH = "/"
ACTION = "CreateLiveRecord"
VERSION = "2018-08-01"
SERVICE = "live"
MAX_DIGITS = 20

AUTHORIZATION = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<secret_id>[^/\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z0-9]+)"
    r"/tc3_request, ?SignedHeaders=(?P<signed>[a-z0-9-]+(?:;[a-z0-9-]+)*), ?Signature=(?P<signature>[0-9a-fA-F]{64})",
    re.ASCII,
)
STRING_FIELDS = frozenset(
    {"StreamName", "AppName", "DomainName", "StartTime", "EndTime", "RecordType", "FileFormat", "StreamParam"}
)
INT_FIELDS = frozenset({"Highlight", "MixStream"})
FILE_FORMATS = frozenset({"flv", "hls", "mp4", "aac", "mp3"})
RECORD_TYPES = frozenset({"video", "audio"})

MESSAGES = {
    "AuthFailure.SignatureFailure": "The provided credentials could not be validated. Please check your signature.",
    "RequestLimitExceeded": "Your request frequency exceeds the limit.",
    "InternalError": "An internal error has occurred. Please retry your request.",
    "ServiceUnavailable": "Service is unavailable now.",
}

# CreateLiveRecord's own error codes, from Tencent's error code list for the Live API.
DENIAL_CODES = {
    "no_channel": "ResourceNotFound.ChannelNotExist",
    "not_live": "ResourceUnavailable.StreamNotExist",
    "running_limit": "LimitExceeded.MaximumRunningTask",
    "daily_limit": "LimitExceeded.MaximumTask",
}


def error_body(code: str, message: str, request_id: str) -> bytes:
    return orjson.dumps({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id}})


class CloudDialect:
    """The 3.0 envelope, for one call: every answer carries that call's RequestId."""

    api = API
    content_type = "application/json"

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id

    def error(self, code: str, message: str | None = None) -> Answer:
        text = message if message is not None else MESSAGES.get(code, f"simulated {code}")
        return Answer(f"error:{code}", text, error_body(code, text, self.request_id))

    def deny(self, denial: Denial) -> Answer:
        return self.error(DENIAL_CODES[denial.kind], denial.message)

    def fail(self, fault: Fault) -> Answer:
        match fault.kind:
            case "busy":
                return self.error("RequestLimitExceeded")
            case "internal":
                return self.error("InternalError")
            case "auth":
                return self.error("AuthFailure.SignatureFailure", fault.message)
            case "error":
                return self.error(fault.error)
            case _:
                # A numeric ret/code has no 3.0 equivalent: a plain refusal that says so, never a success.
                return self.error("FailedOperation", f"simulated fault ret:{fault.code} does not apply to 3.0")

    def started(self, task_id: int) -> bytes:
        # orjson writes ints up to 2**64-1 exactly; only a client that parses through float loses digits.
        return orjson.dumps({"Response": {"TaskId": task_id, "RequestId": self.request_id}})


def read_body(body: bytes) -> dict[str, object] | None:
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return fields if isinstance(fields, dict) else None


def as_query(fields: Mapping[str, object] | None) -> dict[str, str]:
    """The body's fields as strings, for `SimCall.query`."""
    if fields is None:
        return {}
    return {name: value if isinstance(value, str) else orjson.dumps(value).decode() for name, value in fields.items()}


def check(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    config: SimulatorConfig,
    now: float,
    dialect: CloudDialect,
) -> Answer | Accepted:
    """Everything but the channel rules, the quotas and the faults. `headers` must be case-insensitive."""
    refusal = check_access(method, path, headers, body, config, now, dialect)
    if refusal is not None:
        return refusal
    if not headers.get("Content-Type", "").lower().startswith("application/json"):
        return dialect.error("InvalidParameter", "Content-Type must be application/json with TC3-HMAC-SHA256")
    fields = read_body(body)
    if fields is None:
        return dialect.error("InvalidParameter", "the body is not a JSON object")
    return check_fields(fields, now, config.clock_skew_tolerance_s, dialect)


def check_access(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    config: SimulatorConfig,
    now: float,
    dialect: CloudDialect,
    action: str = ACTION,
) -> Answer | None:
    """The gateway's checks of a call of `action`: the X-TC-* headers and the TC3 Authorization."""
    given = headers.get("X-TC-Action", "")
    if not given:
        return dialect.error("MissingParameter", "the X-TC-Action header is missing")
    if given != action:
        return dialect.error("InvalidAction", f"the action {given} does not exist")
    if headers.get("X-TC-Version") != VERSION:
        return dialect.error("NoSuchVersion", f"the version must be {VERSION}")
    timestamp = headers.get("X-TC-Timestamp", "")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= MAX_DIGITS):
        return dialect.error("MissingParameter", "X-TC-Timestamp must be UNIX seconds")
    auth = AUTHORIZATION.fullmatch(headers.get("Authorization", ""))
    if auth is None:
        return dialect.error("AuthFailure.InvalidAuthorization", "Authorization is not TC3-HMAC-SHA256")
    if config.refuse_credentials:
        return dialect.error("AuthFailure.SignatureFailure")
    if abs(int(timestamp) - now) > SIGNATURE_SKEW_S:
        return dialect.error(
            "AuthFailure.SignatureExpire", f"X-TC-Timestamp is more than {SIGNATURE_SKEW_S:g} s from the server's time"
        )
    if auth["secret_id"] != config.secret_id:
        return dialect.error("AuthFailure.SecretIdNotFound", "the SecretId does not exist")
    date = utc_date(int(timestamp))
    if auth["date"] != date or auth["service"] != SERVICE:
        return dialect.error("AuthFailure.SignatureFailure", f"the credential scope must be {date}/{SERVICE}")
    signed = auth["signed"].split(";")
    if not {"content-type", "host"} <= set(signed) or signed != sorted(signed):
        return dialect.error("AuthFailure.SignatureFailure", "SignedHeaders must list content-type and host, sorted")
    if any(name not in headers for name in signed):
        return dialect.error("AuthFailure.SignatureFailure", "a signed header is missing")
    canonical_headers = "".join(f"{name}:{headers[name].strip().lower()}\n" for name in signed)
    canonical = "\n".join([method, path, "", canonical_headers, auth["signed"], hashlib.sha256(body).hexdigest()])
    scope = f"{date}/{SERVICE}/tc3_request"
    text = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    expected = tc3_signature(config.secret_key, date, SERVICE, text)
    if not hmac.compare_digest(auth["signature"].lower().encode(), expected.encode()):
        return dialect.error("AuthFailure.SignatureFailure")
    return None


def check_fields(
    fields: Mapping[str, object], now: float, tolerance_s: float, dialect: CloudDialect
) -> Answer | Accepted:
    for name, value in fields.items():
        if name not in STRING_FIELDS and name not in INT_FIELDS:
            return dialect.error("UnknownParameter", f"the parameter {name} is not recognized")
        if name in STRING_FIELDS and not isinstance(value, str):
            return dialect.error("InvalidParameter", f"{name} must be a string")
        if name in INT_FIELDS and (isinstance(value, bool) or not isinstance(value, int)):
            return dialect.error("InvalidParameter", f"{name} must be an integer")
    stream = fields.get("StreamName")
    if not isinstance(stream, str):
        return dialect.error("MissingParameter", "the parameter StreamName is missing")
    for name in ("StreamName", "AppName", "DomainName"):
        if fields.get(name) == "":
            return dialect.error("InvalidParameterValue", f"{name} must not be empty")
    if fields.get("Highlight") != 1:
        # Scheduled recording (0, the API's default) exists, but highlight only ever asks for real time.
        return dialect.error("InvalidParameterValue", "Highlight must be 1 (real-time recording)")
    if str(fields.get("FileFormat", "flv")).lower() not in FILE_FORMATS:
        return dialect.error("InvalidParameterValue", "FileFormat")
    if str(fields.get("RecordType", "video")).lower() not in RECORD_TYPES:
        return dialect.error("InvalidParameterValue", "RecordType")
    if fields.get("MixStream", 0) not in (0, 1):
        return dialect.error("InvalidParameterValue", "MixStream")
    start_text, end_text = fields.get("StartTime"), fields.get("EndTime")
    start = cst_seconds(start_text) if isinstance(start_text, str) else now
    if start is None:
        return dialect.error("InvalidParameterValue", "StartTime must be YYYY-MM-DD HH:MM:SS (CST)")
    # Real time ignores StartTime; holding it to "now" catches a client sending UTC or host-local time.
    if abs(start - now) > tolerance_s:
        return dialect.error("InvalidParameterValue", "StartTime is not now (CST)")
    end = cst_seconds(end_text) if isinstance(end_text, str) else None
    if isinstance(end_text, str) and end is None:
        return dialect.error("InvalidParameterValue", "EndTime must be YYYY-MM-DD HH:MM:SS (CST)")
    # The documents: an EndTime left out, in the past or more than 30 minutes ahead records 30 minutes.
    cap = now + MAX_RECORD_SECONDS
    effective_end = end if end is not None and now < end <= cap else cap
    return Accepted(
        stream,
        start_text if isinstance(start_text, str) else format_cst_seconds(now),
        end_text if isinstance(end_text, str) else format_cst_seconds(effective_end),
        effective_end,
    )

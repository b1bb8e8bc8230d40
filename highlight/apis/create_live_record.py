"""The Cloud API 3.0 `CreateLiveRecord` action (live.tencentcloudapi.com, version 2018-08-01), pure.

A JSON POST signed with TC3-HMAC-SHA256 over the method, path, the `content-type` and `host` headers and the
body's SHA-256, with a key derived from the secret key, the UTC date and the service. Every answer carries a
RequestId, which is kept on the started task and on every error for Tencent support.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import orjson

from highlight.apis import HttpRequest, Started, is_json_int, parse_task_id, policy, snippet
from highlight.apis.policy import Situation
from highlight.config import Secret
from highlight.errors import LiveAccessRefused, LiveError, LiveInDoubt, LiveLimitReached, LiveRefused, LiveUnreachable
from highlight.recording import RecordingOptions, RecordingWindow

API_NAME = "create_live_record"
ACTION = "CreateLiveRecord"
# The read-only action `highlight check` calls: it lists the streams being pushed and creates nothing, and the
# 3.0 gateway checks the TC3 signature for it exactly as for CreateLiveRecord.
PROBE_ACTION = "DescribeLiveStreamOnlineList"
VERSION = "2018-08-01"
SERVICE = "live"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = "content-type;host"

# Error codes, each with the situation it names; first match wins: "X.*" matches X and X.<anything>, "X*"
# anything starting with X, else exact. What a situation means for a moment is `highlight.apis.policy`'s one rule
# for all three APIs.
ERROR_TABLE: tuple[tuple[str, Situation], ...] = (
    # Our SecretId/SecretKey, signature or clock (SignatureExpire is a skewed clock): every moment would fail
    # alike, so the service pauses and probes instead of burning moments.
    ("AuthFailure.*", Situation.ACCESS),
    ("UnauthorizedOperation.*", Situation.ACCESS),  # CAM: the key may not call this action
    ("IpInBlacklist", Situation.ACCESS),
    ("IpNotInWhitelist", Situation.ACCESS),
    # The endpoint, action, version or region we are configured with is wrong.
    ("InvalidAction", Situation.ACCESS),
    ("ActionOffline", Situation.ACCESS),
    ("NoSuchProduct", Situation.ACCESS),
    ("NoSuchVersion", Situation.ACCESS),
    ("UnsupportedRegion", Situation.ACCESS),
    ("UnsupportedProtocol", Situation.ACCESS),
    # The account cannot record at all (suspended for arrears, not a Live user, VOD not activated, no funds):
    # like a bad key, no moment can succeed until someone fixes the account.
    ("ResourceNotFound.StopService", Situation.ACCESS),
    ("ResourceNotFound.UserNotExist", Situation.ACCESS),
    ("ResourceNotFound.InvalidUser", Situation.ACCESS),
    ("ResourceUnavailable.InvalidVodStatus", Situation.ACCESS),
    ("FailedOperation.JiFeiNoEnoughFund", Situation.ACCESS),
    # Frequency limits (per account, per IP, per region).
    ("RequestLimitExceeded.*", Situation.FREQUENCY_LIMIT),
    # Refused at the door before reaching the backend: nothing was created.
    ("ServiceUnavailable.*", Situation.UNAVAILABLE),
    # The account's limits: 400 running tasks, 4,000 created a day. Another LimitExceeded code is read as the
    # running limit, the one that clears by itself.
    ("LimitExceeded.MaximumRunningTask", Situation.RUNNING_LIMIT),
    ("LimitExceeded.MaximumTask", Situation.DAILY_LIMIT),
    ("LimitExceeded.*", Situation.RUNNING_LIMIT),
    # A stream that is not pushing, however the error is filed: the backend looked and created nothing.
    ("ResourceUnavailable.StreamNotExist", Situation.NOT_LIVE),
    ("InternalError.HasNotLivingStream", Situation.NOT_LIVE),
    ("FailedOperation.HasNotLivingStream", Situation.NOT_LIVE),
    # The backend failed after accepting the request: the task may exist.
    ("InternalError.*", Situation.INTERNAL_ERROR),
    ("InvalidParameter*", Situation.BAD_PARAMETER),
    ("MissingParameter", Situation.BAD_PARAMETER),
    ("UnknownParameter", Situation.BAD_PARAMETER),
    ("ResourceNotFound.ChannelNotExist", Situation.NO_CHANNEL),
    # About this request: a resource that does not exist or cannot be used, an unsupported combination.
    ("ResourceNotFound*", Situation.REFUSED),
    ("ResourceUnavailable*", Situation.REFUSED),
    ("FailedOperation*", Situation.REFUSED),
    ("UnsupportedOperation*", Situation.REFUSED),
)
# Anything else: a refusal of this request, not retried.
DEFAULT_SITUATION = Situation.REFUSED


def situation_of(code: str) -> Situation:
    for pattern, situation in ERROR_TABLE:
        if pattern.endswith(".*"):
            stem = pattern[:-2]
            if code == stem or code.startswith(stem + "."):
                return situation
        elif pattern.endswith("*"):
            if code.startswith(pattern[:-1]):
                return situation
        elif code == pattern:
            return situation
    return DEFAULT_SITUATION


def is_refusal(code: str) -> bool:
    """Whether a Code refuses the request itself, not retried (a refusal or a limit): nothing was created."""
    rule = policy.POLICY[situation_of(code)]
    return rule.error in (LiveRefused, LiveLimitReached) and not rule.retriable


# --- TC3-HMAC-SHA256 --------------------------------------------------------------------------------------------


def utc_date(timestamp: int) -> str:
    """The credential scope's date: the UTC day of the timestamp, not the host's."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def canonical_request(method: str, path: str, query: str, content_type: str, host: str, body: bytes) -> str:
    # Header values are lower-cased and trimmed as the TC3 documents say; the body is hashed as sent.
    headers = f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n"
    payload = hashlib.sha256(body).hexdigest()
    return f"{method}\n{path}\n{query}\n{headers}\n{SIGNED_HEADERS}\n{payload}"


def string_to_sign(timestamp: int, service: str, canonical: str) -> str:
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def tc3_signature(secret_key: str, date: str, service: str, text: str) -> str:
    """HMAC-SHA256 chain: `TC3` + key -> date -> service -> `tc3_request`, then hex HMAC of `text`."""
    key = hmac.new(("TC3" + secret_key).encode(), date.encode(), hashlib.sha256).digest()
    key = hmac.new(key, service.encode(), hashlib.sha256).digest()
    key = hmac.new(key, b"tc3_request", hashlib.sha256).digest()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def authorization(
    secret_id: str,
    secret_key: str,
    *,
    timestamp: int,
    host: str,
    body: bytes,
    method: str = "POST",
    path: str = "/",
    query: str = "",
    content_type: str = CONTENT_TYPE,
    service: str = SERVICE,
) -> str:
    """The `Authorization` header of one request."""
    date = utc_date(timestamp)
    canonical = canonical_request(method, path, query, content_type, host, body)
    signed = tc3_signature(secret_key, date, service, string_to_sign(timestamp, service, canonical))
    return (
        f"{ALGORITHM} Credential={secret_id}/{date}/{service}/tc3_request, "
        f"SignedHeaders={SIGNED_HEADERS}, Signature={signed}"
    )


def request_host(url: str) -> str:
    """The URL's host as the `Host` header carries it: with the port only when the URL names one."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return host if parts.port is None else f"{host}:{parts.port}"


# --- the backend --------------------------------------------------------------------------------------------------


class CreateLiveRecord:
    """One signed JSON `POST` of `CreateLiveRecord` per attempt, real-time mode (`Highlight: 1`)."""

    name = API_NAME

    def __init__(
        self,
        *,
        url: str,
        secret_id: str,
        secret_key: Secret,
        app_name: str,
        domain_name: str | None,
        region: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        self._path = parts.path or "/"
        self._url = urlunsplit((parts.scheme, parts.netloc, self._path, "", ""))
        self._host = request_host(url)
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._app_name = app_name
        self._domain_name = domain_name
        self._region = region

    def body(self, options: RecordingOptions, window: RecordingWindow) -> dict[str, object]:
        fields: dict[str, object] = {"StreamName": options.channel_id, "AppName": self._app_name}
        domain = options.domain or self._domain_name
        if domain:
            fields["DomainName"] = domain
        # Real-time mode ignores StartTime; it is sent anyway so the window on record is the one asked for.
        fields |= {"StartTime": window.start_time, "EndTime": window.end_time, "Highlight": 1}
        if options.file_format is not None:
            fields["FileFormat"] = options.file_format
        if options.record_type is not None:
            fields["RecordType"] = options.record_type
        if options.mix_stream is not None:
            fields["MixStream"] = options.mix_stream
        # CreateLiveRecord has no storage path parameter: a moment's `path` is ignored here.
        return fields

    def request(self, options: RecordingOptions, window: RecordingWindow, now: datetime) -> HttpRequest:
        return self._post(ACTION, orjson.dumps(self.body(options, window)), now)

    def parse(self, status: int, body: bytes) -> Started:
        return parse_reply(status, body)

    def probe(self, now: datetime) -> HttpRequest:
        # No filter: every stream of the account, the first page only.
        return self._post(PROBE_ACTION, b"{}", now)

    def parse_probe(self, status: int, body: bytes) -> str:
        return parse_probe_reply(status, body)

    def _post(self, action: str, body: bytes, now: datetime) -> HttpRequest:
        """One signed call of `action`."""
        timestamp = int(now.timestamp())
        headers = {
            "Content-Type": CONTENT_TYPE,
            # Sent as signed: a client library normalising it (dropping a default port) would break the signature.
            "Host": self._host,
            "X-TC-Action": action,
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(timestamp),
        }
        if self._region:
            headers["X-TC-Region"] = self._region
        headers["Authorization"] = authorization(
            self._secret_id,
            self._secret_key.reveal(),
            timestamp=timestamp,
            host=self._host,
            body=body,
            path=self._path,
        )
        return HttpRequest("POST", self._url, headers=headers, body=body)


# --- the reply ------------------------------------------------------------------------------------------------------


def parse_reply(status: int, body: bytes) -> Started:
    """`{"Response": {"TaskId", "RequestId"}}` or `{"Response": {"Error": {...}, "RequestId"}}`."""
    response = _response(body)
    request_id = _request_id(response)
    if status >= 500 or status == 429:
        # The gateway failed or shed load before the backend created anything.
        raise LiveUnreachable(f"HTTP {status} from CreateLiveRecord", code=f"http_{status}", request_id=request_id)
    error = response.get("Error") if response is not None else None
    if isinstance(error, dict) and isinstance(error.get("Code"), str) and error["Code"]:
        raise error_for(error["Code"], str(error.get("Message") or ""), request_id)
    if not 200 <= status < 300:
        # No API error behind a 3xx/4xx: the URL does not lead to the 3.0 API.
        raise LiveAccessRefused(
            f"HTTP {status} from CreateLiveRecord without an API error: check the URL ({snippet(body)})",
            code=f"http_{status}",
            request_id=request_id,
        )
    task_id = parse_task_id(response.get("TaskId")) if response is not None and error is None else None
    if task_id is None:
        # Success without a task id (or an unreadable answer): a recording may exist that we cannot name.
        raise LiveInDoubt(
            f"CreateLiveRecord answer without a valid TaskId: {snippet(body)}",
            code="invalid_reply",
            request_id=request_id,
        )
    return Started(task_id, request_id)


def parse_probe_reply(status: int, body: bytes) -> str:
    """What DescribeLiveStreamOnlineList said, once the gateway accepted our SecretId, signature and clock."""
    response = _response(body)
    request_id = _request_id(response)
    if status >= 500 or status == 429:
        raise LiveUnreachable(f"HTTP {status} from {PROBE_ACTION}", code=f"http_{status}", request_id=request_id)
    error = response.get("Error") if response is not None else None
    if isinstance(error, dict) and isinstance(error.get("Code"), str) and error["Code"]:
        code, message = error["Code"], str(error.get("Message") or "")
        if code == "UnauthorizedOperation" or code.startswith("UnauthorizedOperation."):
            # CAM checks the action after the signature: the key is genuine, it may only not list streams.
            return (
                f"{PROBE_ACTION} answered {code} (request {request_id}): the signature is accepted, but CAM does "
                "not let this key list streams, so whether it may call CreateLiveRecord cannot be told without "
                "creating a recording"
            )
        if is_refusal(code):
            # Refused by the action behind the gateway: the gateway has accepted our signature.
            return f"{PROBE_ACTION} answered {code} ({message}, request {request_id}), after accepting the signature"
        raise error_for(code, message, request_id, PROBE_ACTION)
    if not 200 <= status < 300 or response is None:
        raise LiveAccessRefused(
            f"HTTP {status} from {PROBE_ACTION} without an API answer: check the URL ({snippet(body)})",
            code=f"http_{status}",
            request_id=request_id,
        )
    total = response.get("TotalNum")
    shown = f"{total} stream{'s' if total != 1 else ''} live" if is_json_int(total) else "no stream count"
    return f"{PROBE_ACTION} answered ({shown}, request {request_id})"


def error_for(code: str, message: str, request_id: str | None, action: str = ACTION) -> LiveError:
    """The `LiveError` an API error Code stands for (see ERROR_TABLE and `highlight.apis.policy`)."""
    situation = situation_of(code)
    text = message.strip() or code
    if policy.POLICY[situation].error not in (LiveRefused, LiveLimitReached):
        # Not a refusal of this request: the message names the code (refusals carry it in `code` alone).
        text = f"{code}: {text}"
    return policy.error_for(situation, code, text, api=action, request_id=request_id, creates=action == ACTION)


def _response(body: bytes) -> Mapping[str, object] | None:
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    response = reply.get("Response") if isinstance(reply, dict) else None
    return response if isinstance(response, dict) else None


def _request_id(response: Mapping[str, object] | None) -> str | None:
    value = response.get("RequestId") if response is not None else None
    return value if isinstance(value, str) and value else None

"""The v2 `CreateRecord` API (live.api.qcloud.com/v2/index.php), pure: signing, the query, the reply.

A signed GET whose common parameters (Timestamp, a fresh Nonce, SecretId, Signature) authenticate each
attempt. The signature covers the parameters' raw values; the URL carries them percent-encoded, so a channel
id with `& = + % /` or non-ASCII arrives intact and can never add a parameter of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from urllib.parse import quote, urlsplit, urlunsplit

import orjson

from highlight.apis import HttpRequest, Started, is_json_int, parse_task_id, policy, snippet
from highlight.apis.policy import Situation
from highlight.config import Secret
from highlight.errors import LiveAccessRefused, LiveError, LiveInDoubt, LiveRefused, LiveUnreachable
from highlight.recording import RecordingOptions, RecordingWindow

API_NAME = "create_record"
ACTION = "CreateRecord"
# The read-only action `highlight check` calls: it lists the account's channels and creates nothing, and the v2
# gateway checks the common parameters and the signature for it exactly as for CreateRecord.
PROBE_ACTION = "DescribeLVBChannelList"
DEFAULT_PATH = "/v2/index.php"
SIGNATURE_METHODS = ("HmacSHA1", "HmacSHA256")
# `tapeType=1` is real-time recording: it starts when the call succeeds and the start time is ignored.
TAPE_TYPE_REAL_TIME = "1"

# v2's common error codes (the same table for every v2 API), each with the situation it names; what a situation
# means for a moment is `highlight.apis.policy`'s one rule for all three APIs.
_CAM = (4100, 4101, 4102, 4103, 4104, 4105, 4106, 4110)
ERROR_TABLE: Mapping[int, Situation] = {
    4000: Situation.BAD_PARAMETER,
    # Credentials and CAM (4100 signature/auth, 4101-4110 sub-account and key checks): ours, not the moment's.
    **dict.fromkeys(_CAM, Situation.ACCESS),
    4200: Situation.ACCESS,  # request expired: our clock (Timestamp) is off; every moment would fail alike
    4300: Situation.ACCESS,  # access denied: the account is blocked or outside the API's users
    # "quota or request frequency exceeded": one code for the account's limits and the frequency limit.
    4400: Situation.LIMIT_OR_FREQUENCY,
    4500: Situation.REPLAY,  # a Nonce seen before: the next attempt signs with a fresh Nonce
    4600: Situation.ACCESS,  # protocol not supported (HTTP where HTTPS is required): our URL is wrong
    5000: Situation.NO_CHANNEL,  # resource does not exist
    # Resource operation failed: CreateRecord names no code of its own for a stream that is not pushing, and
    # this is the one it answers; a refusal of this request either way.
    5100: Situation.REFUSED,
    6000: Situation.INTERNAL_ERROR,  # the backend failed after accepting the request: the task may exist
    6100: Situation.ACCESS,  # the module does not support this version: our endpoint is wrong
    6200: Situation.UNAVAILABLE,  # temporarily unavailable: refused at the door, nothing created
}
# Everything else is about this request: a plain refusal, not retried.
DEFAULT_SITUATION = Situation.REFUSED


def default_nonce() -> int:
    return secrets.randbelow(2**31 - 1) + 1


def sign_string(method: str, host: str, path: str, params: Mapping[str, str]) -> str:
    """`GET` + host + path + `?` + `k=v` sorted by name, joined by `&`: the values raw, never URL-encoded."""
    pairs = "&".join(f"{name}={params[name]}" for name in sorted(params) if name != "Signature")
    return f"{method}{host}{path}?{pairs}"


def signature(secret_key: str, text: str, method: str = "HmacSHA1") -> str:
    """base64(HMAC(secret_key, text)), SHA-1 or SHA-256 as `SignatureMethod` says."""
    if method not in SIGNATURE_METHODS:
        raise ValueError(f"SignatureMethod must be one of {', '.join(SIGNATURE_METHODS)}, got {method!r}")
    digest = hashlib.sha256 if method == "HmacSHA256" else hashlib.sha1
    mac = hmac.new(secret_key.encode(), text.encode(), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def signed_host(url: str) -> str:
    """The URL's host as the `Host` header carries it: with the port only when the URL names one."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return host if parts.port is None else f"{host}:{parts.port}"


def encode_query(params: Mapping[str, str]) -> str:
    # RFC 3986 percent-encoding of names and values (space as %20, `+` as %2B): a form decoder and a strict
    # one read the same string, so what was signed is what arrives.
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in sorted(params.items()))


class CreateRecord:
    """One signed `GET /v2/index.php?Action=CreateRecord` per attempt."""

    name = API_NAME

    def __init__(
        self,
        *,
        url: str,
        secret_id: str,
        secret_key: Secret,
        region: str,
        signature_method: str = "HmacSHA1",
        nonce: Callable[[], int] | None = None,
    ) -> None:
        if signature_method not in SIGNATURE_METHODS:
            raise ValueError(f"signature_method must be one of {', '.join(SIGNATURE_METHODS)}")
        parts = urlsplit(url)
        path = parts.path or DEFAULT_PATH
        self._base = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        self._host = signed_host(url)
        self._path = path
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._region = region
        self._method = signature_method
        self._nonce = nonce or default_nonce

    def params(self, options: RecordingOptions, window: RecordingWindow, now: datetime) -> dict[str, str]:
        """The signed parameters of one attempt (a fresh Nonce each call)."""
        # v2 CreateRecord has no file format, record type, domain, path or mix-stream parameters: a moment's
        # options beyond the channel are ignored here (the recording takes the account's defaults).
        action = {
            "Action": ACTION,
            "channelId": options.channel_id,
            "startTime": window.start_time,
            "endTime": window.end_time,
            "tapeType": TAPE_TYPE_REAL_TIME,
        }
        return self._signed(action, now)

    def _signed(self, action: Mapping[str, str], now: datetime) -> dict[str, str]:
        """An action's parameters with the common ones and the Signature over all of them."""
        params = {
            **action,
            "Region": self._region,
            "Timestamp": str(int(now.timestamp())),
            "Nonce": str(self._nonce()),
            "SecretId": self._secret_id,
        }
        # HmacSHA1 is the default when SignatureMethod is absent; sending it only for SHA-256 keeps the
        # SHA-1 requests identical to the documents' examples.
        if self._method == "HmacSHA256":
            params["SignatureMethod"] = self._method
        text = sign_string("GET", self._host, self._path, params)
        params["Signature"] = signature(self._secret_key.reveal(), text, self._method)
        return params

    def _get(self, params: Mapping[str, str]) -> HttpRequest:
        # Host is sent as signed: a client library normalising it (dropping a default port) would break it.
        return HttpRequest("GET", f"{self._base}?{encode_query(params)}", headers={"Host": self._host})

    def request(self, options: RecordingOptions, window: RecordingWindow, now: datetime) -> HttpRequest:
        return self._get(self.params(options, window, now))

    def parse(self, status: int, body: bytes) -> Started:
        return parse_reply(status, body)

    def probe(self, now: datetime) -> HttpRequest:
        return self._get(self._signed({"Action": PROBE_ACTION}, now))

    def parse_probe(self, status: int, body: bytes) -> str:
        return parse_probe_reply(status, body)


def parse_reply(status: int, body: bytes) -> Started:
    """`{code, message, task_id}`: the started task, or the classified reason there is none."""
    reply = _reply(status, body, ACTION)
    task_id = parse_task_id(reply.get("task_id"))
    if task_id is None:
        # code 0 says a recording started, but without its id we cannot answer for it.
        raise LiveInDoubt(f"code 0 without a valid task_id: {snippet(body)}", code="invalid_reply")
    return Started(task_id)


def parse_probe_reply(status: int, body: bytes) -> str:
    """What DescribeLVBChannelList said, once the gateway accepted our SecretId, signature and clock."""
    try:
        reply = _reply(status, body, PROBE_ACTION)
    except LiveRefused as refused:
        if refused.retriable:
            raise
        # Refused by the action behind the gateway: the gateway has accepted our signature.
        return f"{PROBE_ACTION} answered code {refused.code} ({refused.message}), after accepting the signature"
    count = reply.get("all_count")
    # v2 writes some numbers as strings ("all_count": "2").
    shown = f"{count} channels" if is_json_int(count) or (isinstance(count, str) and count.isdigit()) else "answered"
    return f"{PROBE_ACTION} answered code 0 ({shown})"


def _reply(status: int, body: bytes, action: str) -> dict[str, object]:
    """A reply with code 0, or the classified reason it is not one: shared by every v2 action."""
    if status >= 500 or status == 429:
        # The gateway failed or shed load before the backend created anything.
        raise LiveUnreachable(f"HTTP {status} from {action}", code=f"http_{status}")
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError:
        reply = None
    code = reply.get("code") if isinstance(reply, dict) else None
    if isinstance(code, str) and code.isascii() and code.lstrip("-").isdigit() and len(code) <= 9:
        # Some v2 services quote their codes ("code": "5100").
        code = int(code)
    if not is_json_int(code) or not isinstance(reply, dict):
        if not 200 <= status < 300:
            # No API answer behind a 3xx/4xx: the URL does not lead to the v2 API.
            raise LiveAccessRefused(
                f"HTTP {status} from {action} without an API error: check the URL ({snippet(body)})",
                code=f"http_{status}",
            )
        raise LiveInDoubt(f"unreadable {action} reply: {snippet(body)}", code="invalid_reply")
    message = str(reply.get("message") or "")
    if code != 0:
        raise error_for(code, message, action)
    if not 200 <= status < 300:
        raise LiveAccessRefused(f"HTTP {status} from {action} with code 0: check the URL", code=f"http_{status}")
    return reply


def error_for(code: int, message: str, action: str = ACTION) -> LiveError:
    """The `LiveError` an API error code stands for (see ERROR_TABLE and `highlight.apis.policy`)."""
    situation = ERROR_TABLE.get(code, DEFAULT_SITUATION)
    return policy.error_for(situation, code, message.strip() or f"code {code}", api=action, creates=action == ACTION)

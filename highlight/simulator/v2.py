"""The simulator's v2 `CreateRecord` endpoint (`GET /v2/index.php`), pure: its checks and its answers.

The checks run in the order of Tencent's v2 gateway: the common parameters and the signature first (our own
sign string and HMAC, written from the documents, so a client bug is not mirrored), the Nonce after the
signature (a forged request must not burn a Nonce), then CreateRecord's parameters. The channel rules, the
quotas and the faults are the simulator's shared ones, worded here in v2's `{code, message}`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping

import orjson

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

API = "create_record"
PATH = "/v2/index.php"
ACTION = "CreateRecord"
# The documents allow five minutes between Timestamp and the server's clock.
SIGNATURE_SKEW_S = 300.0
# A Nonce is remembered as long as a request carrying it could still pass the Timestamp check.
NONCE_MEMORY_S = 2 * SIGNATURE_SKEW_S
MAX_DIGITS = 20

CODE_BAD_PARAMETER = 4000
CODE_AUTH = 4100
CODE_EXPIRED = 4200
CODE_QUOTA = 4400
CODE_REPLAY = 4500
CODE_NO_RESOURCE = 5000
CODE_OPERATION_FAILED = 5100
CODE_INTERNAL = 6000

MESSAGES = {
    CODE_BAD_PARAMETER: "bad parameter",
    CODE_AUTH: "authentication failed",
    CODE_EXPIRED: "request expired",
    4300: "access denied",
    CODE_QUOTA: "quota or request frequency exceeded",
    CODE_REPLAY: "replay attack: Nonce already used",
    CODE_NO_RESOURCE: "resource does not exist",
    CODE_OPERATION_FAILED: "resource operation failed",
    CODE_INTERNAL: "internal error",
}

# The CreateRecord document names no codes for a missing channel, a stream that is not pushing or the limits,
# so these come from v2's common table: 5000 "resource does not exist" for the channel, 5100 "resource
# operation failed" for a stream that cannot be recorded now, 4400 "quota exceeded" for both limits (the
# documented code for quotas, which a client retries a little later).
DENIAL_CODES = {
    "no_channel": CODE_NO_RESOURCE,
    "not_live": CODE_OPERATION_FAILED,
    "running_limit": CODE_QUOTA,
    "daily_limit": CODE_QUOTA,
}


def message_of(code: int) -> str:
    return MESSAGES.get(code, f"error {code}")


def reply_body(code: int, message: str) -> bytes:
    return orjson.dumps({"code": code, "message": message})


def answer(code: int, message: str | None = None) -> Answer:
    text = message if message is not None else message_of(code)
    return Answer(f"code:{code}", text, reply_body(code, text))


def bad_parameter(detail: str) -> Answer:
    return answer(CODE_BAD_PARAMETER, f"bad parameter: {detail}")


class V2Dialect:
    api = API
    # A PHP endpoint: JSON labelled text/html, like the legacy one; clients must not rely on the Content-Type.
    content_type = "text/html"

    def deny(self, denial: Denial) -> Answer:
        return answer(DENIAL_CODES[denial.kind], denial.message)

    def fail(self, fault: Fault) -> Answer:
        match fault.kind:
            case "busy":
                return answer(CODE_QUOTA)
            case "internal":
                return answer(CODE_INTERNAL)
            case "auth":
                return answer(CODE_AUTH, fault.message)
            case "ret":
                return answer(fault.code)
            case _:
                # A 3.0 Code has no v2 equivalent: a plain refusal that says so, never a success.
                return bad_parameter(f"simulated fault {fault.kind}:{fault.error} does not apply to CreateRecord")

    def started(self, task_id: int) -> bytes:
        # orjson writes ints up to 2**64-1 exactly; only a client that parses through float loses digits.
        return orjson.dumps({"code": 0, "message": "", "task_id": task_id})


def sign_text(host: str, path: str, params: Mapping[str, str]) -> str:
    """The documents' sign string: GET, host, path, `?`, every parameter but Signature sorted, values raw."""
    return "GET" + host + path + "?" + "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "Signature")


def expected_signature(secret_key: str, text: str, method: str) -> str:
    digest = hashlib.sha256 if method == "HmacSHA256" else hashlib.sha1
    return base64.b64encode(hmac.new(secret_key.encode(), text.encode(), digest).digest()).decode()


def check(
    pairs: Iterable[tuple[str, str]],
    host: str,
    path: str,
    config: SimulatorConfig,
    now: float,
    nonce_is_fresh: Callable[[str], bool],
) -> Answer | Accepted:
    """Everything but the channel rules, the quotas and the faults. `nonce_is_fresh` remembers the Nonce."""
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            # PHP would silently keep the last value; refusing makes a parameter injection visible.
            return bad_parameter(f"{name} given twice")
        params[name] = value
    refusal = check_access(params, host, path, config, now, nonce_is_fresh)
    return refusal if refusal is not None else check_parameters(params, now, config.clock_skew_tolerance_s)


def check_access(
    params: Mapping[str, str],
    host: str,
    path: str,
    config: SimulatorConfig,
    now: float,
    nonce_is_fresh: Callable[[str], bool],
) -> Answer | None:
    for name in ("Action", "Region", "Timestamp", "Nonce", "SecretId", "Signature"):
        if not params.get(name):
            return bad_parameter(f"missing {name}")
    method = params.get("SignatureMethod", "HmacSHA1")
    if method not in ("HmacSHA1", "HmacSHA256"):
        return bad_parameter("SignatureMethod")
    timestamp, nonce = params["Timestamp"], params["Nonce"]
    if not _is_digits(timestamp):
        return bad_parameter("Timestamp")
    if not _is_digits(nonce) or int(nonce) == 0:
        return bad_parameter("Nonce must be a positive integer")
    if config.refuse_credentials:
        return answer(CODE_AUTH, "authentication failed: signature mismatch")
    if abs(int(timestamp) - now) > SIGNATURE_SKEW_S:
        # 4200 rather than 4500: a skewed clock is ours to fix, retrying with a new Nonce would not help.
        return answer(CODE_EXPIRED, f"request expired: Timestamp is more than {SIGNATURE_SKEW_S:g} s off")
    if params["SecretId"] != config.secret_id:
        return answer(CODE_AUTH, "authentication failed: SecretId not found")
    expected = expected_signature(config.secret_key, sign_text(host, path, params), method)
    if not hmac.compare_digest(params["Signature"].encode(), expected.encode()):
        return answer(CODE_AUTH, "authentication failed: signature mismatch")
    if not nonce_is_fresh(str(int(nonce))):
        return answer(CODE_REPLAY)
    return None


def check_parameters(params: Mapping[str, str], now: float, tolerance_s: float) -> Answer | Accepted:
    if params.get("Action") != ACTION:
        return bad_parameter(f"Action {params.get('Action')!r} does not exist")
    channel_id = params.get("channelId", "")
    if not channel_id:
        return bad_parameter("channelId")
    if params.get("tapeType") != "1":
        # Scheduled recording (0) exists, but highlight only ever asks for real-time: anything else is a bug.
        return bad_parameter("tapeType must be 1 (real-time recording)")
    end = cst_seconds(params.get("endTime", ""))
    if end is None:
        return bad_parameter("endTime")
    start_text = params.get("startTime")
    # The documents' example omits startTime: real-time recording starts at the call anyway.
    start = now if start_text is None else cst_seconds(start_text)
    if start is None:
        return bad_parameter("startTime")
    # Real time ignores startTime; holding it to "now" catches a client sending UTC or host-local time.
    if abs(start - now) > tolerance_s:
        return bad_parameter("startTime is not now (CST)")
    if end <= start:
        return bad_parameter("endTime must be after startTime")
    # Longer is not refused: the documents record at most 30 minutes of a longer window.
    shown_start = start_text if start_text is not None else format_cst_seconds(now)
    return Accepted(channel_id, shown_start, params["endTime"], min(end, now + MAX_RECORD_SECONDS))


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS

"""The legacy `Live_Tape_Start` API (fcgi `common_access`), pure: signing, the query, the reply.

No I/O here, so every rule of the documents can be tested without a network.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

import orjson

from highlight.apis import HttpRequest, Started, is_json_int, parse_task_id, snippet
from highlight.apis.policy import Situation, error_for
from highlight.config import Secret
from highlight.errors import LiveAccessRefused, LiveInDoubt, LiveRefused, LiveUnreachable
from highlight.recording import RecordingOptions, RecordingWindow
from highlight.signing import sign

API_NAME = "live_tape_start"
INTERFACE = "Live_Tape_Start"
# The read-only interface `highlight check` calls: it lists the live channels and creates nothing, and the fcgi
# gateway checks appid, t and sign for it exactly as for Live_Tape_Start.
PROBE_INTERFACE = "Live_Channel_GetLiveChannelList"
# `t` is the signature's expiry: short enough that a leaked URL is useless soon, long enough for clock skew.
SIGNATURE_TTL_SECONDS = 60

# The backend's `ret` codes, each with the situation it names; what a situation means for a moment is
# `highlight.apis.policy`'s one rule for all three APIs.
ERROR_TABLE: Mapping[int, Situation] = {
    # "internal error": the backend failed after taking the request, so the task may exist. Before the policy
    # was shared this was a plain refusal, which let a later moment of the key call again: possibly twice.
    1201: Situation.INTERNAL_ERROR,
    1202: Situation.FREQUENCY_LIMIT,  # "request frequency exceeds limit": passes a little later (>= 3 s)
    1204: Situation.BAD_PARAMETER,
    # The documents give the limits (400 running, 4,000 a day) but no codes for them; 1206 and 1207 are the
    # simulator's. A real endpoint answering otherwise is read as a plain refusal (`failed`), and highlight's
    # own budget keeps it from getting there.
    1206: Situation.RUNNING_LIMIT,
    1207: Situation.DAILY_LIMIT,
    1301: Situation.NOT_LIVE,  # "has not live stream"
    20601: Situation.NO_CHANNEL,  # "channel does not exist"
}
# Any other non-zero ret refuses this request: nothing is recording, not retried.
DEFAULT_SITUATION = Situation.REFUSED
# The fcgi gateway answers these for our own appid/key/clock problems, not for the moment (whatever the ret).
ACCESS_REFUSALS = ("appid is invalid", "sign invalid", "time expired")


def query_string(appid: str, key: str, options: RecordingOptions, window: RecordingWindow, now: datetime) -> str:
    """The encoded query of one attempt.

    Form encoding (space as `+`, everything else reserved percent-encoded as UTF-8) is what the documents show
    for the times, and it carries `& = + % /` and non-ASCII channel ids intact.
    """
    t = int(now.timestamp()) + SIGNATURE_TTL_SECONDS
    params: list[tuple[str, str]] = [
        ("appid", appid),
        ("interface", INTERFACE),
        ("Param.s.channel_id", options.channel_id),
        ("Param.s.start_time", window.start_time),
        ("Param.s.end_time", window.end_time),
        ("Param.n.task_sub_type", "1"),
    ]
    if options.file_format is not None:
        params.append(("Param.s.file_format", options.file_format))
    if options.record_type is not None:
        params.append(("Param.s.record_type", options.record_type))
    if options.domain is not None:
        params.append(("Param.s.domain", options.domain))
    if options.path is not None:
        params.append(("Param.s.path", options.path))
    if options.mix_stream is not None:
        params.append(("Param.n.mix_stream", str(options.mix_stream)))
    params += [("t", str(t)), ("sign", sign(key, t))]
    return urlencode(params, quote_via=quote_plus)


class LiveTapeStart:
    """The default backend: a signed GET to the legacy fcgi `common_access` endpoint."""

    name = API_NAME

    def __init__(self, *, url: str, appid: str, key: Secret) -> None:
        parts = urlsplit(url)
        self._base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        self._appid = appid
        self._key = key

    def request(self, options: RecordingOptions, window: RecordingWindow, now: datetime) -> HttpRequest:
        return HttpRequest("GET", f"{self._base}?{query_string(self._appid, self._key.reveal(), options, window, now)}")

    def parse(self, status: int, body: bytes) -> Started:
        return Started(parse_reply(status, body))

    def probe(self, now: datetime) -> HttpRequest:
        t = int(now.timestamp()) + SIGNATURE_TTL_SECONDS
        params = [
            ("appid", self._appid),
            ("interface", PROBE_INTERFACE),
            ("t", str(t)),
            ("sign", sign(self._key.reveal(), t)),
        ]
        return HttpRequest("GET", f"{self._base}?{urlencode(params, quote_via=quote_plus)}")

    def parse_probe(self, status: int, body: bytes) -> str:
        return parse_probe_reply(status, body)


def parse_reply(status: int, body: bytes) -> int:
    """The task id of a successful reply, or the classified reason there is none.

    The real endpoint answers JSON labelled text/html, so the Content-Type is never consulted.
    """
    reply = _reply(status, body, INTERFACE)
    output = reply.get("output")
    task_id = output.get("task_id") if isinstance(output, dict) else None
    parsed = parse_task_id(task_id)
    if parsed is None:
        # ret 0 says a recording started, but without its id we cannot answer for it.
        raise LiveInDoubt(f"ret 0 without a valid output.task_id: {snippet(body)}", code="invalid_reply")
    return parsed


def parse_probe_reply(status: int, body: bytes) -> str:
    """What Live_Channel_GetLiveChannelList said, once the gateway accepted our appid, key and clock."""
    try:
        reply = _reply(status, body, PROBE_INTERFACE)
    except LiveRefused as refused:
        if refused.retriable:
            raise
        # Refused by the backend behind the gateway: the gateway has accepted our signature.
        return f"{PROBE_INTERFACE} answered ret {refused.code} ({refused.message}), after accepting the signature"
    output = reply.get("output")
    count = output.get("all_count") if isinstance(output, dict) else None
    shown = f"{count} channel{'s' if count != 1 else ''} live" if is_json_int(count) else "no channel count"
    return f"{PROBE_INTERFACE} answered ret 0 ({shown})"


def _reply(status: int, body: bytes, interface: str) -> dict[str, object]:
    """A reply with `ret` 0, or the classified reason it is not one: shared by every interface of the gateway."""
    if status >= 500 or status == 429:
        # The gateway failed or shed load before the backend created anything.
        raise LiveUnreachable(f"HTTP {status} from the Live API", code=f"http_{status}")
    text = body.decode("utf-8", errors="replace")
    if 400 <= status < 500:
        raise LiveAccessRefused(
            f"HTTP {status} from the Live API: check HIGHLIGHT_LIVE_URL ({snippet(text)})",
            code=f"http_{status}",
        )
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError:
        _raise_if_access_refused(text)
        raise LiveInDoubt(f"unreadable reply: {snippet(text)}", code="invalid_reply") from None
    if not isinstance(reply, dict) or not is_json_int(reply.get("ret")):
        raise LiveInDoubt(f"reply without an integer ret: {snippet(text)}", code="invalid_reply")
    ret: int = reply["ret"]
    message = str(reply.get("message") or reply.get("errmsg") or "")
    if ret != 0:
        _raise_if_access_refused(message)
        situation = ERROR_TABLE.get(ret, DEFAULT_SITUATION)
        raise error_for(situation, ret, message.strip() or f"ret {ret}", api=interface, creates=interface == INTERFACE)
    return reply


def _raise_if_access_refused(message: str) -> None:
    lowered = message.lower()
    for refusal in ACCESS_REFUSALS:
        if refusal in lowered:
            raise LiveAccessRefused(f"the Live API refused our credentials: {message.strip()}", code=refusal)

"""One error policy for the three recording APIs. Pure.

Each API names the same situations in its own codes: its module maps every code it knows to a `Situation`
(`live_tape_start.ERROR_TABLE`, `create_record.ERROR_TABLE`, `create_live_record.ERROR_TABLE`). What a situation
means for a moment is decided once, here (`POLICY`, with the reason for each rule next to it), so a legacy
`ret 1201`, a v2 `6000` and a 3.0 `InternalError` are answered alike. The README's "Error policy" table says
the same for operators.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from highlight.errors import (
    LiveAccessRefused,
    LiveError,
    LiveInDoubt,
    LiveLimitReached,
    LiveRefused,
    LiveUnreachable,
)

RUNNING_LIMIT = "running_limit"
DAILY_LIMIT = "daily_limit"
SKIP_REASONS = (RUNNING_LIMIT, DAILY_LIMIT)


class Situation(enum.StrEnum):
    INTERNAL_ERROR = "internal_error"
    FREQUENCY_LIMIT = "frequency_limit"
    RUNNING_LIMIT = "running_limit"
    DAILY_LIMIT = "daily_limit"
    LIMIT_OR_FREQUENCY = "limit_or_frequency"
    NOT_LIVE = "not_live"
    BAD_PARAMETER = "bad_parameter"
    NO_CHANNEL = "no_channel"
    REFUSED = "refused"
    REPLAY = "replay"
    ACCESS = "access"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Rule:
    """What one situation means for a moment: the error class the pipeline acts on, and its flags."""

    error: type[LiveError]
    retriable: bool = False
    skip_reason: str | None = None  # for `LiveLimitReached`: the `skipped` result's reason


POLICY: Mapping[Situation, Rule] = {
    # `in_doubt`, never re-sent. The backend failed after accepting the request, none of the documents says an
    # internal error created nothing, and a real-time task exists from the moment the call is accepted: calling
    # again could pay twice, the one thing highlight promises never to do.
    Situation.INTERNAL_ERROR: Rule(LiveInDoubt),
    # Retried no sooner than 3 s later (the documents warn a faster retry can record twice), `failed` past the
    # attempts. Refused at the door: nothing was created, and the same request passes a little later.
    Situation.FREQUENCY_LIMIT: Rule(LiveRefused, retriable=True),
    # `skipped`, not retried. Nothing was created and the account is full: calling again before one of our
    # recordings ends only burns calls, so the instance treats its share as full (`highlight.budget`) and the
    # moment is answered like one the budget had no room for.
    Situation.RUNNING_LIMIT: Rule(LiveLimitReached, skip_reason=RUNNING_LIMIT),
    # The same, until midnight in China.
    Situation.DAILY_LIMIT: Rule(LiveLimitReached, skip_reason=DAILY_LIMIT),
    # v2's 4400 names both. Retried like a frequency limit (harmless under either meaning: a refusal created
    # nothing), then `skipped` as the running limit, the limit that clears by itself.
    Situation.LIMIT_OR_FREQUENCY: Rule(LiveLimitReached, retriable=True, skip_reason=RUNNING_LIMIT),
    # `failed`, not retried. A real-time recording needs a stream pushing now; the same call later records other
    # minutes, so a later moment of the channel tries again instead.
    Situation.NOT_LIVE: Rule(LiveRefused),
    # `failed`: the request is wrong and will stay wrong; nothing was created.
    Situation.BAD_PARAMETER: Rule(LiveRefused),
    Situation.NO_CHANNEL: Rule(LiveRefused),
    Situation.REFUSED: Rule(LiveRefused),
    # A reused Nonce or a skewed Timestamp, refused before anything was created: retried with a fresh Nonce.
    Situation.REPLAY: Rule(LiveRefused, retriable=True),
    # Our credentials, clock, endpoint or account: no moment is answered for it; the service pauses and probes
    # (`highlight.outage`), since every moment would fail alike.
    Situation.ACCESS: Rule(LiveAccessRefused),
    # Shed load or a failed gateway, before anything was created: retried, then pause and probe.
    Situation.UNAVAILABLE: Rule(LiveUnreachable, retriable=True),
}


def error_for(
    situation: Situation,
    code: int | str,
    text: str,
    *,
    api: str,
    request_id: str | None = None,
    creates: bool = True,
) -> LiveError:
    """The classified error of an API answer in `situation`. `text` is the API's message (the caller puts the
    code there when the API gave none); `api` names the action in the messages of the non-refusals, and
    `creates` says whether it is one that creates a task (`highlight check`'s probes create nothing)."""
    rule = POLICY[situation]
    name = str(code)
    if rule.error is LiveLimitReached:
        assert rule.skip_reason is not None  # noqa: S101 -- POLICY gives every limit a reason
        return LiveLimitReached(name, text, reason=rule.skip_reason, retriable=rule.retriable, request_id=request_id)
    if rule.error is LiveRefused:
        return LiveRefused(name, text, retriable=rule.retriable, request_id=request_id)
    if rule.error is LiveInDoubt:
        may_exist = ", the task may exist" if creates else ""
        return LiveInDoubt(f"{api} failed internally{may_exist}: {text}", code=name, request_id=request_id)
    if rule.error is LiveAccessRefused:
        return LiveAccessRefused(f"{api} refused our credentials or endpoint: {text}", code=name, request_id=request_id)
    return LiveUnreachable(f"{api} unavailable: {text}", code=name, request_id=request_id)


def final_status(error: LiveError) -> str | None:
    """The status a moment gets when `error` is its call's last word (no attempt left to retry it); None when
    no moment is answered for it and the service pauses instead (`highlight.outage`)."""
    if isinstance(error, LiveLimitReached):
        return "skipped"
    if isinstance(error, LiveInDoubt):
        return "in_doubt"
    if isinstance(error, LiveAccessRefused | LiveUnreachable):
        return None
    return "failed"

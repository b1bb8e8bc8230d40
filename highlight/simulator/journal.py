"""What the simulator remembers: every call as received and answered, every read-only call, every task it
created. Tests read these to check what a client sent, never the client's own view of it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimCall:
    received_at: float
    received_monotonic: float
    # The parameters as received: the decoded query (legacy, v2) or the JSON body's fields as strings (3.0).
    query: dict[str, str]
    raw_query: str
    channel_id: str | None
    outcome: str
    task_id: int | None
    # Why a call was refused ("bad parameter: Param.s.start_time"); empty for a success.
    message: str = ""
    api: str = "live_tape_start"
    # The window as the client sent it, whatever the API names its fields.
    start_time: str | None = None
    end_time: str | None = None
    # The RequestId of the answer (3.0 only).
    request_id: str | None = None
    # The request's signature (`sign`, `Signature`, or the TC3 Authorization's), for tests that must find it
    # nowhere else, such as in the client's logs.
    signature: str | None = None


@dataclass(frozen=True)
class SimRead:
    """One read-only call (see `highlight.simulator.readonly`): it never creates a task."""

    received_at: float
    api: str
    action: str
    # "ok", or the refusal as `SimCall.outcome` words it ("sign invalid", "code:4100", "error:AuthFailure...").
    outcome: str
    message: str = ""


@dataclass(frozen=True)
class SimTask:
    task_id: int
    channel_id: str
    start_time: str
    end_time: str
    effective_end: float
    created_at: float
    params: dict[str, str]
    api: str = "live_tape_start"

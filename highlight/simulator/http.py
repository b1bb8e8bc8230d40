"""How the simulator reads a call of each API off the wire, and what its checks make of it.

Reading only: `highlight.simulator.server` decides on channels, quotas and faults, keeps the state and answers.
A read-only call (`ReadOnly`, see `highlight.simulator.readonly`) changes nothing: its checks are its answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiohttp import web

from highlight.simulator import cloud, readonly, rules, v2
from highlight.simulator.config import SimulatorConfig
from highlight.simulator.rules import Accepted, Answer, Dialect

LEGACY = rules.LegacyDialect()
V2 = v2.V2Dialect()


@dataclass(frozen=True, slots=True)
class Incoming:
    """One call as read, with the verdict of its protocol's checks (access and parameters)."""

    dialect: Dialect
    verdict: Answer | Accepted
    received_at: float
    # The parameters as received: the decoded query (legacy, v2) or the JSON body's fields as strings (3.0).
    query: dict[str, str]
    raw_query: str
    channel_id: str | None
    start_time: str | None
    end_time: str | None
    request_id: str | None = None


async def read_form(request: web.Request) -> tuple[str, dict[str, str]]:
    """The raw parameters of a `/common_access` call and their decoding (the query, then a form body)."""
    raw_query = request.rel_url.raw_query_string
    # Like a CGI form parser, a POST body counts only when it is declared a form.
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        body = (await request.read()).decode("utf-8", errors="replace")
        raw_query = "&".join(part for part in (raw_query, body) if part)
    # Form decoding, as the documents' examples encode: `+` is a space, %xx are UTF-8 bytes.
    return raw_query, first_values(parse_qsl(raw_query, keep_blank_values=True, errors="replace"))


async def read_live_tape_start(request: web.Request, config: SimulatorConfig, now: Callable[[], float]) -> Incoming:
    raw_query, query = await read_form(request)
    at = now()
    refusal = rules.check_access(query, config, at)
    checked = refusal or rules.check_parameters(query, at, config.clock_skew_tolerance_s)
    verdict = rules.legacy_answer(checked) if isinstance(checked, rules.Refusal) else checked
    start, end = query.get(rules.START_TIME), query.get(rules.END_TIME)
    return Incoming(LEGACY, verdict, at, query, raw_query, query.get(rules.CHANNEL_ID), start, end)


def read_create_record(
    request: web.Request,
    config: SimulatorConfig,
    now: Callable[[], float],
    nonce_is_fresh: Callable[[str, float], bool],
) -> Incoming:
    raw_query = request.rel_url.raw_query_string
    # PHP's form decoding: `+` is a space, %xx are UTF-8 bytes.
    pairs = parse_qsl(raw_query, keep_blank_values=True, errors="replace")
    # The Host header as the client sent it: it is part of what was signed.
    host = request.headers.get("Host", "")
    at = now()
    verdict = v2.check(pairs, host, request.rel_url.raw_path, config, at, lambda nonce: nonce_is_fresh(nonce, at))
    query = first_values(pairs)
    start, end = query.get("startTime"), query.get("endTime")
    return Incoming(V2, verdict, at, query, raw_query, query.get("channelId"), start, end)


async def read_create_live_record(request: web.Request, config: SimulatorConfig, now: Callable[[], float]) -> Incoming:
    body = await request.read()
    at = now()
    dialect = cloud.CloudDialect(str(uuid.uuid4()))
    verdict = cloud.check(request.method, request.rel_url.raw_path, request.headers, body, config, at, dialect)
    fields = cloud.read_body(body)
    query = cloud.as_query(fields)
    stream = fields.get("StreamName") if fields is not None else None
    return Incoming(
        dialect,
        verdict,
        at,
        query,
        body.decode("utf-8", errors="replace"),
        stream if isinstance(stream, str) else None,
        query.get("StartTime"),
        query.get("EndTime"),
        dialect.request_id,
    )


@dataclass(frozen=True, slots=True)
class ReadOnly:
    """One read-only call as read, with its answer: it changes nothing, so its checks decide everything."""

    dialect: Dialect
    action: str
    answer: Answer
    received_at: float


async def read_legacy_list(request: web.Request, config: SimulatorConfig, now: Callable[[], float]) -> ReadOnly:
    _, query = await read_form(request)
    at = now()
    return ReadOnly(LEGACY, readonly.LEGACY_INTERFACE, readonly.legacy_list(query, config, at), at)


def read_v2_list(
    request: web.Request,
    config: SimulatorConfig,
    now: Callable[[], float],
    nonce_is_fresh: Callable[[str, float], bool],
) -> ReadOnly:
    pairs = parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True, errors="replace")
    host, path, at = request.headers.get("Host", ""), request.rel_url.raw_path, now()
    answer = readonly.v2_list(pairs, host, path, config, at, lambda nonce: nonce_is_fresh(nonce, at))
    return ReadOnly(V2, readonly.V2_ACTION, answer, at)


async def read_cloud_list(request: web.Request, config: SimulatorConfig, now: Callable[[], float]) -> ReadOnly:
    body = await request.read()
    at = now()
    dialect = cloud.CloudDialect(str(uuid.uuid4()))
    path = request.rel_url.raw_path
    answer = readonly.cloud_list(request.method, path, request.headers, body, config, at, dialect)
    return ReadOnly(dialect, readonly.CLOUD_ACTION, answer, at)


def first_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    # First value wins, like the fcgi gateway; the v2 checks refuse duplicates outright.
    query: dict[str, str] = {}
    for name, value in pairs:
        query.setdefault(name, value)
    return query

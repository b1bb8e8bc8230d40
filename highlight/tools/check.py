"""`highlight check`: a preflight an operator runs before `highlight run`, with the same settings.

One line per check: `ok`, `FAIL` or `skipped`, and why. The Kafka checks and the Live checks run side by side;
a check that depends on a failed one is skipped, naming it. Nothing is written anywhere and no recording is ever
started: the credentials are proven with a read-only call of the chosen API (`Backend.probe`), which its gateway
authenticates exactly like a recording call.

The verdicts are pure functions of what was read (`*_line`), so each rule is testable without a network.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TextIO
from urllib.parse import urlsplit

from highlight.apis import backend_for
from highlight.config import LiveSettings, Settings
from highlight.errors import BrokerError, ConfigError, LiveAccessRefused, LiveError
from highlight.live import LiveClient, tls_for
from highlight.recording import now_utc
from highlight.tools import cluster
from highlight.tools.cluster import ClusterView, PartitionLag, TopicView

Status = Literal["ok", "FAIL", "skipped"]
OK: Status = "ok"
FAIL: Status = "FAIL"
SKIPPED: Status = "skipped"

# No single question may hold the report: an address that swallows packets would otherwise stall it for minutes.
KAFKA_TIMEOUT_SECONDS = 20.0
LIVE_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    status: Status
    detail: str


@dataclass(frozen=True, slots=True)
class Report:
    lines: tuple[Line, ...]

    @property
    def ok(self) -> bool:
        return all(line.status != FAIL for line in self.lines)

    def line(self, name: str) -> Line:
        return next(line for line in self.lines if line.name == name)

    def render(self) -> list[str]:
        width = max(len(line.name) for line in self.lines)
        rows = [f"{line.status:<7}  {line.name:<{width}}  {line.detail}" for line in self.lines]
        failed = sum(line.status == FAIL for line in self.lines)
        rows.append("every check holds" if not failed else f"{failed} check{'s' if failed != 1 else ''} failed")
        return rows


async def run(settings: Settings, *, out: TextIO = sys.stdout) -> Report:
    """Every check, printed in a fixed order once all have answered."""
    kafka_lines, live_lines = await asyncio.gather(kafka_checks(settings), live_checks(settings.live))
    report = Report((settings_line(settings), *kafka_lines, *live_lines))
    for row in report.render():
        print(row, file=out, flush=True)
    return report


def settings_line(settings: Settings) -> Line:
    # Reaching here means they loaded: an invalid setting stops the command before any check, as for `run`.
    kafka, live = settings.kafka, settings.live
    return Line("settings", OK, f"valid: {live.api} at {live.url}, group {kafka.group_id}")


# --- Kafka --------------------------------------------------------------------------------------------------------

KAFKA_CHECKS = (
    "broker",
    "moments-topic",
    "state-topic",
    "state-compaction",
    "repartition-topic",
    "callbacks-topic",
    "clips-topic",
    "dead-letter-size",
    "consumer-lag",
)


async def kafka_checks(settings: Settings) -> list[Line]:
    kafka = settings.kafka
    copartitioned = {
        "state-topic": kafka.state_topic,
        "repartition-topic": kafka.repartition_topic,
        "callbacks-topic": kafka.callbacks_topic,
    }
    try:
        async with asyncio.timeout(KAFKA_TIMEOUT_SECONDS):
            described = [kafka.moments_topic, *copartitioned.values(), kafka.clips_topic, kafka.dlq_topic]
            view = await cluster.describe(kafka, described)
    except (BrokerError, ConfigError, TimeoutError) as exc:
        why = str(exc) or f"no answer within {KAFKA_TIMEOUT_SECONDS:g} s"
        return [
            Line("broker", FAIL, f"{kafka.bootstrap_servers}: {why}"),
            *(Line(name, SKIPPED, "the broker did not answer") for name in KAFKA_CHECKS[1:]),
        ]
    moments = view.topics.get(kafka.moments_topic)
    lines = [broker_line(kafka.bootstrap_servers, view), moments_line(kafka.moments_topic, moments)]
    lines.append(copartitioned_line("state-topic", kafka.state_topic, view.topics.get(kafka.state_topic), moments))
    lines.append(compaction_line(kafka.state_topic, view.topics.get(kafka.state_topic)))
    for name in ("repartition-topic", "callbacks-topic"):
        topic = copartitioned[name]
        lines.append(copartitioned_line(name, topic, view.topics.get(topic), moments))
    lines.append(output_line("clips-topic", kafka.clips_topic, view.topics.get(kafka.clips_topic)))
    lines.append(dead_letter_size_line(kafka.dlq_topic, view.topics.get(kafka.dlq_topic), kafka.max_request_bytes))
    consumed = {
        topic: view.topics[topic].partitions
        for topic in (kafka.moments_topic, kafka.repartition_topic)
        if topic in view.topics
    }
    try:
        async with asyncio.timeout(KAFKA_TIMEOUT_SECONDS):
            lags = await cluster.group_lag(kafka, consumed)
    except (BrokerError, TimeoutError) as exc:
        lines.append(Line("consumer-lag", FAIL, f"could not read: {str(exc) or 'no answer in time'}"))
    else:
        lines.append(lag_line(kafka.group_id, lags))
    return lines


def broker_line(bootstrap: str, view: ClusterView) -> Line:
    return Line("broker", OK, f"{bootstrap} answered ({view.brokers} broker{'s' if view.brokers != 1 else ''})")


def moments_line(topic: str, moments: TopicView | None) -> Line:
    if moments is None:
        return Line("moments-topic", FAIL, f"{topic} does not exist; create it first (HIGHLIGHT_MOMENTS_TOPIC)")
    return Line("moments-topic", OK, f"{topic}: {_partitions(moments.partitions)}")


def copartitioned_line(name: str, topic: str, view: TopicView | None, moments: TopicView | None) -> Line:
    """A topic whose partition i must hold what partition i of the moments topic holds."""
    if view is None:
        return Line(name, OK, f"{topic}: absent (highlight creates it with the moments topic's partition count)")
    if moments is None:
        return Line(name, SKIPPED, f"{topic}: {_partitions(view.partitions)}; no moments topic to compare with")
    if view.partitions != moments.partitions:
        return Line(
            name,
            FAIL,
            f"{topic}: {_partitions(view.partitions)} but {moments.name} has {moments.partitions}; they must "
            "match (recreate it, or point the setting at a new topic)",
        )
    return Line(name, OK, f"{topic}: {_partitions(view.partitions)}, as the moments topic")


def output_line(name: str, topic: str, view: TopicView | None) -> Line:
    """A topic highlight only writes, keyed by channel: any partition count will do."""
    if view is None:
        return Line(name, OK, f"{topic}: absent (highlight creates it with the moments topic's partition count)")
    return Line(name, OK, f"{topic}: {_partitions(view.partitions)}")


def compaction_line(topic: str, view: TopicView | None) -> Line:
    if view is None:
        return Line("state-compaction", OK, f"{topic}: absent (highlight creates it with cleanup.policy=compact)")
    policy = view.configs.get("cleanup.policy")
    if policy is None:
        return Line("state-compaction", SKIPPED, f"{topic}: the broker does not report its cleanup.policy")
    if "compact" not in {part.strip() for part in policy.split(",")}:
        return Line(
            "state-compaction",
            FAIL,
            f"{topic}: cleanup.policy={policy}; the dedup state must be compacted, or the broker deletes keys "
            "that are still recorded (set cleanup.policy=compact)",
        )
    return Line("state-compaction", OK, f"{topic}: cleanup.policy={policy}")


def dead_letter_size_line(topic: str, view: TopicView | None, largest: int) -> Line:
    """A dead letter carries a moment's original bytes: the topic must take the largest request the producer sends
    (HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES), or larger dead letters are cut to fit it and lose their original bytes."""
    if view is None:
        return Line("dead-letter-size", OK, f"{topic}: absent (highlight creates it with max.message.bytes={largest})")
    raw = view.configs.get("max.message.bytes")
    if raw is None:
        return Line("dead-letter-size", SKIPPED, f"{topic}: the broker does not report its max.message.bytes")
    if not raw.isdigit():
        return Line("dead-letter-size", FAIL, f"{topic}: max.message.bytes={raw} is not a number")
    if int(raw) < largest:
        return Line(
            "dead-letter-size",
            FAIL,
            f"{topic}: max.message.bytes={raw} is below HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES ({largest}): larger dead "
            f"letters are cut to fit and cannot be replayed; raise it to at least {largest}",
        )
    return Line("dead-letter-size", OK, f"{topic}: max.message.bytes={raw} fits a {largest}-byte dead letter")


def lag_line(group: str, lags: Sequence[PartitionLag]) -> Line:
    """Informational: lag is the group's state, not a fault; only an unreadable lag fails."""
    if not lags:
        return Line("consumer-lag", SKIPPED, "no consumed topic exists yet")
    by_topic: dict[str, int] = {}
    unknown = 0
    for lag in lags:
        if lag.lag is None:
            unknown += 1
        else:
            by_topic[lag.topic] = by_topic.get(lag.topic, 0) + lag.lag
    never = sum(lag.committed is None for lag in lags)
    parts = ", ".join(f"{topic} {count}" for topic, count in by_topic.items())
    detail = f"group {group}: {sum(by_topic.values())} behind ({parts})"
    if never:
        detail += f"; {never} of {len(lags)} partitions never committed"
    if unknown:
        return Line("consumer-lag", FAIL, f"{detail}; the high-water mark of {unknown} partitions is unknown")
    return Line("consumer-lag", OK, detail)


def _partitions(count: int) -> str:
    return f"{count} partition{'s' if count != 1 else ''}"


# --- the Live API -------------------------------------------------------------------------------------------------

LIVE_CHECKS = ("live-dns", "live-tls", "live-credentials")


async def live_checks(live: LiveSettings) -> list[Line]:
    url = urlsplit(live.url)
    host = url.hostname or ""
    https = url.scheme == "https"
    port = url.port or (443 if https else 80)
    dns = await dns_line(host, port)
    if dns.status == FAIL:
        return [dns, Line("live-tls", SKIPPED, "the host does not resolve"), _credentials_skipped("does not resolve")]
    tls = await tls_line(live, host, port) if https else Line("live-tls", SKIPPED, f"{live.url} is plain http")
    if tls.status == FAIL:
        return [dns, tls, _credentials_skipped("fails TLS")]
    return [dns, tls, await credentials_line(live)]


def _credentials_skipped(why: str) -> Line:
    return Line("live-credentials", SKIPPED, f"the Live endpoint {why}")


async def dns_line(host: str, port: int) -> Line:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(LIVE_TIMEOUT_SECONDS):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        return Line("live-dns", FAIL, f"{host} does not resolve: no answer within {LIVE_TIMEOUT_SECONDS:g} s")
    except OSError as exc:
        return Line("live-dns", FAIL, f"{host} does not resolve: {exc.strerror or exc}")
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return Line("live-dns", OK, f"{host} resolves to {', '.join(addresses)}")


async def tls_line(live: LiveSettings, host: str, port: int) -> Line:
    try:
        context = tls_for(live)
    except ConfigError as exc:
        return Line("live-tls", FAIL, str(exc))
    if not isinstance(context, ssl.SSLContext):
        return Line("live-tls", SKIPPED, "HIGHLIGHT_LIVE_TLS_VERIFY=false: the certificate is not verified")
    try:
        async with asyncio.timeout(LIVE_TIMEOUT_SECONDS):
            _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        source = f"HIGHLIGHT_LIVE_CA_FILE {live.ca_file}" if live.ca_file else "the system CAs"
        return Line("live-tls", FAIL, f"{host}:{port}: certificate not verified by {source}: {exc.verify_message}")
    except TimeoutError:
        return Line("live-tls", FAIL, f"{host}:{port}: no TLS handshake within {LIVE_TIMEOUT_SECONDS:g} s")
    except (OSError, ssl.SSLError) as exc:
        return Line("live-tls", FAIL, f"{host}:{port}: no TLS connection: {exc}")
    try:
        certificate = writer.get_extra_info("peercert") or {}
    finally:
        writer.close()
        await writer.wait_closed()
    expiry = certificate.get("notAfter")
    return Line("live-tls", OK, f"{host}:{port}: certificate verified" + (f", valid until {expiry}" if expiry else ""))


async def credentials_line(live: LiveSettings) -> Line:
    backend = backend_for(live)
    try:
        async with asyncio.timeout(LIVE_TIMEOUT_SECONDS), LiveClient(live, backend, max_connections=1) as client:
            said = await client.probe(now_utc())
    except LiveAccessRefused as exc:
        return Line("live-credentials", FAIL, f"{live.api}: refused: {exc.message}{_request(exc)}")
    except LiveError as exc:
        return Line("live-credentials", FAIL, f"{live.api}: could not be verified: {exc.message}{_request(exc)}")
    except TimeoutError:
        return Line("live-credentials", FAIL, f"{live.api}: no answer within {LIVE_TIMEOUT_SECONDS:g} s")
    return Line("live-credentials", OK, f"{live.api}: accepted; {said}")


def _request(exc: LiveError) -> str:
    return f" (request {exc.request_id})" if exc.request_id else ""


def names() -> tuple[str, ...]:
    """Every check, in report order."""
    return ("settings", *KAFKA_CHECKS, *LIVE_CHECKS)

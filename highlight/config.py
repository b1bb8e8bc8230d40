"""Configuration, built once: environment, then `highlight run --flags` on top, into frozen dataclasses.

Nothing else in the package reads `os.environ`. Each setting is declared once in `SETTINGS`; the CLI builds its
flags and `--help` from the same table, so a name cannot drift between the two.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from highlight.errors import ConfigError


class Secret:
    """A value that must never reach a log line or a repr."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap_servers: str
    moments_topic: str
    results_topic: str
    dlq_topic: str
    state_topic: str
    repartition_topic: str
    group_id: str
    group_instance_id: str | None
    auto_offset_reset: str
    session_timeout_ms: int
    fetch_max_wait_ms: int


@dataclass(frozen=True, slots=True)
class LiveSettings:
    url: str
    appid: str
    key: Secret
    timeout_seconds: float
    max_attempts: int
    retry_delay_seconds: float
    max_rps: float


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    record_seconds: int
    bucket_seconds: int
    max_event_age_seconds: int
    max_in_flight: int
    drain_timeout_seconds: float


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings
    live: LiveSettings
    recorder: RecorderSettings
    metrics_port: int
    log_format: str
    log_level: str


# --- parsers: each returns the value or raises ValueError with a reason -----------------------------


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _int_between(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"between {low} and {high}"
            raise ValueError(f"must be {bound}, got {value}")
        return value

    return parse


def _float_above(low: float, *, inclusive: bool) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise ValueError(f"must be {'>=' if inclusive else '>'} {low:g}, got {raw.strip()}")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _http_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, got {raw!r}")
    return raw.strip()


def _appid(raw: str) -> str:
    # The documents type appid as an int; catching a typo here beats an `appid is invalid` per moment.
    value = raw.strip()
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"must be the numeric Live appid, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    default: str | None
    help: str
    parse: Callable[[str], Any] = _text
    required: bool = False
    secret: bool = False
    metavar: str | None = None
    attr: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attr", self.env.removeprefix("HIGHLIGHT_").lower())

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", "Kafka brokers, comma-separated host:port."),
    Setting("HIGHLIGHT_MOMENTS_TOPIC", "highlight.moments", "Input topic of highlight moments."),
    Setting("HIGHLIGHT_RESULTS_TOPIC", "highlight.recordings", "Output topic of results, keyed by channel_id."),
    Setting(
        "HIGHLIGHT_DLQ_TOPIC",
        "highlight.moments.dlq",
        "Dead-letter topic: malformed moments, original bytes.",
    ),
    Setting("HIGHLIGHT_GROUP_ID", "highlight-recorder", "Kafka consumer group shared by all instances."),
    Setting(
        "HIGHLIGHT_STATE_TOPIC",
        "highlight.recorder.state",
        "Compacted dedup state topic; created if missing with the moments topic's partition count.",
    ),
    Setting(
        "HIGHLIGHT_REPARTITION_TOPIC",
        None,
        "Internal topic re-keying moments whose Kafka key is not their channel_id (default: <group id>.repartition).",
    ),
    Setting(
        "HIGHLIGHT_LIVE_URL",
        "http://fcgi.video.qcloud.com/common_access",
        "Live_Tape_Start endpoint.",
        _http_url,
    ),
    Setting("HIGHLIGHT_LIVE_APPID", None, "Live appid (required).", _appid, required=True),
    Setting(
        "HIGHLIGHT_LIVE_KEY",
        None,
        "Live API auth key for sign (required, secret).",
        required=True,
        secret=True,
    ),
    Setting(
        "HIGHLIGHT_RECORD_SECONDS",
        "300",
        "Default recording length; any length is clamped to 300..1800 s.",
        _int_between(1),
        metavar="SECONDS",
    ),
    Setting("HIGHLIGHT_BUCKET_SECONDS", "300", "Dedup bucket size.", _int_between(1), metavar="SECONDS"),
    Setting(
        "HIGHLIGHT_MAX_EVENT_AGE_SECONDS",
        "120",
        "Older moments are answered `expired` without a call.",
        _int_between(0),
        metavar="SECONDS",
    ),
    Setting(
        "HIGHLIGHT_AUTO_OFFSET_RESET",
        "earliest",
        "Where a new consumer group starts (earliest: nothing published before the first start is skipped).",
        _choice("earliest", "latest"),
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SESSION_TIMEOUT_MS",
        "10000",
        "Consumer session timeout.",
        _int_between(1000),
        metavar="MS",
    ),
    Setting(
        "HIGHLIGHT_KAFKA_FETCH_MAX_WAIT_MS",
        "500",
        "Longest a fetch waits for data; lower it on brokers that do not answer fetches early.",
        _int_between(1, 60_000),
        metavar="MS",
    ),
    Setting(
        "HIGHLIGHT_GROUP_INSTANCE_ID",
        None,
        "Static group membership id (e.g. the pod name), so rolling restarts do not reshuffle partitions.",
    ),
    Setting(
        "HIGHLIGHT_METRICS_PORT",
        "9108",
        "Port for /metrics, /healthz and /readyz (0 disables).",
        _int_between(0, 65535),
        metavar="PORT",
    ),
    Setting(
        "HIGHLIGHT_LIVE_TIMEOUT_SECONDS",
        "10",
        "HTTP timeout of one call; the documents require more than 3 s.",
        _float_above(3, inclusive=False),
        metavar="SECONDS",
    ),
    Setting(
        "HIGHLIGHT_LIVE_MAX_ATTEMPTS",
        "3",
        "Attempts per moment for retriable failures (connection refused, HTTP 5xx, ret 1202).",
        _int_between(1, 10),
    ),
    Setting(
        "HIGHLIGHT_LIVE_RETRY_DELAY_SECONDS",
        "3",
        "Pause between attempts; never below 3 s, since a faster retry can record twice.",
        _float_above(3, inclusive=True),
        metavar="SECONDS",
    ),
    Setting(
        "HIGHLIGHT_LIVE_MAX_RPS",
        "20",
        "Calls per second shared by every moment of this instance (token bucket).",
        _float_above(0, inclusive=False),
    ),
    Setting(
        "HIGHLIGHT_MAX_IN_FLIGHT",
        "256",
        "Moments fetched but not finished; the consumer pauses at this bound.",
        _int_between(1, 100_000),
    ),
    Setting(
        "HIGHLIGHT_DRAIN_TIMEOUT_SECONDS",
        "20",
        "On shutdown or rebalance, how long in-flight calls may finish before they are abandoned (as in_doubt).",
        _float_above(0, inclusive=False),
        metavar="SECONDS",
    ),
    Setting(
        "HIGHLIGHT_LOG_FORMAT",
        "auto",
        "Log format: json, console, or auto (console on a TTY).",
        _choice("auto", "json", "console"),
    ),
    Setting("HIGHLIGHT_LOG_LEVEL", "info", "Log level.", _choice("debug", "info", "warning", "error")),
)

ENV_DEFAULTS: dict[str, str | None] = {s.env: s.default for s in SETTINGS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; flags default to None so the environment shows through."""
    group = parser.add_argument_group("settings (each flag overrides its environment variable)")
    for setting in SETTINGS:
        default = "required" if setting.required else (setting.default or "unset")
        if setting.secret:
            default += "; prefer the environment, flags show in `ps`"
        group.add_argument(
            setting.flag,
            dest=setting.attr,
            default=None,
            metavar=setting.metavar or setting.attr.rsplit("_", 1)[-1].upper(),
            help=f"{setting.help} [env {setting.env}; {default}]",
        )


def load(environ: Mapping[str, str], flags: argparse.Namespace | None = None) -> Settings:
    """Settings from the environment with flags on top; the first bad setting raises `ConfigError`."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = getattr(flags, setting.attr, None) if flags is not None else None
        source = setting.flag
        if raw is None:
            raw = environ.get(setting.env)
            source = setting.env
        if raw is None or (raw.strip() == "" and setting.default is None and not setting.required):
            if setting.required:
                raise ConfigError(f"{setting.env} is required (or pass {setting.flag})")
            values[setting.attr] = None if setting.default is None else setting.parse(setting.default)
            continue
        try:
            value = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source} {exc}") from None
        values[setting.attr] = Secret(value) if setting.secret else value
    return _build(values)


def _build(v: dict[str, Any]) -> Settings:
    group_id: str = v["group_id"]
    kafka = KafkaSettings(
        bootstrap_servers=v["kafka_bootstrap_servers"],
        moments_topic=v["moments_topic"],
        results_topic=v["results_topic"],
        dlq_topic=v["dlq_topic"],
        state_topic=v["state_topic"],
        repartition_topic=v["repartition_topic"] or f"{group_id}.repartition",
        group_id=group_id,
        group_instance_id=v["group_instance_id"],
        auto_offset_reset=v["auto_offset_reset"],
        session_timeout_ms=v["kafka_session_timeout_ms"],
        fetch_max_wait_ms=v["kafka_fetch_max_wait_ms"],
    )
    topics = [
        kafka.moments_topic,
        kafka.results_topic,
        kafka.dlq_topic,
        kafka.state_topic,
        kafka.repartition_topic,
    ]
    if len(set(topics)) != len(topics):
        raise ConfigError(
            "HIGHLIGHT_MOMENTS_TOPIC, _RESULTS_TOPIC, _DLQ_TOPIC, _STATE_TOPIC and _REPARTITION_TOPIC must differ"
        )
    live = LiveSettings(
        url=v["live_url"],
        appid=v["live_appid"],
        key=v["live_key"],
        timeout_seconds=v["live_timeout_seconds"],
        max_attempts=v["live_max_attempts"],
        retry_delay_seconds=v["live_retry_delay_seconds"],
        max_rps=v["live_max_rps"],
    )
    recorder = RecorderSettings(
        record_seconds=v["record_seconds"],
        bucket_seconds=v["bucket_seconds"],
        max_event_age_seconds=v["max_event_age_seconds"],
        max_in_flight=v["max_in_flight"],
        drain_timeout_seconds=v["drain_timeout_seconds"],
    )
    return Settings(
        kafka=kafka,
        live=live,
        recorder=recorder,
        metrics_port=v["metrics_port"],
        log_format=v["log_format"],
        log_level=v["log_level"],
    )

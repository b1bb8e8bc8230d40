"""Configuration, built once: environment, then `highlight run --flags` on top, into frozen dataclasses.

Nothing else in the package reads `os.environ`. Each setting is declared once in `SETTINGS`; the CLI builds its
flags and `--help` from the same table, so a name cannot drift between the two.
"""

from __future__ import annotations

import argparse
import math
import os
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
    security_protocol: str
    sasl_mechanism: str | None
    sasl_username: str | None
    sasl_password: Secret | None
    ssl_cafile: str | None
    ssl_certfile: str | None
    ssl_keyfile: str | None
    ssl_key_password: Secret | None


@dataclass(frozen=True, slots=True)
class LiveSettings:
    api: str
    url: str
    appid: str | None
    key: Secret | None
    secret_id: str | None
    secret_key: Secret | None
    region: str | None
    signature_method: str
    app_name: str
    domain_name: str | None
    timeout_seconds: float
    max_attempts: int
    retry_delay_seconds: float
    max_rps: float
    ca_file: str | None
    tls_verify: bool


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    record_seconds: int
    bucket_seconds: int
    max_event_age_seconds: int
    max_in_flight: int
    drain_timeout_seconds: float
    max_moment_bytes: int


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings
    live: LiveSettings
    recorder: RecorderSettings
    metrics_port: int
    log_format: str
    log_level: str


# --- the Live API backends -----------------------------------------------------------------------

LIVE_APIS: tuple[str, ...] = ("live_tape_start", "create_record", "create_live_record")

DEFAULT_LIVE_URLS: dict[str, str] = {
    "live_tape_start": "http://fcgi.video.qcloud.com/common_access",
    "create_record": "https://live.api.qcloud.com/v2/index.php",
    "create_live_record": "https://live.tencentcloudapi.com/",
}

# --- Kafka security -------------------------------------------------------------------------------

KAFKA_SECURITY_PROTOCOLS: tuple[str, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})

MAX_MOMENT_BYTES_LIMIT = 16 * 1024 * 1024


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
    """Any case in, the spelling given here out (`hmacsha1` -> `HmacSHA1`)."""
    canonical = {choice.lower(): choice for choice in choices}

    def parse(raw: str) -> str:
        value = raw.strip()
        # ASCII only: str.lower() folds a few other letters into ASCII ones (the Kelvin sign into k).
        choice = canonical.get(value.lower()) if value.isascii() else None
        if choice is None:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return choice

    return parse


_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _bool(raw: str) -> bool:
    value = _BOOLS.get(raw.strip().lower())
    if value is None:
        raise ValueError(f"must be true or false (also 1/0, yes/no, on/off), got {raw!r}")
    return value


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


def _readable_file(raw: str) -> str:
    # Checked at start-up so a mistyped path fails here, not at the first TLS handshake minutes later.
    path = raw.strip()
    if not os.path.exists(path):
        raise ValueError(f"must name a readable file, {path!r} does not exist")
    # A FIFO or device would block or never end when read: only regular files hold certificates.
    if not os.path.isfile(path):
        raise ValueError(f"must name a readable file, {path!r} is not a regular file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"must name a readable file, {path!r} cannot be read ({exc.strerror})") from None
    return path


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    default: str | None
    help: str
    parse: Callable[[str], Any] = _text
    # The HIGHLIGHT_LIVE_API values that cannot work without this setting; the others start without it.
    required_by: tuple[str, ...] = ()
    secret: bool = False
    metavar: str | None = None
    # What `--help` says when the table has no default but one is derived (the Live URL follows the api).
    default_help: str | None = None
    attr: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attr", self.env.removeprefix("HIGHLIGHT_").lower())
        unknown = set(self.required_by) - set(LIVE_APIS)
        if unknown:
            raise ValueError(f"{self.env}: required_by names unknown Live APIs {sorted(unknown)}")

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")


_SECRET_APIS = ("create_record", "create_live_record")

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
        "HIGHLIGHT_LIVE_API",
        "live_tape_start",
        "Which Live API starts a recording: live_tape_start (legacy fcgi Live_Tape_Start, signed with appid and "
        "key), create_record (API 2.0 CreateRecord, signed with SecretId/SecretKey) or create_live_record "
        "(API 3.0 CreateLiveRecord, signed with SecretId/SecretKey).",
        _choice(*LIVE_APIS),
    ),
    Setting(
        "HIGHLIGHT_LIVE_URL",
        None,
        "Live API endpoint. Default by HIGHLIGHT_LIVE_API: "
        + ", ".join(f"{api}: {url}" for api, url in DEFAULT_LIVE_URLS.items())
        + ".",
        _http_url,
        default_help="default follows HIGHLIGHT_LIVE_API",
    ),
    Setting(
        "HIGHLIGHT_LIVE_APPID",
        None,
        "Live appid, for live_tape_start.",
        _appid,
        required_by=("live_tape_start",),
    ),
    Setting(
        "HIGHLIGHT_LIVE_KEY",
        None,
        "Live API auth key that signs live_tape_start calls (secret).",
        required_by=("live_tape_start",),
        secret=True,
    ),
    Setting(
        "HIGHLIGHT_SECRET_ID",
        None,
        "Tencent Cloud API SecretId, for create_record and create_live_record.",
        required_by=_SECRET_APIS,
    ),
    Setting(
        "HIGHLIGHT_SECRET_KEY",
        None,
        "Tencent Cloud API SecretKey that signs create_record and create_live_record calls (secret).",
        required_by=_SECRET_APIS,
        secret=True,
    ),
    Setting(
        "HIGHLIGHT_REGION",
        None,
        "Tencent Cloud region: the Region common parameter of create_record (e.g. gz); optional for "
        "create_live_record, unused by live_tape_start.",
        required_by=("create_record",),
    ),
    Setting(
        "HIGHLIGHT_SIGNATURE_METHOD",
        "HmacSHA1",
        "Signature of create_record calls: HmacSHA1 or HmacSHA256 (other APIs ignore it).",
        _choice("HmacSHA1", "HmacSHA256"),
    ),
    Setting("HIGHLIGHT_APP_NAME", "live", "Push path name (AppName) of create_live_record calls."),
    Setting(
        "HIGHLIGHT_DOMAIN_NAME",
        None,
        "Push domain (DomainName) of create_live_record calls whose moment names no domain.",
        required_by=("create_live_record",),
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
        "HIGHLIGHT_MAX_MOMENT_BYTES",
        "65536",
        f"A moment larger than this is dead-lettered without being parsed (1..{MAX_MOMENT_BYTES_LIMIT}).",
        _int_between(1, MAX_MOMENT_BYTES_LIMIT),
        metavar="BYTES",
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
        "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "How every Kafka client connects: " + ", ".join(KAFKA_SECURITY_PROTOCOLS) + ".",
        _choice(*KAFKA_SECURITY_PROTOCOLS),
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SASL_MECHANISM",
        None,
        "SASL mechanism, with a SASL_* protocol: " + ", ".join(KAFKA_SASL_MECHANISMS) + ".",
        _choice(*KAFKA_SASL_MECHANISMS),
    ),
    Setting("HIGHLIGHT_KAFKA_SASL_USERNAME", None, "SASL user name, with a SASL_* protocol."),
    Setting(
        "HIGHLIGHT_KAFKA_SASL_PASSWORD",
        None,
        "SASL password, with a SASL_* protocol (secret).",
        secret=True,
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SSL_CAFILE",
        None,
        "CA bundle (PEM) that verifies the brokers, with SSL or SASL_SSL (default: the system CAs).",
        _readable_file,
        metavar="FILE",
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SSL_CERTFILE",
        None,
        "Client certificate (PEM) for brokers that require one, with SSL or SASL_SSL; may hold the key too.",
        _readable_file,
        metavar="FILE",
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SSL_KEYFILE",
        None,
        "Private key (PEM) of the client certificate, when it is not in the certificate file.",
        _readable_file,
        metavar="FILE",
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD",
        None,
        "Password of an encrypted client private key (secret).",
        secret=True,
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
        "HIGHLIGHT_LIVE_CA_FILE",
        None,
        "CA bundle (PEM) that verifies the Live endpoint's HTTPS certificate (default: the system CAs).",
        _readable_file,
        metavar="FILE",
    ),
    Setting(
        "HIGHLIGHT_LIVE_TLS_VERIFY",
        "true",
        "Verify the Live endpoint's HTTPS certificate (true/false); false is for testing only, since "
        "anyone on the path could then read the signed calls.",
        _bool,
        metavar="BOOL",
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
        if setting.required_by:
            default = f"required when HIGHLIGHT_LIVE_API={' or '.join(setting.required_by)}"
        else:
            default = setting.default_help or setting.default or "unset"
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
        # Blank counts as unset where there is no default: `HIGHLIGHT_X=` in an env file means "not given".
        if raw is None or (raw.strip() == "" and setting.default is None):
            values[setting.attr] = None if setting.default is None else setting.parse(setting.default)
            continue
        try:
            value = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source} {exc}") from None
        values[setting.attr] = Secret(value) if setting.secret else value
    # Only after every value is parsed: which settings are required depends on the api, wherever it is listed.
    api: str = values["live_api"]
    for setting in SETTINGS:
        if api in setting.required_by and values[setting.attr] is None:
            raise ConfigError(f"{setting.env} is required when HIGHLIGHT_LIVE_API={api} (or pass {setting.flag})")
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
        security_protocol=v["kafka_security_protocol"],
        sasl_mechanism=v["kafka_sasl_mechanism"],
        sasl_username=v["kafka_sasl_username"],
        sasl_password=v["kafka_sasl_password"],
        ssl_cafile=v["kafka_ssl_cafile"],
        ssl_certfile=v["kafka_ssl_certfile"],
        ssl_keyfile=v["kafka_ssl_keyfile"],
        ssl_key_password=v["kafka_ssl_key_password"],
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
    _check_kafka_security(kafka)
    api: str = v["live_api"]
    live = LiveSettings(
        api=api,
        url=v["live_url"] or DEFAULT_LIVE_URLS[api],
        appid=v["live_appid"],
        key=v["live_key"],
        secret_id=v["secret_id"],
        secret_key=v["secret_key"],
        region=v["region"],
        signature_method=v["signature_method"],
        app_name=v["app_name"],
        domain_name=v["domain_name"],
        timeout_seconds=v["live_timeout_seconds"],
        max_attempts=v["live_max_attempts"],
        retry_delay_seconds=v["live_retry_delay_seconds"],
        max_rps=v["live_max_rps"],
        ca_file=v["live_ca_file"],
        tls_verify=v["live_tls_verify"],
    )
    recorder = RecorderSettings(
        record_seconds=v["record_seconds"],
        bucket_seconds=v["bucket_seconds"],
        max_event_age_seconds=v["max_event_age_seconds"],
        max_in_flight=v["max_in_flight"],
        drain_timeout_seconds=v["drain_timeout_seconds"],
        max_moment_bytes=v["max_moment_bytes"],
    )
    return Settings(
        kafka=kafka,
        live=live,
        recorder=recorder,
        metrics_port=v["metrics_port"],
        log_format=v["log_format"],
        log_level=v["log_level"],
    )


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _ignored(given: list[str], protocol: str, lacks: str, instead: str) -> ConfigError:
    one = len(given) == 1
    return ConfigError(
        f"{_names(given)} {'is' if one else 'are'} set but HIGHLIGHT_KAFKA_SECURITY_PROTOCOL={protocol} does not "
        f"use {lacks}, so {'it' if one else 'they'} would be ignored; set HIGHLIGHT_KAFKA_SECURITY_PROTOCOL={instead}, "
        f"or unset {'it' if one else 'them'}"
    )


def _check_kafka_security(kafka: KafkaSettings) -> None:
    """Refuse combinations aiokafka would reject later, or would quietly ignore (and so not secure)."""
    protocol = kafka.security_protocol
    sasl = {
        "HIGHLIGHT_KAFKA_SASL_MECHANISM": kafka.sasl_mechanism,
        "HIGHLIGHT_KAFKA_SASL_USERNAME": kafka.sasl_username,
        "HIGHLIGHT_KAFKA_SASL_PASSWORD": kafka.sasl_password,
    }
    if protocol in _SASL_PROTOCOLS:
        missing = [name for name, value in sasl.items() if value is None]
        if missing:
            labels = [
                f"{name} ({'|'.join(KAFKA_SASL_MECHANISMS)})" if name.endswith("_MECHANISM") else name
                for name in missing
            ]
            without = "SSL" if protocol == "SASL_SSL" else "PLAINTEXT"
            raise ConfigError(
                f"HIGHLIGHT_KAFKA_SECURITY_PROTOCOL={protocol} needs {_names(labels)}; "
                f"set {'it' if len(missing) == 1 else 'them'}, "
                f"or set HIGHLIGHT_KAFKA_SECURITY_PROTOCOL={without} to connect without SASL"
            )
    else:
        given = [name for name, value in sasl.items() if value is not None]
        if given:
            raise _ignored(given, protocol, "SASL", "SASL_SSL" if protocol == "SSL" else "SASL_PLAINTEXT or SASL_SSL")
    tls = {
        "HIGHLIGHT_KAFKA_SSL_CAFILE": kafka.ssl_cafile,
        "HIGHLIGHT_KAFKA_SSL_CERTFILE": kafka.ssl_certfile,
        "HIGHLIGHT_KAFKA_SSL_KEYFILE": kafka.ssl_keyfile,
        "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD": kafka.ssl_key_password,
    }
    given = [name for name, value in tls.items() if value is not None]
    if given and protocol not in _TLS_PROTOCOLS:
        raise _ignored(given, protocol, "TLS", "SASL_SSL" if protocol == "SASL_PLAINTEXT" else "SSL")
    if kafka.ssl_keyfile is not None and kafka.ssl_certfile is None:
        raise ConfigError(
            "HIGHLIGHT_KAFKA_SSL_KEYFILE is set without HIGHLIGHT_KAFKA_SSL_CERTFILE; set "
            "HIGHLIGHT_KAFKA_SSL_CERTFILE to the client certificate of that key, or unset HIGHLIGHT_KAFKA_SSL_KEYFILE"
        )
    if kafka.ssl_key_password is not None and kafka.ssl_certfile is None:
        raise ConfigError(
            "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD is set without HIGHLIGHT_KAFKA_SSL_CERTFILE or "
            "HIGHLIGHT_KAFKA_SSL_KEYFILE, so there is no key to unlock; set HIGHLIGHT_KAFKA_SSL_CERTFILE (and "
            "HIGHLIGHT_KAFKA_SSL_KEYFILE if the key is separate), or unset HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD"
        )

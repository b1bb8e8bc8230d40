"""The frozen settings each command runs on, and the `Secret` that keeps a value out of every log line and repr."""

from __future__ import annotations

from dataclasses import dataclass

from highlight.budget import Limits


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
    takeover_margin_seconds: float
    fetch_max_wait_ms: int
    max_request_bytes: int
    startup_timeout_seconds: float
    security_protocol: str
    sasl_mechanism: str | None
    sasl_username: str | None
    sasl_password: Secret | None
    ssl_cafile: str | None
    ssl_certfile: str | None
    ssl_keyfile: str | None
    ssl_key_password: Secret | None
    callbacks_topic: str
    clips_topic: str


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
    max_unprocessable_in_a_row: int
    dedup_mode: str
    min_cover_seconds: int
    clip_wait_seconds: int


@dataclass(frozen=True, slots=True)
class Settings:
    """What `highlight run` reads."""

    kafka: KafkaSettings
    live: LiveSettings
    recorder: RecorderSettings
    metrics_port: int
    log_format: str
    log_level: str
    # The account's limits, spent as a budget (highlight.budget).
    budget: Limits


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    key: Secret
    port: int
    grace_seconds: int


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    """What `highlight callbacks` reads. Its `kafka` holds the table's defaults for what only `run` reads."""

    kafka: KafkaSettings
    callbacks: CallbackSettings
    metrics_port: int
    log_format: str
    log_level: str

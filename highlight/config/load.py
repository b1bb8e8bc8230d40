"""Loading: environment, then the command's `--flags` on top, parsed by the table and checked across settings."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from highlight.budget import Limits
from highlight.config.checks import check_kafka_security, check_live_tls
from highlight.config.setting import CALLBACKS, DEFAULT_LIVE_URLS, MAX_NOTIFICATION_BYTES, REQUEST_HEADROOM_BYTES, RUN
from highlight.config.settings import (
    CallbackSettings,
    KafkaSettings,
    LiveSettings,
    ReceiverSettings,
    RecorderSettings,
    Secret,
    Settings,
)
from highlight.config.table import SETTINGS, settings_of
from highlight.errors import ConfigError


def load(environ: Mapping[str, str], flags: argparse.Namespace | None = None, *, uses_live: bool = True) -> Settings:
    """`highlight run`'s settings (also those of the operator tools configured like it) from the environment with
    flags on top; the first bad setting raises `ConfigError`.

    `uses_live=False` is for a command that never calls the Live API (`highlight dlq replay`): the chosen API's
    credentials are then not required. Whatever is given is still parsed and checked, so one environment serves
    every command, and a typo shows wherever it is read.
    """
    values = _values(environ, flags, RUN)
    # Only after every value is parsed: which settings are required depends on the api, wherever it is listed.
    api: str = values["live_api"]
    for setting in SETTINGS:
        if uses_live and api in setting.required_by and values[setting.attr] is None:
            raise ConfigError(f"{setting.env} is required when HIGHLIGHT_LIVE_API={api} (or pass {setting.flag})")
    return _build(values)


def load_receiver(environ: Mapping[str, str], flags: argparse.Namespace | None = None) -> ReceiverSettings:
    """`highlight callbacks`'s settings, as `load` does for `run`."""
    values = _values(environ, flags, CALLBACKS)
    kafka = _kafka(values)
    if kafka.callbacks_topic == kafka.moments_topic:
        raise ConfigError("HIGHLIGHT_MOMENTS_TOPIC and HIGHLIGHT_CALLBACKS_TOPIC must differ")
    least = MAX_NOTIFICATION_BYTES + REQUEST_HEADROOM_BYTES
    if kafka.max_request_bytes < least:
        # A notification the receiver takes must fit in one request, or Live would be answered 503 for ever.
        raise ConfigError(
            f"HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES ({kafka.max_request_bytes}) must be at least {least} for the "
            f"receiver: a notification of up to {MAX_NOTIFICATION_BYTES} bytes, with its key, must fit in one request"
        )
    check_kafka_security(values)
    return ReceiverSettings(
        kafka=kafka,
        callbacks=CallbackSettings(
            key=values["callback_key"],
            port=values["callback_port"],
            grace_seconds=values["callback_grace_seconds"],
        ),
        metrics_port=values["metrics_port"],
        log_format=values["log_format"],
        log_level=values["log_level"],
    )


def _values(environ: Mapping[str, str], flags: argparse.Namespace | None, command: str) -> dict[str, Any]:
    """Every setting of `command` from the environment with flags on top; the others keep their defaults."""
    ours = settings_of(command)
    read = {setting.env for setting in ours}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.env not in read:
            values[setting.attr] = None if setting.default is None else setting.parse(setting.default)
            continue
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
    for setting in ours:
        if setting.required and values[setting.attr] is None:
            raise ConfigError(f"{setting.env} is required (or pass {setting.flag})")
    return values


def _kafka(v: dict[str, Any]) -> KafkaSettings:
    group_id: str = v["group_id"]
    return KafkaSettings(
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
        takeover_margin_seconds=v["takeover_margin_seconds"],
        fetch_max_wait_ms=v["kafka_fetch_max_wait_ms"],
        max_request_bytes=v["kafka_max_request_bytes"],
        startup_timeout_seconds=v["kafka_startup_timeout_seconds"],
        security_protocol=v["kafka_security_protocol"],
        sasl_mechanism=v["kafka_sasl_mechanism"],
        sasl_username=v["kafka_sasl_username"],
        sasl_password=v["kafka_sasl_password"],
        ssl_cafile=v["kafka_ssl_cafile"],
        ssl_certfile=v["kafka_ssl_certfile"],
        ssl_keyfile=v["kafka_ssl_keyfile"],
        ssl_key_password=v["kafka_ssl_key_password"],
        callbacks_topic=v["callbacks_topic"],
        clips_topic=v["clips_topic"],
    )


def _build(v: dict[str, Any]) -> Settings:
    kafka = _kafka(v)
    topics = [
        kafka.moments_topic,
        kafka.results_topic,
        kafka.dlq_topic,
        kafka.state_topic,
        kafka.repartition_topic,
        kafka.callbacks_topic,
        kafka.clips_topic,
    ]
    if len(set(topics)) != len(topics):
        raise ConfigError(
            "HIGHLIGHT_MOMENTS_TOPIC, _RESULTS_TOPIC, _DLQ_TOPIC, _STATE_TOPIC, _REPARTITION_TOPIC, "
            "_CALLBACKS_TOPIC and _CLIPS_TOPIC must differ"
        )
    check_kafka_security(v)
    api: str = v["live_api"]
    url: str = v["live_url"] or DEFAULT_LIVE_URLS[api]
    check_live_tls(v, url)
    live = LiveSettings(
        api=api,
        url=url,
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
        max_unprocessable_in_a_row=v["max_unprocessable_in_a_row"],
        dedup_mode=v["dedup_mode"],
        min_cover_seconds=v["min_cover_seconds"],
        clip_wait_seconds=v["clip_wait_seconds"],
    )
    budget = Limits(
        running=v["max_running_recordings"],
        daily=v["max_recordings_per_day"],
        reserved_share=v["reserved_share"],
        reserved_priority=v["reserved_priority"],
    )
    if recorder.max_moment_bytes > kafka.max_request_bytes - REQUEST_HEADROOM_BYTES:
        # Every valid moment's result (it carries the attributes) and re-keyed copy must fit in one request.
        raise ConfigError(
            f"HIGHLIGHT_MAX_MOMENT_BYTES ({recorder.max_moment_bytes}) must be at most "
            f"HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES ({kafka.max_request_bytes}) minus {REQUEST_HEADROOM_BYTES}, "
            "so that a moment's result fits in one request; raise HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES (and the "
            "topics' max.message.bytes) or lower HIGHLIGHT_MAX_MOMENT_BYTES"
        )
    return Settings(
        kafka=kafka,
        live=live,
        recorder=recorder,
        metrics_port=v["metrics_port"],
        log_format=v["log_format"],
        log_level=v["log_level"],
        budget=budget,
    )

"""Configuration (highlight.config): environment and flags into frozen settings; the CLI's refusal to start."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from highlight import config
from highlight.config import ENV_DEFAULTS, Secret, Settings
from highlight.errors import ConfigError

REQUIRED = {"HIGHLIGHT_LIVE_APPID": "1234", "HIGHLIGHT_LIVE_KEY": "s3cr3t-live-key"}

# The documented table: name -> default (None: no default).
DOCUMENTED_DEFAULTS: dict[str, str | None] = {
    "HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
    "HIGHLIGHT_MOMENTS_TOPIC": "highlight.moments",
    "HIGHLIGHT_RESULTS_TOPIC": "highlight.recordings",
    "HIGHLIGHT_DLQ_TOPIC": "highlight.moments.dlq",
    "HIGHLIGHT_GROUP_ID": "highlight-recorder",
    "HIGHLIGHT_STATE_TOPIC": "highlight.recorder.state",
    "HIGHLIGHT_REPARTITION_TOPIC": None,
    "HIGHLIGHT_LIVE_URL": "http://fcgi.video.qcloud.com/common_access",
    "HIGHLIGHT_LIVE_APPID": None,
    "HIGHLIGHT_LIVE_KEY": None,
    "HIGHLIGHT_RECORD_SECONDS": "300",
    "HIGHLIGHT_BUCKET_SECONDS": "300",
    "HIGHLIGHT_MAX_EVENT_AGE_SECONDS": "120",
    "HIGHLIGHT_AUTO_OFFSET_RESET": "earliest",
    "HIGHLIGHT_KAFKA_SESSION_TIMEOUT_MS": "10000",
    "HIGHLIGHT_KAFKA_FETCH_MAX_WAIT_MS": "500",
    "HIGHLIGHT_GROUP_INSTANCE_ID": None,
    "HIGHLIGHT_METRICS_PORT": "9108",
    "HIGHLIGHT_LIVE_TIMEOUT_SECONDS": "10",
    "HIGHLIGHT_LIVE_MAX_ATTEMPTS": "3",
    "HIGHLIGHT_LIVE_RETRY_DELAY_SECONDS": "3",
    "HIGHLIGHT_LIVE_MAX_RPS": "20",
    "HIGHLIGHT_MAX_IN_FLIGHT": "256",
    "HIGHLIGHT_DRAIN_TIMEOUT_SECONDS": "20",
    "HIGHLIGHT_LOG_FORMAT": "auto",
    "HIGHLIGHT_LOG_LEVEL": "info",
}


def _load(**env: str) -> Settings:
    return config.load({**REQUIRED, **env})


def _flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def _error(environ: dict[str, str], flags: argparse.Namespace | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        config.load(environ, flags)
    return str(caught.value)


# --- defaults -------------------------------------------------------------------------------------


def test_env_defaults_match_the_documented_table() -> None:
    assert ENV_DEFAULTS == DOCUMENTED_DEFAULTS


def test_defaults_are_what_load_returns_with_only_the_required_settings() -> None:
    settings = _load()
    assert settings.kafka == config.KafkaSettings(
        bootstrap_servers="localhost:9092",
        moments_topic="highlight.moments",
        results_topic="highlight.recordings",
        dlq_topic="highlight.moments.dlq",
        state_topic="highlight.recorder.state",
        repartition_topic="highlight-recorder.repartition",
        group_id="highlight-recorder",
        group_instance_id=None,
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
        fetch_max_wait_ms=500,
    )
    assert settings.live == config.LiveSettings(
        url="http://fcgi.video.qcloud.com/common_access",
        appid="1234",
        key=Secret("s3cr3t-live-key"),
        timeout_seconds=10.0,
        max_attempts=3,
        retry_delay_seconds=3.0,
        max_rps=20.0,
    )
    assert settings.recorder == config.RecorderSettings(
        record_seconds=300,
        bucket_seconds=300,
        max_event_age_seconds=120,
        max_in_flight=256,
        drain_timeout_seconds=20.0,
    )
    assert (settings.metrics_port, settings.log_format, settings.log_level) == (9108, "auto", "info")


def test_settings_are_frozen() -> None:
    settings = _load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.metrics_port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.live.appid = "9"  # type: ignore[misc]


def test_repartition_topic_defaults_to_the_group_id_dot_repartition() -> None:
    assert _load(HIGHLIGHT_GROUP_ID="grp-a").kafka.repartition_topic == "grp-a.repartition"
    assert _load(HIGHLIGHT_GROUP_ID="grp-a", HIGHLIGHT_REPARTITION_TOPIC="  ").kafka.repartition_topic == (
        "grp-a.repartition"
    )
    assert _load(HIGHLIGHT_REPARTITION_TOPIC="mine").kafka.repartition_topic == "mine"


def test_every_setting_is_read_from_its_environment_variable() -> None:
    settings = _load(
        HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS="k1:9092,k2:9092",
        HIGHLIGHT_MOMENTS_TOPIC="m",
        HIGHLIGHT_RESULTS_TOPIC="r",
        HIGHLIGHT_DLQ_TOPIC="d",
        HIGHLIGHT_GROUP_ID="g",
        HIGHLIGHT_STATE_TOPIC="s",
        HIGHLIGHT_REPARTITION_TOPIC="p",
        HIGHLIGHT_LIVE_URL="https://live.example.com/common_access",
        HIGHLIGHT_RECORD_SECONDS="600",
        HIGHLIGHT_BUCKET_SECONDS="60",
        HIGHLIGHT_MAX_EVENT_AGE_SECONDS="0",
        HIGHLIGHT_AUTO_OFFSET_RESET="LATEST",
        HIGHLIGHT_KAFKA_SESSION_TIMEOUT_MS="6000",
        HIGHLIGHT_KAFKA_FETCH_MAX_WAIT_MS="50",
        HIGHLIGHT_GROUP_INSTANCE_ID="pod-0",
        HIGHLIGHT_METRICS_PORT="0",
        HIGHLIGHT_LIVE_TIMEOUT_SECONDS="3.5",
        HIGHLIGHT_LIVE_MAX_ATTEMPTS="10",
        HIGHLIGHT_LIVE_RETRY_DELAY_SECONDS="3",
        HIGHLIGHT_LIVE_MAX_RPS="0.5",
        HIGHLIGHT_MAX_IN_FLIGHT="1",
        HIGHLIGHT_DRAIN_TIMEOUT_SECONDS="0.1",
        HIGHLIGHT_LOG_FORMAT="json",
        HIGHLIGHT_LOG_LEVEL="DEBUG",
    )
    kafka, live, rec = settings.kafka, settings.live, settings.recorder
    assert kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert (kafka.moments_topic, kafka.results_topic, kafka.dlq_topic) == ("m", "r", "d")
    assert (kafka.state_topic, kafka.repartition_topic, kafka.group_id) == ("s", "p", "g")
    assert (kafka.auto_offset_reset, kafka.session_timeout_ms, kafka.fetch_max_wait_ms) == ("latest", 6000, 50)
    assert kafka.group_instance_id == "pod-0"
    assert live.url == "https://live.example.com/common_access"
    assert (live.timeout_seconds, live.max_attempts, live.retry_delay_seconds, live.max_rps) == (3.5, 10, 3.0, 0.5)
    assert (rec.record_seconds, rec.bucket_seconds, rec.max_event_age_seconds) == (600, 60, 0)
    assert (rec.max_in_flight, rec.drain_timeout_seconds) == (1, 0.1)
    assert (settings.metrics_port, settings.log_format, settings.log_level) == (0, "json", "debug")


# --- required and invalid settings ----------------------------------------------------------------


@pytest.mark.parametrize("missing", ["HIGHLIGHT_LIVE_APPID", "HIGHLIGHT_LIVE_KEY"])
def test_missing_required_setting_is_a_config_error_naming_it(missing: str) -> None:
    environ = {name: value for name, value in REQUIRED.items() if name != missing}
    assert missing in _error(environ)


@pytest.mark.parametrize("missing", ["HIGHLIGHT_LIVE_APPID", "HIGHLIGHT_LIVE_KEY"])
@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_required_setting_is_a_config_error_naming_it(missing: str, blank: str) -> None:
    assert missing in _error({**REQUIRED, missing: blank})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HIGHLIGHT_LIVE_APPID", "12a4"),
        ("HIGHLIGHT_LIVE_APPID", "-1234"),
        ("HIGHLIGHT_LIVE_APPID", "1234.0"),
        ("HIGHLIGHT_LIVE_APPID", "\u0661\u0662"),  # Arabic-Indic digits are not an appid
        ("HIGHLIGHT_LIVE_TIMEOUT_SECONDS", "3"),
        ("HIGHLIGHT_LIVE_TIMEOUT_SECONDS", "2.5"),
        ("HIGHLIGHT_LIVE_TIMEOUT_SECONDS", "nan"),
        ("HIGHLIGHT_LIVE_TIMEOUT_SECONDS", "ten"),
        ("HIGHLIGHT_LIVE_RETRY_DELAY_SECONDS", "2.9"),
        ("HIGHLIGHT_LIVE_RETRY_DELAY_SECONDS", "-3"),
        ("HIGHLIGHT_LIVE_URL", "fcgi.video.qcloud.com/common_access"),
        ("HIGHLIGHT_LIVE_URL", "ftp://fcgi.video.qcloud.com/common_access"),
        ("HIGHLIGHT_LIVE_URL", "http://"),
        ("HIGHLIGHT_LIVE_URL", "not a url"),
        ("HIGHLIGHT_AUTO_OFFSET_RESET", "middle"),
        ("HIGHLIGHT_AUTO_OFFSET_RESET", "none"),
        ("HIGHLIGHT_RECORD_SECONDS", "-300"),
        ("HIGHLIGHT_RECORD_SECONDS", "0"),
        ("HIGHLIGHT_RECORD_SECONDS", "300s"),
        ("HIGHLIGHT_RECORD_SECONDS", "1.5"),
        ("HIGHLIGHT_BUCKET_SECONDS", "-1"),
        ("HIGHLIGHT_BUCKET_SECONDS", "0"),
        ("HIGHLIGHT_MAX_EVENT_AGE_SECONDS", "-1"),
        ("HIGHLIGHT_METRICS_PORT", "-1"),
        ("HIGHLIGHT_METRICS_PORT", "65536"),
        ("HIGHLIGHT_KAFKA_SESSION_TIMEOUT_MS", "999"),
        ("HIGHLIGHT_KAFKA_FETCH_MAX_WAIT_MS", "0"),
        ("HIGHLIGHT_LIVE_MAX_ATTEMPTS", "0"),
        ("HIGHLIGHT_LIVE_MAX_ATTEMPTS", "11"),
        ("HIGHLIGHT_LIVE_MAX_RPS", "0"),
        ("HIGHLIGHT_LIVE_MAX_RPS", "-5"),
        ("HIGHLIGHT_MAX_IN_FLIGHT", "0"),
        ("HIGHLIGHT_MAX_IN_FLIGHT", "-1"),
        ("HIGHLIGHT_DRAIN_TIMEOUT_SECONDS", "0"),
        ("HIGHLIGHT_DRAIN_TIMEOUT_SECONDS", "-1"),
        ("HIGHLIGHT_LOG_FORMAT", "xml"),
        ("HIGHLIGHT_LOG_LEVEL", "trace"),
        ("HIGHLIGHT_MOMENTS_TOPIC", "  "),
        ("HIGHLIGHT_GROUP_ID", ""),
    ],
)
def test_invalid_value_is_a_config_error_naming_the_setting(name: str, value: str) -> None:
    message = _error({**REQUIRED, name: value})
    assert name in message


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--live-appid", "abc"),
        ("--live-timeout-seconds", "3"),
        ("--live-retry-delay-seconds", "2.9"),
        ("--auto-offset-reset", "middle"),
        ("--max-in-flight", "0"),
    ],
)
def test_invalid_flag_is_a_config_error_naming_the_flag(flag: str, value: str) -> None:
    assert flag in _error(REQUIRED, _flags(flag, value))


@pytest.mark.parametrize(
    "overrides",
    [
        {"HIGHLIGHT_RESULTS_TOPIC": "highlight.moments"},
        {"HIGHLIGHT_DLQ_TOPIC": "highlight.moments"},
        {"HIGHLIGHT_STATE_TOPIC": "highlight.recordings"},
        {"HIGHLIGHT_REPARTITION_TOPIC": "highlight.recorder.state"},
        # The default repartition topic "<group>.repartition" counts too.
        {"HIGHLIGHT_GROUP_ID": "grp", "HIGHLIGHT_MOMENTS_TOPIC": "grp.repartition"},
    ],
)
def test_duplicate_topic_names_are_rejected(overrides: dict[str, str]) -> None:
    assert "HIGHLIGHT_MOMENTS_TOPIC" in _error({**REQUIRED, **overrides})


def test_boundary_values_are_accepted() -> None:
    settings = _load(
        HIGHLIGHT_LIVE_TIMEOUT_SECONDS="3.001",
        HIGHLIGHT_LIVE_RETRY_DELAY_SECONDS="3.0",
        HIGHLIGHT_MAX_IN_FLIGHT="100000",
        HIGHLIGHT_METRICS_PORT="65535",
        HIGHLIGHT_KAFKA_SESSION_TIMEOUT_MS="1000",
        HIGHLIGHT_LIVE_APPID=" 1400000000 ",
    )
    assert settings.live.timeout_seconds == 3.001
    assert settings.live.retry_delay_seconds == 3.0
    assert settings.recorder.max_in_flight == 100_000
    assert settings.metrics_port == 65535
    assert settings.live.appid == "1400000000"


# --- flags over environment -----------------------------------------------------------------------


def test_flags_override_the_environment() -> None:
    flags = _flags(
        "--live-appid",
        "999",
        "--live-key",
        "flag-key",
        "--record-seconds",
        "900",
        "--moments-topic",
        "from-flag",
        "--auto-offset-reset",
        "latest",
        "--live-timeout-seconds",
        "4",
    )
    environ = {**REQUIRED, "HIGHLIGHT_RECORD_SECONDS": "600", "HIGHLIGHT_MOMENTS_TOPIC": "from-env"}
    settings = config.load(environ, flags)
    assert settings.live.appid == "999"
    assert settings.live.key.reveal() == "flag-key"
    assert settings.recorder.record_seconds == 900
    assert settings.kafka.moments_topic == "from-flag"
    assert settings.kafka.auto_offset_reset == "latest"
    assert settings.live.timeout_seconds == 4.0


def test_unset_flags_let_the_environment_show_through() -> None:
    settings = config.load({**REQUIRED, "HIGHLIGHT_RECORD_SECONDS": "600"}, _flags())
    assert settings.recorder.record_seconds == 600
    assert settings.live.appid == "1234"


def test_flags_can_supply_the_required_settings() -> None:
    settings = config.load({}, _flags("--live-appid", "77", "--live-key", "k"))
    assert (settings.live.appid, settings.live.key.reveal()) == ("77", "k")


def test_every_setting_has_one_flag() -> None:
    flags = _flags()
    for setting in config.SETTINGS:
        assert getattr(flags, setting.attr) is None
        assert setting.flag == "--" + setting.env.removeprefix("HIGHLIGHT_").lower().replace("_", "-")


# --- the key is secret ----------------------------------------------------------------------------


def test_the_key_is_masked_in_repr_and_str_of_the_settings() -> None:
    settings = _load()
    for text in (repr(settings), str(settings), repr(settings.live), str(settings.live)):
        assert "s3cr3t-live-key" not in text
        assert "********" in text
    assert "s3cr3t-live-key" not in repr(settings.live.key)
    assert "s3cr3t-live-key" not in str(settings.live.key)
    assert "s3cr3t-live-key" not in f"{settings.live.key}"
    assert settings.live.key.reveal() == "s3cr3t-live-key"


def test_the_key_from_a_flag_is_masked_too() -> None:
    settings = config.load({"HIGHLIGHT_LIVE_APPID": "1"}, _flags("--live-key", "flag-secret-value"))
    assert "flag-secret-value" not in repr(settings)


def test_config_errors_do_not_echo_the_key() -> None:
    message = _error({**REQUIRED, "HIGHLIGHT_LIVE_URL": "nope"})
    assert "s3cr3t-live-key" not in message


def test_secret_equality_compares_values() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"


# --- the CLI refuses to start cleanly -------------------------------------------------------------


def _run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "highlight", *args],
        env={"PATH": os.environ["PATH"]},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_with_an_empty_environment_exits_with_one_line_naming_the_appid(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "run")
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "HIGHLIGHT_LIVE_APPID" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_run_help_lists_every_environment_variable(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "run", "--help")
    assert result.returncode == 0, result.stderr
    missing = [name for name in ENV_DEFAULTS if name not in result.stdout]
    assert missing == []
    for setting in config.SETTINGS:
        assert setting.flag in result.stdout

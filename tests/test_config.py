"""Configuration (highlight.config): environment and flags into frozen settings; the CLI's refusal to start."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight import config
from highlight.config import DEFAULT_LIVE_URLS, ENV_DEFAULTS, LIVE_APIS, Secret, Settings
from highlight.config.setting import COMMANDS, _choice
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
    "HIGHLIGHT_CALLBACKS_TOPIC": "highlight.callbacks",
    "HIGHLIGHT_CLIPS_TOPIC": "highlight.clips",
    "HIGHLIGHT_CLIP_WAIT_SECONDS": "3600",
    "HIGHLIGHT_CALLBACK_KEY": None,
    "HIGHLIGHT_CALLBACK_PORT": "8090",
    "HIGHLIGHT_CALLBACK_GRACE_SECONDS": "900",
    "HIGHLIGHT_LIVE_API": "live_tape_start",
    # No table default: it follows HIGHLIGHT_LIVE_API (DEFAULT_LIVE_URLS).
    "HIGHLIGHT_LIVE_URL": None,
    "HIGHLIGHT_LIVE_APPID": None,
    "HIGHLIGHT_LIVE_KEY": None,
    "HIGHLIGHT_SECRET_ID": None,
    "HIGHLIGHT_SECRET_KEY": None,
    "HIGHLIGHT_REGION": None,
    "HIGHLIGHT_SIGNATURE_METHOD": "HmacSHA1",
    "HIGHLIGHT_APP_NAME": "live",
    "HIGHLIGHT_DOMAIN_NAME": None,
    "HIGHLIGHT_MAX_MOMENT_BYTES": "65536",
    "HIGHLIGHT_MAX_UNPROCESSABLE_IN_A_ROW": "100",
    "HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES": "1048576",
    "HIGHLIGHT_KAFKA_STARTUP_TIMEOUT_SECONDS": "60",
    "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "HIGHLIGHT_KAFKA_SASL_MECHANISM": None,
    "HIGHLIGHT_KAFKA_SASL_USERNAME": None,
    "HIGHLIGHT_KAFKA_SASL_PASSWORD": None,
    "HIGHLIGHT_KAFKA_SSL_CAFILE": None,
    "HIGHLIGHT_KAFKA_SSL_CERTFILE": None,
    "HIGHLIGHT_KAFKA_SSL_KEYFILE": None,
    "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD": None,
    "HIGHLIGHT_LIVE_CA_FILE": None,
    "HIGHLIGHT_LIVE_TLS_VERIFY": "true",
    "HIGHLIGHT_RECORD_SECONDS": "300",
    "HIGHLIGHT_BUCKET_SECONDS": "300",
    "HIGHLIGHT_MAX_EVENT_AGE_SECONDS": "120",
    "HIGHLIGHT_DEDUP_MODE": "bucket",
    "HIGHLIGHT_MIN_COVER_SECONDS": "60",
    "HIGHLIGHT_MAX_RUNNING_RECORDINGS": "400",
    "HIGHLIGHT_MAX_RECORDINGS_PER_DAY": "4000",
    "HIGHLIGHT_RESERVED_SHARE": "0.1",
    "HIGHLIGHT_RESERVED_PRIORITY": "80",
    "HIGHLIGHT_AUTO_OFFSET_RESET": "earliest",
    "HIGHLIGHT_KAFKA_SESSION_TIMEOUT_MS": "10000",
    "HIGHLIGHT_TAKEOVER_MARGIN_SECONDS": "1",
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


def _error(environ: dict[str, str], flags: argparse.Namespace | None = None, *, uses_live: bool = True) -> str:
    with pytest.raises(ConfigError) as caught:
        config.load(environ, flags, uses_live=uses_live)
    return str(caught.value)


def _file(directory: Path, name: str, content: str = "-----BEGIN CERTIFICATE-----\n") -> str:
    path = directory / name
    path.write_text(content)
    return str(path)


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
        takeover_margin_seconds=1.0,
        fetch_max_wait_ms=500,
        max_request_bytes=1_048_576,
        startup_timeout_seconds=60.0,
        security_protocol="PLAINTEXT",
        sasl_mechanism=None,
        sasl_username=None,
        sasl_password=None,
        ssl_cafile=None,
        ssl_certfile=None,
        ssl_keyfile=None,
        ssl_key_password=None,
        callbacks_topic="highlight.callbacks",
        clips_topic="highlight.clips",
    )
    assert settings.live == config.LiveSettings(
        api="live_tape_start",
        url="http://fcgi.video.qcloud.com/common_access",
        appid="1234",
        key=Secret("s3cr3t-live-key"),
        secret_id=None,
        secret_key=None,
        region=None,
        signature_method="HmacSHA1",
        app_name="live",
        domain_name=None,
        timeout_seconds=10.0,
        max_attempts=3,
        retry_delay_seconds=3.0,
        max_rps=20.0,
        ca_file=None,
        tls_verify=True,
    )
    assert settings.recorder == config.RecorderSettings(
        record_seconds=300,
        bucket_seconds=300,
        max_event_age_seconds=120,
        max_in_flight=256,
        drain_timeout_seconds=20.0,
        max_moment_bytes=65536,
        max_unprocessable_in_a_row=100,
        dedup_mode="bucket",
        min_cover_seconds=60,
        clip_wait_seconds=3600,
    )
    assert settings.budget == config.Limits(running=400, daily=4000, reserved_share=0.1, reserved_priority=80)
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


def test_live_settings_keep_the_documented_field_order() -> None:
    # Other modules are written against these names; a rename must fail here first.
    assert [f.name for f in dataclasses.fields(config.LiveSettings)] == [
        "api",
        "url",
        "appid",
        "key",
        "secret_id",
        "secret_key",
        "region",
        "signature_method",
        "app_name",
        "domain_name",
        "timeout_seconds",
        "max_attempts",
        "retry_delay_seconds",
        "max_rps",
        "ca_file",
        "tls_verify",
    ]


# Passed as a dict: keyword arguments named *_KEY or *_PASSWORD read as hard-coded passwords to ruff.
CREDENTIALS = {
    "HIGHLIGHT_SECRET_ID": "AKIDexample",
    "HIGHLIGHT_SECRET_KEY": "tencent-secret-key",
    "HIGHLIGHT_KAFKA_SASL_PASSWORD": "sasl-pw",
}


def test_every_setting_is_read_from_its_environment_variable(tmp_path: Path) -> None:
    ca_file = _file(tmp_path, "live-ca.pem")
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
        HIGHLIGHT_TAKEOVER_MARGIN_SECONDS="0.5",
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
        HIGHLIGHT_LIVE_API="Live_Tape_Start",
        HIGHLIGHT_REGION="gz",
        HIGHLIGHT_SIGNATURE_METHOD="hmacsha256",
        HIGHLIGHT_APP_NAME="app",
        HIGHLIGHT_DOMAIN_NAME="push.example.com",
        HIGHLIGHT_LIVE_CA_FILE=ca_file,
        HIGHLIGHT_LIVE_TLS_VERIFY="on",
        HIGHLIGHT_MAX_MOMENT_BYTES="1024",
        HIGHLIGHT_KAFKA_SECURITY_PROTOCOL="sasl_plaintext",
        HIGHLIGHT_KAFKA_SASL_MECHANISM="scram-sha-256",
        HIGHLIGHT_KAFKA_SASL_USERNAME="alice",
        HIGHLIGHT_DEDUP_MODE="WINDOW",
        HIGHLIGHT_MIN_COVER_SECONDS="30",
        HIGHLIGHT_MAX_RUNNING_RECORDINGS="0",
        HIGHLIGHT_MAX_RECORDINGS_PER_DAY="100",
        HIGHLIGHT_RESERVED_SHARE="0.25",
        HIGHLIGHT_RESERVED_PRIORITY="90",
        HIGHLIGHT_CALLBACKS_TOPIC="cb",
        HIGHLIGHT_CLIPS_TOPIC="cl",
        HIGHLIGHT_CLIP_WAIT_SECONDS="0",
        **CREDENTIALS,
    )
    kafka, live, rec = settings.kafka, settings.live, settings.recorder
    assert kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert (kafka.moments_topic, kafka.results_topic, kafka.dlq_topic) == ("m", "r", "d")
    assert (kafka.state_topic, kafka.repartition_topic, kafka.group_id) == ("s", "p", "g")
    assert (kafka.auto_offset_reset, kafka.session_timeout_ms, kafka.fetch_max_wait_ms) == ("latest", 6000, 50)
    assert kafka.takeover_margin_seconds == 0.5
    assert kafka.group_instance_id == "pod-0"
    assert (kafka.callbacks_topic, kafka.clips_topic, rec.clip_wait_seconds) == ("cb", "cl", 0)
    assert live.url == "https://live.example.com/common_access"
    assert (live.api, live.secret_id, live.secret_key, live.region) == (
        "live_tape_start",
        "AKIDexample",
        Secret("tencent-secret-key"),
        "gz",
    )
    assert (live.signature_method, live.app_name, live.domain_name) == ("HmacSHA256", "app", "push.example.com")
    assert (live.ca_file, live.tls_verify) == (ca_file, True)
    assert rec.max_moment_bytes == 1024
    assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")
    assert (kafka.sasl_username, kafka.sasl_password) == ("alice", Secret("sasl-pw"))
    assert (live.timeout_seconds, live.max_attempts, live.retry_delay_seconds, live.max_rps) == (3.5, 10, 3.0, 0.5)
    assert (rec.record_seconds, rec.bucket_seconds, rec.max_event_age_seconds) == (600, 60, 0)
    assert (rec.max_in_flight, rec.drain_timeout_seconds) == (1, 0.1)
    assert (rec.dedup_mode, rec.min_cover_seconds) == ("window", 30)
    assert settings.budget == config.Limits(running=0, daily=100, reserved_share=0.25, reserved_priority=90)
    assert (settings.metrics_port, settings.log_format, settings.log_level) == (0, "json", "debug")


# --- required and invalid settings ----------------------------------------------------------------


@pytest.mark.parametrize("missing", ["HIGHLIGHT_LIVE_APPID", "HIGHLIGHT_LIVE_KEY"])
def test_missing_required_setting_is_a_config_error_naming_it(missing: str) -> None:
    environ = {name: value for name, value in REQUIRED.items() if name != missing}
    flag = "--" + missing.removeprefix("HIGHLIGHT_").lower().replace("_", "-")
    assert _error(environ) == f"{missing} is required when HIGHLIGHT_LIVE_API=live_tape_start (or pass {flag})"


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
        ("HIGHLIGHT_TAKEOVER_MARGIN_SECONDS", "-1"),
        ("HIGHLIGHT_TAKEOVER_MARGIN_SECONDS", "nan"),
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
        ("HIGHLIGHT_LIVE_API", "live"),
        ("HIGHLIGHT_LIVE_API", "create-record"),
        ("HIGHLIGHT_LIVE_API", ""),
        ("HIGHLIGHT_SIGNATURE_METHOD", "HmacMD5"),
        ("HIGHLIGHT_SIGNATURE_METHOD", "sha256"),
        ("HIGHLIGHT_APP_NAME", " "),
        ("HIGHLIGHT_MAX_MOMENT_BYTES", "0"),
        ("HIGHLIGHT_MAX_MOMENT_BYTES", "16777217"),
        ("HIGHLIGHT_MAX_MOMENT_BYTES", "64k"),
        ("HIGHLIGHT_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("HIGHLIGHT_KAFKA_SECURITY_PROTOCOL", "SASL"),
        ("HIGHLIGHT_KAFKA_SASL_MECHANISM", "GSSAPI"),
        ("HIGHLIGHT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-1"),
        ("HIGHLIGHT_LIVE_TLS_VERIFY", "maybe"),
        ("HIGHLIGHT_LIVE_TLS_VERIFY", ""),
        ("HIGHLIGHT_LIVE_TLS_VERIFY", "2"),
        ("HIGHLIGHT_DEDUP_MODE", "sliding"),
        ("HIGHLIGHT_MIN_COVER_SECONDS", "241"),
        ("HIGHLIGHT_MIN_COVER_SECONDS", "-1"),
        ("HIGHLIGHT_MAX_RUNNING_RECORDINGS", "-1"),
        ("HIGHLIGHT_MAX_RECORDINGS_PER_DAY", "lots"),
        ("HIGHLIGHT_RESERVED_SHARE", "1.5"),
        ("HIGHLIGHT_RESERVED_SHARE", "-0.1"),
        ("HIGHLIGHT_RESERVED_SHARE", "nan"),
        ("HIGHLIGHT_RESERVED_PRIORITY", "101"),
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
    assert settings.live.key == Secret("flag-key")
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
    assert (settings.live.appid, settings.live.key) == ("77", Secret("k"))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_setting_of_a_command_has_one_flag_and_no_other_setting_has_one(command: str) -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, command)
    flags = parser.parse_args([])
    ours = config.settings_of(command)
    for setting in config.SETTINGS:
        assert hasattr(flags, setting.attr) == (setting in ours), (command, setting.env)
        assert setting.flag == "--" + setting.env.removeprefix("HIGHLIGHT_").lower().replace("_", "-")
    assert all(getattr(flags, setting.attr) is None for setting in ours)


def test_every_setting_is_read_by_some_command() -> None:
    assert {s.env for c in COMMANDS for s in config.settings_of(c)} == set(ENV_DEFAULTS)


# --- the key is secret ----------------------------------------------------------------------------


def test_the_key_is_masked_in_repr_and_str_of_the_settings() -> None:
    settings = _load()
    for text in (repr(settings), str(settings), repr(settings.live), str(settings.live)):
        assert "s3cr3t-live-key" not in text
        assert "********" in text
    assert "s3cr3t-live-key" not in repr(settings.live.key)
    assert "s3cr3t-live-key" not in str(settings.live.key)
    assert "s3cr3t-live-key" not in f"{settings.live.key}"
    assert settings.live.key is not None
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


@pytest.mark.parametrize("command", ["run", "callbacks"])
def test_help_lists_every_environment_variable_of_the_command_and_no_other(command: str, tmp_path: Path) -> None:
    result = _run_cli(tmp_path, command, "--help")
    assert result.returncode == 0, result.stderr
    ours = config.settings_of(command)
    missing = [setting.env for setting in ours if setting.env not in result.stdout]
    assert missing == []
    for setting in config.SETTINGS:
        assert (setting.flag in result.stdout.split()) == (setting in ours), setting.flag


def test_run_for_create_record_with_an_empty_environment_names_the_first_missing_setting(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "run", "--live-api", "create_record")
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        "highlight: error: HIGHLIGHT_SECRET_ID is required when HIGHLIGHT_LIVE_API=create_record (or pass --secret-id)"
    ]


# --- the Live API backends ------------------------------------------------------------------------

# Exactly what each backend needs, and nothing of the other backends.
BACKEND_REQUIRED: dict[str, dict[str, str]] = {
    "live_tape_start": {"HIGHLIGHT_LIVE_APPID": "1234", "HIGHLIGHT_LIVE_KEY": "s3cr3t-live-key"},
    "create_record": {
        "HIGHLIGHT_LIVE_API": "create_record",
        "HIGHLIGHT_SECRET_ID": "AKIDexample",
        "HIGHLIGHT_SECRET_KEY": "tencent-secret-key",
        "HIGHLIGHT_REGION": "gz",
    },
    "create_live_record": {
        "HIGHLIGHT_LIVE_API": "create_live_record",
        "HIGHLIGHT_SECRET_ID": "AKIDexample",
        "HIGHLIGHT_SECRET_KEY": "tencent-secret-key",
        "HIGHLIGHT_DOMAIN_NAME": "push.example.com",
    },
}


def test_the_live_apis_and_their_default_urls() -> None:
    assert LIVE_APIS == ("live_tape_start", "create_record", "create_live_record")
    assert DEFAULT_LIVE_URLS == {
        "live_tape_start": "http://fcgi.video.qcloud.com/common_access",
        "create_record": "https://live.api.qcloud.com/v2/index.php",
        "create_live_record": "https://live.tencentcloudapi.com/",
    }


@pytest.mark.parametrize("api", LIVE_APIS)
def test_each_backend_starts_with_only_its_own_settings(api: str) -> None:
    live = config.load(BACKEND_REQUIRED[api]).live
    assert live.api == api
    assert live.url == DEFAULT_LIVE_URLS[api]


def test_create_live_record_starts_without_appid_key_or_region() -> None:
    live = config.load(BACKEND_REQUIRED["create_live_record"]).live
    assert (live.appid, live.key, live.region) == (None, None, None)
    assert (live.secret_id, live.domain_name, live.app_name) == ("AKIDexample", "push.example.com", "live")
    assert live.secret_key == Secret("tencent-secret-key")


def test_create_record_starts_without_appid_key_or_domain() -> None:
    live = config.load(BACKEND_REQUIRED["create_record"]).live
    assert (live.appid, live.key, live.domain_name) == (None, None, None)
    assert (live.region, live.signature_method) == ("gz", "HmacSHA1")


def test_live_tape_start_starts_without_the_cloud_api_settings() -> None:
    live = config.load(BACKEND_REQUIRED["live_tape_start"]).live
    assert (live.secret_id, live.secret_key, live.region, live.domain_name) == (None, None, None, None)


@pytest.mark.parametrize(
    ("api", "missing"),
    [(api, name) for api, required in BACKEND_REQUIRED.items() for name in required if name != "HIGHLIGHT_LIVE_API"],
)
@pytest.mark.parametrize("how", ["absent", "blank"])
def test_each_missing_per_api_setting_is_one_line_naming_it_the_api_and_the_flag(
    api: str, missing: str, how: str
) -> None:
    environ = dict(BACKEND_REQUIRED[api])
    if how == "absent":
        del environ[missing]
    else:
        environ[missing] = "  "
    flag = "--" + missing.removeprefix("HIGHLIGHT_").lower().replace("_", "-")
    message = _error(environ)
    assert message == f"{missing} is required when HIGHLIGHT_LIVE_API={api} (or pass {flag})"
    assert "\n" not in message


def test_the_per_api_requirement_follows_an_api_given_as_a_flag() -> None:
    message = _error(BACKEND_REQUIRED["live_tape_start"], _flags("--live-api", "create_live_record"))
    assert message == "HIGHLIGHT_SECRET_ID is required when HIGHLIGHT_LIVE_API=create_live_record (or pass --secret-id)"


@pytest.mark.parametrize("api", LIVE_APIS)
def test_a_command_that_never_calls_the_live_api_needs_none_of_its_credentials(api: str) -> None:
    settings = config.load({"HIGHLIGHT_LIVE_API": api}, uses_live=False)
    assert settings.live.api == api
    assert (settings.live.appid, settings.live.key, settings.live.secret_id) == (None, None, None)
    assert settings.kafka == config.load(BACKEND_REQUIRED["live_tape_start"]).kafka, "the rest is as for run"


def test_a_command_that_never_calls_the_live_api_still_refuses_an_invalid_live_setting() -> None:
    # One environment serves every command: a typo shows wherever it is read.
    assert _error({"HIGHLIGHT_LIVE_APPID": "12a4"}, uses_live=False).startswith("HIGHLIGHT_LIVE_APPID must be")


def test_dlq_replay_help_says_the_live_credentials_are_not_needed(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "dlq", "replay", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # as read, not as wrapped
    assert "required when HIGHLIGHT_LIVE_API" not in text
    assert text.count("not needed by this command") == sum(bool(s.required_by) for s in config.SETTINGS)
    missing = [setting.env for setting in config.settings_of("run") if setting.env not in text]
    assert missing == [], "every setting of run"


def test_the_region_is_optional_for_create_live_record() -> None:
    live = config.load({**BACKEND_REQUIRED["create_live_record"], "HIGHLIGHT_REGION": "ap-guangzhou"}).live
    assert live.region == "ap-guangzhou"


@pytest.mark.parametrize("api", LIVE_APIS)
def test_an_explicit_live_url_wins_over_the_api_default(api: str) -> None:
    environ = {**BACKEND_REQUIRED[api], "HIGHLIGHT_LIVE_URL": "http://127.0.0.1:8080/x"}
    assert config.load(environ).live.url == "http://127.0.0.1:8080/x"


def test_a_blank_live_url_means_the_api_default() -> None:
    environ = {**BACKEND_REQUIRED["create_record"], "HIGHLIGHT_LIVE_URL": " "}
    assert config.load(environ).live.url == DEFAULT_LIVE_URLS["create_record"]


@pytest.mark.parametrize(
    ("raw", "api"),
    [
        ("create_record", "create_record"),
        ("CREATE_LIVE_RECORD", "create_live_record"),
        (" Live_Tape_Start ", "live_tape_start"),
    ],
)
def test_the_api_is_read_in_any_case(raw: str, api: str) -> None:
    environ = {**BACKEND_REQUIRED[api], "HIGHLIGHT_LIVE_API": raw}
    assert config.load(environ).live.api == api


@pytest.mark.parametrize(("raw", "method"), [("HMACSHA1", "HmacSHA1"), ("hmacsha256", "HmacSHA256")])
def test_the_signature_method_keeps_its_documented_spelling(raw: str, method: str) -> None:
    assert _load(HIGHLIGHT_SIGNATURE_METHOD=raw).live.signature_method == method


def test_help_says_which_api_needs_which_setting() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "HIGHLIGHT_LIVE_APPID; required when HIGHLIGHT_LIVE_API=live_tape_start]" in text
    assert "HIGHLIGHT_SECRET_ID; required when HIGHLIGHT_LIVE_API=create_record or create_live_record]" in text
    assert "HIGHLIGHT_REGION; required when HIGHLIGHT_LIVE_API=create_record]" in text
    assert "HIGHLIGHT_DOMAIN_NAME; required when HIGHLIGHT_LIVE_API=create_live_record]" in text
    assert "; required]" not in text
    for url in DEFAULT_LIVE_URLS.values():
        assert url in text
    assert "testing only" in text


def test_every_per_api_requirement_names_a_known_api() -> None:
    for setting in config.SETTINGS:
        assert set(setting.required_by) <= set(LIVE_APIS), setting.env
    with pytest.raises(ValueError, match="unknown Live APIs"):
        config.Setting("HIGHLIGHT_X", None, "x", required_by=("live_tape_stop",))


# --- bools, sizes and files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("On", True),
        (" true ", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_tls_verify_reads_the_usual_spellings_of_a_bool(raw: str, value: bool) -> None:
    assert _load(HIGHLIGHT_LIVE_TLS_VERIFY=raw).live.tls_verify is value


@given(st.text(max_size=8))
def test_tls_verify_accepts_exactly_the_bool_words(raw: str) -> None:
    known = {"true", "1", "yes", "on", "false", "0", "no", "off"}
    if raw.strip().lower() in known:
        assert _load(HIGHLIGHT_LIVE_TLS_VERIFY=raw).live.tls_verify is (
            raw.strip().lower() in {"true", "1", "yes", "on"}
        )
    else:
        assert "HIGHLIGHT_LIVE_TLS_VERIFY" in _error({**REQUIRED, "HIGHLIGHT_LIVE_TLS_VERIFY": raw})


@given(st.sampled_from(config.KAFKA_SASL_MECHANISMS + config.KAFKA_SECURITY_PROTOCOLS), st.data())
def test_choices_are_read_in_any_case_and_stored_canonically(choice: str, data: st.DataObject) -> None:
    upper = data.draw(st.lists(st.booleans(), min_size=len(choice), max_size=len(choice)))
    mixed = "".join(c.upper() if up else c.lower() for c, up in zip(choice, upper, strict=True))
    assert _choice(*config.KAFKA_SASL_MECHANISMS, *config.KAFKA_SECURITY_PROTOCOLS)(mixed) == choice


def test_a_non_ascii_look_alike_is_not_a_choice() -> None:
    # U+212A KELVIN SIGN lower()s to an ASCII k.
    assert "HIGHLIGHT_LOG_LEVEL" in _error({**REQUIRED, "HIGHLIGHT_LOG_LEVEL": "\u212a"})
    with pytest.raises(ValueError, match="must be one of"):
        _choice("k")("\u212a")


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("16777216", 16 * 1024 * 1024), (" 4096 ", 4096)])
def test_max_moment_bytes_accepts_1_to_16_mib(raw: str, value: int) -> None:
    # A 16 MiB moment needs requests that large: its result carries its attributes.
    settings = _load(HIGHLIGHT_MAX_MOMENT_BYTES=raw, HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES=str(20 * 1024 * 1024))
    assert settings.recorder.max_moment_bytes == value


def test_a_moment_limit_that_leaves_no_room_in_a_request_is_refused_naming_both_settings() -> None:
    message = _error({**REQUIRED, "HIGHLIGHT_MAX_MOMENT_BYTES": "1048576"})
    assert "HIGHLIGHT_MAX_MOMENT_BYTES (1048576)" in message
    assert "HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES (1048576)" in message
    limit = 1_048_576 - 16 * 1024
    assert _load(HIGHLIGHT_MAX_MOMENT_BYTES=str(limit)).recorder.max_moment_bytes == limit
    assert "HIGHLIGHT_MAX_MOMENT_BYTES" in _error({**REQUIRED, "HIGHLIGHT_MAX_MOMENT_BYTES": str(limit + 1)})


@pytest.mark.parametrize(
    ("name", "raw", "attribute", "value"),
    [
        ("HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES", "65536", "max_request_bytes", 65536),
        ("HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES", "134217728", "max_request_bytes", 128 * 1024 * 1024),
        ("HIGHLIGHT_KAFKA_STARTUP_TIMEOUT_SECONDS", "0", "startup_timeout_seconds", 0.0),
        ("HIGHLIGHT_KAFKA_STARTUP_TIMEOUT_SECONDS", "2.5", "startup_timeout_seconds", 2.5),
    ],
)
def test_kafka_request_limit_and_startup_wait_take_their_range(
    name: str, raw: str, attribute: str, value: float
) -> None:
    env = {name: raw, "HIGHLIGHT_MAX_MOMENT_BYTES": "1024"}
    assert getattr(_load(**env).kafka, attribute) == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES", "65535"),
        ("HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES", "134217729"),
        ("HIGHLIGHT_KAFKA_STARTUP_TIMEOUT_SECONDS", "-1"),
        ("HIGHLIGHT_KAFKA_STARTUP_TIMEOUT_SECONDS", "inf"),
        ("HIGHLIGHT_MAX_UNPROCESSABLE_IN_A_ROW", "0"),
        ("HIGHLIGHT_MAX_UNPROCESSABLE_IN_A_ROW", "many"),
    ],
)
def test_kafka_request_limit_startup_wait_and_unprocessable_bound_refuse_out_of_range(name: str, raw: str) -> None:
    assert name in _error({**REQUIRED, name: raw})


FILE_SETTINGS = [
    "HIGHLIGHT_KAFKA_SSL_CAFILE",
    "HIGHLIGHT_KAFKA_SSL_CERTFILE",
    "HIGHLIGHT_KAFKA_SSL_KEYFILE",
    "HIGHLIGHT_LIVE_CA_FILE",
]


def _with_tls(environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Make the file settings legal to combine, so only the file check itself can fail."""
    return {
        **environ,
        "HIGHLIGHT_LIVE_URL": "https://live.example.com/common_access",
        "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SSL",
        "HIGHLIGHT_KAFKA_SSL_CERTFILE": environ.get("HIGHLIGHT_KAFKA_SSL_CERTFILE", _file(tmp_path, "cert.pem")),
    }


@pytest.mark.parametrize("name", FILE_SETTINGS)
def test_a_file_setting_keeps_the_path_of_a_readable_file(name: str, tmp_path: Path) -> None:
    path = _file(tmp_path, "given.pem")
    settings = config.load(_with_tls({**REQUIRED, name: f" {path} "}, tmp_path))
    stored = {
        "HIGHLIGHT_KAFKA_SSL_CAFILE": settings.kafka.ssl_cafile,
        "HIGHLIGHT_KAFKA_SSL_CERTFILE": settings.kafka.ssl_certfile,
        "HIGHLIGHT_KAFKA_SSL_KEYFILE": settings.kafka.ssl_keyfile,
        "HIGHLIGHT_LIVE_CA_FILE": settings.live.ca_file,
    }
    assert stored[name] == path


@pytest.mark.parametrize("name", FILE_SETTINGS)
@pytest.mark.parametrize(("target", "reason"), [("missing.pem", "does not exist"), (".", "not a regular file")])
def test_a_file_setting_that_is_not_a_readable_file_is_a_config_error_naming_it(
    name: str, target: str, reason: str, tmp_path: Path
) -> None:
    path = str(tmp_path / target)
    message = _error(_with_tls({**REQUIRED, name: path}, tmp_path))
    assert message.startswith(f"{name} must name a readable file")
    assert reason in message
    assert "\n" not in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
@pytest.mark.parametrize("name", FILE_SETTINGS)
def test_an_unreadable_file_is_a_config_error_naming_the_setting(name: str, tmp_path: Path) -> None:
    path = tmp_path / "locked.pem"
    path.write_text("x")
    path.chmod(0)
    message = _error(_with_tls({**REQUIRED, name: str(path)}, tmp_path))
    assert message.startswith(f"{name} must name a readable file")
    assert "cannot be read" in message


def test_a_file_flag_error_names_the_flag(tmp_path: Path) -> None:
    message = _error(REQUIRED, _flags("--live-ca-file", str(tmp_path / "nope.pem")))
    assert message.startswith("--live-ca-file must name a readable file")


# --- Kafka security -------------------------------------------------------------------------------

SASL = {
    "HIGHLIGHT_KAFKA_SASL_MECHANISM": "PLAIN",
    "HIGHLIGHT_KAFKA_SASL_USERNAME": "alice",
    "HIGHLIGHT_KAFKA_SASL_PASSWORD": "sasl-s3cr3t",
}
FILE = "<file>"  # replaced by a readable file in the test


def _kafka_environ(overrides: dict[str, str], tmp_path: Path) -> dict[str, str]:
    files = {
        name: _file(tmp_path, f"{name.lower()}.pem") if value == FILE else value for name, value in overrides.items()
    }
    return {**REQUIRED, **files}


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="plaintext"),
        pytest.param({"HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SSL"}, id="ssl-system-cas"),
        pytest.param(
            {
                "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "ssl",
                "HIGHLIGHT_KAFKA_SSL_CAFILE": FILE,
                "HIGHLIGHT_KAFKA_SSL_CERTFILE": FILE,
                "HIGHLIGHT_KAFKA_SSL_KEYFILE": FILE,
                "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD": "key-s3cr3t",
            },
            id="ssl-mutual",
        ),
        pytest.param(
            {"HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SSL", "HIGHLIGHT_KAFKA_SSL_CERTFILE": FILE},
            id="ssl-cert-holding-its-key",
        ),
        pytest.param(
            {
                "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SSL",
                "HIGHLIGHT_KAFKA_SSL_CERTFILE": FILE,
                "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD": "key-s3cr3t",
            },
            id="ssl-cert-holding-an-encrypted-key",
        ),
        pytest.param({"HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **SASL}, id="sasl-plaintext"),
        pytest.param(
            {
                "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                **SASL,
                "HIGHLIGHT_KAFKA_SASL_MECHANISM": "scram-sha-512",
                "HIGHLIGHT_KAFKA_SSL_CAFILE": FILE,
            },
            id="sasl-ssl-scram",
        ),
    ],
)
def test_valid_kafka_security_combinations_load(overrides: dict[str, str], tmp_path: Path) -> None:
    kafka = config.load(_kafka_environ(overrides, tmp_path)).kafka
    assert kafka.security_protocol in config.KAFKA_SECURITY_PROTOCOLS


NEEDS_MECHANISM = "HIGHLIGHT_KAFKA_SASL_MECHANISM (PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            f"HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs {NEEDS_MECHANISM}, HIGHLIGHT_KAFKA_SASL_USERNAME and "
            "HIGHLIGHT_KAFKA_SASL_PASSWORD; set them, or set HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SSL to connect "
            "without SASL",
            id="sasl-without-anything",
        ),
        pytest.param(
            {
                "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "HIGHLIGHT_KAFKA_SASL_USERNAME": "alice",
                "HIGHLIGHT_KAFKA_SASL_PASSWORD": "sasl-s3cr3t",
            },
            f"HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs {NEEDS_MECHANISM}; set it, or set "
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SSL to connect without SASL",
            id="sasl-without-mechanism",
        ),
        pytest.param(
            {
                "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "HIGHLIGHT_KAFKA_SASL_MECHANISM": "PLAIN",
                "HIGHLIGHT_KAFKA_SASL_PASSWORD": "sasl-s3cr3t",
            },
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs HIGHLIGHT_KAFKA_SASL_USERNAME; set it, or set "
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=PLAINTEXT to connect without SASL",
            id="sasl-without-username",
        ),
        pytest.param(
            {
                "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "HIGHLIGHT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                "HIGHLIGHT_KAFKA_SASL_USERNAME": "alice",
            },
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs HIGHLIGHT_KAFKA_SASL_PASSWORD; set it, or set "
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=PLAINTEXT to connect without SASL",
            id="sasl-without-password",
        ),
        pytest.param(
            {"HIGHLIGHT_KAFKA_SASL_USERNAME": "alice", "HIGHLIGHT_KAFKA_SASL_PASSWORD": "sasl-s3cr3t"},
            "HIGHLIGHT_KAFKA_SASL_USERNAME and HIGHLIGHT_KAFKA_SASL_PASSWORD are set but "
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL, so they would be ignored; set "
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT or SASL_SSL, or unset them",
            id="sasl-credentials-with-plaintext",
        ),
        pytest.param(
            {"HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SSL", "HIGHLIGHT_KAFKA_SASL_MECHANISM": "PLAIN"},
            "HIGHLIGHT_KAFKA_SASL_MECHANISM is set but HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SSL does not use SASL, so "
            "it would be ignored; set HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SASL_SSL, or unset it",
            id="sasl-mechanism-with-ssl",
        ),
        pytest.param(
            {"HIGHLIGHT_KAFKA_SSL_CAFILE": FILE},
            "HIGHLIGHT_KAFKA_SSL_CAFILE is set but HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS, so "
            "it would be ignored; set HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SSL, or unset it",
            id="cafile-with-plaintext",
        ),
        pytest.param(
            {"HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD": "key-s3cr3t"},
            "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD is set but HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use "
            "TLS, so it would be ignored; set HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SSL, or unset it",
            id="key-password-with-plaintext",
        ),
        pytest.param(
            {
                "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                **SASL,
                "HIGHLIGHT_KAFKA_SSL_CERTFILE": FILE,
                "HIGHLIGHT_KAFKA_SSL_KEYFILE": FILE,
            },
            "HIGHLIGHT_KAFKA_SSL_CERTFILE and HIGHLIGHT_KAFKA_SSL_KEYFILE are set but "
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS, so they would be ignored; set "
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL=SASL_SSL, or unset them",
            id="client-cert-with-sasl-plaintext",
        ),
        pytest.param(
            {"HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SSL", "HIGHLIGHT_KAFKA_SSL_KEYFILE": FILE},
            "HIGHLIGHT_KAFKA_SSL_KEYFILE is set without HIGHLIGHT_KAFKA_SSL_CERTFILE; set "
            "HIGHLIGHT_KAFKA_SSL_CERTFILE to the client certificate of that key, or unset HIGHLIGHT_KAFKA_SSL_KEYFILE",
            id="key-without-cert",
        ),
        pytest.param(
            {
                "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                **SASL,
                "HIGHLIGHT_KAFKA_SSL_CAFILE": FILE,
                "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD": "key-s3cr3t",
            },
            "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD is set without HIGHLIGHT_KAFKA_SSL_CERTFILE or "
            "HIGHLIGHT_KAFKA_SSL_KEYFILE, so there is no key to unlock; set HIGHLIGHT_KAFKA_SSL_CERTFILE (and "
            "HIGHLIGHT_KAFKA_SSL_KEYFILE if the key is separate), or unset HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD",
            id="key-password-without-cert",
        ),
    ],
)
def test_invalid_kafka_security_combinations_are_one_clear_line(
    overrides: dict[str, str], message: str, tmp_path: Path
) -> None:
    got = _error(_kafka_environ(overrides, tmp_path))
    assert got == message
    assert "\n" not in got
    for secret in ("sasl-s3cr3t", "key-s3cr3t"):
        assert secret not in got


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"HIGHLIGHT_LIVE_URL": "https://live.example.com/common_access", "HIGHLIGHT_LIVE_TLS_VERIFY": "false"},
            "HIGHLIGHT_LIVE_CA_FILE is set but HIGHLIGHT_LIVE_TLS_VERIFY=false verifies no certificate, so it would "
            "be ignored; set HIGHLIGHT_LIVE_TLS_VERIFY=true to verify against it, or unset HIGHLIGHT_LIVE_CA_FILE",
            id="ca-file-without-verification",
        ),
        pytest.param(
            {"HIGHLIGHT_LIVE_URL": "http://live.example.com/common_access"},
            "HIGHLIGHT_LIVE_CA_FILE is set but the Live URL http://live.example.com/common_access is not https, so "
            "it would be ignored; set HIGHLIGHT_LIVE_URL to the https endpoint, or unset HIGHLIGHT_LIVE_CA_FILE",
            id="ca-file-with-http-url",
        ),
        pytest.param(
            {},
            "HIGHLIGHT_LIVE_CA_FILE is set but the Live URL http://fcgi.video.qcloud.com/common_access is not https, "
            "so it would be ignored; set HIGHLIGHT_LIVE_URL to the https endpoint, or unset HIGHLIGHT_LIVE_CA_FILE",
            id="ca-file-with-live-tape-starts-default-http-url",
        ),
    ],
)
def test_a_live_ca_file_that_would_never_be_read_is_one_clear_line(
    overrides: dict[str, str], message: str, tmp_path: Path
) -> None:
    # An ignored CA bundle is an operator who believes the endpoint is pinned when it is not.
    got = _error({**REQUIRED, "HIGHLIGHT_LIVE_CA_FILE": _file(tmp_path, "live-ca.pem"), **overrides})
    assert got == message


@pytest.mark.parametrize("api", ["create_record", "create_live_record"])
def test_a_live_ca_file_is_kept_for_the_https_defaults_and_an_https_url(api: str, tmp_path: Path) -> None:
    ca_file = _file(tmp_path, "live-ca.pem")
    credentials = {
        "HIGHLIGHT_SECRET_ID": "AKIDexample",
        "HIGHLIGHT_SECRET_KEY": "tencent-secret-key",
        "HIGHLIGHT_REGION": "gz",
        "HIGHLIGHT_DOMAIN_NAME": "push.example.com",
    }
    cloud = {"HIGHLIGHT_LIVE_API": api, **credentials, "HIGHLIGHT_LIVE_CA_FILE": ca_file}
    assert config.load({**REQUIRED, **cloud}).live.ca_file == ca_file
    https = {"HIGHLIGHT_LIVE_URL": "HTTPS://live.example.com/common_access", "HIGHLIGHT_LIVE_CA_FILE": ca_file}
    assert config.load({**REQUIRED, **https}).live.ca_file == ca_file


# --- no secret reaches a repr ---------------------------------------------------------------------

SECRET_VALUES = {
    "HIGHLIGHT_LIVE_KEY": "s3cr3t-live-key",
    "HIGHLIGHT_SECRET_KEY": "s3cr3t-cloud-key",
    "HIGHLIGHT_KAFKA_SASL_PASSWORD": "s3cr3t-sasl-password",
    "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD": "s3cr3t-ssl-key-password",
}


def test_the_secret_settings_are_exactly_the_secrets() -> None:
    assert {s.env for s in config.SETTINGS if s.secret} == set(SECRET_VALUES) | {"HIGHLIGHT_CALLBACK_KEY"}


def test_no_secret_value_reaches_the_repr_or_str_of_the_settings(tmp_path: Path) -> None:
    settings = config.load(
        {
            **REQUIRED,
            **SECRET_VALUES,
            "HIGHLIGHT_SECRET_ID": "AKIDexample",
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "HIGHLIGHT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "HIGHLIGHT_KAFKA_SASL_USERNAME": "alice",
            "HIGHLIGHT_KAFKA_SSL_CERTFILE": _file(tmp_path, "cert.pem"),
        }
    )
    texts = [repr(settings), str(settings), repr(settings.kafka), str(settings.kafka), repr(settings.live)]
    for text in texts:
        for value in SECRET_VALUES.values():
            assert value not in text
    assert repr(settings).count("********") == len(SECRET_VALUES)
    assert settings.live.secret_key is not None
    assert settings.live.secret_key.reveal() == "s3cr3t-cloud-key"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.reveal() == "s3cr3t-sasl-password"
    assert settings.kafka.ssl_key_password is not None
    assert settings.kafka.ssl_key_password.reveal() == "s3cr3t-ssl-key-password"


def test_secrets_given_as_flags_are_masked_too() -> None:
    flags = _flags("--secret-key", "flag-cloud-key", "--kafka-sasl-password", "flag-sasl-pw")
    environ = {
        **BACKEND_REQUIRED["create_record"],
        "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "HIGHLIGHT_KAFKA_SASL_MECHANISM": "PLAIN",
        "HIGHLIGHT_KAFKA_SASL_USERNAME": "alice",
    }
    text = repr(config.load(environ, flags))
    assert "flag-cloud-key" not in text
    assert "flag-sasl-pw" not in text


# --- `highlight callbacks` reads its own settings -------------------------------------------------------

CALLBACK_ENV = {"HIGHLIGHT_CALLBACK_KEY": "s3cr3t-callback-key"}


def test_the_receiver_needs_only_the_callback_key_not_the_live_api_credentials() -> None:
    settings = config.load_receiver(CALLBACK_ENV)
    assert settings.callbacks == config.CallbackSettings(
        key=Secret("s3cr3t-callback-key"), port=8090, grace_seconds=900
    )
    assert (settings.kafka.bootstrap_servers, settings.kafka.moments_topic, settings.kafka.callbacks_topic) == (
        "localhost:9092",
        "highlight.moments",
        "highlight.callbacks",
    )
    assert (settings.metrics_port, settings.log_format, settings.log_level) == (9108, "auto", "info")


def test_the_receiver_without_its_key_is_one_line_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load_receiver({**REQUIRED})
    assert str(caught.value) == "HIGHLIGHT_CALLBACK_KEY is required (or pass --callback-key)"


def test_the_receiver_ignores_settings_only_run_reads_even_invalid_ones() -> None:
    settings = config.load_receiver(
        {**CALLBACK_ENV, "HIGHLIGHT_LIVE_API": "bogus", "HIGHLIGHT_MAX_IN_FLIGHT": "-1", "HIGHLIGHT_GROUP_ID": "g"}
    )
    assert settings.kafka.group_id == "highlight-recorder", "run's settings keep their defaults"


def test_the_receiver_reads_its_settings_from_environment_and_flags() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, config.CALLBACKS)
    flags = parser.parse_args(["--callback-port", "0", "--callbacks-topic", "cb-flag"])
    settings = config.load_receiver(
        {
            **CALLBACK_ENV,
            "HIGHLIGHT_CALLBACK_GRACE_SECONDS": "60",
            "HIGHLIGHT_CALLBACKS_TOPIC": "cb-env",
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "HIGHLIGHT_KAFKA_SASL_MECHANISM": "PLAIN",
            "HIGHLIGHT_KAFKA_SASL_USERNAME": "alice",
            "HIGHLIGHT_KAFKA_SASL_PASSWORD": "pw",
        },
        flags,
    )
    assert (settings.callbacks.port, settings.callbacks.grace_seconds) == (0, 60)
    assert settings.kafka.callbacks_topic == "cb-flag"
    assert (settings.kafka.security_protocol, settings.kafka.sasl_username) == ("SASL_SSL", "alice")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"HIGHLIGHT_CALLBACK_PORT": "70000"}, "HIGHLIGHT_CALLBACK_PORT must be between 0 and 65535"),
        ({"HIGHLIGHT_CALLBACK_GRACE_SECONDS": "-1"}, "HIGHLIGHT_CALLBACK_GRACE_SECONDS must be between 0"),
        ({"HIGHLIGHT_CALLBACKS_TOPIC": "highlight.moments"}, "must differ"),
        ({"HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs HIGHLIGHT_KAFKA_SASL_MECHANISM"),
    ],
)
def test_invalid_receiver_settings_are_one_clear_line(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load_receiver({**CALLBACK_ENV, **environ})


def test_the_callback_key_is_masked_wherever_the_receivers_settings_show() -> None:
    settings = config.load_receiver(CALLBACK_ENV)
    for text in (repr(settings), str(settings), repr(settings.callbacks)):
        assert "s3cr3t-callback-key" not in text
    assert settings.callbacks.key.reveal() == "s3cr3t-callback-key"


def test_run_takes_its_new_topics_and_refuses_them_equal_to_another() -> None:
    with pytest.raises(ConfigError, match="_CLIPS_TOPIC must differ"):
        _load(HIGHLIGHT_CLIPS_TOPIC="highlight.recordings")
    with pytest.raises(ConfigError, match="must differ"):
        _load(HIGHLIGHT_CALLBACKS_TOPIC="highlight.recorder.state")


def test_callbacks_with_an_empty_environment_exits_with_one_line_naming_the_callback_key(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "callbacks")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "highlight: error: HIGHLIGHT_CALLBACK_KEY is required (or pass --callback-key)"
    ]


def test_a_setting_names_only_known_commands_and_only_run_depends_on_the_api() -> None:
    with pytest.raises(ValueError, match="commands"):
        config.Setting("HIGHLIGHT_X", None, "x", commands=("serve",))
    with pytest.raises(ValueError, match="only `run`"):
        config.Setting("HIGHLIGHT_X", None, "x", required_by=("live_tape_start",), commands=("callbacks",))


def test_the_receiver_needs_requests_large_enough_for_the_largest_notification() -> None:
    with pytest.raises(ConfigError, match=r"HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES \(65536\) must be at least 81920"):
        config.load_receiver({**CALLBACK_ENV, "HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES": "65536"})
    assert (
        config.load_receiver({**CALLBACK_ENV, "HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES": "81920"}).kafka.max_request_bytes
        == 81920
    )

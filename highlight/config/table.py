"""The table of settings: each one declared once (environment name, flag, parser, default, help).

`highlight.config.load` builds the frozen settings from it; the CLI builds its flags and `--help` from it, so a name
cannot drift between the two.
"""

from __future__ import annotations

import argparse

from highlight.config.setting import (
    CALLBACKS,
    COMMANDS,
    DEFAULT_LIVE_URLS,
    DEFAULT_MAX_REQUEST_BYTES,
    KAFKA_SASL_MECHANISMS,
    KAFKA_SECURITY_PROTOCOLS,
    LIVE_APIS,
    MAX_MOMENT_BYTES_LIMIT,
    MAX_REQUEST_BYTES_LIMIT,
    RUN,
    SHARED,
    Setting,
    _appid,
    _bool,
    _choice,
    _float_above,
    _fraction,
    _http_url,
    _int_between,
    _readable_file,
)

_SECRET_APIS = ("create_record", "create_live_record")

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS",
        "localhost:9092",
        "Kafka brokers, comma-separated host:port.",
        commands=SHARED,
    ),
    Setting(
        "HIGHLIGHT_MOMENTS_TOPIC",
        "highlight.moments",
        "Input topic of highlight moments; its partition count fixes the others'.",
        commands=SHARED,
    ),
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
        "HIGHLIGHT_CALLBACKS_TOPIC",
        "highlight.callbacks",
        "Tencent Cloud Live's event notifications as received, original bytes, on their channel's home partition; "
        "created if missing with the moments topic's partition count.",
        commands=SHARED,
    ),
    Setting(
        "HIGHLIGHT_CLIPS_TOPIC",
        "highlight.clips",
        "Output topic of clip events (a recording's file and its video URL), keyed by channel_id.",
    ),
    Setting(
        "HIGHLIGHT_CLIP_WAIT_SECONDS",
        "3600",
        "How long after a recording's window ends its files are still matched to it (its state lives that long).",
        _int_between(0, 7 * 86_400),
        metavar="SECONDS",
    ),
    Setting(
        "HIGHLIGHT_CALLBACK_KEY",
        None,
        "The callback key of the Live callback template, which signs every notification (secret; on legacy "
        "accounts the same key as HIGHLIGHT_LIVE_KEY).",
        secret=True,
        commands=(CALLBACKS,),
        required=True,
    ),
    Setting(
        "HIGHLIGHT_CALLBACK_PORT",
        "8090",
        "Port serving POST /live/callback, the URL of the Live callback template (0 picks a free port).",
        _int_between(0, 65535),
        metavar="PORT",
        commands=(CALLBACKS,),
    ),
    Setting(
        "HIGHLIGHT_CALLBACK_GRACE_SECONDS",
        "900",
        "How long after its expiry `t` a notification is still accepted (Live re-sends for about 12 minutes, "
        "possibly with the first `t`).",
        _int_between(0, 86_400),
        metavar="SECONDS",
        commands=(CALLBACKS,),
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
        "HIGHLIGHT_DEDUP_MODE",
        "bucket",
        "Which moments share a recording: bucket (those of one channel and bucket) or window (those the "
        "channel's recording covers by HIGHLIGHT_MIN_COVER_SECONDS).",
        _choice("bucket", "window"),
    ),
    Setting(
        "HIGHLIGHT_MIN_COVER_SECONDS",
        "60",
        "window mode: a recording covers a moment if at least this much of its window lies after the moment "
        "(0..240, so a new recording starts at least a minute after the one before).",
        _int_between(0, 240),
        metavar="SECONDS",
    ),
    Setting(
        "HIGHLIGHT_MAX_RUNNING_RECORDINGS",
        "400",
        "The account's running recordings (windows not ended), shared by all instances; 0 = no limit.",
        _int_between(0),
        metavar="COUNT",
    ),
    Setting(
        "HIGHLIGHT_MAX_RECORDINGS_PER_DAY",
        "4000",
        "Recordings the account may start per China Standard Time day, shared by all instances; 0 = no limit.",
        _int_between(0),
        metavar="COUNT",
    ),
    Setting(
        "HIGHLIGHT_RESERVED_SHARE",
        "0.1",
        "The last part of each limit (0..1), kept for moments of HIGHLIGHT_RESERVED_PRIORITY or above.",
        _fraction,
        metavar="FRACTION",
    ),
    Setting(
        "HIGHLIGHT_RESERVED_PRIORITY",
        "80",
        "The priority (0..100) a moment needs to use the reserved share.",
        _int_between(0, 100),
        metavar="PRIORITY",
    ),
    Setting(
        "HIGHLIGHT_MAX_MOMENT_BYTES",
        "65536",
        f"A moment larger than this is dead-lettered without being parsed (1..{MAX_MOMENT_BYTES_LIMIT}).",
        _int_between(1, MAX_MOMENT_BYTES_LIMIT),
        metavar="BYTES",
    ),
    Setting(
        "HIGHLIGHT_MAX_UNPROCESSABLE_IN_A_ROW",
        "100",
        "Records in a row that fail in our own code and are dead-lettered (`unprocessable`); one more in a row "
        "stops the service with exit code 70, since a bug that fails every record must not empty the stream "
        "into the dead-letter topic.",
        _int_between(1, 1_000_000),
        metavar="RECORDS",
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
        "Consumer session timeout; an instance starts calls only within half of it after its last heartbeat.",
        _int_between(1000),
        metavar="MS",
    ),
    Setting(
        "HIGHLIGHT_TAKEOVER_MARGIN_SECONDS",
        "1",
        "Added to the session timeout: how long a partition taken over without a clean handover (its owner "
        "crashed or stalled) waits before its keys are called; covers clock-rate drift between instances.",
        _float_above(0, inclusive=True),
        metavar="SECONDS",
    ),
    Setting(
        "HIGHLIGHT_KAFKA_FETCH_MAX_WAIT_MS",
        "500",
        "Longest a fetch waits for data; lower it on brokers that do not answer fetches early.",
        _int_between(1, 60_000),
        metavar="MS",
    ),
    Setting(
        "HIGHLIGHT_KAFKA_MAX_REQUEST_BYTES",
        str(DEFAULT_MAX_REQUEST_BYTES),
        "Largest record the producer sends (aiokafka's max_request_size); a larger dead letter is cut to fit. "
        f"65536..{MAX_REQUEST_BYTES_LIMIT}.",
        _int_between(64 * 1024, MAX_REQUEST_BYTES_LIMIT),
        metavar="BYTES",
        commands=SHARED,
    ),
    Setting(
        "HIGHLIGHT_KAFKA_STARTUP_TIMEOUT_SECONDS",
        "60",
        "At start-up, how long to wait for the brokers to answer and the moments topic to exist, retrying with "
        "backoff and one log line per attempt (0: try once).",
        _float_above(0, inclusive=True),
        metavar="SECONDS",
        commands=SHARED,
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "How every Kafka client connects: " + ", ".join(KAFKA_SECURITY_PROTOCOLS) + ".",
        _choice(*KAFKA_SECURITY_PROTOCOLS),
        commands=SHARED,
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SASL_MECHANISM",
        None,
        "SASL mechanism, with a SASL_* protocol: " + ", ".join(KAFKA_SASL_MECHANISMS) + ".",
        _choice(*KAFKA_SASL_MECHANISMS),
        commands=SHARED,
    ),
    Setting("HIGHLIGHT_KAFKA_SASL_USERNAME", None, "SASL user name, with a SASL_* protocol.", commands=SHARED),
    Setting(
        "HIGHLIGHT_KAFKA_SASL_PASSWORD",
        None,
        "SASL password, with a SASL_* protocol (secret).",
        secret=True,
        commands=SHARED,
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SSL_CAFILE",
        None,
        "CA bundle (PEM) that verifies the brokers, with SSL or SASL_SSL (default: the system CAs).",
        _readable_file,
        metavar="FILE",
        commands=SHARED,
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SSL_CERTFILE",
        None,
        "Client certificate (PEM) for brokers that require one, with SSL or SASL_SSL; may hold the key too.",
        _readable_file,
        metavar="FILE",
        commands=SHARED,
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SSL_KEYFILE",
        None,
        "Private key (PEM) of the client certificate, when it is not in the certificate file.",
        _readable_file,
        metavar="FILE",
        commands=SHARED,
    ),
    Setting(
        "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD",
        None,
        "Password of an encrypted client private key (secret).",
        secret=True,
        commands=SHARED,
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
        commands=SHARED,
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
        "Moments being decided (taken in, not yet answered), shared fairly among partitions.",
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
        commands=SHARED,
    ),
    Setting("HIGHLIGHT_LOG_LEVEL", "info", "Log level.", _choice("debug", "info", "warning", "error"), commands=SHARED),
)

ENV_DEFAULTS: dict[str, str | None] = {s.env: s.default for s in SETTINGS}


def settings_of(command: str) -> tuple[Setting, ...]:
    """The settings `highlight <command>` reads, in table order (`run`'s: also the operator tools')."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
    return tuple(setting for setting in SETTINGS if command in setting.commands)


def add_arguments(parser: argparse.ArgumentParser, command: str = RUN, *, uses_live: bool = True) -> None:
    """One flag per setting `command` reads; flags default to None so the environment shows through.

    `uses_live=False` (a command that never calls the Live API) says so in `--help` instead of calling the API's
    credentials required.
    """
    group = parser.add_argument_group("settings (each flag overrides its environment variable)")
    for setting in settings_of(command):
        if setting.required_by and not uses_live:
            default = "not needed by this command"
        elif setting.required_by:
            default = f"required when HIGHLIGHT_LIVE_API={' or '.join(setting.required_by)}"
        elif setting.required:
            default = "required"
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

"""What a setting is: its declaration, the values it may take, and the parsers that read them.

Parsers return the value or raise ValueError with a reason; `highlight.config.load` names the setting in front of it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

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

MAX_MOMENT_BYTES_LIMIT = 16 * 1024 * 1024
# aiokafka's (and the Java producer's) default request limit; Kafka's default max.message.bytes is just above.
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
MAX_REQUEST_BYTES_LIMIT = 128 * 1024 * 1024
# What a result or a re-keyed copy adds to a moment (ids, times, headers): the room the request limit must leave.
REQUEST_HEADROOM_BYTES = 16 * 1024
# The largest notification body the callback receiver takes: declared here because the receiver's request limit
# must leave room for it, and the settings are checked before anything else is built.
MAX_NOTIFICATION_BYTES = 64 * 1024

# --- the commands that read settings ----------------------------------------------------------------

RUN = "run"
CALLBACKS = "callbacks"
COMMANDS: tuple[str, ...] = (RUN, CALLBACKS)
# Kafka's address and security, the moments topic (its partition count places every channel), the metrics
# port and the logs: what the recorder and the callback receiver both need.
SHARED: tuple[str, ...] = (RUN, CALLBACKS)


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


def _fraction(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"must be a number between 0 and 1, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {raw.strip()}")
    return value


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
    # The commands that read it: a command neither offers the flag of a setting it does not use nor asks for it.
    commands: tuple[str, ...] = (RUN,)
    # Required by every command that reads it (as opposed to `required_by`, which depends on the Live API).
    required: bool = False
    attr: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attr", self.env.removeprefix("HIGHLIGHT_").lower())
        unknown = set(self.required_by) - set(LIVE_APIS)
        if unknown:
            raise ValueError(f"{self.env}: required_by names unknown Live APIs {sorted(unknown)}")
        if not self.commands or set(self.commands) - set(COMMANDS):
            raise ValueError(f"{self.env}: commands must be some of {', '.join(COMMANDS)}, got {self.commands!r}")
        if self.required_by and self.commands != (RUN,):
            raise ValueError(f"{self.env}: only `run` calls a Live API, so only its settings can depend on one")

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")

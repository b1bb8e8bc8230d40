"""structlog set-up: one JSON object per line in production, readable console lines on a TTY.

Secrets never reach a line: values of `Secret` settings are masked wherever they appear, and so is anything
shaped like a request signature, in case a library puts a signed URL or header into a message.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

from highlight.config import Secret

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
MASK = "********"
# Live_Tape_Start `sign=<md5>`, v2 `Signature=<base64>`, TC3 `Signature=<hex>` inside an Authorization header.
SIGNATURE = r"\b(sign|signature)(=|%3D)[^&\s,'\"]+"
SIGNATURES = re.compile(SIGNATURE, re.IGNORECASE)
# Shorter values are too likely to occur by chance to be worth masking (and would mask half a line).
MIN_SECRET_LENGTH = 4


def secrets_of(settings: Any) -> list[str]:
    """Every `Secret` value inside a tree of settings dataclasses."""
    found: list[str] = []
    if isinstance(settings, Secret):
        found.append(settings.reveal())
    elif dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        for field in dataclasses.fields(settings):
            found += secrets_of(getattr(settings, field.name))
    return found


class Redactor:
    """A structlog processor masking secret values and signatures in every string of an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        kept = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        # One pass of one compiled pattern per string: this runs for every log line, one per moment at least.
        alternatives = [re.escape(secret) for secret in kept] + [f"(?i:{SIGNATURE})"]
        self._pattern = re.compile("|".join(alternatives))
        self._secrets = frozenset(kept)

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        search = self._pattern.search
        for name, value in event.items():
            if type(value) is str:
                if search(value) is not None:
                    event[name] = self._pattern.sub(self._mask, value)
            elif isinstance(value, dict | list | tuple | BaseException):
                event[name] = self._clean(value)
        return event

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        if isinstance(value, BaseException):
            return self.text(f"{type(value).__name__}: {value}")
        return value

    def text(self, text: str) -> str:
        if self._pattern.search(text) is None:
            return text
        return self._pattern.sub(self._mask, text)

    def _mask(self, match: re.Match[str]) -> str:
        found = match[0]
        if found in self._secrets:
            return MASK
        signature = SIGNATURES.fullmatch(found)
        return f"{signature[1]}{signature[2]}{MASK}" if signature else MASK


class _RedactingFilter(logging.Filter):
    """The same masking for aiohttp's and aiokafka's standard-library records."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redactor.text(record.getMessage())
        record.args = None
        return True


def _orjson_dumps(event: Any, default: Any) -> str:
    return orjson.dumps(event, default=default).decode()


def configure(
    log_format: str = "auto", level: str = "info", stream: TextIO | None = None, *, secrets: Iterable[str] = ()
) -> None:
    stream = stream or sys.stderr
    console = log_format == "console" or (log_format == "auto" and stream.isatty())
    redactor = Redactor(secrets)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if console
        else structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if not console else structlog.dev.set_exc_info,
            # Last before rendering, so it also sees formatted tracebacks.
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        # The hot path logs per moment; caching skips the lazy proxy on every call after the first.
        cache_logger_on_first_use=True,
    )
    # aiokafka and aiohttp log through the standard library; keep their warnings, on the same stream.
    logging.basicConfig(stream=stream, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        for stale in [f for f in handler.filters if isinstance(f, _RedactingFilter)]:
            handler.removeFilter(stale)
        handler.addFilter(_RedactingFilter(redactor))

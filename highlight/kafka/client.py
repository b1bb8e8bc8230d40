"""What every aiokafka client here shares: its client id and security options, aiokafka's errors mapped to ours
where they enter, and a close that a vanished broker cannot hold forever."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiokafka
import aiokafka.errors
import structlog
from aiokafka.helpers import create_ssl_context

from highlight.config import KafkaSettings
from highlight.errors import BrokerError, BrokerUnavailable, ConfigError, RecordRejected, RecordTooLarge

log = structlog.get_logger("highlight.kafka")

CLIENT_ID = "highlight"


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """The security keyword arguments every aiokafka client gets: one place, so no client connects differently.

    `load()` has already refused incomplete or contradictory combinations; a file that cannot be loaded into
    the TLS context (not PEM, a wrong key password) is a `ConfigError` naming the settings.
    """
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        # aiokafka names the credentials `sasl_plain_*` for every mechanism, SCRAM included.
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.reveal() if settings.sasl_password else None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        try:
            # Verification and hostname checks on; no cafile means the system CAs.
            options["ssl_context"] = create_ssl_context(
                cafile=settings.ssl_cafile,
                certfile=settings.ssl_certfile,
                keyfile=settings.ssl_keyfile,
                # Never None: OpenSSL would prompt on the terminal for an encrypted key; "" fails fast instead
                # and is ignored for a key that is not encrypted.
                password=settings.ssl_key_password.reveal() if settings.ssl_key_password else "",
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                "HIGHLIGHT_KAFKA_SSL_CAFILE/_CERTFILE/_KEYFILE/_KEY_PASSWORD could not be loaded into a TLS "
                f"context ({exc}); check the files are PEM and the key password matches"
            ) from None
    return options


# Kafka refuses these for the record sent, whatever the brokers' state: sending it again fails the same way.
_TOO_LARGE = (
    aiokafka.errors.MessageSizeTooLargeError,
    aiokafka.errors.RecordListTooLargeError,
    aiokafka.errors.RecordTooLargeError,
)
_REJECTED = (aiokafka.errors.CorruptRecordException, aiokafka.errors.InvalidTimestampError)


def _mapped(exc: aiokafka.errors.KafkaError, action: str, *, sending: bool = False) -> BrokerError:
    detail = str(exc)
    if not detail.startswith(type(exc).__name__):
        detail = f"{type(exc).__name__}: {detail}"
    message = f"Kafka {action} failed: {detail}"
    if sending and isinstance(exc, _TOO_LARGE):
        return RecordTooLarge(message)
    if sending and isinstance(exc, _REJECTED):
        return RecordRejected(message)
    if isinstance(exc, aiokafka.errors.KafkaConnectionError | aiokafka.errors.KafkaTimeoutError) or getattr(
        exc, "retriable", False
    ):
        return BrokerUnavailable(message)
    return BrokerError(message)


@asynccontextmanager
async def broker_errors(action: str, *, sending: bool = False) -> AsyncIterator[None]:
    """Map aiokafka's errors to ours; `sending` one record, the errors that are that record's own are told apart."""
    try:
        yield
    except aiokafka.errors.KafkaError as exc:
        raise _mapped(exc, action, sending=sending) from exc


# A vanished broker must not hold a shutdown forever: aiokafka's stop waits for it indefinitely.
CLOSE_TIMEOUT_SECONDS = 10.0


async def _close_within(closing: Coroutine[Any, Any, None], client: str) -> None:
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await closing
    except TimeoutError:
        log.warning("kafka_close_timed_out", client=client, seconds=CLOSE_TIMEOUT_SECONDS)

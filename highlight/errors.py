"""The project's own error tree.

Library exceptions (aiohttp, aiokafka) are mapped to these at the adapter that sees them, so business code
decides on `retriable` and on the class, never on a library's types.
"""

from __future__ import annotations


class HighlightError(Exception):
    """Base of every error highlight raises on purpose."""

    retriable: bool = False


class ConfigError(HighlightError):
    """A setting is missing or invalid; the message names the setting."""


# --- Live API -------------------------------------------------------------------------------------


class LiveError(HighlightError):
    """The Live API call did not start a recording."""

    code: str = "live_error"
    # Tencent support asks for it; kept in results and logs whenever the API gave one.
    request_id: str | None = None

    def __init__(self, message: str, *, code: str | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.request_id = request_id

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class LiveRefused(LiveError):
    """The API answered and refused: nothing is recording.

    `retriable` when the same request may succeed a little later (a frequency limit, a replayed nonce); each
    backend decides that from its own error table.
    """

    def __init__(
        self, code: int | str, message: str, *, retriable: bool = False, request_id: str | None = None
    ) -> None:
        super().__init__(message, code=str(code), request_id=request_id)
        self.retriable = retriable


class LiveLimitReached(LiveRefused):
    """The API refused because the account's running-recording or daily limit is reached: nothing is recording.

    `reason` is `running_limit` or `daily_limit`; the moment is answered `skipped` with it, not `failed`, and
    the instance treats its share of that limit as full. `retriable` only where the code may also mean a
    frequency limit (v2's 4400): such a refusal is retried like one before it counts as a limit.
    """

    def __init__(
        self,
        code: int | str,
        message: str,
        *,
        reason: str,
        retriable: bool = False,
        request_id: str | None = None,
    ) -> None:
        super().__init__(code, message, retriable=retriable, request_id=request_id)
        self.reason = reason


class LiveUnreachable(LiveError):
    """The request certainly did not start a recording (not sent, or the gateway failed): safe to retry."""

    retriable = True


class LiveInDoubt(LiveError):
    """The request may have reached the API but its answer was lost. Never re-sent: a retry could record twice."""


class LiveAccessRefused(LiveError):
    """The API refused our appid, key, clock or endpoint address.

    Not the moment's fault: the service pauses and probes (`highlight.outage`) instead of burning the moment.
    """


# --- Kafka ----------------------------------------------------------------------------------------


class BrokerError(HighlightError):
    """A Kafka operation failed."""


class BrokerUnavailable(BrokerError):
    """The brokers could not be reached or did not answer in time."""

    retriable = True


class TopicMisconfigured(BrokerError):
    """A topic exists with a shape highlight cannot work with (for example mismatched partition counts)."""


class RecordRejected(BrokerError):
    """Kafka refused this one record, and will refuse it again every time: not the brokers' state, the record's."""


class RecordTooLarge(RecordRejected):
    """The record is larger than the producer's request limit or the topic's `max.message.bytes`."""


# --- processing -----------------------------------------------------------------------------------


class TooManyUnprocessable(HighlightError):
    """Records failed one after another in our own code: a bug that fails every record stops the service
    rather than dead-lettering the whole stream."""


# --- work given up ----------------------------------------------------------------------------------


class Abandoned(HighlightError):
    """A moment was given up without an outcome. It stays uncommitted, so the partition's owner gets it again."""


class Fenced(Abandoned):
    """This member cannot prove that it still owns its partitions: it starts no call and writes nothing."""

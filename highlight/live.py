"""The Live API adapter: one signed GET per attempt, aiohttp errors mapped to our tree where they enter.

Retry policy lives with the caller (the recorder); this module only knows whether a failure could have
reached the API.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import TracebackType

import aiohttp
from yarl import URL

from highlight.config import LiveSettings
from highlight.errors import LiveInDoubt, LiveUnreachable
from highlight.tape import TapeOptions, TapeWindow, parse_reply, query_string

# A connect that has not completed in this long certainly sent nothing, so it is safe to retry.
CONNECT_TIMEOUT_SECONDS = 3.0


class LiveClient:
    """Owns one aiohttp session for the life of the service."""

    def __init__(self, settings: LiveSettings, *, max_connections: int = 100) -> None:
        self._settings = settings
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._base = URL(settings.url).with_query(None).with_fragment(None)

    async def __aenter__(self) -> LiveClient:
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=min(CONNECT_TIMEOUT_SECONDS, self._settings.timeout_seconds),
            sock_read=self._settings.timeout_seconds,
        )
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
        session = aiohttp.ClientSession(timeout=timeout, connector=connector, raise_for_status=False)
        # aiohttp silently re-sends an idempotent GET once when the connection drops after sending. Here that
        # is exactly the retry-within-3-s the documents warn creates a second recording, so it is turned off.
        session._retry_connection = False
        self._session = session
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def start(self, options: TapeOptions, window: TapeWindow, now: datetime) -> int:
        """One Live_Tape_Start attempt; the task id, or a classified `LiveError`."""
        if self._session is None:
            raise RuntimeError("LiveClient used outside its context")
        query = query_string(self._settings.appid, self._settings.key.reveal(), options, window, now)
        url = URL(f"{self._base}?{query}", encoded=True)
        # Hard deadline: sock_read restarts with every chunk, so a trickling server could hold us forever.
        deadline = CONNECT_TIMEOUT_SECONDS + self._settings.timeout_seconds
        try:
            async with asyncio.timeout(deadline):
                async with self._session.get(url, allow_redirects=False) as response:
                    body = await response.read()
                    status = response.status
        except aiohttp.ConnectionTimeoutError:
            raise LiveUnreachable("timed out connecting to the Live API", code="connect_timeout") from None
        except aiohttp.ClientConnectorError as exc:
            # Refused, unreachable, DNS, TLS handshake: the request was never sent.
            raise LiveUnreachable(f"cannot connect to the Live API: {exc}", code="connect_failed") from None
        except (aiohttp.SocketTimeoutError, TimeoutError):
            raise LiveInDoubt(f"no answer within {self._settings.timeout_seconds:g} s", code="read_timeout") from None
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientConnectionResetError,
            aiohttp.ClientPayloadError,
        ) as exc:
            raise LiveInDoubt(
                f"connection lost after sending: {exc or type(exc).__name__}", code="connection_lost"
            ) from None
        except aiohttp.ClientError as exc:
            raise LiveInDoubt(f"unexpected HTTP failure: {exc or type(exc).__name__}", code="http_error") from None
        return parse_reply(status, body)

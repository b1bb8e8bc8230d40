"""The Live API adapter: one signed request per attempt, aiohttp errors mapped to our tree where they enter.

Which API is called is the backend's business (`highlight.apis`); this module owns the HTTP session, TLS,
the deadlines, and whether a failure could have reached the API. Retry policy lives with the caller.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from datetime import datetime
from types import TracebackType

import aiohttp
from yarl import URL

from highlight.apis import Backend, HttpRequest, Started
from highlight.config import LiveSettings
from highlight.errors import ConfigError, LiveInDoubt, LiveUnreachable
from highlight.recording import RecordingOptions, RecordingWindow

# A connect that has not completed in this long certainly sent nothing, so it is safe to retry.
CONNECT_TIMEOUT_SECONDS = 3.0
# aiohttp puts the URL in some messages; ours carry signatures in the query.
_QUERY = re.compile(r"\?[^\s'\"<>]*")


def tls_for(settings: LiveSettings) -> ssl.SSLContext | bool:
    """Certificates are verified unless an operator turned it off; a private CA bundle may be named."""
    if not settings.tls_verify:
        return False
    try:
        return ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"HIGHLIGHT_LIVE_CA_FILE {settings.ca_file!r} is not a usable CA bundle: {exc}") from None


class LiveClient:
    """Owns one aiohttp session for the life of the service."""

    def __init__(self, settings: LiveSettings, backend: Backend, *, max_connections: int = 100) -> None:
        self._settings = settings
        self.backend = backend
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LiveClient:
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=min(CONNECT_TIMEOUT_SECONDS, self._settings.timeout_seconds),
            sock_read=self._settings.timeout_seconds,
        )
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ssl=tls_for(self._settings))
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

    async def start(self, options: RecordingOptions, window: RecordingWindow, now: datetime) -> Started:
        """One attempt; the started task, or a classified `LiveError`."""
        status, body = await self._exchange(self.backend.request(options, window, now))
        return self.backend.parse(status, body)

    async def probe(self, now: datetime) -> str:
        """The backend's read-only call: what the API said once it accepted our credentials, or a `LiveError`."""
        status, body = await self._exchange(self.backend.probe(now))
        return self.backend.parse_probe(status, body)

    async def _exchange(self, request: HttpRequest) -> tuple[int, bytes]:
        """Send one request, read its answer; failures classified by whether the request could have arrived."""
        if self._session is None:
            raise RuntimeError("LiveClient used outside its context")
        url = URL(request.url, encoded=True)
        # Hard deadline: sock_read restarts with every chunk, so a trickling server could hold us forever.
        deadline = CONNECT_TIMEOUT_SECONDS + self._settings.timeout_seconds
        try:
            async with asyncio.timeout(deadline):
                async with self._session.request(
                    request.method,
                    url,
                    headers=dict(request.headers),
                    data=request.body,
                    allow_redirects=False,
                ) as response:
                    body = await response.read()
                    status = response.status
        except aiohttp.ConnectionTimeoutError:
            raise LiveUnreachable("timed out connecting to the Live API", code="connect_timeout") from None
        except aiohttp.ClientConnectorError as exc:
            # Refused, unreachable, DNS, TLS handshake or certificate: the request was never sent.
            raise LiveUnreachable(f"cannot connect to the Live API: {_clean(exc)}", code="connect_failed") from None
        except (aiohttp.SocketTimeoutError, TimeoutError):
            raise LiveInDoubt(f"no answer within {self._settings.timeout_seconds:g} s", code="read_timeout") from None
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientConnectionResetError,
            aiohttp.ClientPayloadError,
        ) as exc:
            raise LiveInDoubt(f"connection lost after sending: {_clean(exc)}", code="connection_lost") from None
        except aiohttp.ClientError as exc:
            raise LiveInDoubt(f"unexpected HTTP failure: {_clean(exc)}", code="http_error") from None
        return status, body


def _clean(exc: BaseException) -> str:
    return _QUERY.sub("?…", str(exc)) or type(exc).__name__

"""The HTTP transport kstrata's own API calls go through: urllib3, TLS, a bearer token.

Why not the ``kubernetes`` client's ``ApiClient``: kstrata only ever used it
as a transport (raw REST on plain JSON, see :mod:`kstrata.kube.api`), and
importing it costs the operator ~40 MiB and ~0.45 s (issue 18, "Memory").
This module is the part of it kstrata needs and nothing else: one
``urllib3.PoolManager`` per cluster, shared by every thread of the process,
TLS verified against the cluster CA, an optional client certificate, and a
bearer token that is re-read from its file (an in-cluster ServiceAccount's
bound token rotates, about hourly) at most once a minute, as client-go does.

It raises only ``urllib3``/``OSError`` failures; a non-2xx answer is
returned, and :mod:`kstrata.kube.api` maps it into ``kstrata.errors``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import urllib3

from kstrata import __version__

if TYPE_CHECKING:
    from kstrata.kube.connection import Credentials

#: How long a token read from a file is used before the file is read again
#: (client-go reloads a ServiceAccount token file every minute).
TOKEN_REFRESH_SECONDS: Final = 60.0
USER_AGENT: Final = f"kstrata/{__version__}"
#: Connections kept for reuse unless the caller says otherwise: the CLI's calls
#: come one at a time.  The operator passes its own (see :class:`Transport`).
DEFAULT_POOL_SIZE: Final = 4


@dataclass(frozen=True)
class Response:
    """A finished HTTP exchange: the status line and the whole body."""

    status: int
    reason: str
    data: bytes


class HttpStatusError(Exception):
    """A non-2xx answer, shaped as :func:`kstrata.kube.api._translate` reads one.

    ``body`` is kept for the apiserver's Status message, which is never logged
    whole; ``str()`` shows the status line only.
    """

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body


class TokenSource:
    """The current bearer token: a fixed value, or a file re-read once a minute."""

    def __init__(
        self,
        token: str | None,
        path: str | None,
        *,
        refresh_seconds: float = TOKEN_REFRESH_SECONDS,
        clock: Any = time.monotonic,
    ) -> None:
        self._token = token
        self._path = path
        self._refresh = refresh_seconds
        self._clock = clock
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def current(self) -> str | None:
        if self._path is None:
            return self._token
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._refresh:
                try:
                    self._token = Path(self._path).read_text(encoding="utf-8").strip() or None
                except OSError:
                    if self._read_at is None:
                        raise
                    # A rotation in progress (the kubelet swaps a symlink): keep the
                    # last token, a 401 would say so; try again on the next call.
                    return self._token
                self._read_at = now
            return self._token


def ssl_context(credentials: Credentials) -> ssl.SSLContext:
    """TLS as the credentials say: the cluster CA (or none), a client certificate."""
    context = ssl.create_default_context(cafile=credentials.ca_path)
    if not credentials.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if credentials.certificate_path and credentials.private_key_path:
        context.load_cert_chain(credentials.certificate_path, credentials.private_key_path)
    return context


class Transport:
    """JSON over HTTPS to one API server; safe to share between threads."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        token_refresh_seconds: float = TOKEN_REFRESH_SECONDS,
    ) -> None:
        self._credentials = credentials
        self._server = credentials.server.rstrip("/")
        self._scheme = credentials.scheme or "Bearer"
        self._tokens = TokenSource(
            credentials.token, credentials.token_path, refresh_seconds=token_refresh_seconds
        )
        # As many connections as the process has threads calling at once: a
        # thread that finds the pool full opens a TLS connection, drops it after
        # one call and logs a WARNING.  Only the caller knows its threads (this
        # layer may not read the operator's), so the operator's entry point
        # passes them (controller.runner.api_threads).  urllib3 opens
        # connections only on demand, so a large pool costs nothing unused.
        self._pool_size = pool_size
        self._pool: urllib3.PoolManager | None = None
        self._lock = threading.Lock()

    def _pool_manager(self) -> urllib3.PoolManager:
        """Built on first use: connecting reads files (CA, certificate, key) only then."""
        with self._lock:
            if self._pool is None:
                verify = self._credentials.verify_tls
                https = self._server.startswith("https:")
                self._pool = urllib3.PoolManager(
                    num_pools=4,
                    maxsize=self._pool_size,
                    ssl_context=ssl_context(self._credentials) if https else None,
                    cert_reqs=None if verify else "CERT_NONE",
                    assert_hostname=None if verify else False,
                )
            return self._pool

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        accept: str = "application/json",
    ) -> Response:
        """Send one request; the body (a JSON value) is serialised here."""
        url = self._url(path, query)
        headers = self._headers(accept, content_type)
        payload = None if body is None else json.dumps(body).encode()
        response = self._pool_manager().request(
            method,
            url,
            body=payload,
            headers=headers,
            timeout=urllib3.Timeout(total=timeout) if timeout is not None else None,
            redirect=False,
        )
        return Response(response.status, response.reason or "", response.data)

    def stream(
        self,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        accept: str = "application/json",
        connect_timeout: float = 30.0,
        read_timeout: float | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """GET ``path`` without reading the body: a watch, read as it arrives.

        The caller reads (``stream()``) and must ``release_conn()`` or
        ``shutdown()`` the response; ``read_timeout`` bounds each read, so a
        connection that went silent is noticed.
        """
        return self._pool_manager().request(
            "GET",
            self._url(path, query),
            headers=self._headers(accept, None),
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            redirect=False,
            preload_content=False,
            retries=False,
        )

    def _url(self, path: str, query: list[tuple[str, str]] | None) -> str:
        url = self._server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url

    def _headers(self, accept: str, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        if content_type is not None:
            headers["Content-Type"] = content_type
        token = self._tokens.current()
        if token:
            headers["Authorization"] = f"{self._scheme} {token}"
        return headers

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.clear()

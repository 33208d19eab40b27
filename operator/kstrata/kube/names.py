"""Names of objects for shell completion: one GET, a hard deadline, never an error.

Why not :mod:`kstrata.kube.connection` and the ``kubernetes`` client: importing
the client costs 0.4-0.6 s on this project's CI machines, and shell completion
must answer within ~200 ms of a TAB, Python's own start included.  This module
reads the few kubeconfig fields a plain HTTPS request needs (server, CA,
client certificate and key, bearer token), sends one ``GET`` with the
standard library, and gives up at a deadline measured across connect, TLS
handshake and every read, not per socket operation.

Anything it cannot do quickly and safely gives no names instead of an error:
an unreachable or slow server, a refusal (401/403/404), a kubeconfig that
authenticates with an ``exec`` plugin or an ``auth-provider`` (running a
plugin could prompt or take seconds), a malformed file.  Completion is a
convenience; it must never block or scold the prompt.  Nothing read here is
ever printed except object names, which kubectl shows to the same user.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from kstrata.kube.kubeconfig import context_names
from kstrata.wellknown import API_VERSION, CONFIG_PROFILE_PLURAL, SEALED_SECRET_PLURAL

#: What the whole lookup (connect, TLS, request, response) may take, seconds.
DEFAULT_DEADLINE: Final = 0.12
#: Names only: the API server sends metadata without specs (PartialObjectMetadataList).
_ACCEPT: Final = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
#: A completion list longer than this is no help at a prompt.
_LIMIT: Final = 500
_MAX_RESPONSE: Final = 4 * 1024 * 1024


@dataclass(frozen=True)
class Listing:
    """Where a kind's list lives: the same paths as :mod:`kstrata.kube.api`'s resources.

    Not those resources themselves: that module brings the HTTP client stack
    with it, tens of milliseconds a TAB cannot spare (a unit test keeps the
    paths equal).
    """

    api: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str) -> str:
        inside = f"/namespaces/{namespace}" if self.namespaced else ""
        return f"{self.api}{inside}/{self.plural}"


CONFIG_PROFILES: Final = Listing(f"/apis/{API_VERSION}", CONFIG_PROFILE_PLURAL)
SEALED_SECRETS: Final = Listing(f"/apis/{API_VERSION}", SEALED_SECRET_PLURAL)
NAMESPACES: Final = Listing("/api/v1", "namespaces", namespaced=False)


@dataclass(frozen=True)
class Target:
    """Where to send the request, as the kubeconfig's current (or named) context says."""

    server: str
    namespace: str
    ca_path: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    tls_server_name: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    cert_data: bytes | None = field(default=None, repr=False)
    key_data: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


def read_target(kubeconfig: Path, context: str | None = None) -> Target | None:
    """The server and credentials of ``context`` (default: current), or None if unusable."""
    try:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(kubeconfig.expanduser().read_text(), Loader=loader)  # noqa: S506
        return _target(document, kubeconfig.expanduser().resolve().parent, context)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError):
        return None


def contexts(kubeconfig: Path) -> list[str]:
    """The context names a kubeconfig defines (for completing ``--context``)."""
    try:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return context_names(yaml.load(kubeconfig.expanduser().read_text(), Loader=loader))  # noqa: S506
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError):
        return []


def _named(document: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    for entry in document.get(section) or []:
        if entry.get("name") == name:
            value = entry.get(section[:-1]) or {}
            if isinstance(value, dict):
                return value
    raise KeyError(section)


def _target(document: Any, base: Path, context_name: str | None) -> Target | None:
    if not isinstance(document, dict):
        return None
    context = _named(document, "contexts", context_name or document["current-context"])
    cluster = _named(document, "clusters", context["cluster"])
    user = _named(document, "users", context["user"]) if context.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        return None  # a plugin may prompt or take seconds: no names rather than a stall

    def path(value: Any) -> str | None:
        return None if not value else str((base / str(value)).resolve())

    def data(value: Any) -> bytes | None:
        return base64.b64decode(value) if value else None

    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(str(path(user["tokenFile"]))).read_text().strip()
    return Target(
        server=str(cluster["server"]).rstrip("/"),
        namespace=str(context.get("namespace") or "default"),
        ca_path=path(cluster.get("certificate-authority")),
        ca_data=data(cluster.get("certificate-authority-data")),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name"),
        cert_path=path(user.get("client-certificate")),
        key_path=path(user.get("client-key")),
        cert_data=data(user.get("client-certificate-data")),
        key_data=data(user.get("client-key-data")),
        token=str(token) if token else None,
    )


def list_names(
    target: Target,
    listing: Listing,
    namespace: str | None = None,
    deadline: float = DEFAULT_DEADLINE,
) -> list[str]:
    """Names of ``listing``'s objects (in ``namespace``), or [] if not had by ``deadline``."""
    stop = time.monotonic() + deadline
    path = listing.path(namespace or target.namespace)
    try:
        body = _get(target, f"{path}?limit={_LIMIT}", stop)
        items = json.loads(body).get("items") or []
        return sorted(str(item["metadata"]["name"]) for item in items)
    except (OSError, ssl.SSLError, ValueError, TypeError, KeyError, AttributeError):
        return []


def _remaining(stop: float) -> float:
    left = stop - time.monotonic()
    if left <= 0:
        raise TimeoutError("completion deadline")
    return left


def _get(target: Target, path: str, stop: float) -> bytes:
    url = urlsplit(target.server)
    if url.scheme not in ("https", "http") or not url.hostname:
        raise ValueError("unsupported server URL")
    port = url.port or (443 if url.scheme == "https" else 80)
    raw = socket.create_connection((url.hostname, port), timeout=_remaining(stop))
    with raw:
        sock: socket.socket = raw
        if url.scheme == "https":
            sock = _tls(target).wrap_socket(
                raw,
                server_hostname=target.tls_server_name or url.hostname,
                do_handshake_on_connect=False,
            )
            sock.settimeout(_remaining(stop))
            sock.do_handshake()
        headers = [
            f"GET {url.path.rstrip('/')}{path} HTTP/1.0",
            f"Host: {url.netloc}",
            f"Accept: {_ACCEPT}",
            "User-Agent: kstrata-completion",
        ]
        if target.token:
            headers.append(f"Authorization: Bearer {target.token}")
        sock.settimeout(_remaining(stop))
        sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        # HTTP/1.0: no chunked encoding, the server closes when the body is sent.
        chunks: list[bytes] = []
        size = 0
        while True:
            sock.settimeout(_remaining(stop))
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_RESPONSE:
                raise ValueError("response too large for completion")
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        raise ValueError("not 200")
    return body


def _tls(target: Target) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if target.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif target.ca_path or target.ca_data:
        if target.ca_path:
            context.load_verify_locations(cafile=target.ca_path)
        if target.ca_data:
            context.load_verify_locations(cadata=target.ca_data.decode())
    else:
        context.load_default_certs()
    if target.cert_path or target.cert_data:
        with _files(target) as (cert, key):
            context.load_cert_chain(cert, key)
    return context


@contextmanager
def _files(target: Target) -> Iterator[tuple[str, str | None]]:
    """Certificate and key as paths (ssl loads only files); inline data in a private temp dir."""
    if target.cert_data is None and target.key_data is None:
        yield str(target.cert_path), target.key_path
        return
    with tempfile.TemporaryDirectory(prefix="kstrata-complete-") as directory:
        paths = []
        for name, inline, given in (
            ("cert.pem", target.cert_data, target.cert_path),
            ("key.pem", target.key_data, target.key_path),
        ):
            if inline is None:
                paths.append(given)
                continue
            where = os.path.join(directory, name)
            descriptor = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(inline)
            paths.append(where)
        try:
            yield str(paths[0]), paths[1]
        finally:
            for leftover in paths:
                if leftover and leftover.startswith(directory):
                    with suppress(OSError):
                        os.unlink(leftover)

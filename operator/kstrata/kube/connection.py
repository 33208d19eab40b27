"""Connecting to a cluster: kubeconfig or in-cluster service account.

The operator needs the same credentials twice, once for kstrata's own
transport (:mod:`kstrata.kube.transport`) and once for kopf's watch
connections, so they are loaded once here and exposed as a typed
``Credentials`` value.  Paths are made absolute: kopf and kubectl use
kubeconfig paths as written.

Why a kubeconfig reader of our own instead of ``kubernetes.config``: the
operator must not import the ``kubernetes`` client (~40 MiB, issue 18), and
what an operator's kubeconfig holds -- a server, a CA, a client certificate
or a token, inline or as files -- is a few lines of YAML.  Users that
authenticate through a program or a provider (``exec``, ``auth-provider``,
user name and password) still get the client's loader, which knows them all;
only those connections import it.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import functools
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kstrata.errors import UnknownContextError, UsageError
from kstrata.kube.kubeconfig import context_names
from kstrata.kube.transport import DEFAULT_POOL_SIZE, TokenSource, Transport

_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Credentials:
    """How to reach and authenticate to the API server."""

    server: str
    ca_path: str | None
    verify_tls: bool
    certificate_path: str | None = None
    private_key_path: str | None = None
    scheme: str | None = None
    token: str | None = field(default=None, repr=False)
    #: A file holding the token, re-read as it rotates (a ServiceAccount's bound token).
    token_path: str | None = None

    def current_token(self) -> str | None:
        """The token now: read from ``token_path`` when there is one."""
        return TokenSource(self.token, self.token_path, refresh_seconds=0).current()


@dataclass(frozen=True)
class Cluster:
    """The credentials of one cluster and the transport kstrata talks to it through."""

    credentials: Credentials
    #: The namespace of the kubeconfig context (or the pod), for CLI defaults.
    default_namespace: str = "default"
    #: Connections the transport keeps: as many as the process has threads
    #: calling at once (see :meth:`with_pool_size`).
    pool_size: int = field(default=DEFAULT_POOL_SIZE, compare=False)
    #: One connection pool for the whole process, shared by every KubeApi.
    transport: Transport = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        transport = Transport(self.credentials, pool_size=self.pool_size)
        object.__setattr__(self, "transport", transport)

    def with_pool_size(self, pool_size: int) -> Cluster:
        """The same cluster with a transport of its own that keeps ``pool_size`` connections.

        For a process with many threads calling at once (the operator); the
        CLI keeps :data:`~kstrata.kube.transport.DEFAULT_POOL_SIZE`.  Nothing is
        connected yet: a transport opens its pool on its first call.
        """
        return replace(self, pool_size=pool_size)

    @functools.cached_property
    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` on the same credentials, built on first use.

        kstrata itself never uses it (it imports the client); it is here for
        tests and benchmarks that call the generated API classes.
        """
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.credentials.server
        configuration.ssl_ca_cert = self.credentials.ca_path
        configuration.verify_ssl = self.credentials.verify_tls
        configuration.cert_file = self.credentials.certificate_path
        configuration.key_file = self.credentials.private_key_path
        token = self.credentials.current_token()
        if token:
            configuration.api_key = {"BearerToken": token}
            configuration.api_key_prefix = {"BearerToken": self.credentials.scheme or "Bearer"}
        return client.ApiClient(configuration)


def connect(kubeconfig: Path | None = None, context: str | None = None) -> Cluster:
    """Load credentials from ``kubeconfig``, or in-cluster when it is None.

    The caller (the CLI or the operator's entry point) decides where the
    kubeconfig comes from; apart from the in-cluster service variables
    (``KUBERNETES_SERVICE_HOST``/``_PORT``) this reads no environment.
    """
    if kubeconfig is None:
        return _in_cluster()
    path = kubeconfig.expanduser().resolve()
    if not path.exists():
        raise UsageError(f"kubeconfig {path} does not exist")
    try:
        return _from_kubeconfig(path, context)
    except _NeedsClient:
        return _with_client(path, context)


def _in_cluster() -> Cluster:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    token = _SERVICE_ACCOUNT / "token"
    if not host or not port or not token.is_file():
        raise UsageError(
            "cannot load Kubernetes credentials from in-cluster service account: "
            "not running in a pod with a service account (pass --kubeconfig)"
        )
    if ":" in host:
        host = f"[{host}]"
    ca = _SERVICE_ACCOUNT / "ca.crt"
    credentials = Credentials(
        server=f"https://{host}:{port}",
        ca_path=str(ca) if ca.is_file() else None,
        verify_tls=True,
        token_path=str(token),
    )
    namespace_file = _SERVICE_ACCOUNT / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else ""
    return Cluster(credentials=credentials, default_namespace=namespace or "default")


class _NeedsClient(Exception):
    """The kubeconfig's user authenticates in a way only the client's loader knows."""


def _from_kubeconfig(path: Path, context_name: str | None) -> Cluster:
    import yaml

    where = f"cannot load Kubernetes credentials from {path}"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{where}: not a readable kubeconfig") from exc
    if not isinstance(document, dict):
        raise UsageError(f"{where}: not a kubeconfig")
    name = context_name or document.get("current-context")
    if not name:
        raise UsageError(f"{where}: no context given and no current-context set")
    names = context_names(document)
    if name not in names:
        # Before any user is looked at: the same message whether that user
        # would have been read here or by the client's loader (exec plugins).
        raise UnknownContextError(str(path), str(name), names, current=context_name is None)
    context = _named(document, "contexts", "context", name, where)
    cluster = _named(document, "clusters", "cluster", context.get("cluster"), where)
    user = (
        _named(document, "users", "user", context.get("user"), where) if "user" in context else {}
    )
    if any(key in user for key in ("exec", "auth-provider", "username", "password")):
        raise _NeedsClient
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise UsageError(f"{where}: cluster {context.get('cluster')!r} has no server")
    base = path.parent
    token = user.get("token") or None
    credentials = Credentials(
        server=server,
        ca_path=_file(base, cluster, "certificate-authority", where),
        verify_tls=not cluster.get("insecure-skip-tls-verify", False),
        certificate_path=_file(base, user, "client-certificate", where),
        private_key_path=_file(base, user, "client-key", where),
        scheme="Bearer" if token or user.get("tokenFile") else None,
        token=token,
        token_path=str(base / user["tokenFile"]) if user.get("tokenFile") and not token else None,
    )
    return Cluster(credentials=credentials, default_namespace=context.get("namespace") or "default")


def _named(document: dict[str, Any], section: str, key: str, name: Any, where: str) -> Any:
    for entry in document.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(key) or {}
            if isinstance(value, dict):
                return value
    raise UsageError(f"{where}: no {key} named {name!r}")


def _file(base: Path, section: dict[str, Any], key: str, where: str) -> str | None:
    """``key`` as an absolute path, or ``key-data`` written to a private temporary file."""
    if section.get(key):
        return str(base / section[key])
    data = section.get(f"{key}-data")
    if not data:
        return None
    try:
        content = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UsageError(f"{where}: {key}-data is not base64") from exc
    return _private_file(content)


def _private_file(content: bytes) -> str:
    """A 0600 file removed at exit (ssl loads certificates and keys from files only)."""
    handle, name = tempfile.mkstemp(prefix="kstrata-", suffix=".pem")
    with os.fdopen(handle, "wb") as out:
        out.write(content)
    atexit.register(Path(name).unlink, missing_ok=True)
    return name


def _with_client(path: Path, context: str | None) -> Cluster:
    """The ``kubernetes`` client's loader, for exec plugins and auth providers."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(
            config_file=str(path), context=context, client_configuration=configuration
        )
        contexts, active = config.list_kube_config_contexts(config_file=str(path))
    except config.ConfigException as exc:
        raise UsageError(f"cannot load Kubernetes credentials from {path}: {exc}") from exc
    if context is not None:
        active = next((c for c in contexts if c["name"] == context), active)
    namespace = active.get("context", {}).get("namespace") or "default"
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    credentials = Credentials(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        verify_tls=bool(configuration.verify_ssl),
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        scheme=scheme,
        token=token,
    )
    return Cluster(credentials=credentials, default_namespace=namespace)

"""Connecting to a cluster: kubeconfig or in-cluster service account.

The operator needs the same credentials twice, once for the ``kubernetes``
client kstrata writes with and once for kopf's own watch connections, so
they are loaded once here and exposed as a typed ``Credentials`` value.
Paths are made absolute: kopf and kubectl use kubeconfig paths as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kstrata.errors import UsageError


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


@dataclass(frozen=True)
class Cluster:
    """A connected ``kubernetes`` API client plus the credentials behind it."""

    api_client: Any = field(repr=False)
    credentials: Credentials
    #: The namespace of the kubeconfig context (or the pod), for CLI defaults.
    default_namespace: str = "default"


_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def connect(kubeconfig: Path | None = None, context: str | None = None) -> Cluster:
    """Load credentials from ``kubeconfig``, or in-cluster when it is None.

    The caller (the CLI or the operator's entry point) decides where the
    kubeconfig comes from; this function reads no environment variables.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    namespace = "default"
    try:
        if kubeconfig is None:
            config.load_incluster_config(client_configuration=configuration)
            if _SERVICE_ACCOUNT_NAMESPACE.exists():
                namespace = _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or namespace
        else:
            path = kubeconfig.expanduser().resolve()
            if not path.exists():
                raise UsageError(f"kubeconfig {path} does not exist")
            config.load_kube_config(
                config_file=str(path), context=context, client_configuration=configuration
            )
            _, active = config.list_kube_config_contexts(config_file=str(path))
            if context is not None:
                contexts, _ = config.list_kube_config_contexts(config_file=str(path))
                active = next((c for c in contexts if c["name"] == context), active)
            namespace = active.get("context", {}).get("namespace") or namespace
    except config.ConfigException as exc:
        where = "in-cluster service account" if kubeconfig is None else str(kubeconfig)
        raise UsageError(f"cannot load Kubernetes credentials from {where}: {exc}") from exc

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
    return Cluster(
        api_client=client.ApiClient(configuration),
        credentials=credentials,
        default_namespace=namespace,
    )

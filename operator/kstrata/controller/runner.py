"""Assemble and run the operator: registry, kopf settings, login, metrics.

There is no module-level kopf state: ``build_registry`` creates a fresh
``kopf.OperatorRegistry`` from an explicit ``OperatorContext``, so the same
code serves ``kstrata operator run`` (``kopf.run``) and the in-process test
fixture (``kopf.testing.KopfRunner``), with different settings, in one process.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import kopf

from kstrata import metrics
from kstrata.app.profiles import ProfileReconciler
from kstrata.controller import namespaces, profiles, reloads, sealed_secrets, webhook
from kstrata.kube.api import KubeApi
from kstrata.kube.connection import Cluster
from kstrata.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class OperatorContext:
    """What every handler may use: the settings and the cluster connection."""

    settings: Settings
    cluster: Cluster
    #: Filled by the startup handler: the bound metrics address, for tests and logs.
    metrics_bound: tuple[str, int] | None = None
    _metrics_server: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    """Translate our settings into kopf's."""
    operator = kopf.OperatorSettings()
    operator.peering.standalone = settings.standalone
    operator.peering.name = settings.peering_name
    operator.peering.clusterwide = settings.clusterwide
    operator.peering.mandatory = not settings.standalone
    operator.posting.reporting_component = "kstrata"
    # kopf posts every handler log line at this level or above as an event;
    # kstrata posts its own, deliberately worded events instead.
    operator.posting.level = logging.CRITICAL
    operator.networking.request_timeout = 30
    operator.watching.server_timeout = 300
    operator.watching.client_timeout = 330
    operator.queueing.error_delays = (1, 1, 2, 5, 10)
    return operator


def kopf_cli_args(settings: Settings) -> list[str]:
    """The ``kopf run`` arguments for these settings (used with ``KopfRunner``)."""
    args = ["run"]
    args += ["--all-namespaces"] if settings.clusterwide else []
    for namespace in settings.namespaces:
        args += ["--namespace", namespace]
    if settings.standalone:
        args.append("--standalone")
    else:
        args += ["--peering", settings.peering_name]
    if settings.liveness_endpoint:
        args += ["--liveness", settings.liveness_endpoint]
    return args


def assemble(context: OperatorContext) -> tuple[kopf.OperatorRegistry, kopf.OperatorSettings]:
    """Everything kopf needs to run this operator: one path for production and tests."""
    registry = build_registry(context)
    operator_settings = kopf_settings(context.settings)
    setup = webhook.prepare(context.settings)
    if setup is not None:
        operator_settings.admission.server = setup.server
        webhook.register(registry, KubeApi(context.cluster, timeout=3.0), context.settings, setup)
    return registry, operator_settings


def build_registry(context: OperatorContext) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(id="login", registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        credentials = context.cluster.credentials
        return kopf.ConnectionInfo(
            server=credentials.server,
            ca_path=credentials.ca_path,
            insecure=not credentials.verify_tls,
            certificate_path=credentials.certificate_path,
            private_key_path=credentials.private_key_path,
            scheme=credentials.scheme,
            token=credentials.token,
            default_namespace=context.settings.operator_namespace,
        )

    api = KubeApi(context.cluster)
    namespaces.register(registry)
    profiles.register(registry, api, ProfileReconciler(api, context.settings))
    sealed_secrets.register(registry, api, context.settings)
    reloads.register(registry, api, context.settings)

    @kopf.on.startup(id="metrics", registry=registry)
    def start_metrics(**_: Any) -> None:
        _start_metrics(context)
        metrics.OPERATOR_UP.set(1)

    @kopf.on.cleanup(id="metrics", registry=registry)
    def stop_metrics(**_: Any) -> None:
        metrics.OPERATOR_UP.set(0)
        _stop_metrics(context)

    return registry


def _start_metrics(context: OperatorContext) -> None:
    address = context.settings.metrics_address
    if not address:
        return
    from prometheus_client import start_http_server

    host, _, port = address.rpartition(":")
    with context._lock:
        server, _thread = start_http_server(int(port), addr=host or "0.0.0.0")  # noqa: S104
        context._metrics_server = server
        bound_host, bound_port = server.server_address[:2]
        context.metrics_bound = (str(bound_host), int(bound_port))
    logger.info("metrics on http://%s:%d/metrics", *context.metrics_bound)


def _stop_metrics(context: OperatorContext) -> None:
    with context._lock:
        if context._metrics_server is not None:
            context._metrics_server.shutdown()
            context._metrics_server.server_close()
            context._metrics_server = None


def run(context: OperatorContext) -> None:
    """Run the operator in this thread until it is stopped (SIGTERM/SIGINT)."""
    settings = context.settings
    kopf.configure(
        debug=settings.log_level == "debug",
        quiet=settings.log_level == "warning",
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    registry, operator_settings = assemble(context)
    kopf.run(
        registry=registry,
        settings=operator_settings,
        clusterwide=settings.clusterwide,
        namespaces=list(settings.namespaces),
        standalone=settings.standalone,
        peering_name=None if settings.standalone else settings.peering_name,
        liveness_endpoint=settings.liveness_endpoint,
    )

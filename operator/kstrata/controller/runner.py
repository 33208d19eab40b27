"""Assemble and run the operator: registry, kopf settings, login, metrics.

There is no module-level kopf state: ``build_registry`` creates a fresh
``kopf.OperatorRegistry`` from an explicit ``OperatorContext``, so the same
code serves ``kstrata operator run`` (``kopf.run``) and the in-process test
fixture (``kopf.testing.KopfRunner``), with different settings, in one process.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, cast

import kopf

from kstrata import metrics
from kstrata.app.profiles import ProfileReconciler
from kstrata.app.reloads import PARALLEL_CALLS
from kstrata.app.sealed_secrets import MANAGED_SECRETS_SELECTOR
from kstrata.controller import (
    followed_secrets,
    namespaces,
    profiles,
    reloads,
    reseal_endpoint,
    sealed_secrets,
    webhook,
)
from kstrata.errors import ConflictError, ForbiddenError, KstrataError, SettingsError
from kstrata.kube.api import KubeApi, Resource
from kstrata.kube.connection import Cluster
from kstrata.payloads import KubeObject
from kstrata.settings import Settings
from kstrata.wellknown import MANAGER

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

logger = logging.getLogger(__name__)

#: kopf's peering kinds (the CRDs ship in manifests/).
CLUSTER_PEERINGS: Final[Resource[KubeObject]] = Resource(
    "kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False
)
NAMESPACED_PEERINGS: Final[Resource[KubeObject]] = Resource(
    "kopf.dev", "v1", "kopfpeerings", "KopfPeering"
)


@dataclass
class OperatorContext:
    """What every handler may use: the settings and the cluster connection."""

    settings: Settings
    cluster: Cluster
    #: Filled by the startup handler: the bound metrics address, for tests and logs.
    metrics_bound: tuple[str, int] | None = None
    _metrics_server: WSGIServer | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    """Translate our settings into kopf's."""
    operator = kopf.OperatorSettings()
    operator.peering.standalone = settings.standalone
    operator.peering.name = settings.peering_name
    operator.peering.clusterwide = settings.clusterwide
    operator.peering.mandatory = not settings.standalone
    # kopf pauses *every* peer when live peers share a priority, so each process
    # draws its own: of two replicas exactly one (the higher) is active, and the
    # other takes over when its keep-alives stop.
    operator.peering.priority = 1 + secrets.randbelow(2**31 - 1)
    operator.posting.reporting_component = MANAGER
    # kopf posts every handler log line at this level or above as an event;
    # kstrata posts its own, deliberately worded events instead.
    operator.posting.level = logging.CRITICAL
    operator.networking.request_timeout = 30
    operator.watching.server_timeout = 300
    operator.watching.client_timeout = 330
    operator.queueing.error_delays = (1, 1, 2, 5, 10)
    # Only Secrets kstrata manages (or is asked to adopt) reach kopf: its one
    # watch of Secrets serves every Secret handler, and without a selector it
    # received (and kept per-object state for) every Secret in the cluster.
    # Others that matter are followed by metadata (controller.followed_secrets).
    operator.watching.label_selectors["v1", "secrets"] = MANAGED_SECRETS_SELECTOR
    operator.persistence.diffbase_storage = essence_storage()
    # Reconciles spend most of their time waiting for the API server; Python's
    # default pool (CPU count + 4 = 6 threads here) left the CPUs idle between
    # calls in a cold start.  12 measured faster and stayed under 140 MiB.
    operator.execution.max_workers = 12
    # After its own PATCH kopf waits this long for the patched version to come
    # back on the watch before it trusts an older event; when a burst delays the
    # watch longer than kopf's 5 s default, it re-runs the create handler on the
    # stale copy (measured: ~3 reconciles per profile in a cold start of 1,000).
    operator.persistence.consistency_timeout = 15.0
    return operator


class SpecEssenceStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's essence, built without copying what ``ignored_fields=["metadata"]`` drops.

    kopf builds the essence of every event of a ConfigProfile or SealedSecret
    from a deep copy of the whole body, then deletes ``metadata`` (its
    managedFields, every annotation, this very record) and ``status``.  That
    copy was the largest single cost of kopf's event loop in a cold start
    (cProfile, CPU time: ``diffbase.build`` ~17 % of the loop's CPU, 2026-12-03).
    The result is the same dict: ``metadata`` is left out before kopf copies,
    and ``status`` too unless a handler's field lies in it.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        fields = list(extra_fields or ())
        dropped = {"metadata"} if any(_in_status(f) for f in fields) else {"metadata", "status"}
        slim = {key: value for key, value in body.items() if key not in dropped}
        return super().build(body=kopf.Body(cast(kopf.RawBody, slim)), extra_fields=fields)


def _in_status(field: kopf.FieldSpec) -> bool:
    if field is None:
        return False
    first = field.split(".", 1)[0] if isinstance(field, str) else next(iter(field), None)
    return first == "status"


def essence_storage() -> kopf.AnnotationsDiffBaseStorage:
    """kopf's record of the last handled state, without labels and annotations.

    kopf decides whether an object changed by comparing it with a stored copy
    of its "essence", which by default includes labels and annotations.  Every
    kstrata change handler reacts to ``spec`` only, and the reconcile itself
    writes the revision annotations: counting metadata made kopf process each
    object a second time after its first reconcile just to store a new copy
    (one more PATCH and one more pass per object, about a third of the API
    calls of a cold start).  Without metadata, only a spec change is a change.
    """
    return SpecEssenceStorage(ignored_fields=["metadata"])


def connection_limit(settings: Settings) -> int:
    """How many connections kopf may hold to the API server at once.

    kopf's own session has no limit: in a burst every object's bookkeeping
    PATCH opened its own TLS connection (200 at once measured, each a
    handshake on both ends and ~130 KiB of buffers), which cost the API
    server CPU and pushed the operator over 200 MiB.  Watches hold their
    connection for good (about 10 cluster-wide, about 7 per namespace
    otherwise), so the limit leaves room for them plus a pool for requests;
    beyond it requests wait for a free connection.  A pool of 8 rather than
    20 measured 2-3 MiB lower peak and idle RSS in a cold start of 1,000
    SealedSecrets at no lower rate (docs/performance.md, "Memory, 2026-12-02
    night"): kopf's requests are its own bookkeeping PATCHes and events,
    while kstrata's own calls use the transport's pool.
    """
    watches = 12 if settings.clusterwide else 4 + 8 * len(settings.namespaces)
    return watches + 8


def api_threads(settings: Settings) -> int:
    """How many of the operator's threads can hold a connection of kstrata's transport at once.

    The operator's entry point sizes the transport's pool with it
    (``Cluster.with_pool_size``): kopf's handler threads
    (``execution.max_workers``), the event loop's default executor (Python's
    own size; ``asyncio.to_thread``), a reload pass's parallel calls, and one
    metadata watch of Secrets per watched namespace (or one cluster-wide),
    which holds its connection while it streams.  With fewer (the client's old
    5 per core, 10 here) a thread finding the pool full opened a TLS
    connection, dropped it after one call and logged a WARNING (6-9 times in
    a cold start of 1,000 SealedSecrets, hundreds in some of the 10x runs).
    """
    loop_executor = min(32, (os.cpu_count() or 1) + 4)
    handlers = kopf_settings(settings).execution.max_workers or loop_executor
    secret_watches = len(settings.namespaces) or 1
    return handlers + loop_executor + PARALLEL_CALLS + secret_watches


def bounded_session(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """kopf's session for ``info``, as kopf builds it, with at most ``limit`` connections."""
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        aiohttp_session=session,
    )


#: Seconds between the checks of a new login's credentials (:func:`rejected`).
REJECTED_RECHECKS: Final = (0.5, 1.0)


async def rejected(session: kopf.AiohttpSession, server: str) -> bool:
    """Whether the API server refuses ``session``'s credentials (401), checked thrice.

    kopf logs in again after every 401 and retries the request with what the
    login handler returns, at once and without end.  When the ServiceAccount
    is gone (an uninstall deletes it before the pod stops, and its token with
    it) each retry is another 401: a new TLS session and a log line every
    ~10 ms, which kept a stopping operator's peering clean-up spinning until
    the kubelet killed the pod 30 s later.  A re-login therefore first asks
    the API server (``GET /version``, which any authenticated user may read)
    and, if the new credentials are refused three times over 1.5 s (a token
    the kubelet rotated is read afresh on each login, so only revoked
    credentials stay refused), logs in with nothing: kopf then fails the
    waiting requests with ``LoginError`` instead of retrying them, so a
    stopping operator stops and a running one exits for a restart.  Any other
    answer, or none, leaves kopf's own handling as it was.
    """
    import aiohttp

    url = server.rstrip("/") + "/version"
    for delay in (*REJECTED_RECHECKS, None):
        try:
            async with session.aiohttp_session.get(url) as response:
                if response.status != 401:
                    return False
        except aiohttp.ClientError:
            return False
        if delay is not None:
            await asyncio.sleep(delay)
    return True


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
    """Everything kopf needs to run this operator: one path for production and tests.

    The endpoints are claimed first (:func:`open_endpoints`): a port in use
    stops start-up here, with a message naming the setting to change.
    """
    open_endpoints(context)
    registry = build_registry(context)
    operator_settings = kopf_settings(context.settings)
    setup = webhook.prepare(context.settings, KubeApi(context.cluster, timeout=10.0))
    if setup is not None:
        operator_settings.admission.server = setup.server
        webhook.register(registry, KubeApi(context.cluster, timeout=3.0), context.settings, setup)
        # The reseal endpoint reuses the webhook's certificate, so it is served with it.
        reseal_endpoint.register(
            registry, KubeApi(context.cluster), context.settings, setup.certificate
        )
    return registry, operator_settings


def build_registry(context: OperatorContext) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    logins = 0

    @kopf.on.login(id="login", registry=registry)
    async def login(**_: object) -> kopf.AiohttpSession | None:
        # kopf calls this again when the API server answers 401: an in-cluster
        # token is read from its file each time, so a rotated token is picked up.
        nonlocal logins
        logins += 1
        credentials = context.cluster.credentials
        info = kopf.ConnectionInfo(
            server=credentials.server,
            ca_path=credentials.ca_path,
            insecure=not credentials.verify_tls,
            certificate_path=credentials.certificate_path,
            private_key_path=credentials.private_key_path,
            scheme=credentials.scheme,
            token=credentials.current_token(),
            default_namespace=context.settings.operator_namespace,
        )
        session = bounded_session(info, connection_limit(context.settings))
        if logins > 1 and await rejected(session, credentials.server):
            await session.aiohttp_session.close()
            logger.error(
                "the API server rejects the operator's credentials (401): its "
                "ServiceAccount or token was revoked; stopping without them"
            )
            return None
        return session

    api = KubeApi(context.cluster)
    if not context.settings.standalone:
        _register_peering(registry, api, context.settings)
    namespaces.register(registry)
    secrets = followed_secrets.register(registry, api, context.cluster, context.settings)
    reconciled = reloads.register(registry, api, context.settings, secrets)
    profiles.register(registry, api, ProfileReconciler(api, context.settings), reconciled)
    sealed_secrets.register(registry, api, context.settings, reconciled, secrets)

    @kopf.on.startup(id="metrics", registry=registry)
    def start_metrics(**_: object) -> None:
        # Normally served since assemble(); a registry built on its own starts it here.
        try:
            _start_metrics(context)
        except SettingsError as error:
            # Permanent: kopf stops the operator (and logs why) instead of
            # retrying every 60 s while no resource is processed.
            raise kopf.PermanentError(str(error)) from error
        metrics.OPERATOR_UP.set(1)

    @kopf.on.cleanup(id="metrics", registry=registry)
    def stop_metrics(**_: object) -> None:
        metrics.OPERATOR_UP.set(0)
        _stop_metrics(context)

    return registry


def _register_peering(registry: kopf.OperatorRegistry, api: KubeApi, settings: Settings) -> None:
    """Create kopf's peering object(s) when missing, before kopf starts watching them.

    kopf with mandatory peering stays paused until its peering object exists, and
    ``kubectl apply -k manifests/`` cannot create an object of a CRD it creates in
    the same run; so the operator makes its own (kopf starts peering only after
    the startup handlers).
    """

    @kopf.on.startup(id="peering", registry=registry)
    def ensure_peering(**_: object) -> None:
        resource = CLUSTER_PEERINGS if settings.clusterwide else NAMESPACED_PEERINGS
        places: tuple[str | None, ...] = (None,) if settings.clusterwide else settings.namespaces
        for namespace in places:
            body = {
                "apiVersion": resource.api_version,
                "kind": resource.kind,
                "metadata": {"name": settings.peering_name},
            }
            try:
                if api.get_or_none(resource, namespace, settings.peering_name) is None:
                    api.create(resource, namespace, body)
            except ConflictError:
                continue  # another replica made it meanwhile
            except ForbiddenError as error:
                logger.warning("kopf peering object %s: %s", settings.peering_name, error)
            except KstrataError as error:
                raise kopf.TemporaryError(str(error), delay=5) from error


#: For each endpoint setting: the flag of ``kstrata operator run`` that sets it.
_ENDPOINT_FLAGS: Final = {
    "metrics_address": "--metrics-address",
    "liveness_endpoint": "--liveness",
    "webhook_address": "--webhook-address",
}


def _endpoints(settings: Settings) -> list[tuple[str, str, str, int]]:
    """(setting, value, host, port) of every endpoint the settings ask for."""
    found = []
    # The settings of _ENDPOINT_FLAGS, read as attributes so each is typed.
    addresses = {
        "metrics_address": settings.metrics_address,
        "liveness_endpoint": settings.liveness_endpoint,
        "webhook_address": settings.webhook_address,
    }
    for setting, value in addresses.items():
        if not value:
            continue
        if setting == "liveness_endpoint":
            url = urllib.parse.urlsplit(value)
            host, port = url.hostname or "", url.port or 80
        else:
            host, _, port_text = value.rpartition(":")
            port = int(port_text)
        found.append((setting, value, host, port))
    return found


def _unavailable(setting: str, value: str, port: int, error: OSError) -> SettingsError:
    how = f"set {setting} in the settings file or pass {_ENDPOINT_FLAGS[setting]} with another port"
    if setting == "metrics_address":
        how += " (port 0 picks a free one; an empty value serves no metrics)"
    if error.errno == errno.EADDRINUSE:
        why = f"port {port} is already in use by another process"
    else:
        why = f"cannot listen there ({error.strerror or error})"
    return SettingsError(f"{setting} {value}: {why}; {how}")


def _check_free(setting: str, value: str, host: str, port: int) -> None:
    """Raise ``SettingsError`` if nothing could listen on (host, port) now.

    kopf binds the liveness and webhook ports itself, after its start-up
    handlers; a port in use there would only show as a failing task.  A
    listening socket held by another process makes this bind fail the same
    way (both set SO_REUSEADDR, as aiohttp does).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host or "0.0.0.0", port))  # noqa: S104 (what the setting says)
        except OSError as error:
            raise _unavailable(setting, value, port, error) from None


def open_endpoints(context: OperatorContext) -> None:
    """Claim every endpoint the settings ask for, before anything else starts.

    Serves ``/metrics`` now and checks the liveness and webhook ports are
    free.  Raises ``SettingsError`` naming the endpoint, the port and the
    setting (and flag) to change, so a port already taken (9090 is
    Prometheus' own default) stops start-up at once with a clear message,
    instead of kopf retrying a failed start-up handler every 60 s while no
    resource is processed.
    """
    endpoints = _endpoints(context.settings)
    ports: dict[int, str] = {}
    for setting, value, host, port in endpoints:
        if port and port in ports:
            raise SettingsError(
                f"{setting} {value}: port {port} is also the port of {ports[port]}; "
                f"give each endpoint its own port ({_ENDPOINT_FLAGS[setting]})"
            )
        ports[port] = setting
        if setting != "metrics_address" and port:
            _check_free(setting, value, host, port)
    _start_metrics(context)


def _start_metrics(context: OperatorContext) -> None:
    """Serve ``/metrics`` on ``metrics_address`` unless it is served already."""
    address = context.settings.metrics_address
    if not address:
        return
    from prometheus_client import start_http_server

    host, _, port = address.rpartition(":")
    with context._lock:
        if context._metrics_server is not None:
            return
        try:
            server, _thread = start_http_server(int(port), addr=host or "0.0.0.0")  # noqa: S104
        except OSError as error:
            raise _unavailable("metrics_address", address, int(port), error) from None
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


# --- memory: give back what a burst of reconciles leaves behind ------------


@dataclass
class QuietAfterBurst:
    """Decides, from CPU time alone, when a burst of work has just ended.

    The operator's RSS after a cold start or a resume is what the burst grew,
    not what it keeps (docs/performance.md, "Memory"): CPython and glibc hold
    the freed memory.  Giving it back costs a ``gc.collect()`` and a
    ``malloc_trim``, worth doing once when the work is over, not on a timer
    and not while objects are being handled.  ``observe`` is told the CPU
    seconds the process used in each ``interval`` and answers True once per
    burst: after at least ``burst`` CPU seconds of work, at the first
    ``quiet`` seconds in a row during which it used under ``idle_share`` of one CPU.
    """

    burst: float = 1.0
    quiet: float = 3.0
    idle_share: float = 0.05
    _worked: float = 0.0
    _quiet_for: float = 0.0

    def observe(self, cpu_seconds: float, interval: float) -> bool:
        if cpu_seconds > self.idle_share * interval:
            self._worked += cpu_seconds
            self._quiet_for = 0.0
            return False
        self._quiet_for += interval
        if self._worked >= self.burst and self._quiet_for >= self.quiet:
            self._worked = 0.0
            return True
        return False


def trim_when_quiet(interval: float = 1.0) -> None:
    """Forever: after each burst of work, collect garbage and return free heap to the OS."""
    import ctypes
    import gc
    import time

    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        malloc_trim = None
    decide = QuietAfterBurst()
    last = time.process_time()
    while True:
        time.sleep(interval)
        now = time.process_time()
        if decide.observe(now - last, interval):
            gc.collect()
            if malloc_trim is not None:
                malloc_trim(0)
            now = time.process_time()  # the trim's own CPU is not work
        last = now


def run(context: OperatorContext) -> None:
    """Run the operator in this thread until it is stopped (SIGTERM/SIGINT)."""
    settings = context.settings
    kopf.configure(
        debug=settings.log_level == "debug",
        quiet=settings.log_level == "warning",
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    registry, operator_settings = assemble(context)
    threading.Thread(target=trim_when_quiet, name="kstrata-trim", daemon=True).start()
    try:
        kopf.run(
            registry=registry,
            settings=operator_settings,
            clusterwide=settings.clusterwide,
            namespaces=list(settings.namespaces),
            standalone=settings.standalone,
            peering_name=None if settings.standalone else settings.peering_name,
            liveness_endpoint=settings.liveness_endpoint,
        )
    finally:
        _stop_metrics(context)

"""The validating admission webhook: kopf serves it, kstrata configures it.

kopf's own managed webhook configuration sets ``timeoutSeconds: 30`` and its
self-signed certificates need ``oscrypto`` (broken on OpenSSL 3), so kstrata
uses only kopf's server and handler routing: certificates come from
``kstrata.crypto.tls`` (or a mounted directory), and the
ValidatingWebhookConfiguration is written by ``kstrata.app.admission`` with
``failurePolicy: Fail``, ``timeoutSeconds: 5`` and ``sideEffects: None``,
scoped to kstrata.dev resources only.

Certificates, in order of preference:

* ``settings.webhook_cert_dir``: mounted by someone else (cert-manager);
* in the cluster (no ``webhook_url``): one CA and serving certificate shared by
  every replica through the Secret ``<webhook_service>-tls`` in the operator
  namespace.  The first replica to start makes them; the others reuse them, so
  the caBundle every replica writes is the same and the Service may route a
  review to any replica.  At start-up a certificate with less than
  ``RENEW_BEFORE`` left (or for other DNS names) is replaced, and the previous
  CA stays in the bundle until it expires, so replicas still serving the old
  certificate stay trusted;
* outside the cluster (``webhook_url``, one process): a throw-away pair.

The installed manifests ship the ValidatingWebhookConfiguration itself, so the
operator needs only get/update on that one object (RBAC cannot limit
``create`` by name); it still creates the object when it is absent and
allowed to (local runs).  A foreground operator (``--webhook-url``) deletes
the configuration it registered when it stops: left behind, its
``failurePolicy: Fail`` would refuse every later write to kstrata resources.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import kopf
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kstrata.app import admission
from kstrata.controller.namespaces import INDEX_ID, labels_reader
from kstrata.crypto.tls import (
    ServingCertificate,
    issue_serving_certificate,
    load_serving_certificate,
)
from kstrata.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    KstrataError,
)
from kstrata.kube.api import (
    CONFIG_PROFILES,
    SEALED_SECRETS,
    SECRETS,
    VALIDATING_WEBHOOKS,
    KubeApi,
    as_payload,
)
from kstrata.payloads import Secret
from kstrata.settings import Settings
from kstrata.wellknown import (
    CONFIG_PROFILE_PLURAL,
    GROUP,
    MANAGED_BY_LABEL,
    MANAGER,
    REGISTERED_BY_ANNOTATION,
    SEALED_SECRET_PLURAL,
    VERSION,
)

logger = logging.getLogger(__name__)

#: A shared certificate with less than this left is replaced at the next start-up.
RENEW_BEFORE: Final = dt.timedelta(days=30)
_FILES: Final = ("tls.crt", "tls.key", "ca.crt")


@dataclass(frozen=True)
class WebhookSetup:
    server: kopf.WebhookServer
    certificate: ServingCertificate
    port: int
    #: The private directory the serving key and certificate were written to.
    directory: Path

    def remove_files(self) -> None:
        """Delete the key and certificate files: the servers loaded them at start."""
        shutil.rmtree(self.directory, ignore_errors=True)


def tls_secret_name(settings: Settings) -> str:
    """The Secret holding the replicas' shared webhook certificate."""
    return f"{settings.webhook_service}-tls"


def service_names(settings: Settings) -> list[str]:
    service = f"{settings.webhook_service}.{settings.operator_namespace}.svc"
    return [service, f"{service}.cluster.local", "localhost", "127.0.0.1"]


def prepare(settings: Settings, api: KubeApi | None = None) -> WebhookSetup | None:
    """Certificates and a kopf server for the configured address, or None if disabled.

    ``api`` is needed only in the cluster, for the shared certificate Secret;
    without it each process makes its own pair.
    """
    if not settings.webhook_address:
        return None
    host, _, port_text = settings.webhook_address.rpartition(":")
    port = int(port_text)
    directory = Path(tempfile.mkdtemp(prefix="kstrata-webhook-"))
    if settings.webhook_cert_dir:
        certificate = load_serving_certificate(Path(settings.webhook_cert_dir))
    elif settings.webhook_url or api is None:
        certificate = issue_serving_certificate(directory, service_names(settings))
    else:
        certificate = shared_certificate(api, settings, directory)
    server = kopf.WebhookServer(
        addr=host or None,
        port=port,
        certfile=str(certificate.certfile),
        pkeyfile=str(certificate.keyfile),
        cadata=certificate.ca_pem,
    )
    return WebhookSetup(server=server, certificate=certificate, port=port, directory=directory)


def shared_certificate(
    api: KubeApi, settings: Settings, directory: Path, *, now: dt.datetime | None = None
) -> ServingCertificate:
    """The replicas' one serving certificate, from its Secret; made or renewed if need be."""
    now = now or dt.datetime.now(dt.UTC)
    names = service_names(settings)
    namespace, name = settings.operator_namespace, tls_secret_name(settings)
    # Two passes at most: a replica that loses the race to write reads the winner's.
    for _ in range(2):
        existing = api.get_or_none(SECRETS, namespace, name)
        files = _files(existing)
        if files is not None and _usable(files, names, now):
            return _write(directory, files)
        fresh = issue_serving_certificate(directory, names)
        bundle = fresh.ca_pem + _unexpired_cas(files, now)
        data = {
            "tls.crt": fresh.certfile.read_bytes(),
            "tls.key": fresh.keyfile.read_bytes(),
            "ca.crt": bundle,
        }
        try:
            _store(api, namespace, name, existing, data)
        except ConflictError:
            continue
        logger.info("webhook certificate %s/%s issued", namespace, name)
        return _write(directory, data)
    raise KstrataError(f"webhook certificate Secret {namespace}/{name} keeps changing")


def _files(secret: Secret | None) -> dict[str, bytes] | None:
    if secret is None:
        return None
    data = secret.get("data") or {}
    if not all(data.get(key) for key in _FILES):
        return None
    return {key: base64.b64decode(data[key]) for key in _FILES}


def _usable(files: dict[str, bytes], names: list[str], now: dt.datetime) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(files["tls.crt"])
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return False
    covered = {str(n.value) for n in alternative.value}
    return certificate.not_valid_after_utc - RENEW_BEFORE > now and set(names) <= covered


def _unexpired_cas(files: dict[str, bytes] | None, now: dt.datetime) -> bytes:
    """The previous bundle's CAs that are still valid, to keep old replicas trusted."""
    if files is None:
        return b""
    try:
        cas = x509.load_pem_x509_certificates(files["ca.crt"])
    except ValueError:
        return b""
    return b"".join(ca.public_bytes(Encoding.PEM) for ca in cas if ca.not_valid_after_utc > now)


def _store(
    api: KubeApi, namespace: str, name: str, existing: Secret | None, data: dict[str, bytes]
) -> None:
    encoded = {key: base64.b64encode(value).decode() for key, value in data.items()}
    if existing is None:
        secret: Secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGER}},
            "type": "Opaque",
            "data": encoded,
        }
        api.create(SECRETS, namespace, secret)
    else:
        updated: Secret = {**existing, "data": encoded}
        api.replace(SECRETS, namespace, updated)


def _write(directory: Path, files: dict[str, bytes]) -> ServingCertificate:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for key, value in files.items():
        (directory / key).write_bytes(value)
    (directory / "tls.key").chmod(0o600)
    return ServingCertificate(
        certfile=directory / "tls.crt", keyfile=directory / "tls.key", ca_pem=files["ca.crt"]
    )


def register(
    registry: kopf.OperatorRegistry, api: KubeApi, settings: Settings, setup: WebhookSetup
) -> None:
    @kopf.on.validate(
        GROUP,
        VERSION,
        CONFIG_PROFILE_PLURAL,
        id=admission.PROFILE_WEBHOOK_ID,
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )
    def validate_profile(*, body: kopf.Body, **indexes: object) -> None:
        # Labels from the namespace index when kopf has it (one read less per
        # apply); a label changed a moment ago may not be there yet, and the
        # reconcile validates for the environment it renders anyway.
        labels = labels_reader(indexes) if INDEX_ID in indexes else None
        try:
            profile = as_payload(CONFIG_PROFILES, dict(body))
            admission.review_profile(api, settings, profile, labels)
        except InvalidInputError as error:
            raise kopf.AdmissionError(str(error), code=422) from error

    @kopf.on.validate(
        GROUP,
        VERSION,
        SEALED_SECRET_PLURAL,
        id=admission.SEALED_SECRET_WEBHOOK_ID,
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )
    def validate_sealed_secret(*, body: kopf.Body, **indexes: object) -> None:
        # Templates and item keys only: no token is opened here.  The message
        # names template and item keys (never a value: none is known here).
        labels = labels_reader(indexes) if INDEX_ID in indexes else None
        try:
            sealed = as_payload(SEALED_SECRETS, dict(body))
            admission.review_sealed_secret(api, settings, sealed, labels)
        except InvalidInputError as error:
            raise kopf.AdmissionError(str(error), code=422) from error

    @kopf.on.startup(id="webhook-configuration", registry=registry)
    def configure_webhook(**_: object) -> None:
        if not settings.webhook_configuration:
            return
        desired = admission.webhook_configuration(
            settings.webhook_configuration,
            admission.client_config(settings, setup.certificate.ca_pem, setup.port),
            settings.namespaces,
        )
        if settings.webhook_url:
            # Marks an object this foreground operator creates (never the one
            # manifests/ ships, which an update leaves unmarked) as its own to
            # remove when it stops, or when a later one stops after a crash.
            desired["metadata"]["annotations"] = {
                REGISTERED_BY_ANNOTATION: admission.FOREGROUND_OPERATOR
            }
        try:
            admission.ensure_webhook_configuration(api, settings.webhook_configuration, desired)
        except ForbiddenError as error:
            # The installed RBAC allows get/update on the shipped object only: a
            # missing object cannot be created, and retrying will not change that.
            # Reconciles still validate, so the operator runs on without admission.
            logger.warning(
                "admission webhook not configured: %s; apply manifests/, which ships "
                "ValidatingWebhookConfiguration %s",
                error,
                settings.webhook_configuration,
            )
        except KstrataError as error:
            raise kopf.TemporaryError(str(error), delay=5) from error

    @kopf.on.cleanup(id="webhook-certificate-files", registry=registry)
    def remove_certificate_files(**_: object) -> None:
        # A private key must not outlive the process that served with it: every
        # start makes a new directory, and a developer's /tmp kept one per run.
        setup.remove_files()

    @kopf.on.cleanup(id="webhook-configuration-removal", registry=registry)
    def remove_webhook(**_: object) -> None:
        # Only a foreground operator (webhook_url) owns what it registered: in a
        # cluster the manifests ship the object and other replicas keep serving.
        if not (settings.webhook_configuration and settings.webhook_url):
            return
        url = admission.client_config(settings, setup.certificate.ca_pem, setup.port)["url"]
        try:
            removed = remove_own_configuration(api, settings.webhook_configuration, url)
        except KstrataError as error:
            logger.warning(
                "ValidatingWebhookConfiguration %s not removed (%s): writes to kstrata "
                "resources fail until it is: kubectl delete validatingwebhookconfiguration %s",
                settings.webhook_configuration,
                error,
                settings.webhook_configuration,
            )
            return
        if removed:
            logger.info(
                "ValidatingWebhookConfiguration %s removed: nothing serves it any more",
                settings.webhook_configuration,
            )


def remove_own_configuration(api: KubeApi, name: str, url: str) -> bool:
    """Delete configuration ``name`` if a foreground operator made it and it calls only its URLs.

    ``url`` is the ConfigProfile webhook's; the SealedSecret webhook's is its sibling path.

    Why: with ``failurePolicy: Fail`` a configuration whose server has stopped
    refuses every later write to kstrata resources.  A foreground operator
    (``--webhook-url``) registered it, so it removes it when it stops; one
    that points elsewhere (another operator took the name over) is left alone.
    """
    existing = api.get_or_none(VALIDATING_WEBHOOKS, None, name)
    if existing is None:
        return False
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    if annotations.get(REGISTERED_BY_ANNOTATION) != admission.FOREGROUND_OPERATOR:
        # Shipped by manifests/ (or Helm) and only updated by us: the cluster's
        # object, not ours to delete (and the installed RBAC cannot).
        return False
    urls = {
        ((w or {}).get("clientConfig") or {}).get("url") for w in existing.get("webhooks") or []
    }
    ours = {url, admission.for_webhook({"url": url}, admission.SEALED_SECRET_WEBHOOK_ID)["url"]}
    if not urls or not urls <= ours:
        return False
    api.delete(VALIDATING_WEBHOOKS, None, name)  # gone already: fine
    return True

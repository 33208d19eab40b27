"""The validating admission webhook: kopf serves it, kstrata configures it.

kopf's own managed webhook configuration sets ``timeoutSeconds: 30`` and its
self-signed certificates need ``oscrypto`` (broken on OpenSSL 3), so kstrata
uses only kopf's server and handler routing: certificates come from
``kstrata.crypto.tls`` (or a mounted directory), and the
ValidatingWebhookConfiguration is written by ``kstrata.app.admission`` with
``failurePolicy: Fail``, ``timeoutSeconds: 5`` and ``sideEffects: None``,
scoped to kstrata.dev resources only.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from kstrata.app import admission
from kstrata.crypto.tls import (
    ServingCertificate,
    issue_serving_certificate,
    load_serving_certificate,
)
from kstrata.errors import InvalidInputError, KstrataError
from kstrata.kube.api import KubeApi
from kstrata.settings import Settings

logger = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "kstrata.dev", "v1alpha1", "configprofiles"


@dataclass(frozen=True)
class WebhookSetup:
    server: kopf.WebhookServer
    certificate: ServingCertificate
    port: int


def prepare(settings: Settings) -> WebhookSetup | None:
    """Certificates and a kopf server for the configured address, or None if disabled."""
    if not settings.webhook_address:
        return None
    host, _, port_text = settings.webhook_address.rpartition(":")
    port = int(port_text)
    if settings.webhook_cert_dir:
        certificate = load_serving_certificate(Path(settings.webhook_cert_dir))
    else:
        names = [
            f"{settings.webhook_service}.{settings.operator_namespace}.svc",
            f"{settings.webhook_service}.{settings.operator_namespace}.svc.cluster.local",
            "localhost",
            "127.0.0.1",
        ]
        directory = Path(tempfile.mkdtemp(prefix="kstrata-webhook-"))
        certificate = issue_serving_certificate(directory, names)
    server = kopf.WebhookServer(
        addr=host or None,
        port=port,
        certfile=str(certificate.certfile),
        pkeyfile=str(certificate.keyfile),
        cadata=certificate.ca_pem,
    )
    return WebhookSetup(server=server, certificate=certificate, port=port)


def register(
    registry: kopf.OperatorRegistry, api: KubeApi, settings: Settings, setup: WebhookSetup
) -> None:
    @kopf.on.validate(
        GROUP,
        VERSION,
        PLURAL,
        id=admission.PROFILE_WEBHOOK_ID,
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )
    def validate_profile(*, body: kopf.Body, **_: Any) -> None:
        try:
            admission.review_profile(api, settings, dict(body))
        except InvalidInputError as error:
            raise kopf.AdmissionError(str(error), code=422) from error

    @kopf.on.startup(id="webhook-configuration", registry=registry)
    def configure_webhook(**_: Any) -> None:
        if not settings.webhook_configuration:
            return
        desired = admission.webhook_configuration(
            settings.webhook_configuration,
            admission.client_config(settings, setup.certificate.ca_pem, setup.port),
            settings.namespaces,
        )
        try:
            admission.ensure_webhook_configuration(api, settings.webhook_configuration, desired)
        except KstrataError as error:
            raise kopf.TemporaryError(str(error), delay=5) from error

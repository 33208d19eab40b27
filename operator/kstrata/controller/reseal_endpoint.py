"""The reseal endpoint: ``kstrata reseal`` reaches the operator's keys here, and only here.

Why a module of its own: it is the one HTTP endpoint that takes ciphertext
from users and answers with ciphertext made with the private keys.  The
work is :func:`kstrata.app.reseal.reseal_batch`; this adapter serves it over
HTTPS with the webhook's certificate, on kopf's event loop (aiohttp is
already loaded by kopf, so the endpoint costs no memory), and runs each
request's crypto in a worker thread so the loop keeps serving kopf.

Who may call it is decided by Kubernetes RBAC: the CLI comes through the API
server's service proxy (``create`` on ``services/proxy`` for
``https:kstrata-reseal:443``, the ``kstrata-resealer`` Role).  Its answer
never holds plaintext, only tokens for this cluster's keys or keys the
platform team registered (``reseal_recipients``), so a caller that reaches the
pod directly, past RBAC, learns nothing either (docs/operations.md).

Nothing here logs a token, a value or a SealedSecret's name: one line per
request with counts, outcome and key id; metrics by outcome only.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from typing import TYPE_CHECKING

import kopf

from kstrata import metrics
from kstrata.app.reseal import MAX_REQUEST_BYTES, RESEAL_PATH, Batch, error_status, reseal_batch
from kstrata.app.sealing_keys import KeyStore
from kstrata.crypto.tls import ServingCertificate
from kstrata.errors import ForbiddenError, KstrataError, SettingsError
from kstrata.kube.api import KubeApi
from kstrata.settings import Settings

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

logger = logging.getLogger(__name__)

_KEY_ID = re.compile(r"[0-9a-f]{32}")


def register(
    registry: kopf.OperatorRegistry,
    api: KubeApi,
    settings: Settings,
    certificate: ServingCertificate,
) -> None:
    """Serve the endpoint on ``settings.reseal_address`` while the operator runs."""
    from aiohttp import web

    address = settings.reseal_address
    if not address:
        return
    for key_id in settings.reseal_recipients:
        if not _KEY_ID.fullmatch(key_id):
            raise SettingsError(
                "reseal_recipients: each entry is a key id, 32 lowercase hex characters "
                "(kstrata keys list on the other cluster)"
            )
    store = KeyStore(api, settings)
    registered = frozenset(settings.reseal_recipients)
    runners: list[web.AppRunner] = []

    def work(body: bytes) -> Batch:
        return reseal_batch(body, store.load().ring, registered)

    async def handle(request: web.Request) -> web.Response:
        try:
            body = await request.read()  # bounded by client_max_size
            batch = await asyncio.get_running_loop().run_in_executor(None, work, body)
        except KstrataError as error:
            outcome = "refused"
            metrics.RESEAL_ITEMS.labels(outcome=outcome).inc()
            log = logger.warning if isinstance(error, ForbiddenError) else logger.info
            log("reseal request refused: %s (%s)", error.reason, error.message)
            return web.json_response(
                {"reason": error.reason, "message": error.message}, status=error_status(error)
            )
        if batch.failures:
            metrics.RESEAL_ITEMS.labels(outcome="failed").inc(len(batch.failures))
            logger.info(
                "reseal request failed: %d item(s) do not reseal to key %s; nothing returned",
                len(batch.failures),
                batch.key_id,
            )
            return web.json_response(batch.as_data(), status=422)
        unchanged = len(batch.tokens) - batch.changed
        metrics.RESEAL_ITEMS.labels(outcome="resealed").inc(batch.changed)
        metrics.RESEAL_ITEMS.labels(outcome="unchanged").inc(unchanged)
        logger.info(
            "resealed %d item(s) to key %s (%d already sealed to it)",
            batch.changed,
            batch.key_id,
            unchanged,
        )
        return web.json_response(batch.as_data())

    async def too_large(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_REQUEST_BYTES, actual_size=request.content_length or 0
            )
        return await handler(request)

    @kopf.on.startup(id="reseal-endpoint", registry=registry)
    async def start(**_: object) -> None:
        app = web.Application(
            client_max_size=MAX_REQUEST_BYTES, middlewares=[web.middleware(too_large)]
        )
        app.router.add_post(RESEAL_PATH, handle)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(certificate.certfile), str(certificate.keyfile))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, _colon, port = address.rpartition(":")
        try:
            await web.TCPSite(runner, host or None, int(port), ssl_context=context).start()
        except OSError as error:
            await runner.cleanup()
            raise kopf.PermanentError(
                f"reseal_address {address}: cannot listen there ({error.strerror}); "
                "set reseal_address in the settings file to another port, or empty to disable"
            ) from None
        runners.append(runner)
        logger.info("reseal endpoint on https://%s%s", address, RESEAL_PATH)

    @kopf.on.cleanup(id="reseal-endpoint", registry=registry)
    async def stop(**_: object) -> None:
        while runners:
            await runners.pop().cleanup()

"""kopf handlers for SealedSecrets and the sealing keys: thin adapters over the app layer.

What lives here is only the wiring kopf needs:

* create/update/resume of a SealedSecret call ``SealedSecretReconciler.reconcile``;
* on start, ``KeyStore.ensure_keys`` and ``publish_public_keys`` run before any
  SealedSecret is handled (kopf runs startup handlers first); background
  tasks rotate the keys when ``settings.key_rotation_days`` says so and, as a
  safety net, re-check SealedSecrets blocked by something outside their spec;
* Secrets are **followed, never handled**: ``kopf.on.event`` stores nothing on
  them (no finalizer, no annotations, no change-tracking), and kopf's Secret
  watch carries a label selector (``runner.kopf_settings``), so only Secrets
  kstrata manages reach it.  Events of the key Secret (filtered by name and
  namespace) republish the public keys and retry the SealedSecrets that
  failed only because a key was missing, so a key Secret deleted and later
  restored from a backup is used at once, without a restart.  A deleted
  Secret that we wrote is written again.  A Secret that kept its
  SealedSecret from unsealing (not ours, a credential type) is outside the
  selector: the metadata watch (``controller.followed_secrets``) reports its
  deletion or relabelling (adoption), which retries the SealedSecret at
  once.  No create/update/resume handler is attached to Secrets: kopf would
  write its bookkeeping onto them;
* namespaces are followed by an index and ``kopf.on.event`` only, and which
  SealedSecrets live where is kept in memory (``Members``), so a relabelled
  namespace (``kstrata.dev/environment``) re-unseals its objects;
* ``kstrata.errors`` mapped to kopf: anything only a spec change, a key
  Secret change or a Secret change can fix is a ``PermanentError`` (the
  events above, not kopf retries, bring those back); cluster trouble is a
  ``TemporaryError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import traceback
from collections.abc import Callable, Coroutine, Iterable, Mapping

import kopf

from kstrata import metrics
from kstrata.app.reload_scheduling import SourceReconciled, status_reporter
from kstrata.app.sealed_secrets import SealedSecretReconciler
from kstrata.app.sealing_keys import KEY_SECRET_NAME, KeyStore
from kstrata.controller.followed_secrets import FollowedSecrets, Interest
from kstrata.controller.namespaces import Members, labels_reader
from kstrata.controller.profiles import to_kopf_error as profile_kopf_error
from kstrata.errors import (
    InvalidInputError,
    KstrataError,
    NotFoundError,
    OwnershipError,
    SealingError,
)
from kstrata.kube.api import SEALED_SECRETS, SECRETS, KubeApi, payload_copy
from kstrata.settings import Settings
from kstrata.wellknown import (
    ENVIRONMENT_LABEL,
    GROUP,
    MANAGED_BY_LABEL,
    MANAGER,
    SEALED_SECRET_KIND,
    SEALED_SECRET_LABEL,
    SEALED_SECRET_PLURAL,
    VERSION,
)

logger = logging.getLogger(__name__)


def to_kopf_error(error: KstrataError) -> Exception:
    """Map our hierarchy to kopf's retry semantics; messages are already value-free."""
    # A missing key or a Secret in the way is "permanent" for kopf too: retrying
    # cannot help until the key Secret or that Secret changes, which their events
    # report (and an in-memory timer re-checks).  A kopf retry would instead write
    # retry state onto the object each time, and survive a restart as a delay.
    if isinstance(error, SealingError | InvalidInputError | OwnershipError):
        return kopf.PermanentError(str(error))
    return profile_kopf_error(error)


def describe_bug(error: BaseException) -> str:
    """An unexpected exception for a log line: its type and where it was raised.

    Never its message or arguments, which may hold configuration or secret
    values (a ``KeyError`` carries the missing key, a ``ValueError`` the
    offending text); file, line and function are enough to find the bug.
    """
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"{type(error).__name__}{where}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def register(
    registry: kopf.OperatorRegistry,
    api: KubeApi,
    settings: Settings,
    reconciled: SourceReconciled | None = None,
    followed_secrets: FollowedSecrets | None = None,
) -> None:
    """Register every SealedSecret and sealing-key handler on ``registry``.

    ``reconciled`` hears of every status the unseal handler writes;
    ``followed_secrets`` reports Secrets in the way of a SealedSecret.
    """
    store = KeyStore(api, settings)
    reconciler = SealedSecretReconciler(api, settings, store)
    _register_keys(registry, api, store, reconciler)
    _register_key_watch(registry, api, store, reconciler, followed_secrets)
    _register_sealed_secrets(registry, api, reconciler, reconciled, followed_secrets)


def _reconcile_quietly(
    api: KubeApi,
    reconciler: SealedSecretReconciler,
    pairs: Iterable[tuple[str, str]],
    indexes: Mapping[str, object] | None,
) -> None:
    """Re-unseal other objects; their failures land in their own status and events.

    ``indexes`` is None outside a kopf handler (the background retry): the
    reconciler then reads namespace labels from the API.
    """
    labels = labels_reader(indexes) if indexes is not None else None
    for namespace, name in pairs:
        try:
            sealed = api.get(SEALED_SECRETS, namespace, name)
            if (sealed.get("metadata") or {}).get("deletionTimestamp"):
                # Being deleted (its Secret goes with it): never write it again.
                reconciler.forget(namespace, name)
                continue
            reconciler.reconcile(sealed, labels)
        except NotFoundError:
            reconciler.forget(namespace, name)
        except KstrataError as error:
            logger.info("re-unsealing %s/%s: %s", namespace, name, error.reason)
        except Exception as error:  # noqa: BLE001 - one object's bug must not stop the rest
            logger.error(  # noqa: TRY400 - no traceback: it may quote values
                "re-unsealing %s/%s failed unexpectedly: %s", namespace, name, describe_bug(error)
            )


def _every(
    seconds: float, work: Callable[[], None], what: str
) -> Callable[[], Coroutine[object, None, None]]:
    """An asyncio loop running blocking ``work`` in a thread now and every ``seconds``."""

    async def loop() -> None:
        running = asyncio.get_running_loop()
        while True:
            try:
                await running.run_in_executor(None, work)
            except KstrataError as error:
                # A lost race or a missing Secret: the next round tries again.
                logger.warning("%s: %s", what, error)
            except Exception as error:  # noqa: BLE001 - the loop must outlive any bug
                # Not KstrataError: a bug or a library failure.  Its message may
                # quote data, so only its type and where it was raised are logged.
                logger.error(  # noqa: TRY400 - no traceback: it may quote values
                    "%s failed unexpectedly, trying again in %s s: %s",
                    what,
                    seconds,
                    describe_bug(error),
                )
            await asyncio.sleep(seconds)

    return loop


def _register_keys(
    registry: kopf.OperatorRegistry,
    api: KubeApi,
    store: KeyStore,
    reconciler: SealedSecretReconciler,
) -> None:
    settings = store.settings
    backoff = settings.retry_backoff
    tasks: list[asyncio.Task[None]] = []

    started: list[bool] = []

    def ensure_keys() -> None:
        # "First start" lasts until it succeeds once; after that a missing key
        # Secret is never regenerated (it is waiting to be restored).
        if not started:
            store.ensure_keys(_now())
            store.publish_public_keys()
            started.append(True)

    @kopf.on.startup(id="sealing_keys", registry=registry)
    def start_keys(**_: object) -> None:
        try:
            ensure_keys()
        except KstrataError as error:
            # Not a startup failure: ConfigProfiles must not wait for the sealing
            # keys (say, the operator namespace does not exist yet).  A background
            # task keeps trying; SealedSecrets report SealingKeyMissing meanwhile.
            logger.warning("sealing keys not ready, retrying every %s s: %s", backoff, error)
        except Exception as error:  # noqa: BLE001 - a failed start-up handler holds every handler
            logger.error(  # noqa: TRY400 - no traceback: it may quote values
                "sealing keys not ready, retrying every %s s: %s", backoff, describe_bug(error)
            )

    def rotate_if_due() -> None:
        keys = store.load()
        if not store.due_for_rotation(_now(), keys):
            return
        store.rotate(_now())
        store.publish_public_keys()

    def retry_blocked() -> None:
        # The safety net for a missed event; normally the list is empty here.
        _reconcile_quietly(api, reconciler, reconciler.blocked(), None)

    @kopf.on.startup(id="sealing_background", registry=registry)
    async def start_background(**_: object) -> None:
        loop = asyncio.get_running_loop()
        if settings.key_rotation_days > 0:
            rotation = _every(settings.key_rotation_check_seconds, rotate_if_due, "key rotation")
            tasks.append(loop.create_task(rotation()))
        retry = _every(settings.blocked_retry_seconds, retry_blocked, "retrying SealedSecrets")
        tasks.append(loop.create_task(retry()))
        if not started:
            tasks.append(loop.create_task(_every(backoff, ensure_keys, "sealing keys")()))

    @kopf.on.cleanup(id="sealing_background", registry=registry)
    async def stop_background(**_: object) -> None:
        while tasks:
            task = tasks.pop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _register_key_watch(
    registry: kopf.OperatorRegistry,
    api: KubeApi,
    store: KeyStore,
    reconciler: SealedSecretReconciler,
    followed_secrets: FollowedSecrets | None = None,
) -> None:
    settings = store.settings

    def is_key_secret(namespace: str | None, **_: object) -> bool:
        return namespace == settings.operator_namespace

    @kopf.on.event(
        "",
        "v1",
        "secrets",
        id="sealing_keys_changed",
        registry=registry,
        field="metadata.name",
        value=KEY_SECRET_NAME,
        when=is_key_secret,
    )
    def key_secret_changed(*, type: str | None, body: kopf.Body, **indexes: object) -> None:
        # What the watch reports is what reconciles unseal with (no GET each).
        if type == "DELETED":
            logger.warning(
                "the sealing key Secret %s/%s was deleted; SealedSecrets cannot be unsealed "
                "until it is restored (nothing is regenerated)",
                settings.operator_namespace,
                KEY_SECRET_NAME,
            )
            store.observe(None)
            if followed_secrets is not None:
                followed_secrets.demand()  # to see a restore that lacks the labels
            return
        keys = store.observe(payload_copy(SECRETS, body))
        if not keys.present:
            return
        try:
            store.publish_public_keys(keys)
        except KstrataError as error:
            logger.warning("publishing the sealing public keys: %s", error.reason)
        waiting = reconciler.waiting_for_keys()
        if waiting:
            logger.info("sealing keys changed; retrying %d SealedSecret(s)", len(waiting))
            _reconcile_quietly(api, reconciler, waiting, indexes)

    def label_key_secret() -> None:
        try:
            store.ensure_labels()
        except KstrataError as error:
            logger.warning("labelling the key Secret: %s", error.reason)

    def key_secret_seen(_namespace: str, _name: str, _body: Mapping[str, object] | None) -> None:
        # Restored without its labels, the key Secret is outside kopf's selection:
        # once labelled, kopf's watch reports it and the handler above takes over.
        asyncio.get_running_loop().run_in_executor(None, label_key_secret)

    if followed_secrets is not None:
        where = (settings.operator_namespace, KEY_SECRET_NAME)
        followed_secrets.add(
            Interest(
                wants=lambda namespace, name: (namespace, name) == where,
                keys=lambda: [where],
                changed=key_secret_seen,
            )
        )


def _register_sealed_secrets(
    registry: kopf.OperatorRegistry,
    api: KubeApi,
    reconciler: SealedSecretReconciler,
    reconciled: SourceReconciled | None,
    followed_secrets: FollowedSecrets | None = None,
) -> None:
    backoff = reconciler.settings.retry_backoff
    environment_labels: dict[str, str | None] = {}

    @kopf.on.resume(
        GROUP, VERSION, SEALED_SECRET_PLURAL, id="unseal", registry=registry, backoff=backoff
    )
    @kopf.on.create(
        GROUP, VERSION, SEALED_SECRET_PLURAL, id="unseal", registry=registry, backoff=backoff
    )
    # Updates are handled for spec changes only: metadata edits (including the
    # revision annotations this handler writes) never change the output.
    @kopf.on.update(
        GROUP,
        VERSION,
        SEALED_SECRET_PLURAL,
        id="unseal",
        registry=registry,
        backoff=backoff,
        field="spec",
    )
    def unseal(*, body: kopf.Body, patch: kopf.Patch, **indexes: object) -> None:
        sealed = payload_copy(SEALED_SECRETS, body)
        try:
            # A first revision index rides on kopf's own patch after the handler.
            reconciler.reconcile(
                sealed,
                labels_reader(indexes),
                annotate=patch.metadata.annotations.update,
                status_reported=status_reporter(reconciled, SEALED_SECRET_KIND, sealed),
            )
        except KstrataError as error:
            meta = sealed["metadata"]
            if followed_secrets is not None and reconciler.blocked_by_secret(
                meta["namespace"], meta["name"]
            ):
                followed_secrets.demand()  # to hear when that Secret goes or is labelled
            raise to_kopf_error(error) from error

    # Which SealedSecrets live where (see controller.namespaces.Members), and
    # forgetting deleted ones.  async, as every handler here that needs no API
    # call: kopf runs plain functions in its thread pool, behind every reconcile.
    members = Members()

    @kopf.on.event(
        GROUP, VERSION, SEALED_SECRET_PLURAL, id="sealed_secret_members", registry=registry
    )
    async def sealed_secret_seen(
        *, type: str | None, namespace: str | None, name: str, body: kopf.Body, **_: object
    ) -> None:
        if not namespace:
            return
        if type == "DELETED":
            # The Secret goes with its owner (garbage collection); only our memory is left.
            members.gone(namespace, name)
            reconciler.forget(namespace, name)
            metrics.OBJECTS.forget(SEALED_SECRET_KIND, namespace, name)
        else:
            members.seen(namespace, name)
            metrics.OBJECTS.observe(SEALED_SECRET_KIND, body)

    def blocking_secret_changed(namespace: str, name: str, _: Mapping[str, object] | None) -> None:
        # A Secret that kept a SealedSecret from unsealing was deleted, labelled for
        # adoption or otherwise changed: look again now rather than at the next retry.
        # (On the event loop: the reconcile goes to a thread.)
        asyncio.get_running_loop().run_in_executor(
            None, _reconcile_quietly, api, reconciler, [(namespace, name)], None
        )

    if followed_secrets is not None:
        # Decided in memory: every other Secret's event is dropped before any work.
        followed_secrets.add(
            Interest(
                wants=reconciler.blocked_by_secret,
                keys=lambda: [p for p in reconciler.blocked() if reconciler.blocked_by_secret(*p)],
                changed=blocking_secret_changed,
            )
        )

    @kopf.on.event(
        "",
        "v1",
        "secrets",
        id="unsealed_secret_deleted",
        registry=registry,
        labels={SEALED_SECRET_LABEL: kopf.PRESENT, MANAGED_BY_LABEL: MANAGER},
    )
    async def unsealed_secret_deleted(
        *, type: str | None, namespace: str | None, name: str, uid: str | None, **indexes: object
    ) -> None:
        # Someone deleted a Secret we wrote: write it again now.  Only deletions
        # by others: reacting to our own writes or replacements would buy nothing
        # but work (and, for a refused replacement, a loop).
        if type == "DELETED" and namespace and not reconciler.deleted_by_us(uid):
            await asyncio.to_thread(
                _reconcile_quietly, api, reconciler, [(namespace, name)], indexes
            )

    @kopf.on.event("namespaces", id="sealed_secrets_environment", registry=registry)
    async def namespace_changed(
        *, name: str, labels: kopf.Labels, type: str, **indexes: object
    ) -> None:
        label = labels.get(ENVIRONMENT_LABEL)
        previous = environment_labels.get(name, label)
        environment_labels[name] = label
        if type in (None, "ADDED", "DELETED") or previous == label:
            return
        pairs = [(name, other) for other in members.in_namespace(name)]
        await asyncio.to_thread(_reconcile_quietly, api, reconciler, pairs, indexes)

"""Unseal a SealedSecret into a Secret of the same name: the operator's secrets use case.

Level-triggered like ``kstrata.app.profiles``: ``SealedSecretReconciler.reconcile``
looks only at the current state (the SealedSecret, its namespace, the key
Secret, the existing Secret) and writes only what differs, so replaying
events or restarting the operator writes nothing when nothing changed.

Safety rules enforced here, in this order:

* the sealing context of every token comes from where the SealedSecret is
  (its namespace, its name, the item key) and from ``spec.scope`` alone, never
  from metadata, annotations or the token itself, so a token copied to another
  namespace, object or item does not open;
* **all or nothing**: every item is opened before anything is written; one
  item that fails leaves the Secret exactly as it was (or absent), and the
  status and ONE Warning event say which items and which key ids, never a
  value;
* a Secret that exists and is not ours is left alone unless labelled
  ``app.kubernetes.io/managed-by: kstrata`` (the label of every Secret kstrata
  manages, and the label selector of the operator's Secret watch: a Secret
  without it never reaches the operator); service-account and bootstrap token types
  are refused even if the CRD's CEL rule was bypassed (an older CRD, a
  direct etcd write), because such a Secret hands out cluster credentials;
* plaintext exists only in memory and in the written Secret's ``data``: it
  is compared in memory with the existing Secret's data, and never logged,
  put into an event, the status, a label, an annotation, a metric or an
  exception.  The status carries keyed fingerprints (HMAC with the operator's
  fingerprint key) so a reader can tell "value changed" from "re-sealed";
* ``spec.template.data`` (``kstrata.domain.secret_template``) is rendered
  from the opened items in memory, straight into the Secret's data: its
  references are checked before any key work, a key there replaces the item
  of the same key (Bitnami's rule), and the result is never fingerprinted
  or recorded (the template text and the items' fingerprints determine it).

``status.revision`` grows by one each time the set of sealed tokens in effect
changes (a re-seal counts, even with the same values), and only then: a
Secret deleted or edited by hand is written again at the same revision.  The
Secret carries the digest of that token set (ciphertext only, public) in an
annotation, which is how a restarted operator knows nothing changed.  Each
revision's snapshot (the spec, i.e. ciphertext, plus keyed fingerprints, so
``kstrata diff`` can tell "re-sealed, unchanged" from "value changed") is a
ControllerRevision stored by ``kstrata.app.revisions`` before the Secret is
written; plaintext is never part of it.

Boundary: cluster access only through ``KubeApi``; opening tokens, contexts
and fingerprints come from ``kstrata.crypto``; the environment rule is the
one ConfigProfiles use (``kstrata.domain.environments``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from kstrata import metrics
from kstrata.app.revisions import RevisionStore, Settled, history_limit
from kstrata.app.sealing_keys import KEY_SECRET_NAME, KeyStore, SealingKeys
from kstrata.app.toolkit import (
    is_ours,
    now_rfc3339,
    patch_status_if_changed,
    ready_condition,
    reconciled_before,
    record_failure,
)
from kstrata.crypto import KeyRing, Scope, SealingContext, fingerprint, parse_token
from kstrata.domain.environments import (
    EnvironmentChoice,
    select_environment,
)
from kstrata.domain.revisions import Snapshot, parse_revision
from kstrata.domain.sealed_spec import (
    DEFAULT_SECRET_TYPE,
    SecretShape,
    check_secret_type,
    checked_tokens,
    parse_sealed_spec,
    tokens_digest,
)
from kstrata.domain.secret_template import (
    render_data,
)
from kstrata.errors import (
    ClusterError,
    ConflictError,
    InvalidInputError,
    KstrataError,
    OwnershipError,
    SealingError,
    TokenFormatError,
    UnknownKeyError,
    UnsealError,
)
from kstrata.kube.api import (
    NAMESPACES,
    SEALED_SECRETS,
    SECRETS,
    KubeClient,
    owner_reference,
    post_event,
)
from kstrata.payloads import (
    ObjectMeta,
    OwnerReference,
    SealedItemStatus,
    SealedSecret,
    SealedSecretStatus,
    Secret,
)
from kstrata.settings import Settings
from kstrata.wellknown import (
    ADOPT_ANNOTATION,
    DIGEST_ANNOTATION,
    FORBIDDEN_SECRET_TYPE_REASON,
    MANAGED_BY_LABEL,
    MANAGER,
    RESERVED_NAME_REASON,
    REVISION_LABEL,
    SEALED_SECRET_KIND,
    SEALED_SECRET_LABEL,
    SECRET_REJECTED_REASON,
    UNSEALED_REASON,
)

logger = logging.getLogger(__name__)

ServerSetField: TypeAlias = Literal[
    "uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink"
]

#: The label selector of the operator's (kopf's) Secret watch: the Secrets kstrata
#: manages, and those labelled to be adopted (adopting one means kstrata manages it).
MANAGED_SECRETS_SELECTOR: Final = f"{MANAGED_BY_LABEL}={MANAGER}"
KEY_MISSING: Final = UnknownKeyError.reason
#: Failures caused by an existing Secret: its change (deleted, labelled for
#: adoption) is worth an immediate retry.
_SECRET_IN_THE_WAY: Final = frozenset({OwnershipError.reason, FORBIDDEN_SECRET_TYPE_REASON})
_RETRIED_ON_EVENTS: Final = _SECRET_IN_THE_WAY | {KEY_MISSING}
#: Metadata the API server sets; dropped when a Secret is created again from a copy.
_SERVER_SET_METADATA: Final[tuple[ServerSetField, ...]] = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
)
#: kubectl's copy of what it last applied: for a Secret made with ``kubectl apply``
#: it holds the values in clear (``stringData``) or base64 (``data``).  Never kept
#: on, nor written to, a Secret we own: adopting must not preserve old plaintext.
LAST_APPLIED_ANNOTATION: Final = "kubectl.kubernetes.io/last-applied-configuration"
#: How many failing items a message names before summarising the rest.
_MAX_ITEMS_NAMED: Final = 8
_LABEL_VALUE_MAX: Final = 63


@dataclass(frozen=True)
class SealedOutcome:
    """What one reconcile did (for handlers, metrics and tests)."""

    revision: int
    secret_written: bool
    status_written: bool
    #: True when the sealed data was new: a revision snapshot was recorded.
    new_revision: bool = False


def _template_data(sealed: SealedSecret) -> object:
    template = (sealed.get("spec") or {}).get("template")
    return template.get("data") if isinstance(template, dict) else None


@dataclass(frozen=True)
class ItemFailure:
    """Why one item did not open: public facts only (item key, key id, error class)."""

    key: str
    key_id: str | None
    error: SealingError


def _token_key_id(token: str) -> str | None:
    # A multi-recipient token names several keys; any one of them would do.
    try:
        return " or ".join(parse_token(token).key_ids)
    except SealingError:
        return None


def unseal_all(
    ring: KeyRing, tokens: Mapping[str, str], scope: Scope, *, namespace: str, name: str
) -> dict[str, bytes]:
    """Open every token for (scope, namespace, name, item); all of them, or an error.

    The context is built here from the caller's coordinates and ``scope``
    (``SealingContext.bind`` keeps exactly what the scope binds).  Every item
    is tried even after a failure, so the error names all failing items.
    """
    opened: dict[str, bytes] = {}
    failures: list[ItemFailure] = []
    for key, token in tokens.items():
        try:
            context = SealingContext.bind(scope, item=key, namespace=namespace, name=name)
            opened[key] = ring.open(token, context)
        except SealingError as error:
            failures.append(ItemFailure(key, _token_key_id(token), error))
    if failures:
        opened.clear()  # all or nothing: drop what did open before raising
        raise unseal_failure(failures, total=len(tokens))
    return opened


def _named(failures: list[ItemFailure], describe: Callable[[ItemFailure], str]) -> str:
    shown = ", ".join(describe(f) for f in failures[:_MAX_ITEMS_NAMED])
    more = len(failures) - _MAX_ITEMS_NAMED
    return shown + (f" (and {more} more)" if more > 0 else "")


def _key_ids(failures: list[ItemFailure]) -> str:
    ids = sorted({f.key_id for f in failures if f.key_id})
    return ", ".join(ids) if ids else "(none readable)"


def unseal_failure(failures: list[ItemFailure], *, total: int) -> SealingError:
    """One error for every failing item, its class chosen by what can fix it.

    A malformed token or one that does not open here needs a new spec, so
    those reasons win over a missing key (which restoring the key Secret
    fixes).  Messages carry item keys, key ids and structural reasons only;
    "does not open" is one phrase for wrong location, wrong item and
    tampering alike, so the status is no decryption oracle.
    """
    invalid = [f for f in failures if type(f.error) is SealingError]
    malformed = [f for f in failures if isinstance(f.error, TokenFormatError)]
    not_opening = [f for f in failures if isinstance(f.error, UnsealError)]
    missing = [f for f in failures if isinstance(f.error, UnknownKeyError)]
    parts: list[str] = []
    if invalid:
        parts.append("invalid item " + _named(invalid, lambda f: f"{f.key} ({f.error.message})"))
    if malformed:
        parts.append(
            "malformed token in item " + _named(malformed, lambda f: f"{f.key} ({f.error.message})")
        )
    if not_opening:
        parts.append(
            "does not open for this scope, namespace, name and item (sealed for another "
            "place or item, or altered): item "
            + _named(not_opening, lambda f: f"{f.key} (key {f.key_id})")
            + f"; key ids {_key_ids(not_opening)}"
        )
    if missing:
        parts.append(
            "sealed to a key the operator does not hold: item "
            + _named(missing, lambda f: f"{f.key} (key {f.key_id})")
            + f"; key ids {_key_ids(missing)}"
        )
    message = (
        f"{len(failures)} of {total} item(s) could not be unsealed, nothing was written: "
        + "; ".join(parts)
    )
    if invalid:
        return SealingError(message, reason=invalid[0].error.reason)
    if malformed:
        return TokenFormatError(message)
    if not_opening:
        return UnsealError(message)
    return UnknownKeyError(message)


def secret_adoptable(secret: Secret) -> bool:
    """Whether a Secret asks to be adopted: it carries the label the operator's watch selects."""
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGER


def _check_existing(existing: Secret | None, owner_uid: str, name: str) -> None:
    """Refuse a Secret that is not ours (unless labelled for adoption) or of a type we never write.

    The ``kstrata.dev/adopt`` annotation that adopts a ConfigMap does not adopt a
    Secret: the operator's Secret watch selects by label, so an unlabelled Secret's
    changes never reach it, and a refusal must name what does work.
    """
    if existing is not None and not is_ours(existing, owner_uid) and not secret_adoptable(existing):
        raise OwnershipError(
            f"Secret {name} exists and is not managed by kstrata; label it "
            f"{MANAGED_BY_LABEL}={MANAGER} to adopt it (the {ADOPT_ANNOTATION} annotation alone "
            "does not adopt a Secret)"
        )
    if existing is not None:
        check_secret_type(
            existing.get("type") or DEFAULT_SECRET_TYPE, where=f"existing Secret {name}"
        )


def label_value(name: str) -> str:
    """An object name as a label value (names may be longer than labels allow)."""
    if len(name) <= _LABEL_VALUE_MAX:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]
    return f"{name[: _LABEL_VALUE_MAX - 11].rstrip('.-_')}-{digest}"


def _decoded(secret: Secret) -> dict[str, bytes] | None:
    """The Secret's data as bytes, or None if it cannot be decoded (then it differs)."""
    try:
        return {
            k: base64.b64decode(v, validate=True) for k, v in (secret.get("data") or {}).items()
        }
    except (binascii.Error, ValueError, TypeError):
        return None


def _encoded(data: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode("ascii") for k, v in data.items()}


def _secret_body(
    sealed: SealedSecret,
    template: SecretShape,
    plaintext: Mapping[str, bytes],
    *,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    refs: list[OwnerReference] | None = None,
) -> Secret:
    meta = sealed["metadata"]
    body: Secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": dict(labels),
            "annotations": dict(annotations),
            "ownerReferences": refs if refs is not None else [owner_reference(sealed)],
        },
        "type": template.type,
        "data": _encoded(plaintext),
    }
    if template.immutable:
        body["immutable"] = True
    return body


def _clean(error: KstrataError) -> KstrataError:
    """The error without its cause chain; a refused Secret without the server's words.

    Used for Secret writes: the API server's answer to a rejected Secret can
    quote a fragment of the value (a JSON parser's "invalid character"), and a
    chained client exception would carry it into tracebacks.
    """
    if isinstance(error, InvalidInputError):
        return InvalidInputError(
            "the API server rejected the Secret (its type may require other item keys, "
            "or values in a particular format)",
            reason=SECRET_REJECTED_REASON,
        )
    return type(error)(error.message, reason=error.reason)


class SealedSecretReconciler:
    """Unseals SealedSecrets into Secrets through one ``KubeApi`` and one ``KeyStore``."""

    def __init__(
        self,
        api: KubeClient,
        settings: Settings,
        keys: KeyStore | None = None,
    ) -> None:
        self.api = api
        self.settings = settings
        self.keys = keys or KeyStore(api, settings)
        self.revisions = RevisionStore(api)
        # SealedSecrets whose last reconcile failed for a reason outside their own
        # spec (a missing key, a Secret in the way), by reason: the operator retries
        # them the moment the key Secret or that Secret changes.
        self._blocked: dict[tuple[str, str], str] = {}
        self._blocked_lock = threading.Lock()
        # uids of Secrets this reconciler deleted to replace them, so the watch
        # does not mistake our own deletion for someone else's (and loop).
        self._own_deletions: set[str] = set()

    # --- bookkeeping of blocked objects ---------------------------------

    def waiting_for_keys(self) -> list[tuple[str, str]]:
        """SealedSecrets that failed only because a sealing key is missing."""
        with self._blocked_lock:
            return sorted(k for k, reason in self._blocked.items() if reason == KEY_MISSING)

    def blocked(self) -> list[tuple[str, str]]:
        """Every SealedSecret blocked by something outside its spec."""
        with self._blocked_lock:
            return sorted(self._blocked)

    def blocked_by_secret(self, namespace: str | None, name: str) -> bool:
        """Whether the Secret namespace/name is what keeps its SealedSecret from unsealing."""
        with self._blocked_lock:
            return self._blocked.get((namespace or "", name)) in _SECRET_IN_THE_WAY

    def deleted_by_us(self, uid: str | None) -> bool:
        """Whether the Secret with ``uid`` was deleted by this reconciler (asked once)."""
        with self._blocked_lock:
            if uid in self._own_deletions:
                self._own_deletions.discard(uid)
                return True
            return False

    def forget(self, namespace: str, name: str) -> None:
        self._set_blocked(namespace, name, None)

    def _set_blocked(self, namespace: str, name: str, reason: str | None) -> None:
        with self._blocked_lock:
            if reason in _RETRIED_ON_EVENTS:
                self._blocked[(namespace, name)] = reason
            else:
                self._blocked.pop((namespace, name), None)
            waiting = sum(1 for r in self._blocked.values() if r == KEY_MISSING)
        metrics.SEALED_SECRETS_WAITING_FOR_KEYS.set(waiting)

    # --- reconcile -------------------------------------------------------

    def _read_namespace_labels(self, namespace: str) -> dict[str, str] | None:
        found = self.api.get_or_none(NAMESPACES, None, namespace)
        labels: dict[str, str] | None = ((found or {}).get("metadata") or {}).get("labels")
        return labels

    def reconcile(
        self,
        sealed: SealedSecret,
        namespace_labels: Callable[[str], Mapping[str, str] | None] | None = None,
        keys: SealingKeys | None = None,
        *,
        annotate: Callable[[dict[str, str]], None] | None = None,
        status_reported: Callable[[int], None] | None = None,
    ) -> SealedOutcome:
        """Bring the Secret in line with ``sealed``; raise the ``KstrataError`` that stopped it.

        ``annotate``: where the revision index goes, see ``RevisionStore.publish``;
        ``status_reported``: see ``ProfileReconciler.reconcile``.
        """
        with metrics.reconcile_measured(SEALED_SECRET_KIND):
            return self._reconcile(
                sealed,
                namespace_labels or self._read_namespace_labels,
                keys,
                annotate,
                status_reported,
            )

    def _reconcile(
        self,
        sealed: SealedSecret,
        namespace_labels: Callable[[str], Mapping[str, str] | None],
        keys: SealingKeys | None,
        annotate: Callable[[dict[str, str]], None] | None,
        status_reported: Callable[[int], None] | None,
    ) -> SealedOutcome:
        meta = sealed["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        choice: EnvironmentChoice | None = None
        try:
            self._check_not_reserved(namespace, name)
            spec = parse_sealed_spec(sealed.get("spec"))
            check_secret_type(spec.template.type, where="spec.template.type")
            labels = namespace_labels(namespace)
            choice = select_environment(spec.environment, labels, self.settings.default_environment)
            tokens = checked_tokens(spec, choice.name)
            # First reconcile: create without reading first (see app.profiles).
            first = not reconciled_before(sealed)
            existing = None if first else self.api.get_or_none(SECRETS, namespace, name)
            _check_existing(existing, meta["uid"], name)
            keys, plaintext = self._unseal(keys, tokens, Scope(spec.scope), namespace, name)
            digest = tokens_digest(tokens, _template_data(sealed))
            secret_data: dict[str, bytes] = {}
            try:
                # Rendered in memory only, straight into the Secret's data: the
                # status, the snapshot and the digest hold the public template
                # text and the items' keyed fingerprints, never the result.
                secret_data = render_data(spec.template.data, plaintext)
                items = self._status_items(keys, tokens, plaintext, namespace=namespace, name=name)
                # The snapshot is stored before the Secret is written (crash safety).
                settled = self._settle_revision(sealed, choice, digest, items, existing)
                revision = settled.number
                written = self._write(
                    sealed,
                    template=spec.template,
                    plaintext=secret_data,
                    digest=digest,
                    existing=existing,
                    settled=settled,
                )
            finally:
                plaintext.clear()
                secret_data.clear()
        except (InvalidInputError, OwnershipError, SealingError) as error:
            self._set_blocked(namespace, name, error.reason)
            if isinstance(error, UnknownKeyError):
                metrics.SEALING_KEY_MISSING.inc()
            metrics.VALIDATION_FAILURES.labels(kind=SEALED_SECRET_KIND, reason=error.reason).inc()
            self._record_failure(sealed, error, choice)
            raise
        except ClusterError as error:
            # Cluster trouble is retried; a write error's cause may echo data.
            raise _clean(error) from None
        self._set_blocked(namespace, name, None)

        generation = meta.get("generation", 0)
        message = (
            f"unsealed {len(items)} item(s) into Secret {name} at revision {revision} "
            f"for environment {choice.name}"
        )
        status = sealed.get("status") or {}
        new_status: SealedSecretStatus = {
            "observedGeneration": generation,
            "environment": choice.name,
            "environmentSource": choice.source,
            "revision": revision,
            "secretName": name,
            "keyIds": sorted({item.get("keyId", "") for item in items}),
            "items": items,
        }
        new_status["conditions"] = ready_condition(
            status.get("conditions") or [],
            ok=True,
            reason=UNSEALED_REASON,
            message=message,
            generation=generation,
        )
        written_status = self._patch_status(sealed, new_status)
        if status_reported is not None:
            status_reported(revision)
        # The index after the status (see app.profiles), from the status write's
        # answer.  Its errors need no cleaning: it writes annotations, no Secret data.
        self.revisions.publish(SEALED_SECRETS, written_status or sealed, settled, annotate=annotate)
        if written:
            logger.info("SealedSecret %s/%s: %s", namespace, name, message)
        # As for profiles: events for changes, not for the first unseal.
        if written and not first:
            post_event(
                self.api,
                sealed,
                type_="Normal",
                reason=UNSEALED_REASON,
                message=message,
                now=now_rfc3339(),
            )
        return SealedOutcome(revision, written, written_status is not None, settled.new)

    def _unseal(
        self,
        keys: SealingKeys | None,
        tokens: Mapping[str, str],
        scope: Scope,
        namespace: str,
        name: str,
    ) -> tuple[SealingKeys, dict[str, bytes]]:
        """Open every token with ``keys``, else the watched keys (re-read once for a new key)."""
        if keys is not None:
            return keys, unseal_all(keys.ring, tokens, scope, namespace=namespace, name=name)
        watched = self.keys.current()
        try:
            return watched, unseal_all(watched.ring, tokens, scope, namespace=namespace, name=name)
        except UnknownKeyError:
            fresh = self.keys.load()
            if fresh is watched:
                raise
        return fresh, unseal_all(fresh.ring, tokens, scope, namespace=namespace, name=name)

    def _write(
        self,
        sealed: SealedSecret,
        *,
        template: SecretShape,
        plaintext: Mapping[str, bytes],
        digest: str,
        existing: Secret | None,
        settled: Settled,
    ) -> bool:
        """``_write_secret`` with the API server's refusals cleaned.

        A blind create (``existing`` None) that meets a Secret reads it, which
        may refuse it in our own words, and writes again over what it read.
        """

        def write(current: Secret | None) -> bool:
            try:
                return self._write_secret(
                    sealed, template, plaintext, digest, current, revision=settled.number
                )
            except InvalidInputError as error:
                raise _clean(error) from None

        if existing is not None:
            return write(existing)
        try:
            return write(None)
        except ConflictError:
            pass  # outside the handler: nothing of the 409 is chained to what follows
        return write(self._read_unexpected(sealed, settled))

    def _read_unexpected(self, sealed: SealedSecret, settled: Settled) -> Secret | None:
        """The create met a Secret already there: read it, and refuse it unless it is ours.

        If it is refused, the revision snapshot just recorded for this content
        is removed again: a revision number stands for content that was served.
        """
        meta = sealed["metadata"]
        existing = self.api.get_or_none(SECRETS, meta["namespace"], meta["name"])
        try:
            _check_existing(existing, meta["uid"], meta["name"])
        except (OwnershipError, InvalidInputError):
            if settled.new:
                with contextlib.suppress(ClusterError):
                    self.revisions.prune(sealed, [settled.number])
            raise
        return existing

    @staticmethod
    def _status_items(
        keys: SealingKeys,
        tokens: Mapping[str, str],
        plaintext: Mapping[str, bytes],
        *,
        namespace: str,
        name: str,
    ) -> list[SealedItemStatus]:
        """Per item: key, key id and (with a fingerprint key) the keyed fingerprint."""
        items = []
        for key, token in tokens.items():
            # The key that opened it (a multi-recipient token names other clusters' too).
            item: SealedItemStatus = {"key": key, "keyId": keys.ring.key_id_for(token)}
            if keys.fingerprint_key is not None:
                item["fingerprint"] = fingerprint(
                    keys.fingerprint_key,
                    namespace=namespace,
                    name=name,
                    item=key,
                    value=plaintext[key],
                )
            items.append(item)
        return items

    def _settle_revision(
        self,
        sealed: SealedSecret,
        choice: EnvironmentChoice,
        digest: str,
        items: list[SealedItemStatus],
        existing: Secret | None,
    ) -> Settled:
        """Which revision the sealed tokens in effect are; a new one is snapshotted first.

        Known digests without an API call: our Secret's revision label with
        its sealed-digest annotation (written together).  The snapshot holds
        the spec (ciphertext), the environment and keyed fingerprints: never
        plaintext.
        """
        meta = sealed["metadata"]
        hints: list[tuple[int, str | None]] = []
        if existing is not None and is_ours(existing, meta["uid"]):
            existing_meta = existing.get("metadata") or {}
            label = parse_revision((existing_meta.get("labels") or {}).get(REVISION_LABEL))
            sealed_digest = (existing_meta.get("annotations") or {}).get(DIGEST_ANNOTATION)
            if label:
                hints.append((label, sealed_digest))
        hints.append((parse_revision((sealed.get("status") or {}).get("revision")), None))
        fingerprints = {
            item["key"]: item["fingerprint"]
            for item in items
            if "key" in item and "fingerprint" in item
        }

        def build(number: int, cause: str) -> Snapshot:
            return Snapshot(
                kind=SEALED_SECRET_KIND,
                number=number,
                spec=dict(sealed.get("spec") or {}),
                environment=choice.name,
                rendered={},
                fingerprints=fingerprints,
                digest=digest,
                change_cause=cause,
                created=now_rfc3339(),
            )

        limit = history_limit((sealed.get("spec") or {}).get("revisionHistoryLimit"))
        return self.revisions.settle(sealed, digest, build, limit=limit, hints=hints)

    def _write_secret(
        self,
        sealed: SealedSecret,
        template: SecretShape,
        plaintext: Mapping[str, bytes],
        digest: str,
        existing: Secret | None,
        *,
        revision: int,
    ) -> bool:
        """Create or update the Secret if anything differs; True if it was written."""
        meta = sealed["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        ours = existing is not None and is_ours(existing, uid)
        existing_meta: ObjectMeta = (existing or {}).get("metadata") or {}

        desired_labels = {
            **template.labels,
            MANAGED_BY_LABEL: MANAGER,
            SEALED_SECRET_LABEL: label_value(name),
            REVISION_LABEL: str(revision),
        }
        desired_annotations = {
            **{k: v for k, v in template.annotations.items() if k != LAST_APPLIED_ANNOTATION},
            DIGEST_ANNOTATION: digest,
        }
        owner = owner_reference(sealed)

        if existing is None:
            body = _secret_body(
                sealed,
                template,
                plaintext,
                labels=desired_labels,
                annotations=desired_annotations,
            )
            self.api.create(SECRETS, namespace, body)
            return True

        labels = dict(existing_meta.get("labels") or {})
        annotations = dict(existing_meta.get("annotations") or {})
        stale_copy = annotations.pop(LAST_APPLIED_ANNOTATION, None) is not None
        same_data = _decoded(existing) == dict(plaintext)
        existing_immutable = bool(existing.get("immutable"))
        needs_metadata = (
            stale_copy
            or any(labels.get(k) != v for k, v in desired_labels.items())
            or any(annotations.get(k) != v for k, v in desired_annotations.items())
            or not ours
            or existing_immutable != template.immutable
        )
        same_type = (existing.get("type") or DEFAULT_SECRET_TYPE) == template.type
        if same_data and same_type and not needs_metadata:
            return False

        labels.update(desired_labels)
        annotations.update(desired_annotations)
        refs = [
            r for r in existing_meta.get("ownerReferences") or [] if not r.get("controller")
        ] + [owner]
        if not same_type or (existing_immutable and (not same_data or not template.immutable)):
            # Type and immutable data cannot change in place: replace the Secret.
            # Ownership was checked just before, so this deletes only our own.
            body = _secret_body(
                sealed, template, plaintext, labels=labels, annotations=annotations, refs=refs
            )
            self._replace_secret(existing, body)
            return True

        updated: Secret = {
            **existing,
            "metadata": {
                **existing_meta,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": refs,
            },
            "data": _encoded(plaintext),
        }
        if template.immutable:
            updated["immutable"] = True
        else:
            updated.pop("immutable", None)
        # PUT with the resourceVersion read: a concurrent writer makes this a
        # ConflictError and the retry re-reads instead of overwriting blindly.
        self.api.replace(SECRETS, namespace, updated)
        return True

    def _replace_secret(self, existing: Secret, body: Secret) -> None:
        """Delete and create; if the new Secret is refused, put the old one back.

        All or nothing as far as the API allows: there is no transaction, so a
        refused replacement (say, a type whose required keys are missing)
        restores the previous data under a new uid instead of leaving no Secret.
        """
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        with self._blocked_lock:
            self._own_deletions.add(str(existing["metadata"].get("uid", "")))
        self.api.delete(SECRETS, namespace, name)
        try:
            self.api.create(SECRETS, namespace, body)
        except KstrataError:
            previous_meta = existing["metadata"].copy()
            for key in _SERVER_SET_METADATA:
                previous_meta.pop(key, None)
            previous: Secret = {**existing, "metadata": previous_meta}
            try:
                self.api.create(SECRETS, namespace, previous)
            except KstrataError as restore_error:
                # No traceback: the chained client error may quote the API's answer.
                logger.critical(
                    "Secret %s/%s could not be restored after a refused replacement: %s",
                    namespace,
                    name,
                    restore_error.reason,
                )
            raise

    def _check_not_reserved(self, namespace: str, name: str) -> None:
        # The operator's own Secrets carry the managed-by label that marks a Secret
        # for adoption: they are refused by name.  (The webhook certificate's name
        # is controller.webhook.tls_secret_name's.)
        if namespace != self.settings.operator_namespace:
            return
        if name == KEY_SECRET_NAME:
            raise InvalidInputError(
                f"Secret {name} in the operator namespace holds the sealing keys; "
                "a SealedSecret cannot write it",
                reason=RESERVED_NAME_REASON,
            )
        if name == f"{self.settings.webhook_service}-tls":
            raise InvalidInputError(
                f"Secret {name} in the operator namespace holds the webhook's certificate; "
                "a SealedSecret cannot write it",
                reason=RESERVED_NAME_REASON,
            )

    def _patch_status(
        self, sealed: SealedSecret, new_status: SealedSecretStatus
    ) -> SealedSecret | None:
        return patch_status_if_changed(self.api, SEALED_SECRETS, sealed, new_status)

    def _record_failure(
        self, sealed: SealedSecret, error: KstrataError, choice: EnvironmentChoice | None
    ) -> None:
        """Ready=False with the reason, ONE Warning event per distinct failure; no Secret write."""
        # The handler's body may predate our last status patch (a quick retry):
        # decide "new failure or the same one" on the stored status.
        if record_failure(self.api, SEALED_SECRETS, sealed, error, choice, reread=True):
            meta = sealed["metadata"]
            logger.warning(
                "SealedSecret %s/%s not unsealed: %s", meta["namespace"], meta["name"], error
            )

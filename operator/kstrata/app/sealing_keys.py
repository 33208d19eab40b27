"""The operator's sealing keys: the key Secret, rotation, and the published public keys.

Why a module of its own: the private keys live in exactly one place, the
Secret ``kstrata-sealing-keys`` in the operator namespace, and everything that
reads or grows it goes through ``KeyStore`` so the rules below hold no matter
who calls (the operator's startup and rotation timer, or ``kstrata keys``):

* keys are only ever **added**: the first key pair on first start, a new
  newest key pair on rotation.  No code path here deletes or overwrites an
  existing entry, so tokens sealed to an old key keep opening, and a key
  Secret restored from a backup is used as it is;
* the key Secret is **never created except by** ``ensure_keys`` (operator
  start): a Secret that disappears while the operator runs stays missing
  until someone restores it, instead of being replaced by fresh keys that
  would make the backup's keys conflict with a new ring;
* every write is optimistic (create, or PUT with the resourceVersion read),
  so two writers never silently drop each other's key; and nothing is
  written when nothing changed.

The public halves are published as the ConfigMap ``kstrata-sealing-public-keys``
(data key ``keys.json``): what ``kstrata seal --cert`` reads, readable by
anyone allowed to seal.  The ``kstrata keys`` use cases at the bottom read
that ConfigMap, not the Secret, so listing and exporting need no access to
private keys.

Boundary: cluster access only through ``KubeClient``; key formats, key ids and
the choice of the newest key come from ``kstrata.crypto``.  No private key
byte is ever logged or put into a message.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from kstrata import metrics
from kstrata.app.toolkit import rfc3339
from kstrata.crypto import (
    FingerprintKey,
    KeyPair,
    KeyRing,
    PublicKeyBundle,
    Suite,
    generate_keypair,
)
from kstrata.crypto.keys import MAX_BUNDLE_KEYS
from kstrata.errors import (
    ClusterError,
    ConflictError,
    InputLimitError,
    NotFoundError,
    SealingError,
    SettingsError,
)
from kstrata.kube.api import CONFIG_MAPS, SECRETS, KubeClient
from kstrata.payloads import ConfigMap, Secret
from kstrata.settings import Settings
from kstrata.wellknown import COMPONENT_LABEL, MANAGED_BY_LABEL, MANAGER

logger = logging.getLogger(__name__)

KEY_SECRET_NAME: Final = "kstrata-sealing-keys"  # noqa: S105 (an object name, not a secret)
PUBLIC_KEYS_CONFIG_MAP: Final = "kstrata-sealing-public-keys"
PUBLIC_KEYS_DATA_KEY: Final = "keys.json"
#: The key Secret entry holding the fingerprint (HMAC) key.  Key pair entries
#: are named ``<keyId>.json``, which can never collide with this name.
FINGERPRINT_ENTRY: Final = "fingerprint-key.json"
_LABELS: Final = {MANAGED_BY_LABEL: MANAGER, COMPONENT_LABEL: "sealing-keys"}


@dataclass(frozen=True)
class SealingKeys:
    """What the key Secret holds, parsed.

    ``present`` is False while the Secret does not exist: the ring is then
    empty and every token reports its key as missing.
    """

    ring: KeyRing
    fingerprint_key: FingerprintKey | None
    present: bool
    #: Entries that could not be parsed (names only), reported, never dropped.
    invalid_entries: tuple[str, ...] = ()


_MISSING: Final = SealingKeys(KeyRing(), None, present=False)


def _labelled(secret: Secret) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in _LABELS.items())


def suite_from(text: str) -> Suite:
    try:
        return Suite(text)
    except ValueError:
        allowed = ", ".join(s.value for s in Suite)
        raise SettingsError(f"sealing suite must be one of {allowed}") from None


def _decode_data(secret: Secret) -> dict[str, bytes]:
    decoded: dict[str, bytes] = {}
    for name, value in (secret.get("data") or {}).items():
        try:
            decoded[name] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError):
            # Unreachable through the API (it validates data); treated as invalid entry.
            decoded[name] = b""
    return decoded


def parse_key_secret(secret: Secret) -> SealingKeys:
    """Parse the key Secret's entries; malformed entries are listed, not fatal.

    One damaged entry must not stop tokens sealed to the other keys from
    opening; tokens that need the damaged key report it as missing, and the
    entry's name is logged so an operator can repair it from a backup.
    """
    pairs: list[KeyPair] = []
    fingerprint_key: FingerprintKey | None = None
    invalid: list[str] = []
    for name, raw in sorted(_decode_data(secret).items()):
        try:
            if name == FINGERPRINT_ENTRY:
                fingerprint_key = FingerprintKey.from_secret_entry(raw)
            else:
                pair = KeyPair.from_secret_entry(raw)
                if any(p.key_id == pair.key_id for p in pairs):
                    continue  # the same key stored twice under two names is still one key
                pairs.append(pair)
        except (SealingError, InputLimitError) as error:
            invalid.append(name)
            logger.warning("key Secret entry %s is not usable: %s", name, error.reason)
    return SealingKeys(
        KeyRing(pairs), fingerprint_key, present=True, invalid_entries=tuple(invalid)
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class KeyStore:
    """The key Secret and the public key ConfigMap in ``settings.operator_namespace``."""

    def __init__(self, api: KubeClient, settings: Settings) -> None:
        self.api = api
        self.settings = settings
        self.namespace = settings.operator_namespace
        self.suite = suite_from(settings.sealing_suite)
        metrics.SEALING_KEY_ROTATION_PERIOD.set(max(0, settings.key_rotation_days) * 86_400)
        # Parsing loads every key into pyca; cache the result per Secret version.
        self._cache_lock = threading.Lock()
        self._cache: tuple[tuple[str, str], SealingKeys] | None = None
        # The keys as the key Secret's watch last reported them (``observe``);
        # None until it has, and outside the operator.
        self._watched: SealingKeys | None = None

    # --- reading ---------------------------------------------------------

    def read_secret(self) -> Secret | None:
        return self.api.get_or_none(SECRETS, self.namespace, KEY_SECRET_NAME)

    def load(self) -> SealingKeys:
        """The keys as the key Secret holds them now (an empty ring when it is missing)."""
        return self.keys_from(self.read_secret())

    def observe(self, secret: Secret | None) -> SealingKeys:
        """Remember the key Secret as its watch reported it (None: deleted); return its keys."""
        keys = self.keys_from(secret)
        with self._cache_lock:
            self._watched = keys
        return keys

    def current(self) -> SealingKeys:
        """The keys as the watch last reported them; read from the API until it has.

        Saves a GET of the key Secret per reconcile.  The watch can lag a
        rotation or a restore by a moment: a caller that meets a key it does
        not hold asks ``load`` once before failing.
        """
        with self._cache_lock:
            watched = self._watched
        return watched if watched is not None else self.load()

    def keys_from(self, secret: Secret | None) -> SealingKeys:
        if secret is None:
            metrics.SEALING_KEYS.set(0)
            metrics.SEALING_KEY_NEWEST_CREATED.set(0)
            return _MISSING
        meta = secret.get("metadata") or {}
        version = (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
        with self._cache_lock:
            if self._cache is not None and self._cache[0] == version and version[1]:
                return self._cache[1]
        keys = parse_key_secret(secret)
        with self._cache_lock:
            self._cache = (version, keys)
        metrics.SEALING_KEYS.set(len(keys.ring))
        metrics.SEALING_KEY_NEWEST_CREATED.set(
            keys.ring.newest.created.timestamp() if len(keys.ring) else 0
        )
        return keys

    # --- writing ---------------------------------------------------------

    def ensure_keys(self, now: dt.datetime) -> bool:
        """Make sure a key pair and a fingerprint key exist; True when something was written.

        Creates the key Secret on first start.  On an existing Secret only
        missing pieces are added (for example a backup taken before
        fingerprints existed); nothing present is replaced.
        """
        try:
            return self._ensure_keys(now)
        except ConflictError:
            # Another replica (or a restore) wrote meanwhile: build on theirs, once.
            return self._ensure_keys(now)

    def _ensure_keys(self, now: dt.datetime) -> bool:
        secret = self.read_secret()
        if secret is None:
            pair = generate_keypair(suite=self.suite, created=now)
            fingerprint_key = FingerprintKey.generate(created=now)
            body: Secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": KEY_SECRET_NAME,
                    "namespace": self.namespace,
                    "labels": dict(_LABELS),
                },
                "type": "Opaque",
                "data": {
                    pair.secret_entry_name: _b64(pair.to_secret_entry()),
                    FINGERPRINT_ENTRY: _b64(fingerprint_key.to_secret_entry()),
                },
            }
            self.api.create(SECRETS, self.namespace, body)
            logger.info("created the sealing key Secret with key %s", pair.key_id)
            metrics.SEALING_KEYS.set(1)
            metrics.SEALING_KEY_NEWEST_CREATED.set(pair.created.timestamp())
            return True

        keys = self.keys_from(secret)
        data = secret.get("data") or {}
        additions: dict[str, str] = {}
        if len(keys.ring) == 0:
            pair = generate_keypair(suite=self.suite, created=now)
            additions[pair.secret_entry_name] = _b64(pair.to_secret_entry())
            logger.info("key Secret holds no usable key pair; adding key %s", pair.key_id)
        if FINGERPRINT_ENTRY not in data:
            # A present but damaged entry is left for a person to repair: never overwrite.
            additions[FINGERPRINT_ENTRY] = _b64(
                FingerprintKey.generate(created=now).to_secret_entry()
            )
            logger.info("key Secret holds no fingerprint key; adding one")
        if not additions and _labelled(secret):
            return False
        if not additions:
            # The operator's Secret watch selects by these labels (a key Secret made
            # before they existed, or restored without them, would go unseen).
            logger.info("labelling the key Secret so the operator's Secret watch sees it")
        self._add_entries(secret, additions)
        return True

    def ensure_labels(self) -> bool:
        """Label the key Secret if it lacks the labels; True when it wrote.

        The operator's Secret watch selects by them: a key Secret restored
        without them would otherwise go unseen until the next restart.
        """
        secret = self.read_secret()
        if secret is None or _labelled(secret):
            return False
        self._add_entries(secret, {})
        logger.info("labelled the key Secret so the operator's Secret watch sees it")
        return True

    def rotate(self, now: dt.datetime, suite: Suite | None = None) -> KeyPair:
        """Add a new key pair that becomes the newest; every existing key stays.

        ``suite`` defaults to the operator's configured suite.  Raises
        ``NotFoundError`` when the key Secret is missing (restore it, or let
        the operator create one on start) and ``InputLimitError`` when the
        ring is full (retire old keys first).
        """
        secret = self.read_secret()
        if secret is None:
            raise NotFoundError(
                f"sealing key Secret {self.namespace}/{KEY_SECRET_NAME} does not exist; "
                "restore it from a backup, or start the operator to create one"
            )
        keys = self.keys_from(secret)
        if len(keys.ring) >= MAX_BUNDLE_KEYS:
            raise InputLimitError(
                f"the key ring holds {len(keys.ring)} keys, the most a public bundle can "
                "publish; retire keys no token uses before rotating"
            )
        created = now
        if len(keys.ring):
            # Keys are ordered by creation time (whole seconds): a clock behind the
            # newest key's would make the "new" key not the newest one.
            floor = keys.ring.newest.created + dt.timedelta(seconds=1)
            created = max(now, floor)
        pair = generate_keypair(suite=suite or self.suite, created=created)
        self._add_entries(secret, {pair.secret_entry_name: _b64(pair.to_secret_entry())})
        metrics.SEALING_KEY_ROTATIONS.inc()
        metrics.SEALING_KEYS.set(len(keys.ring) + 1)
        metrics.SEALING_KEY_NEWEST_CREATED.set(pair.created.timestamp())
        logger.info("rotated sealing keys: new newest key %s", pair.key_id)
        return pair

    def _add_entries(self, secret: Secret, additions: Mapping[str, str]) -> None:
        data = dict(secret.get("data") or {})
        for name, value in additions.items():
            # Entry names are key ids (or the fixed fingerprint name): an existing
            # name is never overwritten, whatever it holds.
            data.setdefault(name, value)
        meta = secret["metadata"].copy()
        labels = dict(meta.get("labels") or {})
        labels.update(_LABELS)
        meta["labels"] = labels
        updated: Secret = {**secret, "metadata": meta, "data": data}
        # PUT with the resourceVersion read: a concurrent rotation or restore makes
        # this a ConflictError (retried by the caller) instead of losing a key.
        self.api.replace(SECRETS, self.namespace, updated)

    def due_for_rotation(self, now: dt.datetime, keys: SealingKeys | None = None) -> bool:
        """True when the newest key is older than the rotation interval (0 disables)."""
        days = self.settings.key_rotation_days
        if days <= 0:
            return False
        keys = keys if keys is not None else self.load()
        if not keys.present or len(keys.ring) == 0:
            # Never rotate into a missing Secret: that would start a new ring and
            # make restoring the real one from a backup harder.
            return False
        return now >= keys.ring.newest.created + dt.timedelta(days=days)

    def publish_public_keys(self, keys: SealingKeys | None = None) -> bool:
        """Write the public bundle ConfigMap if it differs; True when written."""
        keys = keys if keys is not None else self.load()
        if not keys.present or len(keys.ring) == 0:
            # Keep the last published bundle: values sealed to it open again once
            # the key Secret is restored.
            return False
        text = keys.ring.public_bundle().serialize()
        existing = self.api.get_or_none(CONFIG_MAPS, self.namespace, PUBLIC_KEYS_CONFIG_MAP)
        if existing is None:
            body: ConfigMap = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": PUBLIC_KEYS_CONFIG_MAP,
                    "namespace": self.namespace,
                    "labels": dict(_LABELS),
                },
                "data": {PUBLIC_KEYS_DATA_KEY: text},
            }
            self.api.create(CONFIG_MAPS, self.namespace, body)
            logger.info("published %d sealing public key(s)", len(keys.ring))
            return True
        meta = existing.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        same_labels = all(labels.get(k) == v for k, v in _LABELS.items())
        same_data = existing.get("data") == {PUBLIC_KEYS_DATA_KEY: text} and not existing.get(
            "binaryData"
        )
        if same_labels and same_data:
            return False
        labels.update(_LABELS)
        updated: ConfigMap = {
            **existing,
            "metadata": {**meta, "labels": labels},
            "data": {PUBLIC_KEYS_DATA_KEY: text},
        }
        updated.pop("binaryData", None)
        self.api.replace(CONFIG_MAPS, self.namespace, updated)
        logger.info("published %d sealing public key(s)", len(keys.ring))
        return True


# --- ``kstrata keys`` use cases ------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    """Public facts about one sealing key (a row of ``kstrata keys list``)."""

    key_id: str
    suite: str
    created: str
    newest: bool

    def as_data(self) -> dict[str, object]:
        return {
            "keyId": self.key_id,
            "suite": self.suite,
            "created": self.created,
            "newest": self.newest,
        }


def read_public_bundle(api: KubeClient, namespace: str) -> PublicKeyBundle:
    """The published bundle, parsed strictly (``NotFoundError`` before the operator ran)."""
    found = api.get_or_none(CONFIG_MAPS, namespace, PUBLIC_KEYS_CONFIG_MAP)
    text = ((found or {}).get("data") or {}).get(PUBLIC_KEYS_DATA_KEY)
    if text is None:
        raise NotFoundError(
            f"no published sealing keys (ConfigMap {namespace}/{PUBLIC_KEYS_CONFIG_MAP}, "
            f"key {PUBLIC_KEYS_DATA_KEY}); is the operator running with this operator namespace?"
        )
    return PublicKeyBundle.parse(text)


def list_keys(api: KubeClient, namespace: str) -> list[KeyInfo]:
    """``kstrata keys list``: the published keys, oldest first, the newest marked."""
    bundle = read_public_bundle(api, namespace)
    newest = bundle.newest.key_id if len(bundle) else None
    return [
        KeyInfo(k.key_id, k.suite.value, rfc3339(k.created), k.key_id == newest) for k in bundle
    ]


def export_public_keys(api: KubeClient, namespace: str) -> str:
    """``kstrata keys export``: the bundle JSON that ``kstrata seal --cert`` reads."""
    return read_public_bundle(api, namespace).serialize()


def key_backup(api: KubeClient, namespace: str) -> tuple[str, int]:
    """``kstrata keys backup``: the key Secret as a manifest that restores it, and its key count.

    PRIVATE KEY MATERIAL: the caller writes it to a 0600 file
    (``recovery.write_new_private_file``), never to a terminal.  Server-set
    metadata is dropped so ``kubectl create -f FILE`` restores the Secret as
    it was; ``kstrata unseal --recovery-keys FILE`` reads the same file.
    """
    secret = api.get_or_none(SECRETS, namespace, KEY_SECRET_NAME)
    if secret is None:
        raise NotFoundError(
            f"sealing key Secret {namespace}/{KEY_SECRET_NAME} not found; is the operator "
            "installed with this --operator-namespace?"
        )
    keys = parse_key_secret(secret)
    if len(keys.ring) == 0:
        raise NotFoundError(f"sealing key Secret {namespace}/{KEY_SECRET_NAME} holds no key pair")
    meta = secret.get("metadata") or {}
    manifest: Secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": KEY_SECRET_NAME,
            "namespace": namespace,
            "labels": dict(meta.get("labels") or _LABELS),
        },
        "type": secret.get("type") or "Opaque",
        "data": dict(secret.get("data") or {}),
    }
    import yaml

    header = (
        "# kstrata sealing key backup: PRIVATE KEYS of key id(s) "
        + ", ".join(keys.ring.key_ids)
        + "\n# Restore: kubectl create -f THIS_FILE."
        + "  Break-glass: kstrata unseal --recovery-keys.\n"
    )
    return header + yaml.safe_dump(manifest, sort_keys=True), len(keys.ring)


#: How often ``kstrata keys rotate`` tries to publish after a 409 Conflict.
PUBLISH_ATTEMPTS: Final = 5


def rotate_keys(
    api: KubeClient, namespace: str, now: dt.datetime, suite: str | None = None
) -> KeyInfo:
    """``kstrata keys rotate``: add a newest key and publish it at once.

    The suite defaults to the current newest key's, so a cluster that opted
    into the hybrid suite is not quietly downgraded by a manual rotation.

    Publishing races the operator, which republishes as soon as it sees the
    key Secret change: a 409 Conflict means someone wrote the ConfigMap
    between our read and our write, so it is re-read and retried (bounded;
    usually the second read finds the operator already published the same
    bundle).  If publishing still fails, the error says the key *is* stored,
    and the command fails instead of reporting success.
    """
    store = KeyStore(api, Settings(operator_namespace=namespace))
    chosen: Suite | None = suite_from(suite) if suite is not None else None
    if chosen is None:
        keys = store.load()
        if len(keys.ring):
            chosen = keys.ring.newest.suite
    pair = store.rotate(now, chosen)
    publish_with_retry(store, pair.key_id)
    return KeyInfo(pair.key_id, pair.suite.value, rfc3339(pair.created), newest=True)


def publish_with_retry(store: KeyStore, key_id: str, attempts: int = PUBLISH_ATTEMPTS) -> None:
    """Publish the public keys, re-reading and retrying on 409 Conflict up to ``attempts``."""
    for attempt in range(1, attempts + 1):
        try:
            store.publish_public_keys()
        except ConflictError:
            logger.info("publishing the public keys met a conflict (attempt %d)", attempt)
            continue
        except ClusterError as error:
            raise ClusterError(
                f"new key {key_id} is stored, but publishing the public keys failed "
                f"({error.reason}); the operator republishes them when it sees the key Secret "
                "change, or run 'kstrata keys rotate' again later",
                reason=error.reason,
            ) from None
        return
    raise ConflictError(
        f"new key {key_id} is stored, but publishing the public keys met a conflict "
        f"{attempts} times; the operator republishes them when it sees the key Secret change"
    )

"""What every command that seals shares: the recipients, the binding, the manifest.

Why a module of its own: ``kstrata seal`` (one SealedSecret, a bare token, or
a repository of Secrets) and the imports from Bitnami and SOPS
(:mod:`kstrata.app.secret_imports`) seal plaintext to the same recipients,
bind each token the same way and write the same SealedSecret manifest.  They
share it through this module, below all of them, so the use cases never
import each other (the ``independence`` contract in ``.importlinter``).

* Where the public keys come from: ``--cert`` bundles or the operator's
  ConfigMap (:class:`ClusterKeys`), read by :func:`load_recipients`; the
  kubeconfig context's namespace (:func:`kubeconfig_namespace`), read
  without the Kubernetes client.
* Sealing: :class:`Binding` (the scope, namespace and name the tokens are
  bound to), :func:`check_binding` and :func:`seal_items` (one token per
  item, v1 or multi-recipient v2).
* The manifest: :func:`new_manifest`, :func:`secret_template` (what a
  Secret's metadata carries over, never kubectl's last-applied copy) and
  :func:`dump_manifest`.

The cluster is touched only to read the public key ConfigMap, through
:class:`kstrata.kube.api.KubeClient`, imported lazily: with ``--cert``
neither the Kubernetes client nor kopf is loaded.  Messages name flags,
files, fields and item keys, never a value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

from kstrata.crypto import (
    MAX_RECIPIENTS,
    PublicKey,
    PublicKeyBundle,
    Scope,
    SealingContext,
    seal,
    seal_multi,
)
from kstrata.crypto.context import check_name, check_namespace
from kstrata.crypto.keys import MAX_BUNDLE_BYTES
from kstrata.domain.jsonvalue import JSONObject, JSONValue
from kstrata.errors import (
    InputLimitError,
    InvalidInputError,
    NotFoundError,
    SealingError,
    UnknownContextError,
    UnknownKeyError,
    UsageError,
)
from kstrata.files import read_bounded
from kstrata.wellknown import API_VERSION, SEALED_SECRET_KIND

if TYPE_CHECKING:
    from kstrata.kube.api import KubeClient

__all__ = [
    "DEFAULT_OPERATOR_NAMESPACE",
    "DEFAULT_SCOPE",
    "LAST_APPLIED_ANNOTATION",
    "MAX_SEALED_ITEMS",
    "PUBLIC_KEYS_CONFIGMAP",
    "PUBLIC_KEYS_ITEM",
    "SCOPES",
    "Binding",
    "ClusterKeys",
    "KeySource",
    "SealResult",
    "check_binding",
    "dump_manifest",
    "fetch_public_keys",
    "kubeconfig_namespace",
    "load_public_keys",
    "load_recipients",
    "new_manifest",
    "object_field",
    "optional_str",
    "seal_items",
    "secret_template",
]

# The SealedSecret's item bound, restated from kstrata.domain.crds (a unit
# test pins them equal; its apiVersion and kind come from kstrata.wellknown):
# importing crds pulls in the ConfigProfile parser and renderer, a tenth of
# the seal command's cold start.  The forbidden
# Secret types are imported from there, where only a Secret manifest needs them.
MAX_SEALED_ITEMS: Final = 256
#: The sealing scopes, owned by the token format (crds.SCOPES lists the same).
SCOPES: Final = tuple(scope.value for scope in Scope)
#: The scope of a SealedSecret that states none.
DEFAULT_SCOPE: Final = "strict"

#: Where the operator publishes its public key bundle: ``PublicKeyBundle.serialize()``
#: under this ConfigMap item.  Restated from kstrata.app.sealing_keys and the
#: settings' default namespace (a unit test pins them equal): those modules load
#: the operator's metrics and more than sealing needs.
PUBLIC_KEYS_CONFIGMAP: Final = "kstrata-sealing-public-keys"
PUBLIC_KEYS_ITEM: Final = "keys.json"
DEFAULT_OPERATOR_NAMESPACE: Final = "kstrata-system"

#: kubectl's copy of the whole applied object, ``data`` included: copying it
#: into the template would publish the plaintext next to the ciphertext.
LAST_APPLIED_ANNOTATION: Final = "kubectl.kubernetes.io/last-applied-configuration"

_SECRET_TYPE_MAX: Final = 253


# --- where the public keys come from -------------------------------------


@dataclass(frozen=True)
class ClusterKeys:
    """Read the public keys from the operator's ConfigMap; ``connect`` is called only then."""

    connect: Callable[[], KubeClient] = field(repr=False)
    namespace: str | None = None


#: ``--cert FILE`` (a bundle file), several ``--cert`` files (one recipient
#: each: the newest key of each bundle), or the cluster.
KeySource = Path | Sequence[Path] | ClusterKeys


def load_recipients(keys: KeySource) -> list[PublicKey]:
    """The keys to seal to: the newest key of the cluster's bundle or of each ``--cert``.

    Two bundles naming the same newest key (the same file twice, say) are a
    usage error rather than a silently shorter recipient list.
    """
    if isinstance(keys, ClusterKeys | Path):
        return [load_public_keys(keys).newest]
    paths = list(keys)
    if not paths:
        raise UsageError("no public key bundle given")
    if len(paths) > MAX_RECIPIENTS:
        raise UsageError(f"at most {MAX_RECIPIENTS} --cert bundles can be given")
    recipients: list[PublicKey] = []
    for index, path in enumerate(paths, 1):
        newest = load_public_keys(path).newest
        if any(r.key_id == newest.key_id for r in recipients):
            raise UsageError(
                f"--cert #{index} ({path}) names the same newest key {newest.key_id} "
                "as an earlier --cert"
            )
        recipients.append(newest)
    return recipients


def load_public_keys(keys: Path | ClusterKeys) -> PublicKeyBundle:
    """The bundle from a ``--cert`` file, or from the cluster's ConfigMap."""
    if isinstance(keys, ClusterKeys):
        return fetch_public_keys(keys.connect(), keys.namespace)
    data = read_bounded(keys, MAX_BUNDLE_BYTES, what="--cert", stdin=True)
    return _parse_bundle(data, source=f"--cert {keys}")


def fetch_public_keys(api: KubeClient, namespace: str | None = None) -> PublicKeyBundle:
    """Read the operator's published public key bundle from its ConfigMap."""
    from kstrata.kube.api import CONFIG_MAPS

    namespace = namespace or DEFAULT_OPERATOR_NAMESPACE
    try:
        check_namespace(namespace)
    except SealingError:
        raise UsageError("--operator-namespace is not a valid namespace name") from None
    where = f"ConfigMap {namespace}/{PUBLIC_KEYS_CONFIGMAP}"
    try:
        config_map = api.get(CONFIG_MAPS, namespace, PUBLIC_KEYS_CONFIGMAP)
    except NotFoundError:
        raise NotFoundError(
            f"{where} not found: is the kstrata operator installed in {namespace}? "
            "(--operator-namespace names another namespace; --cert FILE seals offline)"
        ) from None
    data = config_map.get("data")
    text = data.get(PUBLIC_KEYS_ITEM) if isinstance(data, dict) else None
    if not isinstance(text, str):
        raise NotFoundError(
            f"{where} has no {PUBLIC_KEYS_ITEM}: the operator has not published keys"
        )
    return _parse_bundle(text, source=where)


def _parse_bundle(data: bytes | str, *, source: str) -> PublicKeyBundle:
    # The crypto layer's messages never quote the bundle; only say where it came from.
    try:
        bundle = PublicKeyBundle.parse(data)
    except InputLimitError as error:
        raise InputLimitError(f"{source}: {error.message}") from None
    except SealingError as error:
        raise SealingError(f"{source}: {error.message}", reason=error.reason) from None
    if len(bundle) == 0:
        raise UnknownKeyError(f"{source}: the public key bundle holds no keys")
    return bundle


def kubeconfig_namespace(path: Path | None, context: str | None) -> str | None:
    """The namespace of a kubeconfig context, read without the Kubernetes client.

    As kubectl: the named context (else ``current-context``), its namespace,
    else ``default``.  None when there is no kubeconfig or no such context, so
    an offline ``seal --cert`` in CI still asks for ``-n``.
    """
    if path is None or not path.expanduser().is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(
            read_bounded(path.expanduser(), 4 * 1024 * 1024, what="kubeconfig", stdin=False)
        )
    except yaml.YAMLError:
        raise UsageError(f"kubeconfig {path} is not valid YAML") from None
    if not isinstance(data, dict):
        return None
    wanted = context or data.get("current-context")
    for entry in data.get("contexts") or []:
        if isinstance(entry, dict) and entry.get("name") == wanted:
            body = entry.get("context")
            namespace = body.get("namespace") if isinstance(body, dict) else None
            return namespace if isinstance(namespace, str) and namespace else "default"
    if context is not None:
        from kstrata.kube.kubeconfig import context_names

        raise UnknownContextError(str(path), context, context_names(data))
    return None


# --- sealing -------------------------------------------------------------


class Binding(NamedTuple):
    """What a SealedSecret's tokens are bound to; they travel together from
    the coordinates worked out to the tokens sealed and the manifest built."""

    scope: str
    #: None: cluster scope, the manifest portable across namespaces.
    namespace: str | None
    name: str


def check_binding(
    name: str,
    namespace: str | None,
    scope: str,
    *,
    prefix: str,
    suffix: str = "",
    no_namespace: str,
) -> None:
    """Check the name and namespace a SealedSecret's tokens are about to be bound to.

    Every path that seals (``seal``, the SOPS and Bitnami imports) checks the
    same two things before a key is used: both are valid Kubernetes names, a
    ``SealingError`` becoming an ``InvalidInputError`` that says what is
    wrong (never the value) between ``prefix`` and ``suffix``; and only
    cluster scope may leave the namespace unbound (the manifest portable),
    any other scope without one is the ``UsageError`` ``no_namespace``.
    """
    try:
        check_name(name)
        if namespace is not None:
            check_namespace(namespace)
    except SealingError as error:
        raise InvalidInputError(f"{prefix}{error.message}{suffix}") from None
    if namespace is None and scope != "cluster":
        raise UsageError(no_namespace)


def seal_items(
    values: Mapping[str, bytes], recipients: Sequence[PublicKey], binding: Binding
) -> dict[str, str]:
    """One token per item: v1 for one recipient (every operator reads it), else v2."""
    scope, namespace, name = binding
    sealed: dict[str, str] = {}
    for item, plaintext in values.items():
        context = SealingContext.bind(scope, item=item, namespace=namespace, name=name)
        if len(recipients) == 1:
            sealed[item] = seal(plaintext, recipients[0], context)
        else:
            try:
                sealed[item] = seal_multi(plaintext, recipients, context)
            except InputLimitError as error:
                raise InputLimitError(f"item {item}: {error.message}") from None
    return sealed


# --- the manifest --------------------------------------------------------


@dataclass(frozen=True)
class SealResult:
    """The sealed manifest, the items sealed into it, and the file written (if any)."""

    manifest: JSONObject
    name: str
    namespace: str | None
    items: tuple[str, ...]
    key_id: str
    written: Path | None = None
    #: Every recipient key sealed to (``key_id`` is the first).
    key_ids: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        binding: Binding,
        manifest: JSONObject,
        sealed: Mapping[str, str],
        recipients: Sequence[PublicKey],
        written: Path | None = None,
    ) -> SealResult:
        """The result of sealing ``sealed``'s items to ``recipients`` into ``manifest``."""
        key_ids = tuple(r.key_id for r in recipients)
        return cls(
            manifest=manifest,
            name=binding.name,
            namespace=binding.namespace,
            items=tuple(sorted(sealed)),
            key_id=key_ids[0],
            written=written,
            key_ids=key_ids,
        )


def new_manifest(
    binding: Binding,
    sealed: Mapping[str, str],
    template: JSONObject,
    environment: str | None = None,
) -> JSONObject:
    """A new SealedSecret: the tokens in ``spec.encryptedData`` (or under ``environment``)."""
    scope, namespace, name = binding
    metadata: JSONObject = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    spec: JSONObject = {"scope": scope}
    encrypted: JSONObject = dict(sorted(sealed.items()))
    if environment is None:
        spec["encryptedData"] = encrypted
    else:
        spec["environments"] = {environment: {"encryptedData": encrypted}}
    if template:
        spec["template"] = template
    return {
        "apiVersion": API_VERSION,
        "kind": SEALED_SECRET_KIND,
        "metadata": metadata,
        "spec": spec,
    }


def secret_template(secret: JSONObject, metadata: JSONObject, source: str) -> JSONObject:
    """type, labels, annotations and immutable: what the operator should recreate.

    Everything else in ``metadata`` (uid, resourceVersion, creationTimestamp,
    managedFields, ownerReferences, ...) describes one stored object and is
    not carried over, nor is kubectl's last-applied copy, which holds the data.
    """
    from kstrata.domain.crds import FORBIDDEN_SECRET_TYPES

    template: JSONObject = {}
    secret_type = optional_str(secret, "type", f"{source}: ")
    if secret_type is not None:
        if secret_type in FORBIDDEN_SECRET_TYPES:
            # One of two fixed strings, so safe to name.
            raise InvalidInputError(
                f"{source}: Secrets of type {secret_type} cannot be sealed: "
                "they would hand out cluster credentials"
            )
        if not secret_type or len(secret_type) > _SECRET_TYPE_MAX:
            raise InvalidInputError(f"{source}: type must be 1 to {_SECRET_TYPE_MAX} characters")
        template["type"] = secret_type
    for field_name in ("labels", "annotations"):
        entries = _string_map(metadata, field_name, f"{source}: metadata.")
        entries.pop(LAST_APPLIED_ANNOTATION, None)
        if entries:
            template[field_name] = dict(sorted(entries.items()))
    immutable = secret.get("immutable")
    if immutable is not None:
        if not isinstance(immutable, bool):
            raise InvalidInputError(f"{source}: immutable must be true or false")
        template["immutable"] = immutable
    return template


def _string_map(obj: JSONObject, key: str, where: str) -> dict[str, JSONValue]:
    entries = object_field(obj, key, where)
    if not all(isinstance(value, str) for value in entries.values()):
        raise InvalidInputError(f"{where}{key}: every value must be a string")
    return dict(entries)


# ``where`` below is a message prefix ending where the field name goes ("f.yaml: spec.").


def optional_str(obj: JSONObject, key: str, where: str) -> str | None:
    """``obj[key]`` when it is a string, None when absent; anything else is refused."""
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"{where}{key} must be a string")
    return value


def object_field(obj: JSONObject, key: str, where: str) -> JSONObject:
    """``obj[key]`` when it is a mapping, ``{}`` when absent or null; anything else is refused."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}{key} must be a mapping")
    return value


def dump_manifest(manifest: JSONObject, fmt: str) -> str:
    """``manifest`` as ``json`` or YAML text, keys sorted (yaml imported only then)."""
    if fmt == "json":
        return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    import yaml

    return yaml.safe_dump(manifest, sort_keys=True, allow_unicode=True, default_flow_style=False)

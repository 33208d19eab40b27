"""``kstrata seal``: turn plaintext values into a SealedSecret manifest.

Why a module of its own: sealing is what a developer does on a laptop or in
CI, usually with no access to the cluster's private keys and often with no
cluster at all (``--cert FILE``).  :func:`seal_manifest` is exactly what the
``seal`` subcommand does, so the CLI stays a shell that parses flags, calls it
and prints.

Boundary: the token format, the key bundle and the context binding come from
:mod:`kstrata.crypto`; document loading and the SealedSecret's constants from
:mod:`kstrata.domain`.  The cluster is touched only to read the operator's
public key ConfigMap, through :class:`kstrata.kube.api.KubeClient`, imported
lazily: with ``--cert`` neither the Kubernetes client nor kopf is loaded, so
the command starts fast and works offline.

Several ``--cert`` bundles seal each item once for every recipient cluster
(a ``kss2:`` token, docs/crypto.md §4a); :func:`seal_raw` seals one value
and returns the bare token, for editors and pipelines.  :func:`seal_secrets`
seals many Secret manifests (files, directories, multi-document streams) in
one process: a repository of Secrets costs one interpreter start and one key
bundle parse, not one per manifest.

The one promise that shapes every line: plaintext never leaves this module
except as ciphertext.  No message quotes a literal, a file's content, a
Secret manifest's values, or anything that failed validation (it might be a
value pasted in the wrong place); messages name flags, positions, files,
fields and item keys that passed validation.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

from kstrata.crypto import (
    MAX_PLAINTEXT_BYTES,
    MAX_RECIPIENTS,
    PublicKey,
    PublicKeyBundle,
    Scope,
    SealingContext,
    seal,
    seal_multi,
)
from kstrata.crypto.context import check_item, check_name, check_namespace
from kstrata.crypto.keys import MAX_BUNDLE_BYTES
from kstrata.domain.environments import check_environment_name
from kstrata.domain.jsonvalue import DEFAULT_LIMITS, JSONObject, JSONValue, deep_copy
from kstrata.errors import (
    InputLimitError,
    InvalidInputError,
    NotFoundError,
    SealingError,
    UnknownContextError,
    UnknownKeyError,
    UsageError,
)
from kstrata.files import expand_files, read_bounded, write_atomically
from kstrata.wellknown import API_VERSION, SEALED_SECRET_KIND

if TYPE_CHECKING:
    from kstrata.kube.api import KubeClient

__all__ = [
    "DEFAULT_CONTROLLER_NAMESPACE",
    "DEFAULT_OPERATOR_NAMESPACE",
    "LAST_APPLIED_ANNOTATION",
    "MAX_SEALED_ITEMS",
    "PUBLIC_KEYS_CONFIGMAP",
    "PUBLIC_KEYS_ITEM",
    "SCOPES",
    "BulkSealRequest",
    "ClusterKeys",
    "RawSealRequest",
    "RawSealResult",
    "SealRequest",
    "SealResult",
    "check_binding",
    "fetch_public_keys",
    "kubeconfig_namespace",
    "load_public_keys",
    "load_recipients",
    "seal_manifest",
    "seal_raw",
    "seal_secrets",
    "secret_documents",
    "write_sealed",
]

# The SealedSecret's item bound, restated from kstrata.domain.crds (a unit
# test pins them equal; its apiVersion and kind come from kstrata.wellknown):
# importing crds pulls in the ConfigProfile parser and renderer, a tenth of
# this command's cold start.  The forbidden
# Secret types are imported from there, where only ``-f`` needs them.
MAX_SEALED_ITEMS: Final = 256
#: The sealing scopes, owned by the token format (crds.SCOPES lists the same).
SCOPES: Final = tuple(scope.value for scope in Scope)

#: Where the operator publishes its public key bundle: ``PublicKeyBundle.serialize()``
#: under this ConfigMap item.  Restated from kstrata.app.sealing_keys and the
#: settings' default namespace (a unit test pins them equal): those modules load
#: the operator's metrics and more than sealing needs.
PUBLIC_KEYS_CONFIGMAP: Final = "kstrata-sealing-public-keys"
PUBLIC_KEYS_ITEM: Final = "keys.json"
DEFAULT_OPERATOR_NAMESPACE: Final = "kstrata-system"
#: The former name (``--controller-namespace``), kept for callers of this module.
DEFAULT_CONTROLLER_NAMESPACE: Final = DEFAULT_OPERATOR_NAMESPACE

#: kubectl's copy of the whole applied object, ``data`` included: copying it
#: into the template would publish the plaintext next to the ciphertext.
LAST_APPLIED_ANNOTATION: Final = "kubectl.kubernetes.io/last-applied-configuration"

_DEFAULT_SCOPE: Final = "strict"
_SECRET_TYPE_MAX: Final = 253


# --- requests and results --------------------------------------------------


@dataclass(frozen=True)
class SealRequest:
    """What to seal and for which SealedSecret, as the user stated it.

    Coordinates left ``None`` are taken from ``secret_file`` or ``merge_into``
    when those state them; every source that states one must agree.
    """

    namespace: str | None = None
    name: str | None = None
    scope: str | None = None
    environment: str | None = None
    #: ``KEY=VALUE`` texts, as given to ``--from-literal``.
    literals: Sequence[str] = ()
    #: ``[KEY=]PATH`` texts, as given to ``--from-file``.
    files: Sequence[str] = ()
    #: A Kubernetes Secret manifest (``-`` reads standard input).
    secret_file: Path | None = None
    #: An existing SealedSecret file to update in place.
    merge_into: Path | None = None
    #: ``KEY=TEMPLATE`` texts (``--template``) and ``KEY=PATH`` texts
    #: (``--template-file``): ``spec.template.data`` entries, checked against the items.
    templates: Sequence[str] = ()
    template_files: Sequence[str] = ()
    #: The kubeconfig context's namespace, asked for only when no other source
    #: states one and the scope binds a namespace (as every other command does).
    context_namespace: Callable[[], str | None] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BulkSealRequest:
    """Seal every Secret in ``paths``: files, directories (recursively) and ``-`` (stdin).

    Each document becomes one SealedSecret with the Secret's own name and
    namespace; ``namespace`` is for Secrets that state none (and must agree
    with those that do), ``name`` only for a single Secret.
    """

    paths: Sequence[Path]
    namespace: str | None = None
    name: str | None = None
    scope: str | None = None
    environment: str | None = None
    context_namespace: Callable[[], str | None] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ClusterKeys:
    """Read the public keys from the operator's ConfigMap; ``connect`` is called only then."""

    connect: Callable[[], KubeClient] = field(repr=False)
    namespace: str | None = None


#: ``--cert FILE`` (a bundle file), several ``--cert`` files (one recipient
#: each: the newest key of each bundle), or the cluster.
KeySource = Path | Sequence[Path] | ClusterKeys


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


@dataclass(frozen=True)
class RawSealRequest:
    """``kstrata seal --raw``: one value for one item of one SealedSecret.

    The value comes from ``from_file`` or, when that is None, standard input
    (``stdin``): never from the command line, where the process list shows it.
    """

    item: str
    name: str | None = None
    namespace: str | None = None
    scope: str | None = None
    from_file: Path | None = None
    context_namespace: Callable[[], str | None] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RawSealResult:
    """The bare token and the keys it was sealed to."""

    token: str = field(repr=False)
    item: str
    key_ids: tuple[str, ...]


@dataclass
class _Items:
    """Plaintext by item key, plus what a Secret manifest said about itself."""

    values: dict[str, bytes]
    template: JSONObject = field(default_factory=dict)
    namespace: str | None = None
    name: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class _Target:
    """An existing SealedSecret file to merge into."""

    path: Path
    manifest: JSONObject
    namespace: str | None
    name: str | None
    scope: str


# --- the use case ----------------------------------------------------------


def seal_manifest(request: SealRequest, keys: KeySource) -> SealResult:
    """Seal the requested items to the newest public key; build or update the manifest.

    Inputs are read and checked before the public keys are fetched, so a
    mistake never costs a round trip to the cluster, and nothing is written
    unless every item sealed.
    """
    environment = (
        None
        if request.environment is None
        else check_environment_name(request.environment, where="--env")
    )
    items = _read_items(request)
    templates = _read_templates(request)
    target = None if request.merge_into is None else _load_target(request.merge_into)
    scope, namespace, name = _coordinates(request, items, target)
    if templates:
        # Checked on the manifest as it will be (tokens left out) before any key is fetched.
        placeholders = dict.fromkeys(items.values, "")
        _with_templates(
            _merged_manifest(target, environment, placeholders, items.template)
            if target is not None
            else _new_manifest(
                namespace=namespace, name=name, scope=scope, environment=environment,
                sealed=placeholders, template=items.template,
            ),
            templates,
        )  # fmt: skip
    recipients = load_recipients(keys)
    sealed = _seal_items(items.values, recipients, scope, namespace, name)
    if target is None:
        manifest = _new_manifest(
            namespace=namespace,
            name=name,
            scope=scope,
            environment=environment,
            sealed=sealed,
            template=items.template,
        )
    else:
        manifest = _merged_manifest(target, environment, sealed, items.template)
    _with_templates(manifest, templates)
    written = None
    if target is not None:
        _write_private(target.path, _dump(manifest, _format_of(target.path)))
        written = target.path
    return SealResult(
        manifest=manifest,
        name=name,
        namespace=namespace,
        items=tuple(sorted(sealed)),
        key_id=recipients[0].key_id,
        written=written,
        key_ids=tuple(r.key_id for r in recipients),
    )


def seal_secrets(
    request: BulkSealRequest,
    keys: KeySource,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[SealResult]:
    """One SealedSecret per Secret document in ``request.paths``, in the order read.

    ``progress`` hears about each one sealed (the CLI shows it on a terminal).

    All or nothing: every document is read and checked, and every location
    worked out, before the keys are loaded and anything is sealed, so a bad
    document among a thousand costs no cluster round trip and prints nothing.
    """
    environment = (
        None
        if request.environment is None
        else check_environment_name(request.environment, where="--env")
    )
    documents = secret_documents(request.paths)
    if request.name is not None and len(documents) > 1:
        raise UsageError(
            f"--name names one SealedSecret, but -f gave {len(documents)} Secrets: "
            "each keeps its own metadata.name"
        )
    context_namespace = _asked_once(request.context_namespace)
    planned: list[tuple[_Items, str, str | None, str]] = []
    seen: dict[tuple[str | None, str], str] = {}
    for source, document in documents:
        items = _secret_items(document, source)
        scope, namespace, name = _coordinates(
            SealRequest(
                namespace=request.namespace,
                name=request.name,
                scope=request.scope,
                context_namespace=context_namespace,
            ),
            items,
            None,
        )
        earlier = seen.get((namespace, name))
        if earlier is not None:
            # Two Secrets for one SealedSecret: one would silently replace the other.
            raise InvalidInputError(f"{source}: the same namespace and name as {earlier}")
        seen[(namespace, name)] = source
        planned.append((items, scope, namespace, name))
    recipients = load_recipients(keys)
    key_ids = tuple(r.key_id for r in recipients)
    results: list[SealResult] = []
    for number, (items, scope, namespace, name) in enumerate(planned, 1):
        if progress is not None:
            progress(f"sealing {number}/{len(planned)}: {namespace}/{name}")
        sealed = _seal_items(items.values, recipients, scope, namespace, name)
        manifest = _new_manifest(
            namespace=namespace,
            name=name,
            scope=scope,
            environment=environment,
            sealed=sealed,
            template=items.template,
        )
        results.append(
            SealResult(
                manifest=manifest,
                name=name,
                namespace=namespace,
                items=tuple(sorted(sealed)),
                key_id=key_ids[0],
                key_ids=key_ids,
            )
        )
    return results


def secret_documents(paths: Sequence[Path]) -> list[tuple[str, JSONObject]]:
    """Every document of the given files, directories and ``-``, each with its name.

    A directory contributes its ``.yaml``, ``.yml`` and ``.json`` files,
    recursively, in sorted order, without following symbolic links to
    directories (no loops).  A document is named by its file, and by its
    position when the file holds several (``a.yaml (document 2)``).
    """
    # Imported here: the --from-literal/--from-file path parses no documents.
    from kstrata.domain.documents import load_documents

    files = expand_files(paths, recursive=True)
    if sum(1 for path in files if str(path) == "-") > 1:
        raise UsageError("-f - (standard input) can be given only once")
    found: list[tuple[str, JSONObject]] = []
    for path in files:
        source = "<stdin>" if str(path) == "-" else str(path)
        data = _read_bounded(path, DEFAULT_LIMITS.max_bytes, what="-f")
        documents = [d for d in load_documents(data, source=source) if d is not None]
        for index, document in enumerate(documents, 1):
            where = source if len(documents) == 1 else f"{source} (document {index})"
            if not isinstance(document, dict):
                raise InvalidInputError(f"{where}: expected an object (a Secret manifest)")
            found.append((where, document))
    if not found:
        raise InvalidInputError("-f: no Secret manifest found in the given files")
    return found


def _asked_once(
    lookup: Callable[[], str | None] | None,
) -> Callable[[], str | None] | None:
    """``lookup`` called at most once: a thousand Secrets read the kubeconfig once."""
    if lookup is None:
        return None
    answers: list[str | None] = []

    def once() -> str | None:
        if not answers:
            answers.append(lookup())
        return answers[0]

    return once


def seal_raw(
    request: RawSealRequest, keys: KeySource, stdin: BinaryIO | None = None
) -> RawSealResult:
    """Seal one value (a file's bytes, or standard input's) and return the bare token.

    The token goes into ``spec.encryptedData.<item>`` of a SealedSecret with
    this name, namespace and scope, by hand or by a pipeline.
    """
    item = _checked_key(request.item, "--key")
    items = _Items({})
    name_needed = (request.scope or _DEFAULT_SCOPE) == Scope.STRICT.value
    scope, namespace, name = _coordinates(
        SealRequest(
            namespace=request.namespace,
            # Only strict scope binds the name: elsewhere a stand-in that bind() drops.
            name=request.name if request.name is not None or name_needed else "unbound",
            scope=request.scope,
            context_namespace=request.context_namespace,
        ),
        items,
        None,
    )
    if request.from_file is not None:
        value = _read_bounded(
            request.from_file,
            MAX_PLAINTEXT_BYTES,
            what=f"--from-file (item {item})",
            show_path=False,
        )
    else:
        value = _read_stdin(stdin, item)
    recipients = load_recipients(keys)
    token = _seal_items({item: value}, recipients, scope, namespace, name)[item]
    return RawSealResult(token=token, item=item, key_ids=tuple(r.key_id for r in recipients))


def _read_stdin(stdin: BinaryIO | None, item: str) -> bytes:
    import sys

    stream = stdin if stdin is not None else sys.stdin.buffer
    data = stream.read(MAX_PLAINTEXT_BYTES + 1)
    if len(data) > MAX_PLAINTEXT_BYTES:
        raise InputLimitError(
            f"standard input (item {item}) exceeds the sealing limit of {MAX_PLAINTEXT_BYTES} bytes"
        )
    return bytes(data)


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


def load_public_keys(keys: Path | ClusterKeys) -> PublicKeyBundle:
    """The bundle from a ``--cert`` file, or from the cluster's ConfigMap."""
    if isinstance(keys, ClusterKeys):
        return fetch_public_keys(keys.connect(), keys.namespace)
    data = _read_bounded(keys, MAX_BUNDLE_BYTES, what="--cert")
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


def _seal_items(
    values: Mapping[str, bytes],
    recipients: Sequence[PublicKey],
    scope: str,
    namespace: str | None,
    name: str,
) -> dict[str, str]:
    """One token per item: v1 for one recipient (every operator reads it), else v2."""
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


# --- where the SealedSecret lives ------------------------------------------


def _agree(what: str, stated: Sequence[tuple[str, str | None]]) -> str | None:
    given = [(source, value) for source, value in stated if value is not None]
    if len({value for _, value in given}) > 1:
        # The values are names, but one may be mistyped text: name the sources only.
        sources = " and ".join(source for source, _ in given)
        raise InvalidInputError(f"the {what} differs between {sources}")
    return given[0][1] if given else None


def _coordinates(
    request: SealRequest, items: _Items, target: _Target | None
) -> tuple[str, str | None, str]:
    """Scope, namespace and name: from the flags, the Secret and the merge target, agreeing."""
    in_secret = items.source or "-f"
    in_target = "" if target is None else str(target.path)
    scope = _agree(
        "scope",
        [
            ("--scope", request.scope),
            (f"spec.scope of {in_target}", None if target is None else target.scope),
        ],
    )
    scope = scope or _DEFAULT_SCOPE
    if scope not in SCOPES:
        raise UsageError(f"--scope must be one of {', '.join(SCOPES)}")
    namespace = _agree(
        "namespace",
        [
            ("--namespace", request.namespace),
            (f"metadata.namespace of {in_secret}", items.namespace),
            (f"metadata.namespace of {in_target}", None if target is None else target.namespace),
        ],
    )
    name = _agree(
        "name",
        [
            ("--name", request.name),
            (f"metadata.name of {in_secret}", items.name),
            (f"metadata.name of {in_target}", None if target is None else target.name),
        ],
    )
    if name is None:
        raise UsageError("--name is required")
    if namespace is None and scope != "cluster" and request.context_namespace is not None:
        # Nothing stated one: the kubeconfig context's, as kubectl and every other command.
        namespace = request.context_namespace()
    check_binding(
        name,
        namespace,
        scope,
        prefix="the SealedSecret's ",
        no_namespace=f"--namespace is required for {scope} scope",
    )
    return scope, namespace, name


# --- reading the plaintext -------------------------------------------------


def _read_items(request: SealRequest) -> _Items:
    given_flags = bool(request.literals or request.files)
    if request.secret_file is not None and given_flags:
        raise UsageError("-f cannot be combined with --from-literal or --from-file")
    if request.secret_file is not None:
        return _read_secret_manifest(request.secret_file)
    if not given_flags:
        raise UsageError("nothing to seal: give --from-literal, --from-file or -f")
    if len(request.literals) + len(request.files) > MAX_SEALED_ITEMS:
        raise InputLimitError(f"at most {MAX_SEALED_ITEMS} items can be sealed at once")
    values: dict[str, bytes] = {}
    for index, text in enumerate(request.literals, 1):
        where = f"--from-literal #{index}"
        key, separator, value = text.partition("=")
        if not separator or not key:
            raise UsageError(f"{where}: expected KEY=VALUE")
        # os.fsencode restores arguments that were not valid UTF-8 byte for byte.
        _add(values, _checked_key(key, where), os.fsencode(value), where)
    for index, text in enumerate(request.files, 1):
        where = f"--from-file #{index}"
        key, separator, path_text = text.partition("=")
        if not separator:
            # kubectl's short form: the file's name is the item key.
            key, path_text = Path(text).name, text
        if not key or not path_text:
            raise UsageError(f"{where}: expected [KEY=]PATH")
        key = _checked_key(key, where)
        # The path is not echoed: in KEY=PATH, a value typed by mistake lands there.
        data = _read_bounded(
            Path(path_text), MAX_PLAINTEXT_BYTES, what=f"{where} (item {key})", show_path=False
        )
        _add(values, key, data, where)
    return _Items(values)


def _checked_key(key: str, where: str) -> str:
    try:
        check_item(key)
    except SealingError:
        raise InvalidInputError(
            f"{where}: the item key is not a valid Secret data key "
            "([-._a-zA-Z0-9]+, at most 253 characters, not '.' or '..*')"
        ) from None
    return key


def _add(values: dict[str, bytes], key: str, value: bytes, where: str) -> None:
    if key in values:
        raise InvalidInputError(f"{where}: item {key} is given twice")
    if len(value) > MAX_PLAINTEXT_BYTES:
        raise InputLimitError(
            f"{where}: the value of item {key} exceeds the sealing limit of "
            f"{MAX_PLAINTEXT_BYTES} bytes"
        )
    values[key] = value


def _read_templates(request: SealRequest) -> dict[str, str]:
    """``--template`` and ``--template-file`` entries, each parsed by the operator's parser.

    A template is public text (it is kept in clear in the spec), yet a file's
    path is not echoed, as for ``--from-file``.
    """
    from kstrata.domain.secret_template import MAX_TEMPLATE_CHARS, MAX_TEMPLATES, parse_template

    given = [("--template", text) for text in request.templates]
    given += [("--template-file", text) for text in request.template_files]
    if len(given) > MAX_TEMPLATES:
        raise InputLimitError(f"at most {MAX_TEMPLATES} templates can be given")
    templates: dict[str, str] = {}
    counts: dict[str, int] = {}
    for flag, text in given:
        counts[flag] = counts.get(flag, 0) + 1
        where = f"{flag} #{counts[flag]}"
        key, separator, rest = text.partition("=")
        if not separator or not key:
            raise UsageError(
                f"{where}: expected KEY={'PATH' if flag.endswith('file') else 'TEMPLATE'}"
            )
        try:
            check_item(key)  # a template key is a Secret data key, as an item key is
        except SealingError:
            raise UsageError(f"{where}: the template key is not a valid Secret data key") from None
        if key in templates:
            raise UsageError(f"{where}: template {key} is given twice")
        if flag == "--template-file":
            data = _read_bounded(
                Path(rest), 4 * MAX_TEMPLATE_CHARS, what=f"{where} ({key})", show_path=False
            )
            try:
                rest = data.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"{where} ({key}): the file is not UTF-8 text") from None
        try:
            parse_template(key, rest)
        except InvalidInputError as error:  # TemplateError, InputLimitError
            raise UsageError(f"{where}: {error.message}") from None
        templates[key] = rest
    return templates


def _with_templates(manifest: JSONObject, templates: Mapping[str, str]) -> None:
    """Add ``templates`` to ``spec.template.data`` (same keys replaced) and check every
    template there against the items, as admission will: a missing item is a usage error."""
    if not templates:
        return
    from kstrata.domain.secret_template import (
        check_references,
        check_sealed_spec,
        parse_template_data,
    )

    spec = _child(manifest, "spec")
    template = _child(spec, "template")
    template["data"] = dict(sorted({**_child(template, "data"), **templates}.items()))
    try:
        if spec.get("environments") or spec.get("environment"):
            # Each declared (or the pinned) environment: the base items and its own.
            check_sealed_spec(spec, ())
        else:
            encrypted = spec.get("encryptedData")
            keys = list(encrypted) if isinstance(encrypted, dict) else []
            check_references(parse_template_data(template["data"]), keys)
    except InvalidInputError as error:
        raise UsageError(f"--template: {error.message}") from None


def _read_bounded(path: Path, limit: int, *, what: str, show_path: bool = True) -> bytes:
    """Read at most ``limit`` bytes ('-' is standard input); see :mod:`kstrata.files`."""
    return read_bounded(path, limit, what=what, show_path=show_path, stdin=True)


def _only_document(path: Path, limit_what: str) -> JSONObject:
    # Imported here: the common --from-literal/--from-file path parses no documents.
    from kstrata.domain.documents import load_documents

    source = "<stdin>" if str(path) == "-" else str(path)
    data = _read_bounded(path, DEFAULT_LIMITS.max_bytes, what=limit_what)
    documents = [d for d in load_documents(data, source=source) if d is not None]
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise InvalidInputError(f"{source}: expected exactly one object (manifest)")
    return documents[0]


# ``where`` below is a message prefix ending where the field name goes ("f.yaml: spec.").


def _optional_str(obj: JSONObject, key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"{where}{key} must be a string")
    return value


def _object(obj: JSONObject, key: str, where: str) -> JSONObject:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}{key} must be a mapping")
    return value


def _read_secret_manifest(path: Path) -> _Items:
    """Items and template of a Kubernetes Secret manifest; identity metadata is dropped."""
    source = "<stdin>" if str(path) == "-" else str(path)
    return _secret_items(_only_document(path, "-f"), source)


def _secret_items(secret: JSONObject, source: str) -> _Items:
    """Items and template of one Secret document; ``source`` names it in every message."""
    if secret.get("apiVersion") != "v1" or secret.get("kind") != "Secret":
        raise InvalidInputError(f"{source}: expected a Secret (apiVersion v1, kind Secret)")
    metadata = _object(secret, "metadata", f"{source}: ")
    template = _secret_template(secret, metadata, source)
    values: dict[str, bytes] = {}
    for key, encoded in _object(secret, "data", f"{source}: ").items():
        where = f"{source}: data"
        item = _checked_key(key, where)
        if not isinstance(encoded, str):
            raise InvalidInputError(f"{where}.{item} must be a base64 string")
        try:
            values[item] = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError(f"{where}.{item} is not valid base64") from None
    # As on the API server: a stringData item replaces a data item of the same key.
    for key, text in _object(secret, "stringData", f"{source}: ").items():
        where = f"{source}: stringData"
        item = _checked_key(key, where)
        if not isinstance(text, str):
            raise InvalidInputError(f"{where}.{item} must be a string")
        values[item] = text.encode("utf-8", "surrogatepass")
    if not values:
        raise InvalidInputError(f"{source}: the Secret has no data or stringData items")
    if len(values) > MAX_SEALED_ITEMS:
        raise InputLimitError(f"{source}: at most {MAX_SEALED_ITEMS} items can be sealed at once")
    for item, value in values.items():
        if len(value) > MAX_PLAINTEXT_BYTES:
            raise InputLimitError(
                f"{source}: the value of item {item} exceeds the sealing limit of "
                f"{MAX_PLAINTEXT_BYTES} bytes"
            )
    return _Items(
        values,
        template,
        namespace=_optional_str(metadata, "namespace", f"{source}: metadata."),
        name=_optional_str(metadata, "name", f"{source}: metadata."),
        source=source,
    )


def _secret_template(secret: JSONObject, metadata: JSONObject, source: str) -> JSONObject:
    """type, labels, annotations and immutable: what the operator should recreate.

    Everything else in ``metadata`` (uid, resourceVersion, creationTimestamp,
    managedFields, ownerReferences, ...) describes one stored object and is
    not carried over, nor is kubectl's last-applied copy, which holds the data.
    """
    from kstrata.domain.crds import FORBIDDEN_SECRET_TYPES

    template: JSONObject = {}
    secret_type = _optional_str(secret, "type", f"{source}: ")
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
    entries = _object(obj, key, where)
    if not all(isinstance(value, str) for value in entries.values()):
        raise InvalidInputError(f"{where}{key}: every value must be a string")
    return dict(entries)


# --- building and merging the manifest -------------------------------------


def _new_manifest(
    *,
    namespace: str | None,
    name: str,
    scope: str,
    environment: str | None,
    sealed: dict[str, str],
    template: JSONObject,
) -> JSONObject:
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


def _load_target(path: Path) -> _Target:
    """An existing SealedSecret file: checked before anything is sealed into it."""
    manifest = _only_document(path, "--merge-into")
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != SEALED_SECRET_KIND:
        raise InvalidInputError(f"{path}: expected a {SEALED_SECRET_KIND} ({API_VERSION})")
    metadata = _object(manifest, "metadata", f"{path}: ")
    spec = _object(manifest, "spec", f"{path}: ")
    scope = _optional_str(spec, "scope", f"{path}: spec.") or _DEFAULT_SCOPE
    if scope not in SCOPES:
        raise InvalidInputError(f"{path}: spec.scope must be one of {', '.join(SCOPES)}")
    _object(spec, "encryptedData", f"{path}: spec.")
    for environment, overlay in _object(spec, "environments", f"{path}: spec.").items():
        where = f"{path}: spec.environments"
        check_environment_name(environment, where=where)
        if not isinstance(overlay, dict):
            raise InvalidInputError(f"{where}.{environment} must be a mapping")
        _object(overlay, "encryptedData", f"{where}.{environment}.")
    _object(spec, "template", f"{path}: spec.")
    return _Target(
        path=path,
        manifest=manifest,
        namespace=_optional_str(metadata, "namespace", f"{path}: metadata."),
        name=_optional_str(metadata, "name", f"{path}: metadata."),
        scope=scope,
    )


def _merged_manifest(
    target: _Target,
    environment: str | None,
    sealed: dict[str, str],
    template: JSONObject,
) -> JSONObject:
    """The target with the given items added or replaced; everything else as it was."""
    manifest = deep_copy(target.manifest)
    if not isinstance(manifest, dict):  # _load_target accepted only a mapping
        raise TypeError("merge target must be a mapping")
    spec = _child(manifest, "spec")
    holder = spec if environment is None else _child(_child(spec, "environments"), environment)
    encrypted = {**_child(holder, "encryptedData"), **sealed}
    if len(encrypted) > MAX_SEALED_ITEMS:
        raise InputLimitError(
            f"{target.path}: a SealedSecret holds at most {MAX_SEALED_ITEMS} items per map"
        )
    holder["encryptedData"] = dict(sorted(encrypted.items()))
    if template:
        current = _child(spec, "template")
        # Fields the Secret states win; labels and annotations merge key by key.
        for key, value in template.items():
            existing = current.get(key)
            if isinstance(value, dict) and isinstance(existing, dict):
                current[key] = dict(sorted({**existing, **value}.items()))
            else:
                current[key] = value
    return manifest


def _child(parent: JSONObject, key: str) -> JSONObject:
    """``parent[key]``, created when absent or null (_load_target refused anything else)."""
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


# --- writing ---------------------------------------------------------------


def _format_of(path: Path) -> str:
    return "json" if path.suffix.lower() == ".json" else "yaml"


def _dump(manifest: JSONObject, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    import yaml

    return yaml.safe_dump(manifest, sort_keys=True, allow_unicode=True, default_flow_style=False)


def write_sealed(results: Sequence[SealResult], directory: Path, fmt: str) -> list[Path]:
    """Write each SealedSecret to ``DIRECTORY/NAMESPACE/NAME.yaml`` (``.json``); return the paths.

    Namespaces and names cannot contain ``/``, so no two SealedSecrets share a
    file; one without a namespace (cluster scope) goes to ``DIRECTORY/NAME``.
    The files hold ciphertext only and are meant to be committed, so they get
    the usual mode; an existing file of the same name is replaced.
    """
    suffix = ".json" if fmt == "json" else ".yaml"
    written: list[Path] = []
    for result in results:
        folder = directory if result.namespace is None else directory / result.namespace
        path = folder / f"{result.name}{suffix}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(_dump(result.manifest, fmt), encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"--output-dir {directory}: cannot write {path}: {exc.strerror}"
            ) from None
        written.append(path)
    return written


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a 0600 file: never a half-written or readable copy."""
    try:
        write_atomically(path, text)
    except OSError as exc:
        raise UsageError(f"--merge-into {path}: cannot write: {exc.strerror}") from None

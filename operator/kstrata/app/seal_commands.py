"""``kstrata seal``: turn plaintext values into a SealedSecret manifest, or a bare token.

Why a module of its own: sealing is what a developer does on a laptop or in
CI, usually with no access to the cluster's private keys and often with no
cluster at all (``--cert FILE``).  :func:`seal_manifest` is exactly what the
``seal`` subcommand does for one SealedSecret (new, or merged into an
existing file with ``--merge-into``), so the CLI stays a shell that parses
flags, calls it and prints; :func:`seal_raw` seals one value and returns the
bare token, for editors and pipelines.  Sealing many Secret manifests at
once is :mod:`kstrata.app.seal_bulk`.

Boundary: what is read and checked, and the coordinates the tokens bind to,
come from :mod:`kstrata.app.seal_inputs`; the recipients, the sealing and the
manifest from :mod:`kstrata.app.sealing_toolkit`, which the bulk seal and
the secret imports share.  Several ``--cert`` bundles seal each item once for
every recipient cluster (a ``kss2:`` token, docs/crypto.md §4a).

The one promise that shapes every line: plaintext never leaves this module
except as ciphertext.  No message quotes a literal, a file's content, a
Secret manifest's values, or anything that failed validation; messages name
flags, positions, files, fields and item keys that passed validation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kstrata.app.seal_inputs import (
    Items,
    MergeTarget,
    checked_key,
    coordinates,
    load_target,
    read_items,
    read_templates,
)
from kstrata.app.sealing_toolkit import (
    DEFAULT_SCOPE,
    MAX_SEALED_ITEMS,
    KeySource,
    SealResult,
    dump_manifest,
    load_recipients,
    new_manifest,
    seal_items,
)
from kstrata.crypto import MAX_PLAINTEXT_BYTES, Scope
from kstrata.domain.environments import check_environment_name
from kstrata.domain.jsonvalue import JSONObject, deep_copy
from kstrata.errors import InputLimitError, InvalidInputError, UsageError
from kstrata.files import read_bounded, write_atomically

__all__ = [
    "RawSealRequest",
    "RawSealResult",
    "SealRequest",
    "seal_manifest",
    "seal_raw",
]


# --- requests and results ------------------------------------------------


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


# --- the use cases -------------------------------------------------------


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
    items = read_items(
        literals=request.literals, files=request.files, secret_file=request.secret_file
    )
    templates = read_templates(request.templates, request.template_files)
    target = None if request.merge_into is None else load_target(request.merge_into)
    binding = coordinates(
        items,
        target,
        scope=request.scope,
        namespace=request.namespace,
        name=request.name,
        context_namespace=request.context_namespace,
    )

    def manifest_with(sealed: Mapping[str, str]) -> JSONObject:
        if target is None:
            return new_manifest(binding, sealed, items.template, environment)
        return _merged_manifest(target, environment, sealed, items.template)

    if templates:
        # Checked on the manifest as it will be (tokens left out) before any key is fetched.
        _with_templates(manifest_with(dict.fromkeys(items.values, "")), templates)
    recipients = load_recipients(keys)
    sealed = seal_items(items.values, recipients, binding)
    manifest = manifest_with(sealed)
    _with_templates(manifest, templates)
    if target is None:
        return SealResult.of(binding, manifest, sealed, recipients)
    _write_private(target.path, dump_manifest(manifest, _format_of(target.path)))
    return SealResult.of(binding, manifest, sealed, recipients, written=target.path)


def seal_raw(
    request: RawSealRequest, keys: KeySource, stdin: BinaryIO | None = None
) -> RawSealResult:
    """Seal one value (a file's bytes, or standard input's) and return the bare token.

    The token goes into ``spec.encryptedData.<item>`` of a SealedSecret with
    this name, namespace and scope, by hand or by a pipeline.
    """
    item = checked_key(request.item, "--key")
    name_needed = (request.scope or DEFAULT_SCOPE) == Scope.STRICT.value
    binding = coordinates(
        Items({}),
        None,
        scope=request.scope,
        namespace=request.namespace,
        # Only strict scope binds the name: elsewhere a stand-in that bind() drops.
        name=request.name if request.name is not None or name_needed else "unbound",
        context_namespace=request.context_namespace,
    )
    if request.from_file is not None:
        value = read_bounded(
            request.from_file,
            MAX_PLAINTEXT_BYTES,
            what=f"--from-file (item {item})",
            show_path=False,
            stdin=True,
        )
    else:
        value = _read_stdin(stdin, item)
    recipients = load_recipients(keys)
    token = seal_items({item: value}, recipients, binding)[item]
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


# --- merging and templates -----------------------------------------------


def _merged_manifest(
    target: MergeTarget,
    environment: str | None,
    sealed: Mapping[str, str],
    template: JSONObject,
) -> JSONObject:
    """The target with the given items added or replaced; everything else as it was."""
    manifest = deep_copy(target.manifest)
    if not isinstance(manifest, dict):  # load_target accepted only a mapping
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


def _child(parent: JSONObject, key: str) -> JSONObject:
    """``parent[key]``, created when absent or null (load_target refused anything else)."""
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


# --- writing -------------------------------------------------------------


def _format_of(path: Path) -> str:
    return "json" if path.suffix.lower() == ".json" else "yaml"


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a 0600 file: never a half-written or readable copy."""
    try:
        write_atomically(path, text)
    except OSError as exc:
        raise UsageError(f"--merge-into {path}: cannot write: {exc.strerror}") from None

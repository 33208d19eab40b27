"""``kstrata import``: bring Bitnami SealedSecrets and SOPS files over as kstrata SealedSecrets.

Why a module of its own: moving from another secrets tool must not cost a
weekend, and must not leave a plaintext copy behind.  Both imports open the
old encryption in memory and seal each value at once to kstrata's public keys
(``--cert`` bundles offline, or the cluster's bundle, as ``kstrata seal``);
the plaintext is never written to a file, printed, or put in a message.

* :func:`import_bitnami`: Bitnami ``SealedSecret`` objects (any scope) opened
  with a backup of their controller's private keys
  (:func:`load_bitnami_keys`: ``kubectl get secret -n NS -l
  sealedsecrets.bitnami.com/sealed-secrets-key -o yaml``, or a bare PEM key),
  through :mod:`kstrata.crypto.bitnami`.  The scope maps as
  :attr:`~kstrata.crypto.bitnami.BitnamiScope.kstrata_scope` says;
  ``spec.template`` (type, labels, annotations, immutable) is carried over,
  and so is templated data (``spec.template.data``) when it uses only the
  forms :mod:`kstrata.domain.secret_template` shares with Go's templates;
  one with Go template functions, and the deprecated whole-Secret
  ``spec.data``, are refused, naming the object.
* :func:`import_sops`: files encrypted with SOPS, decrypted by the user's own
  ``sops`` command (``sops -d``, its standard output read through a pipe),
  holding a Secret manifest or a flat mapping (YAML, JSON or dotenv).

Everything is checked and sealed before anything is returned: one object that
does not open fails the whole run, and nothing is printed or written.
Offline (``--cert``) neither kopf nor the Kubernetes client is imported.
"""

from __future__ import annotations

import base64
import binascii
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kstrata.app.seal_inputs import asked_once, secret_values
from kstrata.app.sealing_toolkit import (
    LAST_APPLIED_ANNOTATION,
    MAX_SEALED_ITEMS,
    Binding,
    KeySource,
    check_binding,
    dump_manifest,
    load_recipients,
    new_manifest,
    seal_items,
    secret_template,
)
from kstrata.crypto import MAX_PLAINTEXT_BYTES, PublicKey
from kstrata.crypto.bitnami import (
    CLUSTER_WIDE_ANNOTATION,
    NAMESPACE_WIDE_ANNOTATION,
    BitnamiKey,
    BitnamiScope,
    encryption_label,
    load_private_key,
    open_value,
)
from kstrata.crypto.context import check_item
from kstrata.domain.jsonvalue import DEFAULT_LIMITS, JSONObject, JSONValue, string_map
from kstrata.errors import (
    InputLimitError,
    InvalidInputError,
    KstrataError,
    SealingError,
    UsageError,
)
from kstrata.files import expand_files, read_bounded, write_atomically
from kstrata.wellknown import BITNAMI_API_VERSION, BITNAMI_SEALED_SECRET_KIND

__all__ = [
    "Imported",
    "import_bitnami",
    "import_sops",
    "load_bitnami_keys",
    "write_manifests",
]

#: Bitnami's own annotations (scope, managed, patch, skip-set-owner-references):
#: instructions to its controller, meaningless to kstrata's.
BITNAMI_ANNOTATION_PREFIX: Final = "sealedsecrets.bitnami.com/"
#: A backup of a few dozen 4096-bit keys stays far below this.
MAX_KEY_BACKUP_BYTES: Final = 4 * 1024 * 1024
_FORBIDDEN_TYPES: Final = ("kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token")


@dataclass(frozen=True)
class Imported:
    """One kstrata SealedSecret made from one imported object (ciphertext only)."""

    source: str
    name: str
    namespace: str | None
    scope: str
    items: tuple[str, ...]
    manifest: JSONObject = field(repr=False)
    #: Things the user should know (what was dropped); names and keys only.
    notes: tuple[str, ...] = ()

    @property
    def file_name(self) -> str:
        return f"{self.namespace}.{self.name}.yaml" if self.namespace else f"{self.name}.yaml"


# --- reading inputs ----------------------------------------------------------


def load_bitnami_keys(path: Path) -> list[BitnamiKey]:
    """The RSA private keys of a sealed-secrets controller's key backup.

    Accepts what Bitnami's docs tell users to save: the key Secrets as
    ``kubectl get secret -l sealedsecrets.bitnami.com/sealed-secrets-key -o
    yaml|json`` prints them (a ``List``, or one Secret; ``tls.key`` of each),
    or one PEM private key.  An entry that does not parse is an error naming
    the Secret, never its content.
    """
    source = str(path)
    data = read_bounded(path, MAX_KEY_BACKUP_BYTES, what="--bitnami-keys", stdin=False)
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            return [load_private_key(data)]
        except SealingError as error:
            raise InvalidInputError(f"--bitnami-keys {source}: {error.message}") from None
    from kstrata.domain.documents import load_documents, objects_of

    keys: dict[str, BitnamiKey] = {}
    for document in load_documents(data, source=source):
        for secret in objects_of(document, source):
            metadata = secret.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            where = f"--bitnami-keys {source}: Secret {name if isinstance(name, str) else '?'}"
            if secret.get("apiVersion") != "v1" or secret.get("kind") != "Secret":
                raise InvalidInputError(f"--bitnami-keys {source}: expected Secrets")
            entries = secret.get("data")
            encoded = entries.get("tls.key") if isinstance(entries, dict) else None
            if not isinstance(encoded, str):
                raise InvalidInputError(f"{where} has no data.tls.key (is it a sealing key?)")
            try:
                pem = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInputError(f"{where}: data.tls.key is not valid base64") from None
            try:
                key = load_private_key(pem)
            except SealingError as error:
                raise InvalidInputError(f"{where}: data.tls.key: {error.message}") from None
            keys.setdefault(key.key_id, key)
    if not keys:
        raise InvalidInputError(f"--bitnami-keys {source}: holds no key Secret")
    return list(keys.values())


# --- Bitnami SealedSecrets ---------------------------------------------------


def import_bitnami(
    paths: Sequence[Path],
    bitnami_keys: Sequence[BitnamiKey],
    keys: KeySource,
    *,
    namespace: str | None = None,
    context_namespace: Callable[[], str | None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Imported]:
    """Every Bitnami SealedSecret in ``paths``, opened and sealed again for kstrata.

    ``progress`` hears about each one (the CLI shows it on a terminal).

    ``namespace`` (``-n``) stands for ``metadata.namespace`` where a manifest
    has none (the namespace it is applied to is what its scope bound), then
    the kubeconfig context's.  Other objects in the files are skipped.
    """
    from kstrata.domain.documents import load_documents, objects_of

    found: list[tuple[str, JSONObject]] = []
    for path in expand_files(paths, recursive=True):
        source = "<stdin>" if str(path) == "-" else str(path)
        data = read_bounded(path, DEFAULT_LIMITS.max_bytes, what="-f", stdin=True)
        for document in load_documents(data, source=source):
            found += [
                (source, obj)
                for obj in objects_of(document, source)
                if obj.get("apiVersion") == BITNAMI_API_VERSION
                and obj.get("kind") == BITNAMI_SEALED_SECRET_KIND
            ]
    if not found:
        raise InvalidInputError(
            f"no Bitnami SealedSecret ({BITNAMI_API_VERSION}) found in the given files"
        )
    recipients = load_recipients(keys)
    default_namespace = namespace
    asked = False
    imported: list[Imported] = []
    failures: list[str] = []
    for number, (source, obj) in enumerate(found, 1):
        if progress is not None:
            progress(f"importing {number}/{len(found)}: {source}")
        metadata = obj.get("metadata")
        stated = metadata.get("namespace") if isinstance(metadata, dict) else None
        if default_namespace is None and not asked and not stated:
            asked = True
            default_namespace = context_namespace() if context_namespace else None
        try:
            imported.append(_import_one(source, obj, bitnami_keys, recipients, default_namespace))
        except SealingError as error:
            failures.append(error.message)
    if failures:
        imported.clear()
        shown = "; ".join(failures[:10])
        more = f" (and {len(failures) - 10} more)" if len(failures) > 10 else ""
        raise SealingError(
            f"{len(failures)} of {len(found)} SealedSecret(s) could not be imported, nothing "
            f"was printed: {shown}{more}",
            reason="ImportFailed",
        )
    return imported


def _identity(
    source: str, metadata: JSONObject, default_namespace: str | None
) -> tuple[str, str | None, str, BitnamiScope]:
    """Name, namespace, a message prefix and the Bitnami scope of one object."""
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{source}: a Bitnami SealedSecret has no metadata.name")
    stated = metadata.get("namespace")
    namespace = stated if isinstance(stated, str) and stated else default_namespace
    where = f"{source}: SealedSecret {namespace}/{name}" if namespace else f"{source}: {name}"
    annotations = string_map(metadata.get("annotations"), f"{where}: metadata.annotations")
    scope = BitnamiScope.from_annotations(annotations)
    check_binding(
        name,
        namespace,
        scope.kstrata_scope,
        prefix=f"{where}: ",
        no_namespace=f"{where} has no metadata.namespace ({scope} scope): give -n NAMESPACE",
    )
    return name, namespace, where, scope


def _open_items(
    tokens: Mapping[str, str], bitnami_keys: Sequence[BitnamiKey], label: bytes, where: str
) -> dict[str, bytes]:
    """Every item opened, or a ``SealingError`` naming the items that do not open."""
    values: dict[str, bytes] = {}
    failed: list[str] = []
    for item, token in sorted(tokens.items()):
        try:
            check_item(item)
        except SealingError:
            raise InvalidInputError(
                f"{where}: spec.encryptedData has a key that is not a valid Secret key"
            ) from None
        try:
            values[item], _ = open_value(token, bitnami_keys, label)
        except SealingError as error:
            failed.append(f"{item} ({error.reason})")
            continue
        if len(values[item]) > MAX_PLAINTEXT_BYTES:
            values.clear()
            raise InputLimitError(f"{where}: item {item} exceeds kstrata's sealing limit")
    if failed:
        values.clear()
        raise SealingError(
            f"{where}: {', '.join(failed)} do not open with the {len(bitnami_keys)} backup "
            "key(s) (another controller's keys, or the object was renamed or moved since it "
            "was sealed)",
            reason="ImportFailed",
        )
    return values


def _import_one(
    source: str,
    obj: JSONObject,
    bitnami_keys: Sequence[BitnamiKey],
    recipients: Sequence[PublicKey],
    default_namespace: str | None,
) -> Imported:
    metadata = obj.get("metadata")
    name, namespace, where, scope = _identity(
        source, metadata if isinstance(metadata, dict) else {}, default_namespace
    )
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise InvalidInputError(f"{where}: spec must be a mapping")
    if spec.get("data"):
        raise InvalidInputError(
            f"{where} uses the deprecated spec.data (one sealed Secret): re-seal it with a "
            "current kubeseal first (spec.encryptedData), then import"
        )
    tokens = string_map(spec.get("encryptedData"), f"{where}: spec.encryptedData")
    if not tokens:
        raise InvalidInputError(f"{where}: spec.encryptedData has no items")
    if len(tokens) > MAX_SEALED_ITEMS:
        raise InputLimitError(f"{where}: more than {MAX_SEALED_ITEMS} items")
    template, notes = _bitnami_template(spec.get("template"), where, sorted(tokens))
    binding = Binding(scope.kstrata_scope.value, namespace, name)
    values = _open_items(
        tokens, bitnami_keys, encryption_label(scope, namespace or "", name), where
    )
    try:
        sealed = seal_items(values, recipients, binding)
    finally:
        values.clear()
    manifest = new_manifest(binding, sealed, template)
    return Imported(
        source=source,
        name=name,
        namespace=namespace,
        scope=binding.scope,
        items=tuple(sorted(sealed)),
        manifest=manifest,
        notes=tuple(f"{where}: {note}" for note in notes),
    )


def _bitnami_template(
    value: JSONValue, where: str, item_keys: Sequence[str]
) -> tuple[JSONObject, list[str]]:
    """kstrata's ``spec.template`` from Bitnami's: type, labels, annotations, immutable, data."""
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: spec.template must be a mapping")
    template: JSONObject = {}
    data = value.get("data")
    if data:
        template["data"] = _template_data(data, where, item_keys)
    secret_type = value.get("type")
    if secret_type is not None:
        if not isinstance(secret_type, str) or not secret_type:
            raise InvalidInputError(f"{where}: spec.template.type must be a string")
        if secret_type in _FORBIDDEN_TYPES:
            raise InvalidInputError(
                f"{where}: Secrets of type {secret_type} cannot be sealed by kstrata"
            )
        template["type"] = secret_type
    labels, annotations, notes = _template_metadata(value.get("metadata"), where)
    if labels:
        template["labels"] = dict(labels)
    if annotations:
        template["annotations"] = dict(annotations)
    immutable = value.get("immutable")
    if immutable is not None:
        if not isinstance(immutable, bool):
            raise InvalidInputError(f"{where}: spec.template.immutable must be true or false")
        template["immutable"] = immutable
    return template, notes


def _template_data(data: JSONValue, where: str, item_keys: Sequence[str]) -> JSONObject:
    """Bitnami's templated data, when every template is one kstrata renders the same."""
    # kstrata's templates take the forms Bitnami users write ({{ .key }}, {{ index . "k" }});
    # Go template functions (sprig) have no kstrata counterpart: refused, never dropped.
    from kstrata.domain.secret_template import check_references, parse_template_data

    try:
        check_references(parse_template_data(data), item_keys)
    except InvalidInputError as error:
        raise InvalidInputError(
            f"{where}: its spec.template.data cannot be imported as kstrata templates "
            f"(functions, pipelines and conditionals have no counterpart): {error.message}"
        ) from None
    if not isinstance(data, dict):  # parse_template_data refused it already
        raise InvalidInputError(f"{where}: spec.template.data must be a mapping")
    return dict(sorted(data.items()))


def _template_metadata(
    value: JSONValue, where: str
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Labels and annotations of the template, without Bitnami's and kubectl's own."""
    metadata = value or {}
    if not isinstance(metadata, dict):
        raise InvalidInputError(f"{where}: spec.template.metadata must be a mapping")
    labels = string_map(metadata.get("labels"), f"{where}: spec.template.metadata.labels")
    annotations = string_map(
        metadata.get("annotations"), f"{where}: spec.template.metadata.annotations"
    )
    annotations.pop(LAST_APPLIED_ANNOTATION, None)
    dropped = sorted(k for k in annotations if k.startswith(BITNAMI_ANNOTATION_PREFIX))
    for key in dropped:
        del annotations[key]
    # kubeseal copies the scope annotations here too; spec.scope states the scope now.
    dropped = [k for k in dropped if k not in (CLUSTER_WIDE_ANNOTATION, NAMESPACE_WIDE_ANNOTATION)]
    notes = (
        [f"Bitnami's own annotation(s) {', '.join(dropped)} not carried over"] if dropped else []
    )
    return dict(sorted(labels.items())), dict(sorted(annotations.items())), notes


# --- SOPS --------------------------------------------------------------------

#: sops chooses its format by the file name; these it can print as JSON.
_SOPS_SUFFIXES: Final = (".yaml", ".yml", ".json", ".env")
#: The decrypted output of one file (a Secret is at most 1 MiB).
MAX_SOPS_OUTPUT_BYTES: Final = 4 * 1024 * 1024


@dataclass(frozen=True)
class SopsRequest:
    """``kstrata import -f FILE... --sops``: where the result lives and how to run sops."""

    paths: Sequence[Path]
    sops: str = "sops"
    #: The SealedSecret's name for files that are not Secret manifests (one file only).
    name: str | None = None
    namespace: str | None = None
    scope: str | None = None
    context_namespace: Callable[[], str | None] | None = field(default=None, repr=False)
    timeout: float = 60.0


def _run_sops(sops: str, path: Path, timeout: float) -> bytes:
    """``sops -d --output-type json FILE``: plaintext through a pipe, never a file.

    sops' standard error goes straight to ours: its messages are the user's
    own tool explaining itself (which key is missing), and kstrata never
    holds or repeats them.
    """
    try:
        completed = subprocess.run(  # noqa: S603 (the user's own sops, on their own file)
            [sops, "--decrypt", "--output-type", "json", "--", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise UsageError(
            f"sops not found ({sops}): install it or give --sops-binary PATH"
        ) from None
    except PermissionError:
        raise UsageError(f"sops is not executable ({sops})") from None
    except subprocess.TimeoutExpired:
        raise KstrataError(f"{path}: sops did not finish within {timeout:g} s") from None
    if completed.returncode != 0:
        raise InvalidInputError(
            f"{path}: sops -d failed (exit {completed.returncode}; its message is above)"
        )
    if len(completed.stdout) > MAX_SOPS_OUTPUT_BYTES:
        raise InputLimitError(f"{path}: the decrypted file exceeds {MAX_SOPS_OUTPUT_BYTES} bytes")
    return bytes(completed.stdout)


def _decode_json(output: bytes, path: Path) -> JSONValue:
    import json

    try:
        decoded: JSONValue = json.loads(output)
    except ValueError:
        # json's message quotes a piece of the document: not repeated.
        raise InvalidInputError(f"{path}: sops did not print a JSON document") from None
    return decoded


def _scalar_bytes(value: JSONValue) -> bytes | None:
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, int | float):
        return str(value).encode()
    return None


def _sops_items(
    document: JSONValue, path: Path
) -> tuple[dict[str, bytes], JSONObject, str | None, str | None]:
    """Values, template, namespace and name of one decrypted document."""
    if not isinstance(document, dict):
        raise InvalidInputError(f"{path}: expected a mapping (a Secret manifest or KEY: value)")
    values: dict[str, bytes] = {}
    if document.get("apiVersion") == "v1" and document.get("kind") == "Secret":
        metadata = document.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InvalidInputError(f"{path}: metadata must be a mapping")
        template = secret_template(document, metadata, str(path))
        # sops (YAML 1.2) reads an unquoted 0018 or true as a number or a boolean.
        values = secret_values(
            document,
            str(path),
            not_a_string="must be a string (sops read a number or a boolean there: "
            "quote the value in the file)",
        )
        namespace = metadata.get("namespace")
        name = metadata.get("name")
        return (
            values,
            template,
            namespace if isinstance(namespace, str) else None,
            name if isinstance(name, str) else None,
        )
    for key, value in document.items():
        _check_key(key, path, "the file")
        raw = _scalar_bytes(value)
        if raw is None:
            raise InvalidInputError(
                f"{path}: {key} is not a string or number (nested values cannot be a Secret item)"
            )
        values[key] = raw
    return values, {}, None, None


def _check_key(key: str, path: Path, where: str) -> None:
    try:
        check_item(key)
    except SealingError:
        # The key is not quoted: a key that is not a valid Secret key may be a value.
        raise InvalidInputError(
            f"{path}: {where} has a key that is not a valid Secret data key "
            "([-._a-zA-Z0-9]+, at most 253 characters)"
        ) from None


def import_sops(
    request: SopsRequest, keys: KeySource, *, progress: Callable[[str], None] | None = None
) -> list[Imported]:
    """Decrypt every file with ``sops -d`` and seal what it holds; all of them, or an error.

    ``progress`` hears about each file (the CLI shows it on a terminal).
    """
    report = progress or (lambda _message: None)
    files = expand_files(
        request.paths, recursive=True, suffixes=_SOPS_SUFFIXES, wanted=_is_sops_file
    )
    if request.name is not None and len(files) > 1:
        raise UsageError("--name names one SealedSecret: give one -f file with it")
    if any(str(p) == "-" for p in files):
        raise UsageError("--sops reads files, not standard input")
    recipients = load_recipients(keys)
    # Asked once, and only when a file states no namespace (as kubectl's context).
    context_namespace = asked_once(request.context_namespace) or _no_namespace
    imported: list[Imported] = []
    for number, path in enumerate(files, 1):
        report(f"importing {number}/{len(files)}: {path}")
        imported.append(_sops_one(path, request, recipients, context_namespace))
    return imported


def _no_namespace() -> str | None:
    return None


def _sops_one(
    path: Path,
    request: SopsRequest,
    recipients: Sequence[PublicKey],
    context_namespace: Callable[[], str | None],
) -> Imported:
    scope = request.scope or "strict"
    output = _run_sops(request.sops, path, request.timeout)
    values: dict[str, bytes] = {}
    try:
        values, template, stated_ns, stated_name = _sops_items(_decode_json(output, path), path)
        name = request.name or stated_name or _name_from(path)
        namespace = request.namespace or stated_ns
        if namespace is None and scope != "cluster":
            namespace = context_namespace()
        where = f"{path}: SealedSecret {name}"
        _check_sops_values(values, where)
        check_binding(
            name,
            namespace,
            scope,
            prefix=f"{where}: ",
            suffix=" (give --name/-n)",
            no_namespace=f"{where}: no namespace: give -n NAMESPACE",
        )
        binding = Binding(scope, namespace, name)
        sealed = seal_items(values, recipients, binding)
    finally:
        values.clear()
        del output
    return Imported(
        source=str(path),
        name=name,
        namespace=namespace,
        scope=scope,
        items=tuple(sorted(sealed)),
        manifest=new_manifest(binding, sealed, template),
    )


def _check_sops_values(values: Mapping[str, bytes], where: str) -> None:
    if not values:
        raise InvalidInputError(f"{where}: the file holds no items")
    if len(values) > MAX_SEALED_ITEMS:
        raise InputLimitError(f"{where}: more than {MAX_SEALED_ITEMS} items")
    for item, value in values.items():
        if len(value) > MAX_PLAINTEXT_BYTES:
            raise InputLimitError(f"{where}: item {item} exceeds kstrata's sealing limit")


def _is_sops_file(path: Path) -> bool:
    """In a directory: a file sops encrypted, never ``.sops.yaml`` (sops' own settings).

    Every SOPS file carries its metadata under the key ``sops`` (``sops_`` in
    dotenv), so a file without the word is a plain file beside them (a
    kustomization, a README in YAML) and is skipped, as other objects are by
    the Bitnami import.  A file named on the command line is always decrypted.
    """
    if path.name in (".sops.yaml", ".sops.yml"):
        return False
    try:
        return b"sops" in read_bounded(path, MAX_SOPS_OUTPUT_BYTES, what="-f")
    except InputLimitError:
        return True  # sops -d reports on it


def _name_from(path: Path) -> str:
    """``db.enc.yaml`` -> ``db``: the file's name up to its first dot."""
    return path.name.split(".", 1)[0]


# --- output ------------------------------------------------------------------


def write_manifests(imported: Sequence[Imported], directory: Path) -> list[Path]:
    """One file per SealedSecret in ``directory`` (ciphertext only), replaced atomically."""
    if not directory.is_dir():
        raise UsageError(f"--output-dir {directory} is not a directory")
    names: dict[str, Imported] = {}
    for item in imported:
        if item.file_name in names:
            raise InvalidInputError(
                f"{item.source} and {names[item.file_name].source} both hold "
                f"SealedSecret {item.file_name.removesuffix('.yaml')}"
            )
        names[item.file_name] = item
    written: list[Path] = []
    for file_name, item in names.items():
        target = directory / file_name
        # Ciphertext only: readable like any manifest kept in git.
        write_atomically(target, dump_manifest(item.manifest, "yaml"), mode=0o644)
        written.append(target)
    return written


def manifests_text(imported: Sequence[Imported], fmt: str) -> str:
    """YAML documents separated by ``---``, or one JSON ``List`` (one object: itself)."""
    if fmt == "json":
        body: JSONObject = (
            imported[0].manifest
            if len(imported) == 1
            else {"apiVersion": "v1", "kind": "List", "items": [i.manifest for i in imported]}
        )
        return dump_manifest(dict(body), "json")
    return "---\n".join(dump_manifest(item.manifest, "yaml") for item in imported)

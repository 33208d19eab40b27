"""What ``kstrata seal`` reads, and what the SealedSecret it seals is bound to.

Why a module of its own: the single seal (:mod:`kstrata.app.seal_commands`)
and the bulk seal of files, directories and streams
(:mod:`kstrata.app.seal_bulk`) read the same inputs and check them the same
way, before any key is fetched: ``--from-literal``/``--from-file`` items,
Secret manifests (one, or every document under the given paths),
``--template``/``--template-file`` entries, an existing SealedSecret to
merge into, and the scope, namespace and name that every source stating one
must agree on (:func:`coordinates`).

Everything read here is plaintext or may be: no message quotes a literal, a
file's content or anything that failed validation (it might be a value
pasted in the wrong place); messages name flags, positions, files, fields and
item keys that passed validation.  The document loader and the template
parser are imported lazily: the common ``--from-literal`` path needs neither.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kstrata.app.sealing_toolkit import (
    DEFAULT_SCOPE,
    MAX_SEALED_ITEMS,
    SCOPES,
    Binding,
    check_binding,
    object_field,
    optional_str,
    secret_template,
)
from kstrata.crypto import MAX_PLAINTEXT_BYTES
from kstrata.crypto.context import check_item
from kstrata.domain.environments import check_environment_name
from kstrata.domain.jsonvalue import DEFAULT_LIMITS, JSONObject
from kstrata.errors import InputLimitError, InvalidInputError, SealingError, UsageError
from kstrata.files import expand_files, read_bounded
from kstrata.wellknown import API_VERSION, SEALED_SECRET_KIND

__all__ = [
    "Items",
    "MergeTarget",
    "checked_key",
    "coordinates",
    "load_target",
    "read_items",
    "read_templates",
    "secret_documents",
    "secret_items",
]


# --- reading the plaintext -----------------------------------------------


@dataclass
class Items:
    """Plaintext by item key, plus what a Secret manifest said about itself."""

    values: dict[str, bytes]
    template: JSONObject = field(default_factory=dict)
    namespace: str | None = None
    name: str | None = None
    source: str | None = None


def read_items(*, literals: Sequence[str], files: Sequence[str], secret_file: Path | None) -> Items:
    """``--from-literal`` and ``--from-file`` items, or a Secret manifest's (``-f``)."""
    given_flags = bool(literals or files)
    if secret_file is not None and given_flags:
        raise UsageError("-f cannot be combined with --from-literal or --from-file")
    if secret_file is not None:
        return _read_secret_manifest(secret_file)
    if not given_flags:
        raise UsageError("nothing to seal: give --from-literal, --from-file or -f")
    if len(literals) + len(files) > MAX_SEALED_ITEMS:
        raise InputLimitError(f"at most {MAX_SEALED_ITEMS} items can be sealed at once")
    values: dict[str, bytes] = {}
    for index, text in enumerate(literals, 1):
        where = f"--from-literal #{index}"
        key, separator, value = text.partition("=")
        if not separator or not key:
            raise UsageError(f"{where}: expected KEY=VALUE")
        # os.fsencode restores arguments that were not valid UTF-8 byte for byte.
        _add(values, checked_key(key, where), os.fsencode(value), where)
    for index, text in enumerate(files, 1):
        where = f"--from-file #{index}"
        key, separator, path_text = text.partition("=")
        if not separator:
            # kubectl's short form: the file's name is the item key.
            key, path_text = Path(text).name, text
        if not key or not path_text:
            raise UsageError(f"{where}: expected [KEY=]PATH")
        key = checked_key(key, where)
        # The path is not echoed: in KEY=PATH, a value typed by mistake lands there.
        data = _read_bounded(
            Path(path_text), MAX_PLAINTEXT_BYTES, what=f"{where} (item {key})", show_path=False
        )
        _add(values, key, data, where)
    return Items(values)


def checked_key(key: str, where: str) -> str:
    try:
        check_item(key)
    except SealingError:
        raise InvalidInputError(
            f"{where}: the item key is not a valid Secret data key "
            "([-._a-zA-Z0-9]+, at most 253 characters, not '.' or '..*')"
        ) from None
    return key


def secret_values(
    secret: JSONObject, source: str, *, not_a_string: str = "must be a string"
) -> dict[str, bytes]:
    """The ``data`` (base64) and ``stringData`` items of one Secret manifest, decoded.

    ``source`` names the manifest in every message; ``not_a_string`` ends the
    message for a stringData value that is not text (the SOPS import says how
    sops came to read a number there).
    """
    values: dict[str, bytes] = {}
    for key, encoded in object_field(secret, "data", f"{source}: ").items():
        where = f"{source}: data"
        item = checked_key(key, where)
        if not isinstance(encoded, str):
            raise InvalidInputError(f"{where}.{item} must be a base64 string")
        try:
            values[item] = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError(f"{where}.{item} is not valid base64") from None
    # As on the API server: a stringData item replaces a data item of the same key.
    for key, text in object_field(secret, "stringData", f"{source}: ").items():
        where = f"{source}: stringData"
        item = checked_key(key, where)
        if not isinstance(text, str):
            raise InvalidInputError(f"{where}.{item} {not_a_string}")
        values[item] = text.encode("utf-8", "surrogatepass")
    return values


def asked_once(
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


def _add(values: dict[str, bytes], key: str, value: bytes, where: str) -> None:
    if key in values:
        raise InvalidInputError(f"{where}: item {key} is given twice")
    if len(value) > MAX_PLAINTEXT_BYTES:
        raise InputLimitError(
            f"{where}: the value of item {key} exceeds the sealing limit of "
            f"{MAX_PLAINTEXT_BYTES} bytes"
        )
    values[key] = value


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


def _read_secret_manifest(path: Path) -> Items:
    """Items and template of a Kubernetes Secret manifest; identity metadata is dropped."""
    source = "<stdin>" if str(path) == "-" else str(path)
    return secret_items(_only_document(path, "-f"), source)


def secret_items(secret: JSONObject, source: str) -> Items:
    """Items and template of one Secret document; ``source`` names it in every message."""
    if secret.get("apiVersion") != "v1" or secret.get("kind") != "Secret":
        raise InvalidInputError(f"{source}: expected a Secret (apiVersion v1, kind Secret)")
    metadata = object_field(secret, "metadata", f"{source}: ")
    template = secret_template(secret, metadata, source)
    values = secret_values(secret, source)
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
    return Items(
        values,
        template,
        namespace=optional_str(metadata, "namespace", f"{source}: metadata."),
        name=optional_str(metadata, "name", f"{source}: metadata."),
        source=source,
    )


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


# --- templates -----------------------------------------------------------


def read_templates(templates: Sequence[str], template_files: Sequence[str]) -> dict[str, str]:
    """``--template`` and ``--template-file`` entries, each parsed by the operator's parser.

    A template is public text (it is kept in clear in the spec), yet a file's
    path is not echoed, as for ``--from-file``.
    """
    from kstrata.domain.secret_template import MAX_TEMPLATE_CHARS, MAX_TEMPLATES, parse_template

    given = [("--template", text) for text in templates]
    given += [("--template-file", text) for text in template_files]
    if len(given) > MAX_TEMPLATES:
        raise InputLimitError(f"at most {MAX_TEMPLATES} templates can be given")
    parsed: dict[str, str] = {}
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
        if key in parsed:
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
        parsed[key] = rest
    return parsed


# --- the merge target and the coordinates --------------------------------


@dataclass(frozen=True)
class MergeTarget:
    """An existing SealedSecret file to merge into."""

    path: Path
    manifest: JSONObject
    namespace: str | None
    name: str | None
    scope: str


def load_target(path: Path) -> MergeTarget:
    """An existing SealedSecret file: checked before anything is sealed into it."""
    manifest = _only_document(path, "--merge-into")
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != SEALED_SECRET_KIND:
        raise InvalidInputError(f"{path}: expected a {SEALED_SECRET_KIND} ({API_VERSION})")
    metadata = object_field(manifest, "metadata", f"{path}: ")
    spec = object_field(manifest, "spec", f"{path}: ")
    scope = optional_str(spec, "scope", f"{path}: spec.") or DEFAULT_SCOPE
    if scope not in SCOPES:
        raise InvalidInputError(f"{path}: spec.scope must be one of {', '.join(SCOPES)}")
    object_field(spec, "encryptedData", f"{path}: spec.")
    for environment, overlay in object_field(spec, "environments", f"{path}: spec.").items():
        where = f"{path}: spec.environments"
        check_environment_name(environment, where=where)
        if not isinstance(overlay, dict):
            raise InvalidInputError(f"{where}.{environment} must be a mapping")
        object_field(overlay, "encryptedData", f"{where}.{environment}.")
    object_field(spec, "template", f"{path}: spec.")
    return MergeTarget(
        path=path,
        manifest=manifest,
        namespace=optional_str(metadata, "namespace", f"{path}: metadata."),
        name=optional_str(metadata, "name", f"{path}: metadata."),
        scope=scope,
    )


def _agree(what: str, stated: Sequence[tuple[str, str | None]]) -> str | None:
    given = [(source, value) for source, value in stated if value is not None]
    if len({value for _, value in given}) > 1:
        # The values are names, but one may be mistyped text: name the sources only.
        sources = " and ".join(source for source, _ in given)
        raise InvalidInputError(f"the {what} differs between {sources}")
    return given[0][1] if given else None


def coordinates(
    items: Items,
    target: MergeTarget | None,
    *,
    scope: str | None,
    namespace: str | None,
    name: str | None,
    context_namespace: Callable[[], str | None] | None,
) -> Binding:
    """Scope, namespace and name: from the flags, the Secret and the merge target, agreeing."""
    in_secret = items.source or "-f"
    in_target = "" if target is None else str(target.path)
    scope = _agree(
        "scope",
        [
            ("--scope", scope),
            (f"spec.scope of {in_target}", None if target is None else target.scope),
        ],
    )
    scope = scope or DEFAULT_SCOPE
    if scope not in SCOPES:
        raise UsageError(f"--scope must be one of {', '.join(SCOPES)}")
    namespace = _agree(
        "namespace",
        [
            ("--namespace", namespace),
            (f"metadata.namespace of {in_secret}", items.namespace),
            (f"metadata.namespace of {in_target}", None if target is None else target.namespace),
        ],
    )
    name = _agree(
        "name",
        [
            ("--name", name),
            (f"metadata.name of {in_secret}", items.name),
            (f"metadata.name of {in_target}", None if target is None else target.name),
        ],
    )
    if name is None:
        raise UsageError("--name is required")
    if namespace is None and scope != "cluster" and context_namespace is not None:
        # Nothing stated one: the kubeconfig context's, as kubectl and every other command.
        namespace = context_namespace()
    check_binding(
        name,
        namespace,
        scope,
        prefix="the SealedSecret's ",
        no_namespace=f"--namespace is required for {scope} scope",
    )
    return Binding(scope, namespace, name)

"""Break-glass recovery: open SealedSecrets offline with a backup of the private keys.

Why a module of its own: this is the one path where plaintext leaves kstrata
on purpose, outside the operator.  It exists for the day the cluster (and its
key Secret) is gone and the values must be recovered from the manifests in
Git and the key backup made by ``kstrata keys backup``.  Everything here is
offline: no cluster, no kopf, no Kubernetes client (a test checks
``sys.modules``), so it runs on an isolated machine.

The rules that shape it:

* the key backup is written once, 0600, atomically, never over an existing
  file and never to standard output or a terminal (:func:`write_new_private_file`);
* opening checks every item of every SealedSecret first, and by default
  prints only which items open with which key (:class:`Recovered`'s summary),
  never a value; the CLI prints Secret manifests only when
  ``--i-know-this-prints-secrets`` is given;
* no message quotes a token, a key entry or a value: only file names,
  object names, item keys, key ids and error classes.

Boundary: key parsing, contexts and opening come from :mod:`kstrata.crypto`;
documents from :mod:`kstrata.domain.documents`.  The cluster side of the
backup (reading the key Secret) is :func:`kstrata.app.sealing_keys.key_backup`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kstrata.crypto import KeyPair, KeyRing, Scope, SealingContext
from kstrata.domain.environments import check_environment_name
from kstrata.domain.jsonvalue import JSONObject, JSONValue, string_map
from kstrata.errors import (
    InputLimitError,
    InvalidInputError,
    SealingError,
    UsageError,
)
from kstrata.files import expand_files, read_bounded, write_atomically
from kstrata.payloads import ObjectMeta, Secret
from kstrata.wellknown import API_VERSION, GROUP, SEALED_SECRET_KIND, SEALED_SECRET_SINGULAR

__all__ = [
    "BACKUP_WARNING",
    "PRINT_SECRETS_FLAG",
    "Recovered",
    "check_private_target",
    "load_recovery_keys",
    "recover",
    "write_new_private_file",
]

#: The flag without which ``kstrata unseal`` never prints a value.
PRINT_SECRETS_FLAG: Final = "--i-know-this-prints-secrets"
#: The key Secret entry holding the fingerprint key (not a sealing key pair).
FINGERPRINT_ENTRY: Final = "fingerprint-key.json"
#: A key backup is a few KiB per key; 64 hybrid keys stay far below this.
MAX_BACKUP_BYTES: Final = 4 * 1024 * 1024

BACKUP_WARNING: Final = """\
WARNING: {path} holds the PRIVATE sealing keys of the kstrata operator ({keys} key(s)).
Anyone who has this file can open every SealedSecret sealed to these keys,
including every copy in Git history.  Keep it offline and encrypted (a password
manager or a hardware-backed vault), never commit it, and delete working copies.
It is the break-glass path: see docs/operations.md, "Break-glass recovery"."""


# --- the key backup file ------------------------------------------------------


def check_private_target(path: Path) -> None:
    """Refuse, before any key is read, a target ``write_new_private_file`` would refuse."""
    if str(path) == "-":
        raise UsageError("refusing to write private keys to standard output: give -o FILE")
    if path.is_dir():
        raise UsageError(
            f"{path} is a directory: give the new backup file's name "
            f"(for example -o {path / 'kstrata-keys-backup.yaml'})"
        )
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise UsageError(
                f"{path} is not a regular file (a terminal, device or pipe?): refusing to "
                "write private keys there"
            )
        raise UsageError(f"{path} exists: a key backup is never overwritten; choose a new name")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: its directory does not exist")


def write_new_private_file(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 holding ``text``, atomically, never replacing anything.

    The content is written to a 0600 temporary file beside it, synced, and
    then hard-linked into place: ``link`` fails if the name exists, so an
    earlier backup is never overwritten and no reader ever sees half a file.
    Standard output and anything that is not a regular file (a terminal, a
    device, a pipe) are refused: private keys must not scroll past on a screen
    or land in a CI log.
    """
    check_private_target(path)
    try:
        write_atomically(path, text, exclusive=True)
    except FileExistsError:
        raise UsageError(
            f"{path} exists: a key backup is never overwritten; choose a new name"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def load_recovery_keys(path: Path) -> KeyRing:
    """The sealing key pairs in a key backup (``kstrata keys backup`` output).

    Also accepts the key Secret as ``kubectl get secret -o yaml|json`` prints
    it, or a ``List`` of such Secrets.  The fingerprint key entry is skipped;
    an entry that does not parse is an error naming the entry, never its content.
    """
    from kstrata.domain.documents import load_documents

    source = str(path)
    data = read_bounded(path, MAX_BACKUP_BYTES, what="--recovery-keys", stdin=False)
    pairs: list[KeyPair] = []
    for document in load_documents(data, source=source):
        for secret in _secrets_in(document, source):
            pairs += _key_pairs(secret, source)
    if not pairs:
        raise InvalidInputError(f"{source}: holds no sealing key pair (is it a key backup?)")
    unique: dict[str, KeyPair] = {}
    for pair in pairs:
        unique.setdefault(pair.key_id, pair)
    return KeyRing(unique.values())


def _secrets_in(document: JSONValue, source: str) -> list[JSONObject]:
    from kstrata.domain.documents import objects_of

    secrets = objects_of(document, source, expected="Secret manifests")
    for secret in secrets:
        if secret.get("apiVersion") != "v1" or secret.get("kind") != "Secret":
            raise InvalidInputError(
                f"{source}: expected a Secret (apiVersion v1, kind Secret): --recovery-keys "
                "takes the file 'kstrata keys backup -o FILE' wrote"
            )
    return secrets


def _key_pairs(secret: JSONObject, source: str) -> list[KeyPair]:
    data = secret.get("data") or {}
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source}: data must be a mapping")
    pairs = []
    for name, encoded in sorted(data.items()):
        if name == FINGERPRINT_ENTRY:
            continue
        try:
            raw = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except (binascii.Error, ValueError):
            raw = None
        if raw is None:
            raise InvalidInputError(f"{source}: entry {name} is not valid base64")
        try:
            pairs.append(KeyPair.from_secret_entry(raw))
        except (SealingError, InputLimitError):
            raise InvalidInputError(f"{source}: entry {name} is not a sealing key pair") from None
    return pairs


# --- opening SealedSecrets offline -------------------------------------------


@dataclass(frozen=True)
class Recovered:
    """One SealedSecret opened: its Secret manifest (plaintext inside!) and public facts."""

    name: str
    namespace: str | None
    environment: str | None
    #: item key -> the key id that opened it (public).
    key_ids: Mapping[str, str]
    #: The Secret manifest, values base64-encoded.  Holds plaintext: print only on request.
    secret: Secret = field(repr=False)

    def summary(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        env = f", environment {self.environment}" if self.environment else ""
        keys = ", ".join(sorted(set(self.key_ids.values())))
        return (
            f"{SEALED_SECRET_SINGULAR}.{GROUP}/{where}{env}: {len(self.key_ids)} item(s) open "
            f"({', '.join(self.key_ids)}) with recovery key(s) {keys}"
        )


def recover(
    paths: Sequence[Path],
    ring: KeyRing,
    *,
    environment: str | None = None,
    namespace: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Recovered]:
    """Open every item of every SealedSecret in ``paths``; all of them, or an error.

    ``namespace`` fills in a manifest without ``metadata.namespace`` (the
    namespace it was applied to decides where strict and namespace scopes
    bind).  The environment's overlay is used when ``environment`` (else
    ``spec.environment``) names one; a SealedSecret with environments and no
    choice is a usage error, not a guess.  ``progress`` hears about each file
    (the CLI shows it on a terminal).
    """
    if environment is not None:
        environment = check_environment_name(environment, where="--env")
    from kstrata.domain.documents import load_documents
    from kstrata.domain.jsonvalue import DEFAULT_LIMITS

    recovered: list[Recovered] = []
    files = expand_files(paths)
    for number, path in enumerate(files, 1):
        source = "<stdin>" if str(path) == "-" else str(path)
        if progress is not None:
            progress(f"opening {number}/{len(files)}: {source}")
        data = read_bounded(path, DEFAULT_LIMITS.max_bytes, what="-f", stdin=True)
        for document in load_documents(data, source=source):
            for sealed in _sealed_secrets_in(document, source):
                recovered.append(_recover_one(sealed, ring, source, environment, namespace))
    if not recovered:
        raise InvalidInputError("no SealedSecret found in the given files")
    return recovered


def _sealed_secrets_in(document: JSONValue, source: str) -> list[JSONObject]:
    from kstrata.domain.documents import objects_of

    # Other objects in a kustomization's files are skipped.
    return [
        obj
        for obj in objects_of(document, source, expected="SealedSecret manifests")
        if obj.get("apiVersion") == API_VERSION and obj.get("kind") == SEALED_SECRET_KIND
    ]


def _tokens(
    spec: JSONObject, environment: str | None, where: str
) -> tuple[dict[str, str], str | None]:
    """The items in effect: base, with the chosen environment's overlay on top."""
    tokens = string_map(spec.get("encryptedData"), f"{where}: spec.encryptedData")
    environments = spec.get("environments") or {}
    if not isinstance(environments, dict):
        raise InvalidInputError(f"{where}: spec.environments must be a mapping")
    chosen = environment or spec.get("environment")
    if chosen is None and environments:
        raise UsageError(
            f"{where} has environments ({', '.join(sorted(environments))}): choose one with --env"
        )
    if chosen is None or chosen not in environments:
        if environment is not None and environments:
            # The name typed is not quoted: a value pasted in the wrong place may be anywhere.
            raise UsageError(
                f"{where} has no such environment as --env names "
                f"(it has {', '.join(sorted(environments))})"
            )
        # As the operator: an environment without an overlay gets the base items.
        return tokens, None
    if not isinstance(chosen, str):
        raise InvalidInputError(f"{where}: spec.environment must be a string")
    overlay = environments.get(chosen) or {}
    if not isinstance(overlay, dict):
        raise InvalidInputError(f"{where}: spec.environments.{chosen} must be a mapping")
    tokens.update(string_map(overlay.get("encryptedData"), f"{where}: spec.environments.{chosen}"))
    return tokens, chosen


def _recover_one(
    sealed: JSONObject,
    ring: KeyRing,
    source: str,
    environment: str | None,
    default_namespace: str | None,
) -> Recovered:
    found = sealed.get("metadata")
    metadata = found if isinstance(found, dict) else {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{source}: a SealedSecret has no metadata.name")
    namespace = metadata.get("namespace") or default_namespace
    where = f"{source}: SealedSecret {name}"
    spec = sealed.get("spec")
    if not isinstance(spec, dict):
        raise InvalidInputError(f"{where}: spec must be a mapping")
    scope_name = spec.get("scope") or Scope.STRICT.value
    try:
        # Not a string: the same refusal as an unknown name (Scope("") raises).
        scope = Scope(scope_name if isinstance(scope_name, str) else "")
    except ValueError:
        raise InvalidInputError(
            f"{where}: spec.scope must be strict, namespace or cluster"
        ) from None
    if scope is not Scope.CLUSTER and not isinstance(namespace, str):
        raise UsageError(f"{where} has no metadata.namespace: give -n NAMESPACE")
    tokens, chosen = _tokens(spec, environment, where)
    if not tokens:
        raise InvalidInputError(f"{where}: no encryptedData items")
    values: dict[str, bytes] = {}
    key_ids: dict[str, str] = {}
    failures: list[str] = []
    for item, token in sorted(tokens.items()):
        try:
            context = SealingContext.bind(
                scope,
                item=item,
                namespace=namespace if isinstance(namespace, str) else None,
                name=name,
            )
            values[item] = ring.open(token, context)
            key_ids[item] = ring.key_id_for(token)
        except SealingError as error:
            # Item key and error class only: never the token, never a value.
            failures.append(f"{item} ({error.reason}: {error.message})")
    if failures:
        values.clear()
        raise SealingError(
            f"{where}: {len(failures)} of {len(tokens)} item(s) do not open with the recovery "
            f"keys, nothing was printed: {'; '.join(failures)}",
            reason="RecoveryFailed",
        )
    return Recovered(
        name=name,
        namespace=namespace if isinstance(namespace, str) else None,
        environment=chosen,
        key_ids=key_ids,
        secret=_secret_manifest(
            spec, name, namespace if isinstance(namespace, str) else None, values, where
        ),
    )


def _secret_manifest(
    spec: JSONObject,
    name: str,
    namespace: str | None,
    values: Mapping[str, bytes],
    where: str,
) -> Secret:
    template = spec.get("template") or {}
    if not isinstance(template, dict):
        raise InvalidInputError(f"{where}: spec.template must be a mapping")
    metadata: ObjectMeta = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    labels = string_map(template.get("labels"), f"{where}: spec.template.labels")
    annotations = string_map(template.get("annotations"), f"{where}: spec.template.annotations")
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    secret_type = template.get("type") or "Opaque"
    if not isinstance(secret_type, str):
        raise InvalidInputError(f"{where}: spec.template.type must be a string")
    secret: Secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": secret_type,
        "data": {k: base64.b64encode(v).decode("ascii") for k, v in values.items()},
    }
    if template.get("immutable") is True:
        secret["immutable"] = True
    return secret

"""``kstrata reseal``: the operator seals SealedSecret items again, to a newer or another key.

Why a module of its own: resealing is the one use case that needs the
private keys (to open) but must not let the plaintext out of the operator.
The CLI collects the items of SealedSecret manifests (files, directories,
``---`` streams), sends them, as ciphertext, to the operator's reseal
endpoint through the API server's service proxy (so Kubernetes RBAC decides
who may ask), and writes back only what changed: each old token string is
replaced by its new one in the file's text, so comments, key order and
formatting survive and ``git diff`` shows tokens only.

Two halves, one module, so the wire format has one home:

* the operator's half, :func:`reseal_batch`: parse a request, open every item
  with the operator's key ring under the item's own context (scope,
  namespace, name, item key: the authenticated context stays what it was) and
  seal it again to the target key.  Items already sealed to the target key
  come back byte-identical (a second run changes nothing).  All or nothing:
  one item that does not open fails the batch, and the answer names items
  by their index and error class, never a value or a token;
* the CLI's half, :func:`collect`, :func:`reseal_files` and
  :func:`rewritten`: read and locate the items, send them in bounded
  batches, and rewrite texts only after every batch succeeded.

The target is the operator's newest key, or the newest key of a public
bundle (``--cert``) that the platform team registered in the operator's
settings (``reseal_recipients``, key ids): resealing to an arbitrary bundle
would let any caller learn any value by resealing it to a key they own.

Multi-recipient (``kss2:``) tokens are refused, naming their key ids: the
operator holds the public keys of neither the other recipients nor a way to
tell which of them should stay, and dropping them silently would break the
other clusters.  Seal such values again with ``kstrata seal --cert ...``.

Boundary: tokens, contexts and bundles from :mod:`kstrata.crypto`; documents
from :mod:`kstrata.domain.documents`; the service proxy call is
:meth:`kstrata.kube.api.KubeApi.service_proxy_post` (imported lazily: the
module is loaded by the operator and by the CLI, neither pays for the other).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from kstrata.crypto import (
    MAX_TOKEN_CHARS,
    KeyRing,
    PublicKey,
    PublicKeyBundle,
    Scope,
    SealingContext,
    parse_token,
    seal,
)
from kstrata.crypto.keys import MAX_BUNDLE_BYTES
from kstrata.domain import budget
from kstrata.errors import (
    ClusterError,
    ForbiddenError,
    InputLimitError,
    InvalidInputError,
    KstrataError,
    SealingError,
    UsageError,
)
from kstrata.files import expand_files, read_bounded, write_atomically
from kstrata.wellknown import API_VERSION, SEALED_SECRET_KIND

if TYPE_CHECKING:
    from kstrata.kube.api import KubeApi

__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_REQUEST_ITEMS",
    "RESEAL_PATH",
    "RESEAL_SERVICE",
    "RESEAL_SERVICE_PORT",
    "Batch",
    "Item",
    "SourceFile",
    "collect",
    "proxy_sender",
    "reseal_batch",
    "reseal_files",
    "resealed_manifests",
    "rewritten",
    "write_in_place",
    "write_to_directory",
]

#: The Service in the operator's namespace that fronts the reseal endpoint,
#: and the path the endpoint serves.  RBAC names the proxy target
#: ``https:kstrata-reseal:443`` (the ``kstrata-resealer`` Role).
RESEAL_SERVICE: Final = "kstrata-reseal"
RESEAL_SERVICE_PORT: Final = 443
RESEAL_PATH: Final = "/reseal/v1"
#: Bounds of one request, checked by the endpoint before parsing; the CLI
#: splits larger work into batches under them.  2,000 items of typical size
#: (a 1 KiB value is a 1.5 KiB token) are ~3 MiB and well under a second.
MAX_REQUEST_BYTES: Final = 16 * 1024 * 1024
MAX_REQUEST_ITEMS: Final = 2000
#: What one request may take (the API server's proxy gives up after 60 s).
REQUEST_SECONDS: Final = 30.0


# --- the operator's half -----------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """What the endpoint answers: new tokens, or per-item failures (then no tokens)."""

    key_id: str
    tokens: tuple[str, ...] = ()
    changed: int = 0
    #: (index, reason, message) per item that failed; messages hold no values.
    failures: tuple[tuple[int, str, str], ...] = ()

    def as_data(self) -> dict[str, object]:
        if self.failures:
            return {
                "reason": "ResealFailed",
                "message": f"{len(self.failures)} item(s) cannot be resealed; nothing changed",
                "keyId": self.key_id,
                "failures": [{"index": i, "reason": r, "message": m} for i, r, m in self.failures],
            }
        return {"keyId": self.key_id, "changed": self.changed, "tokens": list(self.tokens)}


def _target_key(recipient: object, ring: KeyRing, registered: Collection[str]) -> PublicKey:
    """The key to seal to: this cluster's newest, or a registered bundle's newest."""
    if recipient is None:
        return ring.public_bundle().newest if len(ring) else _no_keys()
    if not isinstance(recipient, str) or len(recipient) > MAX_BUNDLE_BYTES:
        raise InvalidInputError("recipient must be a public key bundle (kstrata keys export)")
    newest = PublicKeyBundle.parse(recipient).newest
    if newest.key_id in ring or newest.key_id in registered:
        return newest
    raise ForbiddenError(
        f"the --cert bundle's newest key {newest.key_id} is not registered for resealing: "
        "the platform team lists the key ids of other clusters this one may reseal to in "
        "the operator's reseal_recipients setting (docs/operations.md, 'Resealing')"
    )


def _no_keys() -> PublicKey:
    raise SealingError("the operator holds no sealing key yet", reason="SealingKeyMissing")


def _request_items(body: bytes) -> tuple[object, list[dict[str, object]]]:
    if len(body) > MAX_REQUEST_BYTES:
        raise InputLimitError(f"a reseal request is at most {MAX_REQUEST_BYTES} bytes")
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInputError("a reseal request is a JSON object") from None
    if not isinstance(request, dict) or not isinstance(request.get("items"), list):
        raise InvalidInputError("a reseal request is a JSON object with an items list")
    items = request["items"]
    if len(items) > MAX_REQUEST_ITEMS:
        raise InputLimitError(f"a reseal request holds at most {MAX_REQUEST_ITEMS} items")
    if not all(isinstance(item, dict) for item in items):
        raise InvalidInputError("each reseal item is a JSON object")
    return request.get("recipient"), items


def _context(item: dict[str, object]) -> tuple[SealingContext, str]:
    token = item.get("token")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise InvalidInputError("token must be a string of a token's size")
    scope_name = item.get("scope") or Scope.STRICT.value
    try:
        # Not a string: the same refusal as an unknown name (Scope("") raises).
        scope = Scope(scope_name if isinstance(scope_name, str) else "")
    except ValueError:
        raise InvalidInputError("scope must be strict, namespace or cluster") from None
    namespace, name, key = (_optional_str(item.get(k)) for k in ("namespace", "name", "item"))
    context = SealingContext.bind(scope, item=key or "", namespace=namespace, name=name)
    return context, token


def _optional_str(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidInputError("namespace, name and item are strings")


def reseal_batch(body: bytes, ring: KeyRing, registered: Collection[str] = ()) -> Batch:
    """Open every item of a request with ``ring`` and seal it to the target key.

    Raises ``InvalidInputError`` (``InputLimitError``) for a malformed (too
    large) request and ``ForbiddenError`` for an unregistered ``--cert``;
    item failures come back in :attr:`Batch.failures`, all of them, and then
    no token at all.  Runs under a time budget (``BudgetExceededError``).
    """
    recipient, items = _request_items(body)
    target = _target_key(recipient, ring, registered)
    tokens: list[str] = []
    failures: list[tuple[int, str, str]] = []
    changed = 0
    with budget.time_budget(REQUEST_SECONDS, "reseal request"):
        for index, item in enumerate(items):
            budget.check()
            try:
                token, fresh = _reseal_one(item, ring, target)
            except (SealingError, InvalidInputError) as error:
                # The error's class and message only: they never quote a token or a value.
                failures.append((index, error.reason, error.message))
                continue
            tokens.append(token)
            changed += fresh
    if failures:
        return Batch(key_id=target.key_id, failures=tuple(failures))
    return Batch(key_id=target.key_id, tokens=tuple(tokens), changed=changed)


def _reseal_one(item: dict[str, object], ring: KeyRing, target: PublicKey) -> tuple[str, bool]:
    context, token = _context(item)
    header = parse_token(token)
    if len(header.key_ids) > 1:
        raise SealingError(
            f"sealed to {len(header.key_ids)} recipients (key ids {', '.join(header.key_ids)}): "
            "reseal keeps one recipient and would cut the others off; seal it again with "
            "kstrata seal --cert BUNDLE --cert BUNDLE",
            reason="MultiRecipientToken",
        )
    if header.key_ids[0] == target.key_id:
        if target.key_id in ring:
            ring.open(token, context)  # proves the item opens where it is (scope kept)
        return token, False
    plaintext = ring.open(token, context)
    try:
        return seal(plaintext, target, context), True
    finally:
        del plaintext


# --- the CLI's half ------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One sealed item of a manifest, and where it is (for messages and rewriting)."""

    where: str  # "FILE, document N, SealedSecret NAME, spec.encryptedData.KEY"
    scope: str
    namespace: str | None
    name: str
    item: str
    token: str

    def wire(self) -> dict[str, str | None]:
        bound_name = self.name if self.scope == Scope.STRICT.value else None
        bound_ns = self.namespace if self.scope != Scope.CLUSTER.value else None
        return {
            "scope": self.scope,
            "namespace": bound_ns,
            "name": bound_name,
            "item": self.item,
            "token": self.token,
        }


@dataclass
class SourceFile:
    """A file (or standard input) and the items in it."""

    path: Path
    source: str
    text: str
    items: list[Item] = field(default_factory=list)
    #: old token -> new token, filled by :func:`reseal_files`.
    replacements: dict[str, str] = field(default_factory=dict)


def collect(paths: Sequence[Path], default_namespace: str | None = None) -> list[SourceFile]:
    """Every SealedSecret item in ``paths`` (files, directories, ``-``), by file.

    Other objects in the files are left alone.  A SealedSecret without
    ``metadata.namespace`` takes ``default_namespace`` (where it is applied
    decides where strict and namespace scopes bind).
    """
    from kstrata.domain.documents import load_documents
    from kstrata.domain.jsonvalue import DEFAULT_LIMITS

    files: list[SourceFile] = []
    for path in expand_files(paths, recursive=True):
        source = "<stdin>" if str(path) == "-" else str(path)
        data = read_bounded(path, DEFAULT_LIMITS.max_bytes, what="-f", stdin=True)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(f"{source}: not UTF-8 text") from None
        found = SourceFile(path=path, source=source, text=text)
        for number, document in enumerate(load_documents(data, source=source), 1):
            for sealed in _sealed_secrets(document):
                found.items += _items(sealed, f"{source}, document {number}", default_namespace)
        files.append(found)
    if not any(f.items for f in files):
        raise InvalidInputError("no SealedSecret item found in the given files")
    return files


def _sealed_secrets(document: object) -> list[dict[str, object]]:
    if not isinstance(document, dict):
        return []
    if document.get("kind") == "List" and isinstance(document.get("items"), list):
        return [s for item in document["items"] for s in _sealed_secrets(item)]
    if document.get("apiVersion") == API_VERSION and document.get("kind") == SEALED_SECRET_KIND:
        return [document]
    return []


def _items(sealed: dict[str, object], where: str, default_namespace: str | None) -> list[Item]:
    found_metadata = sealed.get("metadata")
    metadata: dict[str, object] = found_metadata if isinstance(found_metadata, dict) else {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where}: a SealedSecret has no metadata.name")
    where = f"{where}, SealedSecret {name}"
    namespace = metadata.get("namespace") or default_namespace
    spec = sealed.get("spec")
    if not isinstance(spec, dict):
        raise InvalidInputError(f"{where}: spec must be a mapping")
    scope = spec.get("scope") or Scope.STRICT.value
    if scope not in {s.value for s in Scope}:
        raise InvalidInputError(f"{where}: spec.scope must be strict, namespace or cluster")
    if scope != Scope.CLUSTER.value and not isinstance(namespace, str):
        raise UsageError(f"{where} has no metadata.namespace: give -n NAMESPACE")
    maps = [("spec.encryptedData", spec.get("encryptedData"))]
    environments = spec.get("environments") or {}
    if not isinstance(environments, dict):
        raise InvalidInputError(f"{where}: spec.environments must be a mapping")
    for env, overlay in sorted(environments.items()):
        data = overlay.get("encryptedData") if isinstance(overlay, dict) else None
        maps.append((f"spec.environments.{env}.encryptedData", data))
    found: list[Item] = []
    for path, tokens in maps:
        if tokens is None:
            continue
        if not isinstance(tokens, dict):
            raise InvalidInputError(f"{where}: {path} must map item keys to tokens")
        for key, token in tokens.items():
            if not isinstance(key, str) or not isinstance(token, str):
                raise InvalidInputError(f"{where}: {path} must map item keys to tokens")
            found.append(
                Item(
                    where=f"{where}, {path}.{key}",
                    scope=scope,
                    namespace=namespace if isinstance(namespace, str) else None,
                    name=name,
                    item=key,
                    token=token,
                )
            )
    return found


#: POSTs one request to the endpoint; answers its JSON object.
Send = Callable[[Mapping[str, object]], Mapping[str, object]]


def _batches(items: Sequence[Item]) -> list[list[Item]]:
    """Items in requests under the endpoint's bounds (with room for JSON's overhead)."""
    batches: list[list[Item]] = [[]]
    size = 0
    for item in items:
        cost = len(item.token) + len(item.name) + len(item.item) + 200
        if batches[-1] and (
            len(batches[-1]) >= MAX_REQUEST_ITEMS or size + cost > MAX_REQUEST_BYTES // 2
        ):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += cost
    return batches


def reseal_files(files: Sequence[SourceFile], send: Send, recipient: str | None = None) -> str:
    """Reseal every item of ``files`` through ``send``; fill each file's replacements.

    All or nothing: a failed batch raises before any file's replacements are
    filled, so nothing is written.  Returns the target key id.
    """
    unique: dict[tuple[str, str], Item] = {}
    for source in files:
        for item in source.items:
            unique.setdefault((item.token, json.dumps(item.wire(), sort_keys=True)), item)
    items = list(unique.values())
    results: dict[str, str] = {}
    key_id = ""
    for batch in _batches(items):
        answer = send({"recipient": recipient, "items": [item.wire() for item in batch]})
        failures = answer.get("failures")
        if isinstance(failures, list) and failures:
            raise SealingError(
                f"{len(failures)} item(s) cannot be resealed, no file was changed: "
                + "; ".join(_failure(batch, f) for f in failures[:20])
                + (f" (and {len(failures) - 20} more)" if len(failures) > 20 else ""),
                reason="ResealFailed",
            )
        tokens = answer.get("tokens")
        if not isinstance(tokens, list) or len(tokens) != len(batch):
            raise ClusterError("the reseal endpoint answered with the wrong number of tokens")
        key_id = str(answer.get("keyId") or "")
        for item, token in zip(batch, tokens, strict=True):
            if not isinstance(token, str):
                raise ClusterError("the reseal endpoint answered with a non-token")
            if results.setdefault(item.token, token) != token:
                raise InvalidInputError(
                    f"{item.where}: the same token is used in two places with different "
                    "bindings; give each place its own token"
                )
    for source in files:
        source.replacements = {
            item.token: results[item.token]
            for item in source.items
            if results[item.token] != item.token
        }
    return key_id


def _failure(batch: Sequence[Item], failure: object) -> str:
    if not isinstance(failure, dict) or not isinstance(failure.get("index"), int):
        return "(unreadable failure)"
    index = failure["index"]
    where = batch[index].where if 0 <= index < len(batch) else f"item {index}"
    # reason and message are the operator's own words: error classes, key ids, no values.
    return f"{where}: {str(failure.get('reason'))[:64]} ({str(failure.get('message'))[:300]})"


def rewritten(source: SourceFile) -> str:
    """The file's text with each old token string replaced by its new one.

    Tokens are long random strings that occur only where they are used, so a
    text replacement changes nothing else: comments, key order, quoting and
    formatting stay.  A token not written on one line (a folded block
    scalar) cannot be replaced: an error naming the item.
    """
    text = source.text
    for old, new in source.replacements.items():
        if old not in text:
            where = next(i.where for i in source.items if i.token == old)
            raise InvalidInputError(
                f"{where}: the token is not written on one line in the file, so it cannot "
                "be replaced in place"
            )
        text = text.replace(old, new)
    return text


def resealed_manifests(files: Sequence[SourceFile]) -> dict[str, object]:
    """The SealedSecrets of the rewritten files, as a ``List`` (``-o json``)."""
    from kstrata.domain.documents import load_documents

    items = [
        sealed
        for source in files
        for document in load_documents(rewritten(source), source=source.source)
        for sealed in _sealed_secrets(document)
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def write_in_place(files: Sequence[SourceFile]) -> list[Path]:
    """Rewrite each changed file (atomically, keeping its mode); return the paths written."""
    changed = [f for f in files if f.replacements]
    if any(str(f.path) == "-" for f in changed):
        raise UsageError("--in-place cannot rewrite standard input")
    texts = [(f, rewritten(f)) for f in changed]  # every text first: all or nothing
    for source, text in texts:
        _replace_file(source.path, text)
    return [f.path for f in changed]


def write_to_directory(
    files: Sequence[SourceFile], roots: Sequence[Path], directory: Path
) -> list[Path]:
    """Write every file's rewritten text under ``directory``, keeping its path below its root."""
    planned: dict[Path, str] = {}
    for source in files:
        relative = _relative(source.path, roots)
        target = directory / relative
        if target in planned:
            raise UsageError(f"--output-dir: two inputs would both be written to {target}")
        planned[target] = rewritten(source)
    for target, text in planned.items():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"--output-dir {directory}: cannot write {target}: {exc.strerror}"
            ) from None
    return list(planned)


def _relative(path: Path, roots: Sequence[Path]) -> Path:
    if str(path) == "-":
        return Path("stdin.yaml")
    for root in roots:
        if str(root) != "-" and root.is_dir() and path.is_relative_to(root):
            return path.relative_to(root)
    return Path(path.name)


def _replace_file(path: Path, text: str) -> None:
    """Replace ``path`` atomically, keeping its mode (a manifest is not a secret)."""
    try:
        mode = path.resolve().stat().st_mode & 0o777
        write_atomically(path, text, mode=mode)
    except OSError as exc:
        raise UsageError(f"--in-place {path}: cannot write: {exc.strerror}") from None


def proxy_sender(api: KubeApi, namespace: str) -> Send:
    """``send`` for :func:`reseal_files`: POST to the endpoint through the service proxy."""

    def send(request: Mapping[str, object]) -> Mapping[str, object]:
        status, answer = api.service_proxy_post(
            namespace, f"https:{RESEAL_SERVICE}:{RESEAL_SERVICE_PORT}", RESEAL_PATH, request
        )
        if status == 200 or (status == 422 and answer.get("failures")):
            return answer
        reason = str(answer.get("reason") or "")
        message = str(answer.get("message") or f"HTTP {status}")[:500]
        if answer.get("kind") == "Status" and status == 403:
            raise ForbiddenError(
                f"reseal: the API server refused the service proxy call ({message}); "
                f"resealing needs 'create' on services/proxy for {RESEAL_SERVICE} in "
                f"{namespace}: the kstrata-resealer Role (docs/operations.md)"
            )
        if status == 403:
            raise ForbiddenError(f"reseal refused by the operator: {message}")
        if status in (400, 413, 422):
            raise InvalidInputError(
                f"reseal refused by the operator: {message}", reason=reason or None
            )
        raise ClusterError(f"reseal: the operator's endpoint answered {status}: {message}")

    return send


def error_status(error: KstrataError) -> int:
    """The HTTP status the endpoint answers for ``error``."""
    if isinstance(error, ForbiddenError):
        return 403
    if isinstance(error, InputLimitError):
        return 413
    if isinstance(error, InvalidInputError | SealingError):
        return 422 if isinstance(error, SealingError) else 400
    return 503 if isinstance(error, ClusterError) else 500

"""``kstrata seal -f PATH...``: many Secret manifests sealed in one process.

Why a module of its own: a repository of Secrets (files, directories read
recursively, multi-document streams) should cost one interpreter start and
one key bundle parse, not one per manifest, and must be all or nothing: one
bad document among a thousand fails the run before any key is loaded or
anything is printed or written.  :func:`seal_secrets` seals;
:func:`write_sealed` lays the results out as ``DIRECTORY/NAMESPACE/NAME``.

It reads and checks through :mod:`kstrata.app.seal_inputs` and seals through
:mod:`kstrata.app.sealing_toolkit`, as the single seal
(:mod:`kstrata.app.seal_commands`) does, without importing it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kstrata.app.seal_inputs import (
    Items,
    asked_once,
    coordinates,
    secret_documents,
    secret_items,
)
from kstrata.app.sealing_toolkit import (
    Binding,
    KeySource,
    SealResult,
    dump_manifest,
    load_recipients,
    new_manifest,
    seal_items,
)
from kstrata.domain.environments import check_environment_name
from kstrata.errors import InvalidInputError, UsageError

__all__ = ["BulkSealRequest", "seal_secrets", "write_sealed"]


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
    context_namespace = asked_once(request.context_namespace)
    planned: list[tuple[Items, Binding]] = []
    seen: dict[tuple[str | None, str], str] = {}
    for source, document in documents:
        items = secret_items(document, source)
        binding = coordinates(
            items,
            None,
            scope=request.scope,
            namespace=request.namespace,
            name=request.name,
            context_namespace=context_namespace,
        )
        earlier = seen.get((binding.namespace, binding.name))
        if earlier is not None:
            # Two Secrets for one SealedSecret: one would silently replace the other.
            raise InvalidInputError(f"{source}: the same namespace and name as {earlier}")
        seen[(binding.namespace, binding.name)] = source
        planned.append((items, binding))
    recipients = load_recipients(keys)
    results: list[SealResult] = []
    for number, (items, binding) in enumerate(planned, 1):
        if progress is not None:
            progress(f"sealing {number}/{len(planned)}: {binding.namespace}/{binding.name}")
        sealed = seal_items(items.values, recipients, binding)
        manifest = new_manifest(binding, sealed, items.template, environment)
        results.append(SealResult.of(binding, manifest, sealed, recipients))
    return results


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
            path.write_text(dump_manifest(result.manifest, fmt), encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"--output-dir {directory}: cannot write {path}: {exc.strerror}"
            ) from None
        written.append(path)
    return written

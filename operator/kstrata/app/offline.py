"""The offline use cases of the CLI: render and validate ConfigProfiles from files.

No cluster, no kopf, no Kubernetes client: CI pipelines and pre-commit hooks
run these, so they must be quick to start and need nothing but the files.
A file may hold several YAML documents; documents that are not ConfigProfiles
are ignored, so a whole kustomization's worth of manifests can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kstrata.domain.documents import load_documents
from kstrata.domain.environments import DEFAULT_ENVIRONMENT
from kstrata.domain.jsonvalue import DEFAULT_LIMITS
from kstrata.domain.profile import (
    ProfileManifest,
    declared_environments,
    lookup_from,
    parse_profile_manifest,
    render_profile,
    validate_all_environments,
)
from kstrata.domain.render import FORMATS, render_text
from kstrata.domain.secret_template import check_sealed_spec
from kstrata.errors import DocumentError, InvalidInputError, UsageError
from kstrata.files import describe, read_bounded
from kstrata.wellknown import API_VERSION, CONFIG_PROFILE_KIND, SEALED_SECRET_KIND


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file; ``describe`` is the line the CLI prints."""

    source: str
    profile: str | None
    environment: str | None
    path: str | None
    message: str

    def describe(self) -> str:
        parts = [self.source]
        if self.profile:
            parts.append(f"ConfigProfile {self.profile}")
        if self.environment:
            parts.append(f"environment {self.environment}")
        if self.path:
            parts.append(self.path)
        return ": ".join(parts) + f": {self.message}"


def _read(path: Path) -> list[object]:
    data = read_bounded(path, DEFAULT_LIMITS.max_bytes, stdin=True)
    return list(load_documents(data, source=describe(path)))


def _is_profile(document: object) -> bool:
    return (
        isinstance(document, dict)
        and document.get("kind") == CONFIG_PROFILE_KIND
        and document.get("apiVersion") == API_VERSION
    )


def _is_sealed_secret(document: object) -> bool:
    return (
        isinstance(document, dict)
        and document.get("kind") == SEALED_SECRET_KIND
        and document.get("apiVersion") == API_VERSION
    )


def _sealed_problems(document: object, where: str, environment: str | None) -> list[Problem]:
    """A SealedSecret's ``spec.template.data`` checked as admission checks it (no token opened)."""
    assert isinstance(document, dict)
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    try:
        check_sealed_spec(document.get("spec"), [environment or DEFAULT_ENVIRONMENT])
    except InvalidInputError as error:
        return [Problem(where, None, None, None, f"SealedSecret {name}: {error}")]
    return []


def load_profiles(paths: list[Path]) -> list[tuple[str, ProfileManifest]]:
    """Every ConfigProfile in the files, in order, with the file it came from."""
    found = []
    for path in paths:
        for index, document in enumerate(_read(path)):
            if _is_profile(document):
                where = f"{path}" if index == 0 else f"{path} (document {index + 1})"
                found.append((str(path), parse_profile_manifest(document, where=where)))
    return found


def render_files(paths: list[Path], environment: str | None, fmt: str | None) -> str:
    """Render the first profile of the first file; the other profiles serve as bases."""
    profiles = load_profiles(paths)
    if not profiles:
        raise UsageError(
            f"no {CONFIG_PROFILE_KIND} ({API_VERSION}) found in {', '.join(map(str, paths))}"
        )
    _, target = profiles[0]
    lookup = lookup_from({manifest.name: manifest.spec for _, manifest in profiles})
    chosen = environment or target.spec.environment or DEFAULT_ENVIRONMENT
    if environment is not None:
        # A typo (prodd) would otherwise render the base values without a word.
        from kstrata.app.suggest import check_environment_declared

        declared = declared_environments(target.spec, target.name, lookup)
        declared += [e for e in (target.spec.environment, DEFAULT_ENVIRONMENT) if e]
        check_environment_declared(environment, declared, f"ConfigProfile {target.name}")
    result = render_profile(target.spec, target.name, chosen, lookup)
    if fmt is None or fmt == target.spec.output.format:
        return result.rendered.data[result.rendered.key]
    # A format other than the profile's own: same merged config, other text.
    for known in FORMATS:
        if known == fmt:
            return render_text(result.resolved.config, known)
    raise UsageError(f"unknown output format (expected one of {', '.join(FORMATS)})")


def validate_files(paths: list[Path], environment: str | None) -> list[Problem]:
    """Every problem in every profile of the files: structure, overlays, extends, schema.

    SealedSecrets in the files have their ``spec.template.data`` checked as
    admission checks it (syntax, and references to items they have).
    """
    problems: list[Problem] = []
    manifests: list[tuple[str, ProfileManifest]] = []
    for path in paths:
        try:
            documents = _read(path)
        except DocumentError as error:
            problems.append(Problem(str(path), None, None, None, str(error)))
            continue
        for index, document in enumerate(documents):
            where = str(path) if index == 0 else f"{path} (document {index + 1})"
            if _is_sealed_secret(document):
                problems.extend(_sealed_problems(document, where, environment))
            if not _is_profile(document):
                continue
            try:
                manifests.append((str(path), parse_profile_manifest(document, where=where)))
            except InvalidInputError as error:
                problems.append(Problem(str(path), None, None, None, str(error)))
    lookup = lookup_from({manifest.name: manifest.spec for _, manifest in manifests})
    for source, manifest in manifests:
        extra = [environment] if environment else [DEFAULT_ENVIRONMENT]
        try:
            by_environment = validate_all_environments(
                manifest.spec, manifest.name, lookup, extra_environments=extra
            )
        except InvalidInputError as error:
            problems.append(Problem(source, manifest.name, None, None, str(error)))
            continue
        for env_name, violations in by_environment.items():
            if environment and env_name != environment:
                continue
            problems.extend(
                Problem(source, manifest.name, env_name, v.path, v.message) for v in violations
            )
    return problems

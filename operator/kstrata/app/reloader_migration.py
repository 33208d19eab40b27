"""``kstrata migrate reloader``: find Reloader's annotations and put kstrata's in their place.

Why this exists: a team moving off Reloader has its annotations on many
workloads and sources.  This lists every workload (Deployments, StatefulSets,
DaemonSets, CronJobs, Argo Rollouts) and every ConfigMap/Secret carrying them, in one
namespace or all, with the ``kstrata.dev/reload`` value that asks kstrata for
the same thing (the translation is ``kstrata.domain.reload_annotations``, the
code the operator itself runs in Reloader-compatible mode).  With ``apply``
it writes them: the workload gets ``kstrata.dev/reload`` and loses Reloader's
workload annotations (so a Reloader still running stops acting on it, and
the two never roll it twice), and a source's ``reloader.stakater.com/ignore``
becomes ``kstrata.dev/reload-ignore``.  Writing ``kstrata.dev/reload`` rolls
nothing: the operator's first sight of a workload only records what it runs.

Only annotations are ever read from ConfigMaps and Secrets here, never data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kstrata.domain import reload_annotations as ra
from kstrata.domain.reload_decision import pod_template, referenced_objects
from kstrata.errors import NotFoundError
from kstrata.kube.api import CONFIG_MAPS, RELOADABLE, SECRETS, KubeClient, P, Resource
from kstrata.payloads import KubeObject, Workload
from kstrata.wellknown import (
    RELOAD_ANNOTATION,
    RELOAD_IGNORE_ANNOTATION,
    RELOADER_IGNORE,
    RELOADER_MATCH,
)


@dataclass(frozen=True)
class SourceMigration:
    """A ConfigMap or Secret with Reloader's ``ignore``: it gets ``kstrata.dev/reload-ignore``."""

    kind: str
    namespace: str
    name: str
    done: bool


@dataclass(frozen=True)
class MigrationReport:
    workloads: tuple[ra.Migration, ...]
    sources: tuple[SourceMigration, ...]
    applied: bool


def _annotations(obj: KubeObject) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _list(api: KubeClient, resource: Resource[P], namespace: str | None) -> list[P]:
    # A kind whose CRD is not installed (Argo Rollouts) has no workloads to migrate.
    try:
        return api.list(resource, namespace)
    except NotFoundError:
        return []


def _matching(
    workload: Workload, namespace: str, sources: dict[tuple[str, str, str], KubeObject]
) -> tuple[frozenset[str], frozenset[str]]:
    """Referenced ConfigMaps and Secrets that carry Reloader's ``match``."""
    config_maps, secrets = referenced_objects(pod_template(workload).get("spec") or {})

    def matching(kind: str, names: Iterable[str]) -> frozenset[str]:
        return frozenset(
            n
            for n in names
            if (obj := sources.get((kind, namespace, n))) is not None
            and ra.source_matches(_annotations(obj))
            and not ra.source_ignored(_annotations(obj), reloader_compatible=True)
        )

    return matching(ra.CONFIG_MAP, config_maps), matching(ra.SECRET, secrets)


def migrate_reloader(
    api: KubeClient,
    namespace: str | None,
    *,
    apply: bool,
    progress: Callable[[str], None] | None = None,
) -> MigrationReport:
    """Translate (and with ``apply`` write) Reloader's annotations in ``namespace`` (None: all).

    ``progress`` hears about each object written (the CLI shows it on a terminal).
    """
    report = progress or (lambda _message: None)
    sources: dict[tuple[str, str, str], KubeObject] = {}
    for source in (CONFIG_MAPS, SECRETS):
        for found in _list(api, source, namespace):
            meta = found.get("metadata") or {}
            annotations = _annotations(found)
            if RELOADER_MATCH in annotations or RELOADER_IGNORE in annotations:
                # Annotations only: a Secret's data is dropped at once.
                sources[(source.kind, meta["namespace"], meta["name"])] = {"metadata": meta}
    workloads: list[ra.Migration] = []
    writes: list[tuple[Resource[Workload], ra.Migration]] = []
    for resource in RELOADABLE:
        for obj in _list(api, resource, namespace):
            annotations = _annotations(obj)
            if not ra.uses_reloader(annotations):
                continue
            meta = obj["metadata"]
            obj.setdefault("kind", resource.kind)
            migration = ra.migrate(
                resource.kind,
                meta["namespace"],
                meta["name"],
                annotations,
                matching_sources=_matching(obj, meta["namespace"], sources),
            )
            workloads.append(migration)
            writes.append((resource, migration))
    done_sources: list[SourceMigration] = []
    for (kind, ns, name), source_obj in sorted(sources.items()):
        annotations = _annotations(source_obj)
        if not ra.source_ignored(annotations, reloader_compatible=True):
            continue
        already = ra.source_ignored(annotations, reloader_compatible=False)
        if apply and not already:
            report(f"writing {kind} {ns}/{name}")
            patch = {"metadata": {"annotations": {RELOAD_IGNORE_ANNOTATION: "true"}}}
            api.patch(CONFIG_MAPS if kind == ra.CONFIG_MAP else SECRETS, ns, name, patch)
        done_sources.append(SourceMigration(kind, ns, name, done=apply or already))
    if apply:
        for number, (resource, migration) in enumerate(writes, 1):
            report(
                f"writing {number}/{len(writes)}: "
                f"{migration.kind} {migration.namespace}/{migration.name}"
            )
            changes: dict[str, str | None] = dict.fromkeys(migration.found)
            if migration.reload:
                changes[RELOAD_ANNOTATION] = migration.reload
            api.patch(
                resource,
                migration.namespace,
                migration.name,
                {"metadata": {"annotations": changes}},
            )
    workloads.sort(key=lambda m: (m.namespace, m.kind, m.name))
    return MigrationReport(tuple(workloads), tuple(done_sources), applied=apply)

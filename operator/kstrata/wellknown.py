"""The names kstrata shares with the cluster, spelled once.

Kubernetes calls such names "well-known labels, annotations and taints": the
API group and version of kstrata's resources, their kinds, plurals and short
names, the label and annotation keys kstrata reads and writes, the field
manager, the condition type and the reasons no error class owns, and the
names of other projects kstrata interoperates with (Reloader's annotations,
Argo Rollouts' API, Bitnami Sealed Secrets' API).  A user's manifests, kubectl selectors and
dashboards depend on these strings, so renaming one is an API change: that is
why they live here, where a reviewer sees it, instead of being spelled in
whichever module needed them first.  ``tests/unit/test_wellknown.py`` fails
when another module under ``kstrata`` spells one of them.

Most failure reasons are not here: each is the ``reason`` of its error class
in :mod:`kstrata.errors`, their one home.  Object names kstrata creates (the
sealing-key Secret, the webhook configuration) stay with the code that owns
them; :mod:`kstrata.kube.names` is something else (names of objects, for
shell completion).

This module sits at the bottom layer beside :mod:`kstrata.errors` and imports
nothing, so every layer, and the offline CLI's cold start, may import it.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

# --- kstrata's API ----------------------------------------------------------

GROUP: Final = "kstrata.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "kstrata.dev/v1alpha1"

CONFIG_PROFILE_KIND: Final = "ConfigProfile"
CONFIG_PROFILE_PLURAL: Final = "configprofiles"
CONFIG_PROFILE_SINGULAR: Final = "configprofile"
CONFIG_PROFILE_SHORT_NAME: Final = "cfp"

SEALED_SECRET_KIND: Final = "SealedSecret"  # noqa: S105 (a kind name, not a secret)
SEALED_SECRET_PLURAL: Final = "sealedsecrets"  # noqa: S105 (a resource name)
SEALED_SECRET_SINGULAR: Final = "sealedsecret"  # noqa: S105 (a resource name)
SEALED_SECRET_SHORT_NAME: Final = "kss"  # noqa: S105 (a resource name)

#: kstrata's own kinds, as a type (``Literal`` needs the values spelled).
OwnKind: TypeAlias = Literal["ConfigProfile", "SealedSecret"]

# --- who manages an object ----------------------------------------------------

#: kstrata's name where the cluster records who did something: the value of
#: ``app.kubernetes.io/managed-by`` and ``part-of``, the server-side apply
#: field manager, the events' reporting component, kopf's peering object.
MANAGER: Final = "kstrata"
FIELD_MANAGER: Final = MANAGER
#: ``kubectl get kstrata`` lists both kinds.
CATEGORY: Final = MANAGER

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
PART_OF_LABEL: Final = "app.kubernetes.io/part-of"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"

# --- kstrata's labels ---------------------------------------------------------

#: On a namespace: the environment its ConfigProfiles render.
ENVIRONMENT_LABEL: Final = "kstrata.dev/environment"
#: On a rendered ConfigMap: the ConfigProfile it comes from.
PROFILE_LABEL: Final = "kstrata.dev/profile"
#: On an unsealed Secret: the SealedSecret it comes from.
SEALED_SECRET_LABEL: Final = "kstrata.dev/sealed-secret"  # noqa: S105 (a label key)
#: On a rendered ConfigMap (label) and a revision snapshot (annotation): the revision number.
REVISION_LABEL: Final = "kstrata.dev/revision"
REVISION_ANNOTATION: Final = REVISION_LABEL
#: On a revision snapshot: which object's history it belongs to.
OWNER_UID_LABEL: Final = "kstrata.dev/owner-uid"
OWNER_KIND_LABEL: Final = "kstrata.dev/owner-kind"

# --- kstrata's annotations ----------------------------------------------------

#: On an existing ConfigMap or Secret: kstrata may take it over.
ADOPT_ANNOTATION: Final = "kstrata.dev/adopt"
#: On a revision snapshot: the revision numbers it stands for.
HISTORY_ANNOTATION: Final = "kstrata.dev/revision-history"
#: The format of a revision snapshot's content.
SNAPSHOT_FORMAT: Final = "kstrata.dev/snapshot-v1"
#: On an unsealed Secret: SHA-256 of the sealed tokens in effect (public ciphertext).
DIGEST_ANNOTATION: Final = "kstrata.dev/sealed-digest"
#: On a webhook configuration a foreground operator created.
REGISTERED_BY_ANNOTATION: Final = "kstrata.dev/registered-by"

#: On a workload: what to reload it for, how, whether paused, and what it last rolled for.
RELOAD_ANNOTATION: Final = "kstrata.dev/reload"
RELOAD_IGNORE_ANNOTATION: Final = "kstrata.dev/reload-ignore"
RELOAD_STRATEGY_ANNOTATION: Final = "kstrata.dev/reload-strategy"
RELOAD_PAUSED_ANNOTATION: Final = "kstrata.dev/reload-paused"
REVISIONS_ANNOTATION: Final = "kstrata.dev/revisions"

#: Kubernetes' own: why a revision was made (``kubectl rollout history`` shows it).
CHANGE_CAUSE_ANNOTATION: Final = "kubernetes.io/change-cause"

# --- status -------------------------------------------------------------------

READY_CONDITION: Final = "Ready"
#: The Ready condition's reason when all is well (failures: the error's ``reason``).
RENDERED_REASON: Final = "Rendered"
UNSEALED_REASON: Final = "Unsealed"
#: Refusals whose reason is not an error class's own (documented in
#: docs/operations.md beside the error classes' reasons).
FORBIDDEN_SECRET_TYPE_REASON: Final = "ForbiddenSecretType"  # noqa: S105 (a reason)
SECRET_REJECTED_REASON: Final = "SecretRejected"  # noqa: S105 (a reason)
RESERVED_NAME_REASON: Final = "ReservedName"
#: The Event a reload posts on each workload it rolls.
ROLLING_RESTART_REASON: Final = "RollingRestart"

# --- Reloader (stakater/Reloader), whose annotations kstrata honours and migrates ---

RELOADER_AUTO: Final = "reloader.stakater.com/auto"
RELOADER_CONFIG_MAP_AUTO: Final = "configmap.reloader.stakater.com/auto"
RELOADER_SECRET_AUTO: Final = "secret.reloader.stakater.com/auto"  # noqa: S105 (annotation key)
RELOADER_SEARCH: Final = "reloader.stakater.com/search"
RELOADER_MATCH: Final = "reloader.stakater.com/match"
RELOADER_CONFIG_MAP_RELOAD: Final = "configmap.reloader.stakater.com/reload"
RELOADER_SECRET_RELOAD: Final = "secret.reloader.stakater.com/reload"  # noqa: S105
RELOADER_IGNORE: Final = "reloader.stakater.com/ignore"
#: On an Argo Rollout: ``restart`` makes Reloader set ``spec.restartAt``; kstrata
#: rolls the template (``spec.restartAt`` only for a Rollout with a workloadRef).
RELOADER_ROLLOUT_STRATEGY: Final = "reloader.stakater.com/rollout-strategy"

# --- Argo Rollouts, whose Rollouts kstrata reloads ---------------------------------

ARGO_ROLLOUTS_GROUP: Final = "argoproj.io"
ARGO_ROLLOUTS_VERSION: Final = "v1alpha1"

# --- Bitnami Sealed Secrets, whose SealedSecrets ``kstrata import`` reads -----------

BITNAMI_API_VERSION: Final = "bitnami.com/v1alpha1"
#: The same word as kstrata's kind, in another API group.
BITNAMI_SEALED_SECRET_KIND: Final = "SealedSecret"  # noqa: S105 (a kind name, not a secret)

"""The one exception hierarchy of kstrata.

Every error kstrata raises on purpose is a ``KstrataError``.  Third-party
errors (the Kubernetes client, jsonschema, PyYAML, cryptography) are translated
into these at the boundary where they occur, with ``raise ... from``, so the
layers above never need to know which library failed.

Two rules hold for every message built here:

* It never carries a configuration value or secret material: only names,
  JSON paths, item keys, key ids and rule names.  Messages end up in status
  conditions, events, logs and CLI output.
* ``reason`` is a CamelCase word suitable for a Kubernetes condition reason.

The CLI maps these classes to exit codes in one place (``kstrata.cli.main``);
the kopf handlers map them to ``kopf.PermanentError`` (bad input: retrying
cannot help) or ``kopf.TemporaryError`` (the cluster had trouble).
"""

from __future__ import annotations

from dataclasses import dataclass


class KstrataError(Exception):
    """Base of every error kstrata raises deliberately."""

    reason: str = "Error"
    #: True when retrying the same operation later may succeed.
    transient: bool = False

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message


class UsageError(KstrataError):
    """The command line or an API call was used wrongly (CLI exit code 2)."""

    reason = "UsageError"


class UnknownContextError(UsageError):
    """``--context`` (or ``current-context``) names no context of the kubeconfig.

    Said the same on every path that reads a kubeconfig (the CLI's own reader,
    the client's loader for exec plugins, ``seal``'s namespace lookup): the
    file, the name, the contexts it has and the closest one.  Context names
    are no secret (``kubectl config get-contexts`` prints them).
    """

    reason = "UnknownContext"

    def __init__(
        self, kubeconfig: str, name: str, available: list[str], *, current: bool = False
    ) -> None:
        import difflib  # here: only this error needs it

        what = f"its current-context {name!r}" if current else f"context {name!r}"
        if not available:
            message = f"kubeconfig {kubeconfig}: {what} does not exist, and it has no contexts"
        else:
            listed = ", ".join(available)
            message = f"kubeconfig {kubeconfig}: {what} does not exist; its contexts: {listed}"
            close = difflib.get_close_matches(name, available, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
        super().__init__(
            message + "; pick one with --context NAME (kubectl config get-contexts lists them)"
        )


class SettingsError(KstrataError):
    """The operator's own settings (config/) are invalid; start-up stops."""

    reason = "InvalidSettings"


# --- configuration input -------------------------------------------------


class InvalidInputError(KstrataError):
    """Input that can never become valid by retrying: a bad spec or file."""

    reason = "InvalidSpec"


class InputLimitError(InvalidInputError):
    """Input exceeds a safety bound: nesting depth, size, alias expansion, item count."""

    reason = "LimitExceeded"


class BudgetExceededError(InputLimitError):
    """Validation or rendering ran past its time budget and was abandoned.

    Raised by ``kstrata.domain.budget``; the message names the work and the
    budget and suggests what to simplify, never a value.
    """

    reason = "BudgetExceeded"

    def __init__(self, what: str, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"{what} took longer than its {seconds:g} s budget and was abandoned: "
            "simplify spec.schema (alternatives such as anyOf/oneOf that reference "
            "other alternatives multiply the work at every level)"
        )


class DocumentError(InvalidInputError):
    """A YAML or JSON document could not be parsed, or has the wrong shape."""

    reason = "MalformedDocument"


class MergeError(InvalidInputError):
    """An overlay cannot be merged (for example an overlay that is not an object)."""

    reason = "InvalidOverlay"


class ExtendsError(InvalidInputError):
    """``spec.extends`` names a profile that does not exist, or forms a cycle."""

    reason = "InvalidExtends"


class RenderError(InvalidInputError):
    """The merged configuration cannot be rendered in the requested format."""

    reason = "RenderFailed"


@dataclass(frozen=True)
class Violation:
    """One schema violation: where, which rule, in which environment.

    Deliberately holds no value from the instance being validated.
    """

    environment: str | None
    path: str
    rule: str
    message: str

    def describe(self) -> str:
        where = f"environment {self.environment}: " if self.environment else ""
        return f"{where}{self.path}: {self.message}"


class SchemaViolationError(InvalidInputError):
    """The merged configuration does not satisfy ``spec.schema``."""

    reason = "SchemaViolation"

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = tuple(violations)
        shown = "; ".join(v.describe() for v in self.violations[:5])
        more = len(self.violations) - 5
        if more > 0:
            shown += f" (and {more} more)"
        super().__init__(f"schema validation failed: {shown}")


class TemplateError(InvalidInputError):
    """A SealedSecret's ``spec.template.data`` entry cannot be parsed or rendered.

    Raised by ``kstrata.domain.secret_template``; the message names the
    template key, the position and, for a missing reference, the item key:
    never an item's value.
    """

    reason = "InvalidTemplate"


class InvalidSchemaError(InvalidInputError):
    """``spec.schema`` itself is not a valid JSON Schema, or uses a forbidden ``$ref``."""

    reason = "InvalidSchema"


# --- sealing -------------------------------------------------------------


class SealingError(KstrataError):
    """Base for sealing and unsealing failures."""

    reason = "SealingFailed"


class TokenFormatError(SealingError):
    """A sealed token is malformed: wrong encoding, unknown version, bad size.

    Distinct from ``UnsealError`` because it is decided before any
    cryptographic work, from public structure alone.
    """

    reason = "MalformedToken"


class UnsealError(SealingError):
    """A well-formed token could not be opened.

    The single opaque error for every cryptographic failure (wrong key, wrong
    context, tampering, truncation of the ciphertext): callers must not be able
    to tell these apart, so nothing here says which.
    """

    reason = "DecryptionFailed"

    def __init__(self, message: str = "sealed value could not be opened") -> None:
        super().__init__(message)


class UnknownKeyError(SealingError):
    """The token names a key id the operator does not hold (key missing or never ours)."""

    reason = "SealingKeyMissing"


# --- the cluster ---------------------------------------------------------


class ClusterError(KstrataError):
    """The Kubernetes API refused or failed a request."""

    reason = "ApiError"


class TransientClusterError(ClusterError):
    """A failure that may go away: timeouts, 5xx, 429, connection trouble."""

    reason = "ApiUnavailable"
    transient = True


class ConflictError(ClusterError):
    """A write lost a race (409 Conflict); re-read and retry."""

    reason = "Conflict"
    transient = True


class NotFoundError(ClusterError):
    """The named object does not exist."""

    reason = "NotFound"


class ForbiddenError(ClusterError):
    """RBAC or admission refused the request."""

    reason = "Forbidden"


class OwnershipError(KstrataError):
    """A target object exists and is not ours, and does not ask to be adopted."""

    reason = "NotOwned"


# --- revisions -----------------------------------------------------------


class SnapshotTooLargeError(InvalidInputError):
    """A revision snapshot cannot be stored, even compressed (etcd's request limit)."""

    reason = "RevisionTooLarge"


class RevisionNotFoundError(KstrataError):
    """The requested revision is not in the retained history."""

    reason = "RevisionNotFound"

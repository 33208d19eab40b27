"""The operator's own settings, as one explicit, immutable object, and its files.

Why: every tunable (namespaces watched, default environment, backoffs,
endpoints) is passed down as a ``Settings`` value instead of being read from
the environment deep inside the code.  Environment variables and flags are
read only at the edge (``kstrata.cli``), which builds a ``Settings``: from the
dataclass defaults alone, or with :func:`load_settings` from a settings
directory (``config/`` in the repository, ``/etc/kstrata/config`` in the
image), then with the flags as overrides.

Boundary: the file part reuses the ConfigProfile machinery in
``kstrata.domain`` (bounded YAML, RFC 7386, JSON Schema with value-free
messages), imported lazily so ``from kstrata.settings import Settings`` stays
cheap for the CLI shell.  Nothing here reads environment variables or talks to
the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kstrata.errors import SettingsError
from kstrata.wellknown import GROUP, MANAGER

if TYPE_CHECKING:
    from kstrata.domain.jsonvalue import JSONObject, JSONValue


@dataclass(frozen=True)
class Settings:
    """Everything the running operator needs to know about itself."""

    #: Namespaces to watch; empty means cluster-wide.
    namespaces: tuple[str, ...] = ()
    #: Where the operator keeps its own objects (sealing keys, public keys).
    operator_namespace: str = "kstrata-system"
    #: Environment used when neither the profile nor its namespace names one.
    default_environment: str = "dev"
    #: Seconds kopf waits before retrying a failed handler (kopf's default is 60).
    retry_backoff: float = 10.0
    #: ``host:port`` for Prometheus metrics; port 0 picks a free port, None disables.
    metrics_address: str | None = "0.0.0.0:9090"
    #: kopf liveness endpoint URL, or None to disable.
    liveness_endpoint: str | None = "http://0.0.0.0:8080/healthz"
    #: True runs without kopf peering (a single replica, or tests).
    standalone: bool = False
    #: kopf peering object name when not standalone.
    peering_name: str = MANAGER
    #: ``host:port`` the admission webhook listens on; None disables the webhook.
    webhook_address: str | None = "0.0.0.0:9443"
    #: Base URL the API server calls (local runs); None means the in-cluster Service.
    webhook_url: str | None = None
    #: Service in ``operator_namespace`` that fronts the webhook (port 443).
    webhook_service: str = "kstrata-webhook"
    #: Name of the ValidatingWebhookConfiguration the operator keeps current; None: not managed.
    webhook_configuration: str | None = GROUP
    #: Directory with tls.crt, tls.key and ca.crt (e.g. from cert-manager); None: self-signed.
    webhook_cert_dir: str | None = None
    #: ``debug`` | ``info`` | ``warning``.  Even at debug, no value is ever logged.
    log_level: str = "info"
    #: ``text`` for people, ``json`` for log pipelines.
    log_format: str = "text"
    #: Suite of newly generated sealing keys: ``x25519`` or ``mlkem768-x25519`` (docs/crypto.md).
    sealing_suite: str = "x25519"
    #: Days between sealing key rotations (a new newest key; old keys stay); 0 disables.
    key_rotation_days: float = 30.0
    #: Seconds between checks whether a rotation is due.
    key_rotation_check_seconds: float = 600.0
    #: Seconds between re-checks of SealedSecrets blocked by a missing sealing key or by a
    #: Secret that is not theirs.  Events on those Secrets trigger a retry at once; this
    #: is only the safety net.
    blocked_retry_seconds: float = 300.0
    #: How much longer than the quiet period a rollout that waits for the rest of a change
    #: set may be held by sources still in flight or by later spec writes (0..2).
    reload_coalesce_seconds: float = 1.0
    #: How long the namespace must be quiet (no spec write seen) before a workload that
    #: follows several sources rolls, so one apply that changes two of them rolls it once
    #: (0..5).  A workload that follows one source never waits for it.
    reload_quiet_seconds: float = 1.0
    #: Honour stakater/Reloader's annotations (``reloader.stakater.com/auto``, ``…/search``
    #: with ``…/match``, the typed autos and reloads, ``…/ignore``) on workloads that carry
    #: no ``kstrata.dev/reload``, so Reloader can be removed without editing a workload.
    reloader_compatible: bool = False
    #: ``host:port`` of the reseal endpoint (``kstrata reseal``), served with the webhook's
    #: certificate and only while the webhook is; None (the default) disables it.  The
    #: installed manifests and the chart turn it on (``--reseal-address``).
    reseal_address: str | None = None
    #: Key ids of other clusters' sealing keys that ``kstrata reseal --cert`` may seal to.
    #: Any other bundle is refused: resealing to a key the caller owns would reveal values.
    reseal_recipients: tuple[str, ...] = ()
    #: Extra fields kept for forward compatibility with newer config files.
    extra: JSONObject = field(default_factory=dict, compare=False)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (used by flags and tests)."""
        # Any: each field has its own type and ``dataclasses.replace`` takes the
        # changes as ``**Any``; the names are checked below, the types by callers.
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


# --- settings files (config/) --------------------------------------------
#
# The operator's settings live in a directory: ``base.yaml`` (every setting
# with its default), one overlay per environment (``dev.yaml``, ...) and
# ``config.schema.yaml``.  They are combined exactly like a ConfigProfile's
# layers: safe bounded YAML loading, RFC 7386 merge, JSON Schema 2020-12 with
# value-free messages.  Choosing the directory and environment (flags,
# KSTRATA_CONFIG_DIR, KSTRATA_ENVIRONMENT) is the CLI's job; this part is pure
# apart from reading the named files.

BASE_FILE: Final = "base.yaml"
SCHEMA_FILE: Final = "config.schema.yaml"
_OVERLAY_SUFFIX: Final = ".yaml"
#: At most this many violations are spelled out in one error message.
_SHOWN_VIOLATIONS: Final = 5

# How a validated JSON value becomes a field value, by the field's annotation
# (a string: this module uses postponed annotations).  A field whose
# annotation is missing here fails a unit test rather than loading wrongly.
_FIELD_KINDS: Final[dict[str, str]] = {
    "tuple[str, ...]": "strings",
    "str": "string",
    "str | None": "optional-string",
    "float": "number",
    "bool": "boolean",
}
_NOT_FROM_FILES: Final = frozenset({"extra"})


def file_fields() -> tuple[str, ...]:
    """Names of the settings a settings file can set, in declaration order."""
    return tuple(f.name for f in fields(Settings) if f.name not in _NOT_FROM_FILES)


def field_kind(name: str) -> str:
    """How the settings field ``name`` is read from a file (see ``_FIELD_KINDS``)."""
    annotation = Settings.__dataclass_fields__[name].type
    return _FIELD_KINDS[str(annotation)]


def available_environments(config_dir: Path) -> list[str]:
    """Environments with an overlay in ``config_dir``, sorted.

    An overlay is ``<name>.yaml`` where ``<name>`` is a valid environment name
    (a DNS label) other than ``base``; ``config.schema.yaml`` is not one.
    """
    from kstrata.domain.environments import is_environment_name

    try:
        names = [entry.name for entry in config_dir.iterdir() if entry.is_file()]
    except OSError as exc:
        raise SettingsError(
            f"settings directory {config_dir}: cannot be read ({exc.strerror})"
        ) from exc
    return sorted(
        stem
        for stem in (name.removesuffix(_OVERLAY_SUFFIX) for name in names)
        if f"{stem}{_OVERLAY_SUFFIX}" in names
        and stem != BASE_FILE.removesuffix(_OVERLAY_SUFFIX)
        and is_environment_name(stem)
    )


def load_settings(config_dir: Path, environment: str) -> Settings:
    """Settings from ``config_dir``: ``base.yaml`` merged with ``<environment>.yaml``.

    The merge is RFC 7386 (as for ConfigProfile layers); the result is checked
    against ``config.schema.yaml``; settings missing from both files keep the
    dataclass defaults.  Every failure is a ``SettingsError`` naming the file
    and, for schema violations, the JSON path and rule, never a value.
    """
    from kstrata.domain.environments import is_environment_name
    from kstrata.domain.merge import merge_layers

    if not config_dir.is_dir():
        raise SettingsError(f"settings directory {config_dir}: not found or not a directory")
    available = available_environments(config_dir)
    if not is_environment_name(environment) or environment not in available:
        # The name is only echoed once it is known to be a harmless DNS label.
        named = f"'{environment}'" if is_environment_name(environment) else "(invalid name)"
        raise SettingsError(
            f"settings directory {config_dir}: no overlay for environment {named}; "
            f"available: {', '.join(available) or 'none'}"
        )
    schema_path = config_dir / SCHEMA_FILE
    base_path = config_dir / BASE_FILE
    overlay_path = config_dir / f"{environment}{_OVERLAY_SUFFIX}"
    schema = _read_object(schema_path, empty_ok=False)
    base = _read_object(base_path, empty_ok=True)
    overlay = _read_object(overlay_path, empty_ok=True)
    # base.yaml on its own must already be valid: then every violation of the
    # merged settings was brought in by the overlay, and the message can name
    # the file to fix.
    _check_against(schema, schema_path, base, base_path)
    merged = merge_layers([(str(base_path), base), (str(overlay_path), overlay)])
    _check_against(schema, schema_path, merged, overlay_path)
    return settings_from_document(merged, source=str(overlay_path))


def settings_from_document(document: Mapping[str, JSONValue], *, source: str) -> Settings:
    """A ``Settings`` from an already validated settings document.

    Types are checked again (a deployment may ship a looser schema) so that a
    wrong type fails here, by name, rather than deep inside the operator.
    Keys the dataclass does not know go to ``extra``.
    """
    known = set(file_fields())
    # Any: each value is checked against its field's kind by _field_value, but
    # the dataclass constructor cannot be typed key by key.
    values: dict[str, Any] = {}
    extra: JSONObject = {}
    for name, value in document.items():
        if name not in known:
            extra[name] = value
            continue
        values[name] = _field_value(name, value, source)
    return Settings(**values, extra=extra)


def _field_value(name: str, value: object, source: str) -> object:
    kind = field_kind(name)
    wrong = SettingsError(f"{source}: $.{name}: wrong type for this setting ({kind})")
    if kind == "strings":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise wrong
        return tuple(value)
    if kind == "string":
        if not isinstance(value, str):
            raise wrong
        return value
    if kind == "optional-string":
        if value is not None and not isinstance(value, str):
            raise wrong
        # "" is how an overlay switches an endpoint off (null would only
        # remove the key and let base.yaml's value through).
        return value or None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        return float(value)
    if not isinstance(value, bool):
        raise wrong
    return value


def settings_document(settings: Settings) -> JSONObject:
    """The settings as a plain document in declaration order, as a file would hold them."""
    document: JSONObject = {}
    for name in file_fields():
        value = getattr(settings, name)
        document[name] = list(value) if isinstance(value, tuple) else value
    document.update(settings.extra)
    return document


def _read_object(path: Path, *, empty_ok: bool) -> JSONObject:
    from kstrata.domain.documents import load_yaml
    from kstrata.domain.jsonvalue import DEFAULT_LIMITS
    from kstrata.errors import InvalidInputError, KstrataError
    from kstrata.files import read_regular

    try:
        data = read_regular(path, DEFAULT_LIMITS.max_bytes)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot be read ({exc.strerror})") from exc
    except KstrataError as exc:
        raise SettingsError(f"{path}: cannot be read ({exc})") from exc
    try:
        document = load_yaml(data, source=str(path))
    except InvalidInputError as exc:
        # The loader's message already names the file, line and JSON path.
        raise SettingsError(f"invalid settings file {exc}") from exc
    if document is None and empty_ok:
        return {}
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: $: must be a mapping of setting names to values")
    return document


def _check_against(
    schema: Mapping[str, JSONValue],
    schema_path: Path,
    document: Mapping[str, JSONValue],
    source: Path,
) -> None:
    from kstrata.domain.schema import validate
    from kstrata.errors import InvalidSchemaError

    try:
        violations = validate(schema, dict(document))
    except InvalidSchemaError as exc:
        raise SettingsError(f"{schema_path}: not a usable settings schema: {exc}") from exc
    if not violations:
        return
    shown = "; ".join(
        f"{v.path}: {v.message} (rule '{v.rule}')" for v in violations[:_SHOWN_VIOLATIONS]
    )
    more = len(violations) - _SHOWN_VIOLATIONS
    if more > 0:
        shown += f" (and {more} more)"
    raise SettingsError(f"{source}: invalid settings: {shown}")

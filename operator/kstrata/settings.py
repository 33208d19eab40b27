"""The operator's own settings, as one explicit, immutable object.

Why: every tunable (namespaces watched, default environment, backoffs,
endpoints) is passed down as a ``Settings`` value instead of being read from
the environment deep inside the code.  Environment variables and flags are
read only at the edge (``kstrata.cli``), which builds a ``Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from kstrata.errors import SettingsError


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
    peering_name: str = "kstrata"
    #: ``host:port`` the admission webhook listens on; None disables the webhook.
    webhook_address: str | None = "0.0.0.0:9443"
    #: Base URL the API server calls (local runs); None means the in-cluster Service.
    webhook_url: str | None = None
    #: Service in ``operator_namespace`` that fronts the webhook (port 443).
    webhook_service: str = "kstrata-webhook"
    #: Name of the ValidatingWebhookConfiguration the operator keeps current; None: not managed.
    webhook_configuration: str | None = "kstrata.dev"
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
    #: Seconds to gather revision changes in one namespace before rolling its workloads,
    #: so a ConfigProfile and a SealedSecret changed together cause one rollout (0..2).
    reload_coalesce_seconds: float = 1.0
    #: Extra fields kept for forward compatibility with newer config files.
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (used by flags and tests)."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

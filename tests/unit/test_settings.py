"""Operator settings and their translation into kopf's."""

from __future__ import annotations

import pytest

from kstrata.controller.runner import kopf_cli_args, kopf_settings
from kstrata.errors import SettingsError
from kstrata.settings import Settings


def test_defaults_are_cluster_wide_with_peering() -> None:
    settings = Settings()
    assert settings.clusterwide
    assert kopf_cli_args(settings) == [
        "run",
        "--all-namespaces",
        "--peering",
        "kstrata",
        "--liveness",
        "http://0.0.0.0:8080/healthz",
    ]


def test_listed_namespaces_and_standalone() -> None:
    settings = Settings().with_overrides(
        namespaces=("a", "b"), standalone=True, liveness_endpoint=None
    )
    assert not settings.clusterwide
    assert kopf_cli_args(settings) == [
        "run",
        "--namespace",
        "a",
        "--namespace",
        "b",
        "--standalone",
    ]
    translated = kopf_settings(settings)
    assert translated.peering.standalone is True
    assert translated.peering.clusterwide is False


def test_unknown_override_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="unknown settings: colour"):
        Settings().with_overrides(colour="blue")


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.default_environment = "prod"  # type: ignore[misc]


def test_the_connection_pool_holds_every_thread_that_calls_at_once() -> None:
    # A thread that finds the pool full opens a connection and drops it after
    # the call (a TLS handshake and a logged warning each time).
    import os

    from kstrata.app.reloads import PARALLEL_CALLS
    from kstrata.kube.connection import Credentials
    from kstrata.kube.transport import Transport

    transport = Transport(Credentials(server="https://127.0.0.1:1", ca_path=None, verify_tls=False))
    handler_threads = kopf_settings(Settings()).execution.max_workers
    assert handler_threads is not None
    loop_default_executor = min(32, (os.cpu_count() or 1) + 4)
    assert transport._pool_size >= handler_threads + loop_default_executor + PARALLEL_CALLS

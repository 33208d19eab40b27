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

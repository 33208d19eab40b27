"""Operator settings and their translation into kopf's."""

from __future__ import annotations

from pathlib import Path

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


def test_the_operator_pool_holds_every_thread_that_calls_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thread that finds the transport's pool full opens a connection and
    # drops it after the call (a TLS handshake and a logged warning each time).
    # The pool is what `kstrata operator run` hands the operator, so raising
    # kopf's max_workers (or watching more namespaces) without it fails here.
    import os

    import yaml

    from kstrata.app.reloads import PARALLEL_CALLS
    from kstrata.cli import operator_cmd
    from kstrata.cli.main import main
    from kstrata.controller import runner
    from kstrata.kube.connection import connect

    started: list[runner.OperatorContext] = []
    # The entry point without kopf running, and without hiding the client from this process.
    monkeypatch.setattr(operator_cmd, "operator_imports", lambda: runner)
    monkeypatch.setattr(runner, "run", started.append)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    argv = ["--kubeconfig", str(kubeconfig), "operator", "run", "--standalone"]
    assert main([*argv, "-n", "a", "-n", "b", "--no-webhook"]) == 0
    (context,) = started
    handler_threads = kopf_settings(context.settings).execution.max_workers
    assert handler_threads is not None
    loop_default_executor = min(32, (os.cpu_count() or 1) + 4)
    secret_watches = 2  # one metadata watch per namespace, each holding its connection
    threads = handler_threads + loop_default_executor + PARALLEL_CALLS + secret_watches
    assert context.cluster.transport._pool_size >= threads
    # The CLI's own calls come one at a time: it keeps the small default.
    assert connect(kubeconfig).transport._pool_size < handler_threads

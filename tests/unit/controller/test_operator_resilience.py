"""The operator's error handling: loops that survive, failures that are logged, one outcome label.

* The background loop (key rotation, retry of blocked SealedSecrets) logs and
  survives every exception, not only ``KstrataError``, and logs no value.
* A failed ``post_event`` is logged (object and reason, not the message).
* Both kinds classify a failed reconcile with the same function: a target
  that is not ours is ``invalid`` for ConfigProfiles and SealedSecrets alike.
* A port already in use stops start-up at once, naming the port and the
  setting to change, in the real start-up path (``assemble``) and from the
  command line; kopf is never left retrying while no resource is processed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kstrata import metrics
from kstrata.app.profiles import ProfileReconciler
from kstrata.app.sealed_secrets import SealedSecretReconciler
from kstrata.controller import runner
from kstrata.controller.sealed_secrets import _every, _reconcile_quietly
from kstrata.errors import (
    ConflictError,
    DocumentError,
    ForbiddenError,
    InputLimitError,
    KstrataError,
    NotFoundError,
    OwnershipError,
    SettingsError,
    TransientClusterError,
    UnknownKeyError,
    UnsealError,
)
from kstrata.kube.api import post_event
from kstrata.payloads import ConfigProfile
from kstrata.settings import Settings

CANARY = "CANARY-d0-not-log"


# --- the background loop -------------------------------------------------------------


def test_the_background_loop_survives_every_exception(caplog: pytest.LogCaptureFixture) -> None:
    failures: list[BaseException] = [
        RuntimeError(f"boom {CANARY}"),
        KeyError(CANARY),
        UnsealError(),
        TransientClusterError("API server unavailable"),
    ]
    finished = threading.Event()
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        finished.set()

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(_every(0.0, work, "key rotation")())
        try:
            deadline = time.monotonic() + 10
            while not finished.is_set():
                assert not task.done(), "the loop ended"
                assert time.monotonic() < deadline, "the loop stopped working"
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with caplog.at_level(logging.WARNING, logger="kstrata.controller.sealed_secrets"):
        asyncio.run(scenario())
    assert len(calls) >= 5
    assert "key rotation failed unexpectedly, trying again in 0.0 s: RuntimeError at " in (
        caplog.text
    )
    assert "KeyError at " in caplog.text
    assert CANARY not in caplog.text


class _Api:
    """Just enough of KubeApi: ``get`` returns a SealedSecret body."""

    def get(self, _resource: Any, namespace: str, name: str) -> dict[str, Any]:
        if name == "gone":
            raise NotFoundError("gone")
        return {"metadata": {"namespace": namespace, "name": name}}


class _Reconciler:
    def __init__(self) -> None:
        self.reconciled: list[str] = []
        self.forgotten: list[str] = []

    def reconcile(self, sealed: dict[str, Any], _labels: Any) -> None:
        name = sealed["metadata"]["name"]
        if name == "buggy":
            raise ValueError(CANARY)
        self.reconciled.append(name)

    def forget(self, _namespace: str, name: str) -> None:
        self.forgotten.append(name)


def test_one_objects_bug_does_not_stop_the_retry_of_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reconciler = _Reconciler()
    pairs = [("ns", "buggy"), ("ns", "gone"), ("ns", "fine")]
    with caplog.at_level(logging.INFO, logger="kstrata.controller.sealed_secrets"):
        _reconcile_quietly(_Api(), reconciler, pairs, None)  # type: ignore[arg-type]
    assert reconciler.reconciled == ["fine"]
    assert reconciler.forgotten == ["gone"]
    assert "re-unsealing ns/buggy failed unexpectedly: ValueError at " in caplog.text
    assert CANARY not in caplog.text


# --- post_event ------------------------------------------------------------------------


class _RefusingApi:
    def __init__(self, error: KstrataError) -> None:
        self.error = error

    def create(self, *_: Any) -> None:
        raise self.error


@pytest.mark.parametrize(
    "error", [TransientClusterError("timeout"), ForbiddenError("events is forbidden")]
)
def test_a_failed_event_is_logged_without_its_message(
    error: KstrataError, caplog: pytest.LogCaptureFixture
) -> None:
    profile: ConfigProfile = {
        "apiVersion": "kstrata.dev/v1alpha1",
        "kind": "ConfigProfile",
        "metadata": {"name": "payments", "namespace": "shop", "uid": "u1"},
    }
    with caplog.at_level(logging.WARNING, logger="kstrata.kube.api"):
        post_event(
            _RefusingApi(error),  # type: ignore[arg-type]
            profile,
            type_="Normal",
            reason="Rendered",
            message=f"ConfigMap payments: {CANARY}",
            now="2026-01-01T00:00:00Z",
        )
    assert f"event Rendered about ConfigProfile shop/payments not posted: {error.reason}" in (
        caplog.text
    )
    assert CANARY not in caplog.text


# --- one classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "result"),
    [
        (OwnershipError("ConfigMap x is not ours"), "invalid"),
        (DocumentError("bad"), "invalid"),
        (InputLimitError("big"), "invalid"),
        (UnknownKeyError("no key"), "invalid"),
        (UnsealError(), "invalid"),
        (TransientClusterError("timeout"), "error"),
        (ConflictError("409"), "error"),
        (ForbiddenError("403"), "error"),
        (RuntimeError("bug"), "error"),
    ],
)
def test_reconcile_results_are_classified_once(error: BaseException, result: str) -> None:
    assert metrics.reconcile_result(error) == result


def _count(kind: str, result: str) -> float:
    value: float = metrics.RECONCILES.labels(kind=kind, result=result)._value.get()
    return value


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: ProfileReconciler(None, Settings()), "ConfigProfile"),  # type: ignore[arg-type]
        (lambda: SealedSecretReconciler(None, Settings()), "SealedSecret"),  # type: ignore[arg-type]
    ],
)
@pytest.mark.parametrize(
    ("error", "result"),
    [(OwnershipError("not ours"), "invalid"), (RuntimeError("bug"), "error")],
)
def test_both_kinds_count_a_failure_under_the_same_label(
    make: Any, kind: str, error: BaseException, result: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconciler = make()

    def fail(*_: Any, **__: Any) -> None:
        raise error

    monkeypatch.setattr(reconciler, "_reconcile", fail)
    before = _count(kind, result)
    with pytest.raises(type(error)):
        reconciler.reconcile({"metadata": {"name": "x", "namespace": "ns"}})
    assert _count(kind, result) == before + 1


# --- ports in use ------------------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process listens on (a free one, never 9090 itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def _context(**overrides: Any) -> runner.OperatorContext:
    base = {"metrics_address": "127.0.0.1:0", "liveness_endpoint": None, "webhook_address": None}
    settings = Settings().with_overrides(**{**base, **overrides})
    return runner.OperatorContext(settings=settings, cluster=None)  # type: ignore[arg-type]


def test_a_metrics_port_in_use_stops_start_up_with_a_clear_error(taken_port: int) -> None:
    context = _context(metrics_address=f"127.0.0.1:{taken_port}")
    started = time.monotonic()
    with pytest.raises(SettingsError) as raised:
        runner.assemble(context)  # the real start-up path, before kopf runs
    assert time.monotonic() - started < 2
    message = str(raised.value)
    assert message.startswith(
        f"metrics_address 127.0.0.1:{taken_port}: port {taken_port} is already in use"
    )
    assert "--metrics-address" in message
    assert context.metrics_bound is None


@pytest.mark.parametrize(
    ("setting", "value", "flag"),
    [
        ("liveness_endpoint", "http://127.0.0.1:{port}/healthz", "--liveness"),
        ("webhook_address", "127.0.0.1:{port}", "--webhook-address"),
    ],
)
def test_liveness_and_webhook_ports_in_use_are_named_too(
    taken_port: int, setting: str, value: str, flag: str
) -> None:
    context = _context(**{setting: value.format(port=taken_port)})
    with pytest.raises(SettingsError, match=f"port {taken_port} is already in use") as raised:
        runner.open_endpoints(context)
    assert str(raised.value).startswith(setting)
    assert flag in str(raised.value)
    assert context.metrics_bound is None  # nothing started before the check failed


def test_two_endpoints_on_one_port_are_refused() -> None:
    context = _context(metrics_address="127.0.0.1:18080", liveness_endpoint="http://0.0.0.0:18080/")
    with pytest.raises(SettingsError, match="port 18080 is also the port of metrics_address"):
        runner.open_endpoints(context)


def test_free_ports_are_served() -> None:
    context = _context()
    runner.open_endpoints(context)
    try:
        assert context.metrics_bound is not None
        host, port = context.metrics_bound
        with socket.create_connection((host, port), timeout=5):
            pass
        runner._start_metrics(context)  # idempotent: the start-up handler's second call
    finally:
        runner._stop_metrics(context)


def test_operator_run_exits_at_once_when_the_metrics_port_is_taken(
    taken_port: int, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: Config
            clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
            users: [{name: u, user: {token: t}}]
            contexts: [{name: x, context: {cluster: c, user: u}}]
            current-context: x
            """
        )
    )
    argv = [
        *("--kubeconfig", str(kubeconfig), "operator", "run", "--standalone", "--no-webhook"),
        *("--liveness", "", "--metrics-address", f"127.0.0.1:{taken_port}"),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "kstrata", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert f"port {taken_port} is already in use" in result.stderr
    assert "metrics_address" in result.stderr
    assert "Traceback" not in result.stderr

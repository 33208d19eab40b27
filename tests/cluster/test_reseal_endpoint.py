"""The operator's reseal endpoint on the real control plane: HTTPS, keys, bounds, no leak.

The API server will not proxy to a loopback endpoint, so here the CLI's half
(:func:`reseal_files`) POSTs straight to the operator's port; the service
proxy and RBAC are proven on the node (tests/e2e/test_reseal_on_node.py).
Everything else is real: the operator's kopf startup serving the endpoint
with the webhook's certificate, its key Secret after a rotation, the
SealedSecret opened again by the operator under the new key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

import controlplane
from kstrata.app.reseal import RESEAL_PATH, collect, reseal_files, write_in_place
from kstrata.app.sealing_keys import KeyStore
from kstrata.crypto import KeyRing, generate_keypair, parse_token
from kstrata.kube.api import KubeApi
from kstrata.settings import Settings
from support.cluster import TestCluster
from support.leaks import Canary, LogCapture, captured_logs, scan
from support.operator import RunningOperator, operator_with_webhook
from support.sealed_secrets import published_bundle, seal_for, secret_data, wait_bundle
from support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("kstrata_crds")


@pytest.fixture
def operator_log() -> Iterator[LogCapture]:
    with captured_logs("kopf", "kstrata", "aiohttp") as capture:
        yield capture


@contextlib.contextmanager
def operator_with_reseal(
    cluster: TestCluster, namespace: str, keys_namespace: str, **overrides: Any
) -> Iterator[tuple[RunningOperator, str]]:
    reseal_port = controlplane.free_port()
    with operator_with_webhook(
        cluster,
        namespace,
        keys_namespace,
        reseal_address=f"127.0.0.1:{reseal_port}",
        **overrides,
    ) as running:
        yield running, f"https://127.0.0.1:{reseal_port}{RESEAL_PATH}"


def post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    # The test's own client: the operator's self-signed certificate is not checked here
    # (the API server's proxy does not check it either).
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        return error.code, json.loads(text) if text.startswith(b"{") else {}


def manifest(token: str, namespace: str) -> str:
    return (
        "# rotated by the platform team\n"
        "apiVersion: kstrata.dev/v1alpha1\nkind: SealedSecret\n"
        f"metadata: {{name: db, namespace: {namespace}}}\n"
        f"spec:\n  encryptedData:\n    password: {token}\n"
    )


def test_reseal_after_rotation_keeps_the_value_and_refuses_what_it_must(
    cluster: TestCluster,
    namespace: str,
    keys_namespace: str,
    tmp_path: Path,
    operator_log: LogCapture,
) -> None:
    value = Canary.new("reseal-endpoint")
    answers: dict[str, str] = {}
    with operator_with_reseal(cluster, namespace, keys_namespace) as (running, url):
        bundle = published_bundle(cluster, keys_namespace)
        token = seal_for(bundle, value.value, namespace=namespace, name="db", item="password")
        path = tmp_path / "db.yaml"
        path.write_text(manifest(token, namespace))
        cluster.kubectl("apply", "-f", str(path))
        wait_for(
            lambda: (
                secret_data(cluster, namespace, "db").get("password") == value.value
                if cluster.exists(cluster.core.read_namespaced_secret, "db", namespace)
                else None
            ),
            timeout=30,
            what="the Secret",
        )
        store = KeyStore(KubeApi(cluster.connection), Settings(operator_namespace=keys_namespace))
        new_key = store.rotate(dt.datetime.now(dt.UTC)).key_id
        wait_bundle(cluster, keys_namespace, keys=2)

        def send(request: Mapping[str, object]) -> dict[str, Any]:
            status, answer = post(url, json.dumps(request).encode())
            answers[f"answer {len(answers)} ({status})"] = json.dumps(answer)
            return answer

        files = collect([path])
        assert reseal_files(files, send) == new_key
        write_in_place(files)
        resealed = yaml.safe_load(path.read_text())["spec"]["encryptedData"]["password"]
        assert parse_token(resealed).key_ids == (new_key,)
        cluster.kubectl("apply", "-f", str(path))

        def opened_by_new_key() -> bool:
            sealed = cluster.kstrata_object("sealedsecrets", namespace, "db")
            items = (sealed.get("status") or {}).get("items") or []
            return [item.get("keyId") for item in items] == [new_key]

        wait_for(opened_by_new_key, timeout=30, what="the item opened by the new key")
        assert secret_data(cluster, namespace, "db")["password"] == value.value

        # A bundle nobody registered: refused, whole request, nothing resealed.
        foreign = KeyRing([generate_keypair(created=dt.datetime.now(dt.UTC))])
        item = {
            "scope": "strict", "namespace": namespace, "name": "db", "item": "password",
            "token": resealed,
        }  # fmt: skip
        request = {"recipient": foreign.public_bundle().serialize(), "items": [item]}
        status, answer = post(url, json.dumps(request).encode())
        answers["foreign"] = json.dumps(answer)
        assert status == 403
        assert "not registered" in answer["message"]
        assert "tokens" not in answer

        # Over the size bound: refused before it is read.
        status, _ = post(url, b"{" + b" " * (17 * 1024 * 1024) + b"}")
        assert status == 413

        metrics = running.metrics()
        assert 'kstrata_reseal_items_total{outcome="resealed"} 1.0' in metrics
        assert 'kstrata_reseal_items_total{outcome="refused"}' in metrics

    hits = scan({**answers, **operator_log.texts()}, [value])
    assert not hits, hits

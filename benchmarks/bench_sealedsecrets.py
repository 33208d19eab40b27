"""SealedSecret cold reconcile on the real local control plane.

* cold reconcile: ``--sealed`` SealedSecrets (``--items`` sealed items each)
  across ``--namespaces`` namespaces exist before the operator starts; the
  clock runs from the operator's liveness until every one has been unsealed
  into its Secret (the operator's ok-reconcile counter), and the operator's
  peak RSS is read from /proc (targets: >= 50 SealedSecrets/s, <= 200 MiB);
* restart: the operator is restarted with nothing changed; the number of
  SealedSecrets and Secrets whose resourceVersion moved (target: 0 writes);
* direct: the unseal use case (``SealedSecretReconciler.reconcile``) called in
  a loop in this process, without kopf, on ``--direct`` new SealedSecrets:
  the ceiling the API round trips leave, to tell kopf's share from ours.

"Done" is when a watch on the produced Secrets has seen every one of them,
not the reconcile counter: one SealedSecret may be reconciled more than once
(the operator's own metadata writes come back as updates), and the counter
would then reach the total before the last Secret exists.  Reconciles per
object are reported too.

The sealing keys are the operator's own: a first, empty start creates them in
``kstrata-system`` and publishes the public bundle, which this script reads
exactly as ``kstrata seal`` does; sealing happens client-side, before the
operator under measurement starts, and is not timed.

    .venv/bin/python benchmarks/bench_sealedsecrets.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from kubernetes import client, watch

from harness import Bench, control_plane, kopf_handled, operator, wait
from kstrata.app.sealed_secrets import SealedSecretReconciler
from kstrata.app.sealing_keys import KeyStore
from kstrata.crypto import PublicKeyBundle, Scope, SealingContext, seal
from kstrata.kube.api import KubeApi
from kstrata.settings import Settings

GROUP, VERSION, PLURAL = "kstrata.dev", "v1alpha1", "sealedsecrets"
OPERATOR_NAMESPACE = "kstrata-system"
PUBLIC_KEYS = "kstrata-sealing-public-keys"
OK_RECONCILES = 'kstrata_reconcile_total{kind="SealedSecret",result="ok"}'
MANAGED = "app.kubernetes.io/managed-by=kstrata,kstrata.dev/sealed-secret"


def operator_keys(bench: Bench) -> PublicKeyBundle:
    """Start the operator once with nothing to do, so it creates and publishes its keys."""
    bench.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=OPERATOR_NAMESPACE))
    )

    def published() -> PublicKeyBundle | None:
        try:
            found = bench.core.read_namespaced_config_map(PUBLIC_KEYS, OPERATOR_NAMESPACE)
        except client.exceptions.ApiException:
            return None
        text = (found.data or {}).get("keys.json")
        return PublicKeyBundle.parse(text) if text else None

    with operator(bench):
        bundle: PublicKeyBundle = wait(published, 60, "the published sealing keys", 0.2)
    return bundle


def sealed_secret(
    bundle: PublicKeyBundle, namespace: str, name: str, items: int, index: int
) -> dict[str, Any]:
    def token(item: str, value: bytes) -> str:
        context = SealingContext.bind(Scope.STRICT, item=item, namespace=namespace, name=name)
        return seal(value, bundle.newest, context)

    # Realistic sizes: a user name, a 32-byte password, a connection URL, then padding items.
    values = {
        "username": f"app-{index}".encode(),
        "password": f"{index:032d}".encode(),
        "url": f"postgres://db-{index % 10}.internal:5432/app?sslmode=require".encode(),
    }
    for extra in range(3, items):
        values[f"item-{extra}"] = f"value-{index}-{extra}".encode() * 4
    chosen = dict(list(values.items())[:items])
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SealedSecret",
        "metadata": {"name": name},
        "spec": {
            "encryptedData": {item: token(item, value) for item, value in chosen.items()},
            "template": {"labels": {"app": name}},
        },
    }


class SecretsSeen:
    """A watch on the produced Secrets: when the n-th distinct one appeared."""

    def __init__(self, bench: Bench) -> None:
        self.seen: set[str] = set()
        self.arrived = threading.Condition()
        self.stopper = watch.Watch()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._follow, args=(bench,), daemon=True)
        self.thread.start()

    def _follow(self, bench: Bench) -> None:
        # A loaded apiserver may cut a long watch; a new one starts with every
        # existing Secret as ADDED, so nothing seen is lost, at worst seen late.
        while not self.stopped.is_set():
            try:
                for event in self.stopper.stream(
                    bench.core.list_secret_for_all_namespaces,
                    label_selector=MANAGED,
                    timeout_seconds=600,
                ):
                    meta = event["object"].metadata
                    with self.arrived:
                        self.seen.add(f"{meta.namespace}/{meta.name}")
                        self.arrived.notify_all()
            except Exception:  # the stream broke: watch again
                self.stopper = watch.Watch()

    def wait_for(self, count: int, timeout: float) -> float:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.seen) >= count, timeout=timeout):
                raise TimeoutError(f"only {len(self.seen)} of {count} Secrets appeared")
        return time.perf_counter()

    def stop(self) -> None:
        self.stopped.set()
        self.stopper.stop()


def listed_sealed_secrets(bench: Bench) -> list[dict[str, Any]]:
    listed = cast("dict[str, Any]", bench.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL))
    items: list[dict[str, Any]] = listed["items"]
    return items


def cold_reconcile_and_restart(
    bench: Bench, bundle: PublicKeyBundle, sealed: int, namespaces: int, items: int
) -> dict[str, Any]:
    names = [f"bench-{n:02d}" for n in range(namespaces)]
    for name in names:
        bench.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    sealing_started = time.perf_counter()
    bodies = [
        (
            names[i % namespaces],
            sealed_secret(bundle, names[i % namespaces], f"s-{i:04d}", items, i),
        )
        for i in range(sealed)
    ]
    sealing_seconds = time.perf_counter() - sealing_started

    def create(pair: tuple[str, dict[str, Any]]) -> None:
        namespace, body = pair
        bench.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, bodies))

    def state() -> dict[str, str]:
        versions = {}
        for item in listed_sealed_secrets(bench):
            meta = item["metadata"]
            versions[f"kss/{meta['namespace']}/{meta['name']}"] = meta["resourceVersion"]
        for secret in bench.core.list_secret_for_all_namespaces(label_selector=MANAGED).items:
            meta = secret.metadata
            assert meta is not None
            versions[f"secret/{meta.namespace}/{meta.name}"] = meta.resource_version
        return versions

    def settled() -> bool:
        """kopf has handled every SealedSecret's current state (nothing left in flight)."""
        listed = listed_sealed_secrets(bench)
        return len(listed) >= sealed and all(kopf_handled(item) for item in listed)

    secrets_seen = SecretsSeen(bench)
    spawned = time.perf_counter()
    with operator(bench) as running:
        ready = time.perf_counter()
        done = secrets_seen.wait_for(sealed, 900)
        reconciles_at_done = running.metric(OK_RECONCILES)
        # Stop only once kopf has finished its own bookkeeping, as a real rollout would.
        wait(settled, 300, "kopf to settle", 1.0)
        settled_at = time.perf_counter()
        reconciles_settled = running.metric(OK_RECONCILES)
        rss = running.rss_peak_mib()
    secrets_seen.stop()
    before = state()
    secrets = sum(1 for key in before if key.startswith("secret/"))
    if secrets != sealed:
        # Not a timing assertion: a run that did not write every Secret measured nothing.
        raise RuntimeError(f"{secrets} Secrets written for {sealed} SealedSecrets")
    with operator(bench) as restarted:
        wait(lambda: restarted.metric(OK_RECONCILES) >= sealed, 900, "resume", 0.2)
        resumed_rss = restarted.rss_peak_mib()
    after = state()
    moved = sorted(key for key in before if after.get(key) != before[key])
    return {
        "sealed_secrets": sealed,
        "namespaces": namespaces,
        "items_per_sealed_secret": items,
        "client_sealing_seconds": round(sealing_seconds, 2),
        "secrets_written": secrets,
        "seconds_from_process_start": round(done - spawned, 2),
        "seconds_from_ready": round(done - ready, 2),
        "sealed_secrets_per_second": round(sealed / (done - ready), 1),
        "seconds_until_kopf_settled": round(settled_at - ready, 2),
        "ok_reconciles_when_done": reconciles_at_done,
        "ok_reconciles_when_settled": reconciles_settled,
        "operator_peak_rss_mib": round(rss, 1),
        "restart_objects_written": len(moved),
        "restart_written_examples": moved[:5],
        "restart_operator_peak_rss_mib": round(resumed_rss, 1),
    }


def direct_reconcile(
    bench: Bench, bundle: PublicKeyBundle, count: int, items: int
) -> dict[str, Any]:
    """The use case alone, in a loop in this process: no kopf, no operator process."""
    namespace = "bench-direct"
    bench.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    created: list[dict[str, Any]] = []
    for i in range(count):
        body = sealed_secret(bundle, namespace, f"d-{i:04d}", items, i)
        made = bench.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        created.append(cast("dict[str, Any]", made))
    api = KubeApi(bench.cluster)
    settings = Settings(operator_namespace=OPERATOR_NAMESPACE)
    reconciler = SealedSecretReconciler(api, settings, KeyStore(api, settings))
    reconciler.reconcile(created[0])  # warm: key Secret read and parsed once
    started = time.perf_counter()
    for body in created[1:]:
        reconciler.reconcile(body)
    elapsed = time.perf_counter() - started
    return {
        "sealed_secrets": count - 1,
        "seconds": round(elapsed, 2),
        "sealed_secrets_per_second": round((count - 1) / elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sealed", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--direct", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with control_plane() as bench:
        bundle = operator_keys(bench)
        results = {
            "cold_reconcile": cold_reconcile_and_restart(
                bench, bundle, args.sealed, args.namespaces, args.items
            )
        }
        print(json.dumps(results, indent=2), flush=True)
        results["direct_reconcile"] = direct_reconcile(bench, bundle, args.direct, args.items)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

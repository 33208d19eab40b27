"""The kopf floor: the least a kopf operator can do to reload a workload.

Why it exists: ``bench_peers.py --reload-only`` compares kstrata's reload
latency with the API floor (a bare watch plus one PATCH).  kstrata is a kopf
operator, so part of its distance to that floor is kopf's own per-event cost
(its watch stream, event queueing, the hop to a handler).  This script is a
kopf operator that does nothing else: on a ConfigMap's data change it PATCHes
one Deployment's pod template, from a thread (kstrata's passes run in threads
too).  kstrata's plain-ConfigMap path measured against it shows what is
kstrata's own and what any kopf operator pays.

kopf is set up as kstrata's runner sets it where it matters for one event
(``kstrata.controller.runner.kopf_settings``): standalone, no events posted
from logs, the same watch timeouts and worker pool.  It watches ConfigMaps in
every namespace, as kstrata does, and reacts to one of them only.  Not a
``bench_*`` module: ``bench_peers.py`` starts it, with KUBECONFIG set and
the ConfigMap and Deployment named in ``KOPF_FLOOR_*`` variables::

    KUBECONFIG=... KOPF_FLOOR_NAMESPACE=ns KOPF_FLOOR_CONFIGMAP=src \\
    KOPF_FLOOR_DEPLOYMENT=app python -m kopf run --standalone -A benchmarks/kopf_floor.py
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
from kubernetes import client, config

NAMESPACE = os.environ.get("KOPF_FLOOR_NAMESPACE", "peers-kopf")
CONFIGMAP = os.environ.get("KOPF_FLOOR_CONFIGMAP", "src")
DEPLOYMENT = os.environ.get("KOPF_FLOOR_DEPLOYMENT", "kopf-floor")

config.load_kube_config()
_apps = client.AppsV1Api()
_last: dict[str, str] = {}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.CRITICAL
    settings.networking.request_timeout = 30
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = 12


@kopf.on.event("", "v1", "configmaps")
def changed(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> None:
    # A sync handler: kopf runs it in its thread pool, one hop as in kstrata.
    if namespace != NAMESPACE or name != CONFIGMAP:
        return
    value = (body.get("data") or {}).get("v")
    if value is None or _last.get("v") == value:
        return
    _last["v"] = value
    _apps.patch_namespaced_deployment(
        DEPLOYMENT,
        NAMESPACE,
        {"spec": {"template": {"metadata": {"annotations": {"v": value}}}}},
    )

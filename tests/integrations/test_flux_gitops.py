"""A GitOps round trip with the real Flux on the embedded control plane.

Flux's source-controller and kustomize-controller (tools/gotools: the pinned
Go modules, built by the project's installer) run as local processes against
the session's API server; their CRDs come from the same pinned modules in the
Go module cache.  A bare git repository in tmp is served on loopback by ``git
http-backend`` behind a small HTTP server (Flux speaks smart HTTP, not
git://).  It holds a ConfigProfile, a SealedSecret sealed with ``kstrata
seal`` against the running operator's published key, and a Deployment that
follows both (``kstrata.dev/reload``).  The test proves, with Flux itself:

* a commit that changes a value is applied by Flux, rendered by kstrata
  (the ConfigMap changes) and rolls the Deployment once (one new ReplicaSet);
* Flux sees no drift in what kstrata writes: across two forced Flux
  reconciles the Kustomization stays Ready at the same revision and
  inventory, and neither the ConfigProfile's nor the Deployment's generation
  moves, while kstrata's annotations stay in place;
* ``kstrata rollback -o yaml`` committed to git is applied by Flux as the
  rollback, and an in-cluster ``kstrata rollback`` is reverted by Flux at its
  next reconcile, as docs/config-management-guide.md says.

The cluster has no node, so the Deployment's pods never run: rollouts are
counted as ReplicaSets, which kube-controller-manager makes per template
change.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

import controlplane
from kstrata.cli.main import main
from support.cluster import TestCluster
from support.operator import running_operator
from support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("kstrata_crds")]

GROUP, VERSION = "kstrata.dev", "v1alpha1"
FLUX_KS = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
RECORD = "kstrata.dev/revisions"
PUBLIC_KEYS = "kstrata-sealing-public-keys"
INTERVAL = "2s"  # Flux's reconcile interval for the source and the Kustomization
GOTOOLS = Path(__file__).resolve().parents[2] / "tools" / "gotools"


# --- a git repository served on loopback ---------------------------------------------


class GitHTTPHandler(BaseHTTPRequestHandler):
    """Smart HTTP for Flux: each request is handed to ``git http-backend`` (CGI)."""

    project_root = ""

    def do_GET(self) -> None:
        self.cgi()

    def do_POST(self) -> None:
        self.cgi()

    def cgi(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.project_root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
        )
        head, sep, payload = result.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, _, payload = result.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: Flux polls every two seconds


@dataclass
class GitRepo:
    """A work tree whose commits are pushed to the bare repository Flux reads."""

    work: Path
    url: str

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.work, capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()

    def write(self, relative: str, body: Any) -> None:
        path = self.work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, str):
            path.write_text(body)
        else:
            path.write_text(yaml.safe_dump(body, sort_keys=False))

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")


@contextlib.contextmanager
def served_git_repository(tmp: Path) -> Iterator[GitRepo]:
    root = tmp / "served"
    root.mkdir()
    subprocess.run(
        ["git", "init", "-q", "--bare", "-b", "main", str(root / "deploy.git")], check=True
    )
    work = tmp / "work"
    subprocess.run(["git", "clone", "-q", str(root / "deploy.git"), str(work)], check=True)
    handler = type("Handler", (GitHTTPHandler,), {"project_root": str(root)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    repo = GitRepo(work, f"http://127.0.0.1:{server.server_address[1]}/deploy.git")
    repo.git("checkout", "-q", "-b", "main")
    repo.git("config", "user.name", "kstrata tests")
    repo.git("config", "user.email", "tests@kstrata.invalid")
    try:
        yield repo
    finally:
        server.shutdown()
        server.server_close()


# --- Flux's controllers as local processes ------------------------------------------


def module_dir(wrapper: str, module: str) -> Path:
    """Where the wrapper's pinned module is in the Go module cache (fetched if missing)."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", module],
        cwd=GOTOOLS / "flux" / wrapper,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=dict(os.environ, GOFLAGS="-mod=readonly", GOTOOLCHAIN="local"),
    )
    return Path(json.loads(result.stdout)["Dir"])


def flux_crds() -> list[Path]:
    source = module_dir("source-controller", "github.com/fluxcd/source-controller")
    kustomize = module_dir("kustomize-controller", "github.com/fluxcd/kustomize-controller")
    found = sorted((source / "config" / "crd" / "bases").glob("*.yaml")) + sorted(
        (kustomize / "config" / "crd" / "bases").glob("*.yaml")
    )
    assert len(found) >= 2, f"no CRDs under {source} and {kustomize}"
    return found


@dataclass
class Controller:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    health: str

    def ready_or_exited(self) -> bool:
        if self.process.poll() is not None:
            return True  # no use waiting: the caller reports it
        with urllib.request.urlopen(f"{self.health}/readyz", timeout=2) as response:
            return bool(response.status == 200)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def flux_controllers(
    cluster: TestCluster, source: Path, kustomize: Path, tmp: Path
) -> Iterator[list[Controller]]:
    """source-controller and kustomize-controller on loopback ports; no leader election."""
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), RUNTIME_NAMESPACE="flux-system")
    storage = controlplane.free_port()
    (tmp / "artifacts").mkdir()
    specs = {
        "source-controller": (
            source,
            [
                f"--storage-path={tmp / 'artifacts'}",
                f"--storage-addr=127.0.0.1:{storage}",
                f"--storage-adv-addr=127.0.0.1:{storage}",
            ],
        ),
        "kustomize-controller": (kustomize, ["--no-remote-bases=true"]),
    }
    controllers: list[Controller] = []
    try:
        for name, (binary, extra) in specs.items():
            health = controlplane.free_port()
            log = tmp / f"{name}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [
                        str(binary),
                        f"--metrics-addr=127.0.0.1:{controlplane.free_port()}",
                        f"--health-addr=127.0.0.1:{health}",
                        "--enable-leader-election=false",
                        "--watch-all-namespaces=true",
                        "--log-encoding=console",
                        *extra,
                    ],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            controllers.append(Controller(name, process, log, f"http://127.0.0.1:{health}"))
        for controller in controllers:
            wait_for(controller.ready_or_exited, timeout=60, what=f"{controller.name} to be ready")
            if controller.process.poll() is not None:
                raise AssertionError(f"{controller.name} exited:\n{controller.tail()}")
        yield controllers
    finally:
        for controller in controllers:
            controller.process.terminate()
        for controller in controllers:
            try:
                controller.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                controller.process.kill()
                controller.process.wait()


# --- kstrata and the cluster ----------------------------------------------------------


def api(cluster: TestCluster, name: str) -> Any:
    """Untyped handles: the tests treat API objects as loosely as the client does."""
    return getattr(cluster, name)


def kstrata(cluster: TestCluster, *argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--kubeconfig", str(cluster.kubeconfig)], out=out, err=err)
    assert code == 0, f"kstrata {' '.join(argv)} exited {code}: {err.getvalue()}"
    return out.getvalue()


def get(cluster: TestCluster, namespace: str, plural: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = api(cluster, "custom").get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name
    )
    return found


def ready_at(body: dict[str, Any], revision: int | None = None) -> bool:
    status = body.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    return (
        bool(ready)
        and ready[0]["status"] == "True"
        and status.get("observedGeneration") == body["metadata"]["generation"]
        and (revision is None or status.get("revision") == revision)
    )


def kustomization(cluster: TestCluster, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = api(cluster, "custom").get_namespaced_custom_object(
        *FLUX_KS[:2], namespace, FLUX_KS[2], "app"
    )
    return found


def flux_applied(cluster: TestCluster, namespace: str, commit: str) -> dict[str, Any] | None:
    """The Kustomization, once Flux applied ``commit`` and reports Ready for it."""
    body = kustomization(cluster, namespace)
    status = body.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    if (
        status.get("lastAppliedRevision") == f"main@sha1:{commit}"
        and ready
        and ready[0]["status"] == "True"
        and status.get("observedGeneration") == body["metadata"]["generation"]
    ):
        return body
    return None


def wait_flux_applied(
    cluster: TestCluster, namespace: str, commit: str, controllers: list[Controller]
) -> dict[str, Any]:
    try:
        found: dict[str, Any] = wait_for(
            lambda: flux_applied(cluster, namespace, commit),
            timeout=60,
            interval=0.2,
            what=f"Flux to apply {commit[:8]}",
        )
        return found
    except AssertionError as error:
        status = (kustomization(cluster, namespace).get("status") or {}).get("conditions")
        logs = "\n".join(f"--- {c.name}\n{c.tail(20)}" for c in controllers)
        raise AssertionError(f"{error}\nKustomization conditions: {status}\n{logs}") from error


def force_flux_reconcile(cluster: TestCluster, namespace: str) -> None:
    """Ask kustomize-controller for a reconcile now and wait until it has handled it."""
    token = str(time.time_ns())
    api(cluster, "custom").patch_namespaced_custom_object(
        *FLUX_KS[:2],
        namespace,
        FLUX_KS[2],
        "app",
        {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}},
    )
    wait_for(
        lambda: (
            (kustomization(cluster, namespace).get("status") or {}).get("lastHandledReconcileAt")
            == token
        ),
        timeout=30,
        interval=0.2,
        what="Flux to handle a requested reconcile",
    )


def replica_sets(cluster: TestCluster, namespace: str, name: str) -> int:
    items = api(cluster, "apps").list_namespaced_replica_set(namespace).items
    return len(
        [
            rs
            for rs in items
            if any(o.kind == "Deployment" and o.name == name for o in rs.metadata.owner_references)
        ]
    )


def rolled_out(cluster: TestCluster, namespace: str, count: int) -> bool:
    """kube-controller-manager has seen web's latest template, and made ``count`` ReplicaSets."""
    web = api(cluster, "apps").read_namespaced_deployment("web", namespace)
    return bool(
        web.status.observed_generation == web.metadata.generation
        and replica_sets(cluster, namespace, "web") == count
    )


def recorded(cluster: TestCluster, namespace: str) -> tuple[str | None, str | None]:
    """The revisions kstrata recorded on the Deployment and on its pod template."""
    web = api(cluster, "apps").read_namespaced_deployment("web", namespace)
    template = web.spec.template.metadata.annotations or {}
    return (web.metadata.annotations or {}).get(RECORD), template.get(RECORD)


def resource_versions(cluster: TestCluster, namespace: str) -> dict[str, str]:
    """What Flux applies and what kstrata writes from it: any write changes these."""
    return {
        "payments": get(cluster, namespace, "configprofiles", "payments")["metadata"][
            "resourceVersion"
        ],
        "db": get(cluster, namespace, "sealedsecrets", "db")["metadata"]["resourceVersion"],
        "web": api(cluster, "apps")
        .read_namespaced_deployment("web", namespace)
        .metadata.resource_version,
        "configmap": api(cluster, "core")
        .read_namespaced_config_map("payments", namespace)
        .metadata.resource_version,
        "secret": api(cluster, "core")
        .read_namespaced_secret("db", namespace)
        .metadata.resource_version,
    }


def config(cluster: TestCluster, namespace: str) -> str:
    data = api(cluster, "core").read_namespaced_config_map("payments", namespace).data or {}
    return str(data.get("config.yaml"))


# --- what git holds ------------------------------------------------------------------


def profile(greeting: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConfigProfile",
        "metadata": {"name": "payments"},
        "spec": {"base": {"greeting": greeting, "port": 8080}},
    }


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "annotations": {"kstrata.dev/reload": "payments,db"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "registry.k8s.io/pause:3.10",
                        "envFrom": [{"secretRef": {"name": "db"}}],
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}],
                    }
                ],
                "volumes": [{"name": "config", "configMap": {"name": "payments"}}],
            },
        },
    },
}

KUSTOMIZATION_FILE = {
    "apiVersion": "kustomize.config.k8s.io/v1beta1",
    "kind": "Kustomization",
    "resources": ["payments.yaml", "db.yaml", "web.yaml"],
}


@contextlib.contextmanager
def delivered_by_flux(cluster: TestCluster, namespace: str, url: str) -> Iterator[None]:
    """The GitRepository and Kustomization; deleted while Flux still runs (finalizers)."""
    objects = flux_objects(namespace, url)
    for body in objects:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    try:
        yield
    finally:
        for body in reversed(objects):
            cluster.kubectl(
                "delete", "--timeout=60s", "-n", namespace,
                f"{body['kind'].lower()}.{body['apiVersion'].split('/')[0]}",
                body["metadata"]["name"],
            )  # fmt: skip


def flux_objects(namespace: str, url: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "deploy", "namespace": namespace},
            "spec": {"interval": INTERVAL, "url": url, "ref": {"branch": "main"}},
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {
                "interval": INTERVAL,
                "retryInterval": INTERVAL,
                "path": "./app",
                "prune": True,
                "targetNamespace": namespace,
                "sourceRef": {"kind": "GitRepository", "name": "deploy"},
            },
        },
    ]


# --- the test ------------------------------------------------------------------------


def test_flux_delivers_kstrata_objects_without_drift_and_owns_rollbacks(
    cluster: TestCluster,
    namespace: str,
    keys_namespace: str,
    flux_source_controller: Path,
    flux_kustomize_controller: Path,
    tmp_path: Path,
) -> None:
    assert shutil.which("git"), "git is needed to serve the repository"
    cluster.kubectl("apply", "--server-side", *(f"--filename={p}" for p in flux_crds()))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gitrepositories.source.toolkit.fluxcd.io",
        "crd/kustomizations.kustomize.toolkit.fluxcd.io",
    )
    with (
        running_operator(
            cluster, namespaces=(namespace, keys_namespace), operator_namespace=keys_namespace
        ),
        served_git_repository(tmp_path) as repo,
        flux_controllers(
            cluster, flux_source_controller, flux_kustomize_controller, tmp_path
        ) as controllers,
        contextlib.ExitStack() as stack,
    ):
        wait_for(
            lambda: api(cluster, "core").read_namespaced_config_map(PUBLIC_KEYS, keys_namespace),
            timeout=30,
            what="the operator's published public keys",
        )
        sealed = kstrata(
            cluster, "seal", "--controller-namespace", keys_namespace, "-n", namespace,
            "--name", "db", "--from-literal", "password=flux-canary-7f3a",
        )  # fmt: skip
        assert "flux-canary-7f3a" not in sealed
        repo.write("app/kustomization.yaml", KUSTOMIZATION_FILE)
        repo.write("app/payments.yaml", profile("hello"))
        repo.write("app/db.yaml", sealed)
        repo.write("app/web.yaml", DEPLOYMENT)
        first = repo.commit("payments, db and web")
        stack.enter_context(delivered_by_flux(cluster, namespace, repo.url))

        # Flux applies the first commit; kstrata renders both and records them on web.
        wait_flux_applied(cluster, namespace, first, controllers)
        wait_for(
            lambda: (
                ready_at(get(cluster, namespace, "configprofiles", "payments"), 1)
                and ready_at(get(cluster, namespace, "sealedsecrets", "db"), 1)
            ),
            timeout=30,
            what="payments and db Ready at revision 1",
        )
        assert "greeting: hello" in config(cluster, namespace)
        wait_for(
            lambda: recorded(cluster, namespace)[0] == "db=1,payments=1",
            timeout=30,
            what="web to record db=1,payments=1",
        )
        # First sight records the revisions without touching the pod template.
        assert recorded(cluster, namespace)[1] is None
        wait_for(lambda: rolled_out(cluster, namespace, 1), timeout=30, what="web's ReplicaSet")
        rollouts = 1

        # A commit changes one value: Flux applies it, kstrata renders and rolls web once.
        repo.write("app/payments.yaml", profile("hola"))
        second = repo.commit("greet in Spanish")
        wait_flux_applied(cluster, namespace, second, controllers)
        wait_for(
            lambda: ready_at(get(cluster, namespace, "configprofiles", "payments"), 2),
            timeout=30,
            what="payments Ready at revision 2",
        )
        assert "greeting: hola" in config(cluster, namespace)
        wait_for(
            lambda: recorded(cluster, namespace) == ("db=1,payments=2", "db=1,payments=2"),
            timeout=30,
            what="web to roll to payments=2",
        )
        wait_for(
            lambda: rolled_out(cluster, namespace, rollouts + 1),
            timeout=30,
            what="one new ReplicaSet for web",
        )

        # No drift: two full Flux reconciles write nothing (not even metadata, which
        # would not move a generation) and leave kstrata's annotations in place.
        applied = kustomization(cluster, namespace)["status"]
        generations = (
            get(cluster, namespace, "configprofiles", "payments")["metadata"]["generation"],
            get(cluster, namespace, "sealedsecrets", "db")["metadata"]["generation"],
            api(cluster, "apps").read_namespaced_deployment("web", namespace).metadata.generation,
        )
        versions = resource_versions(cluster, namespace)
        for _ in range(2):
            force_flux_reconcile(cluster, namespace)
            assert flux_applied(cluster, namespace, second) is not None
        after = kustomization(cluster, namespace)["status"]
        assert after["inventory"] == applied["inventory"]
        assert after["lastAttemptedRevision"] == after["lastAppliedRevision"]
        assert resource_versions(cluster, namespace) == versions
        assert (
            get(cluster, namespace, "configprofiles", "payments")["metadata"]["generation"],
            get(cluster, namespace, "sealedsecrets", "db")["metadata"]["generation"],
            api(cluster, "apps").read_namespaced_deployment("web", namespace).metadata.generation,
        ) == generations
        assert recorded(cluster, namespace) == ("db=1,payments=2", "db=1,payments=2")
        assert replica_sets(cluster, namespace, "web") == rollouts + 1
        annotations = get(cluster, namespace, "configprofiles", "payments")["metadata"]
        assert annotations["annotations"]["kstrata.dev/revision"] == "2"

        # The GitOps rollback: `kstrata rollback -o yaml`, committed, applied by Flux.
        restored = kstrata(cluster, "rollback", "payments", "-n", namespace, "-o", "yaml")
        assert (
            get(cluster, namespace, "configprofiles", "payments")["metadata"]["generation"]
            == generations[0]
        ), "-o yaml wrote to the cluster"
        repo.write("app/payments.yaml", restored)
        third = repo.commit("roll payments back to revision 1")
        wait_flux_applied(cluster, namespace, third, controllers)
        wait_for(
            lambda: ready_at(get(cluster, namespace, "configprofiles", "payments"), 3),
            timeout=30,
            what="payments Ready at revision 3",
        )
        assert "greeting: hello" in config(cluster, namespace)
        history = kstrata(cluster, "history", "payments", "-n", namespace)
        assert history.splitlines()[-1].endswith("yes       rollback to 1")
        wait_for(
            lambda: rolled_out(cluster, namespace, rollouts + 2),
            timeout=30,
            what="web to roll for the rollback",
        )

        # An in-cluster rollback is not in git: Flux puts git's spec back.
        git_spec = get(cluster, namespace, "configprofiles", "payments")["spec"]
        generation = get(cluster, namespace, "configprofiles", "payments")["metadata"]["generation"]
        kstrata(cluster, "rollback", "payments", "-n", namespace, "--to-revision", "2", "--no-wait")

        def reverted() -> bool:
            body = get(cluster, namespace, "configprofiles", "payments")
            return bool(
                body["metadata"]["generation"] >= generation + 2 and body["spec"] == git_spec
            )

        wait_for(reverted, timeout=30, interval=0.2, what="Flux to revert the in-cluster rollback")
        wait_for(
            lambda: (
                ready_at(get(cluster, namespace, "configprofiles", "payments"))
                and "greeting: hello" in config(cluster, namespace)
            ),
            timeout=30,
            what="payments rendered from git's spec again",
        )
        assert flux_applied(cluster, namespace, third) is not None
        for controller in controllers:
            assert "flux-canary-7f3a" not in controller.log.read_text(errors="replace")

"""`make demo`: the whole kstrata story on the embedded local cluster.

Each step prints what it does and what it shows.  As root, the cluster has a
real node (`make node`): kstrata is installed as users install it, two
operator pods from its own image, and the application is a real pod that
prints the configuration it was started with, then the new one after the
rollout.  Without root, the control plane alone (`make cluster`) runs the
same story with the operator as a child process, and the Deployment's pods
are never started.  Either cluster is left running so you can keep
exploring; `make cluster-down` stops it.

KSTRATA_DEMO_NODE=1|0 chooses explicitly; KSTRATA_DEMO_KUBECONFIG points the
demo at an existing cluster (the tests do that).
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools" / "controlplane"))
sys.path.insert(0, str(REPO / "tools" / "node"))

import controlplane  # noqa: E402

# The app's container prints the configuration and the user name it started with
# (never the password), then idles: `kubectl logs` shows what each pod was given.
# As PID 1 it must end on SIGTERM itself (PID 1 gets no default handler), or
# every rollout would wait out the 30 s grace period.
PRINT_CONFIG = (
    'echo "payments started as user $username with /etc/payments/config.yaml:";'
    " cat /etc/payments/config.yaml; trap 'exit 0' TERM; sleep 100000 & wait"
)


def step(title: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}==> {title}{plain}", flush=True)


class Demo:
    def __init__(self, kubeconfig: Path, binaries: Path) -> None:
        self.log_path = kubeconfig.parent / "demo-operator.log"
        self.env = dict(os.environ, KUBECONFIG=str(kubeconfig))
        self.env["PATH"] = f"{binaries}{os.pathsep}{self.env.get('PATH', '')}"

    def run(
        self, *argv: str, check: bool = True, show: bool = True, input: str | None = None
    ) -> str:
        """Run a command as a user would type it, echoing it and its output."""
        if show:
            shown = (
                ["kstrata", *argv[3:]] if argv[:3] == (sys.executable, "-m", "kstrata") else argv
            )
            print(f"$ {' '.join(shown)}", flush=True)
        result = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=120, input=input
        )
        output = (result.stdout + result.stderr).rstrip()
        if show and output:
            print(output, flush=True)
        if check and result.returncode != 0:
            raise SystemExit(f"demo step failed: {' '.join(argv)}")
        return output

    def wait_ready(
        self, namespace: str, name: str, revision: int = 1, kind: str = "configprofile"
    ) -> None:
        deadline = time.monotonic() + 60
        query = "jsonpath={.status.revision} {.status.conditions[?(@.type=='Ready')].status}"
        while time.monotonic() < deadline:
            state = self.run("kubectl", "get", f"{kind}.kstrata.dev", name, "-n", namespace,
                             "-o", query, check=False, show=False)  # fmt: skip
            if state == f"{revision} True":
                return
            time.sleep(0.2)
        raise SystemExit(f"{name} did not become Ready at revision {revision}")

    @contextlib.contextmanager
    def operator_in_cluster(self) -> Iterator[str]:
        """kstrata as users install it: the shipped manifests, the local image, two pods."""
        self.run("kubectl", "apply", "-k", str(REPO / "manifests" / "overlays" / "local"),
                 show=False)  # fmt: skip
        print("$ kubectl apply -k manifests/overlays/local")
        self.run("kubectl", "-n", "kstrata-system", "rollout", "status", "deployment/kstrata",
                 "--timeout=180s")  # fmt: skip
        self.run("kubectl", "get", "pods", "-n", "kstrata-system", "-o", "wide")
        deadline = time.monotonic() + 60
        while not self.run(
            "kubectl", "get", "validatingwebhookconfiguration", "kstrata.dev",
            "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}", show=False, check=False,
        ):  # fmt: skip
            if time.monotonic() > deadline:
                raise SystemExit("the operator did not register its webhook")
            time.sleep(0.2)
        # Ready pods are not yet a reachable Service (kube-proxy programs new
        # endpoints a moment later): wait until the webhook answers a dry run.
        probe = str(REPO / "examples" / "config" / "platform-defaults.yaml")
        deadline = time.monotonic() + 60
        while True:
            answer = self.run("kubectl", "apply", "--dry-run=server", "-n", "default", "-f",
                              probe, show=False, check=False)  # fmt: skip
            if answer.endswith("(server dry run)"):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the webhook does not answer through its Service: {answer}")
            time.sleep(0.2)
        # The API server's proxy reaches the pods on the node's bridge; the demo
        # prints what both replicas report (only the active one has counted).
        yield "/api/v1/namespaces/kstrata-system/pods/{pod}:9090/proxy/metrics"

    @contextlib.contextmanager
    def operator(self) -> Iterator[str]:
        metrics, liveness = controlplane.free_port(), controlplane.free_port()
        webhook = controlplane.free_port()
        argv = [
            sys.executable, "-m", "kstrata", "operator", "run", "--standalone",
            f"--metrics-address=127.0.0.1:{metrics}",
            f"--liveness=http://127.0.0.1:{liveness}/healthz",
            f"--webhook-address=127.0.0.1:{webhook}",
            f"--webhook-url=https://127.0.0.1:{webhook}",
        ]  # fmt: skip
        log = self.log_path.open("w")
        process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                # Live, and its webhook listening: until then the webhook
                # configuration it registered refuses every ConfigProfile write.
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=2)
                    socket.create_connection(("127.0.0.1", webhook), timeout=2).close()
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the operator did not start; see {log.name}")
                time.sleep(0.2)
            yield f"http://127.0.0.1:{metrics}/metrics"
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
            # Its webhook (failurePolicy: Fail) would refuse every later
            # ConfigProfile write in this cluster once nobody serves it.
            self.run("kubectl", "delete", "validatingwebhookconfiguration", "kstrata.dev",
                     "--ignore-not-found", show=False)  # fmt: skip


def replica_sets(demo: Demo, namespace: str, app: str = "payments") -> list[str]:
    names = demo.run(
        "kubectl", "get", "replicasets", "-n", namespace, "-l", f"app={app}",
        "-o", "jsonpath={.items[*].metadata.name}", show=False,
    )  # fmt: skip
    return names.split()


def wait_replica_sets(demo: Demo, namespace: str, count: int, app: str = "payments") -> None:
    """Wait until the Deployment controller has created ``count`` ReplicaSets."""
    deadline = time.monotonic() + 60
    while len(replica_sets(demo, namespace, app)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the Deployment did not roll out ReplicaSet number {count}")
        time.sleep(0.2)
    demo.run("kubectl", "get", "replicasets", "-n", namespace, "-l", f"app={app}")


def config_value(demo: Demo, namespace: str, kstrata: list[str], key: str) -> str:
    return demo.run(*kstrata, "get", "payments", "-n", namespace, "--key", key)


def pod_logs(demo: Demo, namespace: str) -> None:
    """What every payments pod printed when it started."""
    names = demo.run("kubectl", "get", "pods", "-n", namespace, "-l", "app=payments",
                     "--field-selector=status.phase=Running",
                     "-o", "jsonpath={.items[*].metadata.name}", show=False)  # fmt: skip
    demo.run("kubectl", "logs", "-n", namespace, names.split()[0])


def wait_pods_serving(demo: Demo, namespace: str, count: int) -> None:
    """The Deployment's rollout finished: only pods of its newest ReplicaSet, all Ready."""
    demo.run("kubectl", "rollout", "status", "deployment/payments", "-n", namespace,
             "--timeout=120s")  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        phases = demo.run("kubectl", "get", "pods", "-n", namespace, "-l", "app=payments",
                          "-o", "jsonpath={.items[*].status.phase}", show=False)  # fmt: skip
        if phases.split() == ["Running"] * count:
            break
        if time.monotonic() > deadline:
            raise SystemExit("the old pods did not go away")
        time.sleep(0.5)
    demo.run("kubectl", "get", "pods", "-n", namespace, "-l", "app=payments")


# A second reader of the payments config that re-reads its file instead of
# restarting: `kstrata watch` runs the command below once the kubelet has
# swapped in a complete new version that parses.
HOT_READER = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments-reader
  annotations:
    kstrata.dev/reload: payments
    kstrata.dev/reload-strategy: hot
spec:
  replicas: 1
  selector:
    matchLabels: {app: payments-reader}
  template:
    metadata:
      labels: {app: payments-reader}
    spec:
      terminationGracePeriodSeconds: 2
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: reader
          image: kstrata-toolbox:dev
          command: [kstrata, watch, /etc/payments, --exec,
                    "grep -h timeoutSeconds /etc/payments/config.yaml"]
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts:
            - {name: config, mountPath: /etc/payments, readOnly: true}
      volumes:
        - name: config
          configMap: {name: payments-config}
"""


def hot_reload(demo: Demo, namespace: str, kstrata: list[str]) -> None:
    """A `reload-strategy: hot` reader gets a change in seconds, in the same pod."""
    step("Hot reload: a workload that re-reads its file gets the change in seconds, no restart")
    print(f"$ kubectl apply -n {namespace} -f payments-reader.yaml"
          "   # reload-strategy: hot, kstrata watch --exec 'grep timeoutSeconds ...'")  # fmt: skip
    demo.run("kubectl", "apply", "-n", namespace, "-f", "-", input=HOT_READER)
    demo.run("kubectl", "rollout", "status", "deployment/payments-reader", "-n", namespace,
             "--timeout=120s")  # fmt: skip
    pod = demo.run("kubectl", "get", "pods", "-n", namespace, "-l", "app=payments-reader",
                   "-o", "jsonpath={.items[0].metadata.name}", show=False)  # fmt: skip
    started = time.monotonic()
    demo.run(*kstrata, "set", "payments", "-n", namespace, "--env", "prod",
             "http.timeoutSeconds=45")  # fmt: skip
    deadline = started + 60
    while "timeoutSeconds: 45" not in demo.run("kubectl", "logs", "-n", namespace, pod, show=False):
        if time.monotonic() > deadline:
            raise SystemExit("the hot reader did not see the change")
        time.sleep(0.2)
    print(f"The running pod read the new file {time.monotonic() - started:.1f} s after"
          " `kstrata set` (kstrata told the kubelet to sync it; no restart):")  # fmt: skip
    demo.run("kubectl", "logs", "-n", namespace, pod)
    demo.run("kubectl", "get", "pods", "-n", namespace, "-l", "app=payments-reader")
    demo.run("kubectl", "get", "pod", pod, "-n", namespace,
             "-o", "jsonpath={.metadata.annotations.kstrata\\.dev/revisions}")  # fmt: skip
    print()
    print("(The rolling payments Deployment rolled for the same change, as before.)")


#: The demo's secret values: the tests check that neither is ever printed.
DB_PASSWORD = "correct-horse-battery-staple"  # noqa: S105 (a demo value, never printed)
DSN_TEMPLATE = (
    "DATABASE_URL=postgres://{{ .username }}:{{ .password }}@payments-db.prod.svc:5432/payments"
)
#: What a pod prints of the rendered DATABASE_URL: the user and the host, never the password.
SHOW_DSN = (
    'rest=${DATABASE_URL#postgres://}; echo "DATABASE_URL=postgres://${rest%%:*}:'
    '(password not shown)@${DATABASE_URL#*@}"'
)
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def templated_value(demo: Demo, namespace: str, kstrata: list[str], with_node: bool) -> None:
    """A value made of two sealed items, rendered only into the Secret the operator writes."""
    step("A templated value: a database URL from the sealed user and password, only in the Secret")
    sealed = demo.run(
        *kstrata, "seal", "-n", namespace, "--name", "payments-dsn",
        "--from-literal", "username=payments", "--from-literal", f"password={DB_PASSWORD}",
        "--template", DSN_TEMPLATE, show=False,
    )  # fmt: skip
    print(
        f"$ kstrata seal -n {namespace} --name payments-dsn --from-literal username=… "
        f"--from-literal password=… \\\n    --template '{DSN_TEMPLATE}' > payments-dsn.yaml"
    )
    print("\n".join(line[:100] for line in sealed.splitlines()))
    print("$ kubectl apply -f payments-dsn.yaml")
    demo.run("kubectl", "apply", "-n", namespace, "-f", "-", input=sealed, show=False)
    demo.wait_ready(namespace, "payments-dsn", kind="sealedsecret")
    demo.run("kubectl", "get", "secret", "payments-dsn", "-n", namespace)
    # The demo checks the rendered value itself (never printing it) ...
    encoded = demo.run("kubectl", "get", "secret", "payments-dsn", "-n", namespace,
                       "-o", "jsonpath={.data.DATABASE_URL}", show=False)  # fmt: skip
    expected = f"postgres://payments:{DB_PASSWORD}@payments-db.prod.svc:5432/payments"
    if base64.b64decode(encoded).decode() != expected:
        raise SystemExit("the Secret's DATABASE_URL is not the rendered template")
    if not with_node:
        print(
            "The Secret holds DATABASE_URL=postgres://payments:(password not shown)"
            "@payments-db.prod.svc:5432/payments (checked by the demo; no pods without a node)"
        )
        return
    # ... and a pod that gets it as an environment variable prints all but the password.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "payments-dsn-check"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "check", "image": "kstrata-toolbox:dev", "command": ["sh", "-c", SHOW_DSN],
                "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {
                    "name": "payments-dsn", "key": "DATABASE_URL"}}}],
                "securityContext": RESTRICTED,
            }],
        },
    }  # fmt: skip
    print(f"$ kubectl apply -n {namespace} -f payments-dsn-check.yaml"
          "   # env DATABASE_URL from the Secret; prints it without the password")  # fmt: skip
    demo.run("kubectl", "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(pod), show=False)
    deadline = time.monotonic() + 120
    while demo.run("kubectl", "get", "pod", "payments-dsn-check", "-n", namespace,
                   "-o", "jsonpath={.status.phase}", show=False) != "Succeeded":  # fmt: skip
        if time.monotonic() > deadline:
            raise SystemExit("the payments-dsn-check pod did not finish")
        time.sleep(0.5)
    demo.run("kubectl", "logs", "-n", namespace, "payments-dsn-check")


def legacy_worker(with_node: bool) -> dict[str, object]:
    """A workload set up for stakater/Reloader, following a ConfigMap kstrata does not make."""
    container: dict[str, object] = {
        "name": "worker",
        "image": "kstrata-toolbox:dev" if with_node else "registry.example/legacy-worker:1.0",
        "envFrom": [{"configMapRef": {"name": "legacy-settings"}}],
        "securityContext": RESTRICTED,
    }
    if with_node:
        container["command"] = ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "legacy-worker",
            "annotations": {"reloader.stakater.com/auto": "true"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "legacy-worker"}},
            "template": {
                "metadata": {"labels": {"app": "legacy-worker"}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                },
            },
        },
    }


def settings(level: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "legacy-settings"},
        "data": {"LOG_LEVEL": level},
    })  # fmt: skip


def reloader_migration(demo: Demo, namespace: str, kstrata: list[str], with_node: bool) -> None:
    """``kstrata migrate reloader``: Reloader's annotation becomes kstrata's, and it works."""
    step("Coming from Reloader: kstrata migrate reloader, then the workload rolls on a change")
    print(
        f"$ kubectl apply -n {namespace} -f legacy-worker.yaml"
        '   # reloader.stakater.com/auto: "true", envFrom: ConfigMap legacy-settings'
    )
    manifests = settings("info") + "---\n" + yaml.safe_dump(legacy_worker(with_node))
    demo.run("kubectl", "apply", "-n", namespace, "-f", "-", show=False, input=manifests)
    wait_replica_sets(demo, namespace, 1, app="legacy-worker")
    demo.run(*kstrata, "migrate", "reloader", "-n", namespace)
    demo.run(*kstrata, "migrate", "reloader", "-n", namespace, "--apply")
    annotations = (
        "jsonpath=reload={.metadata.annotations.kstrata\\.dev/reload}"
        " revisions={.metadata.annotations.kstrata\\.dev/revisions}"
    )
    deadline = time.monotonic() + 60
    while "configmap/legacy-settings=" not in demo.run(
        "kubectl", "get", "deployment", "legacy-worker", "-n", namespace,
        "-o", "jsonpath={.metadata.annotations.kstrata\\.dev/revisions}", show=False,
    ):  # fmt: skip
        if time.monotonic() > deadline:
            raise SystemExit("the operator did not start following legacy-settings")
        time.sleep(0.2)
    print("kstrata follows the ConfigMap now (its record: a keyed fingerprint, not a hash):")
    demo.run("kubectl", "get", "deployment", "legacy-worker", "-n", namespace, "-o", annotations)
    print()
    print(f"$ kubectl apply -n {namespace} -f legacy-settings.yaml   # LOG_LEVEL: debug")
    demo.run("kubectl", "apply", "-n", namespace, "-f", "-", input=settings("debug"), show=False)
    wait_replica_sets(demo, namespace, 2, app="legacy-worker")
    print("The data changed, so the migrated Deployment rolled once, as Reloader rolled it.")


def main() -> int:
    with_node = os.environ.get("KSTRATA_DEMO_NODE", "1" if os.geteuid() == 0 else "0") == "1"
    existing = os.environ.get("KSTRATA_DEMO_KUBECONFIG")
    if with_node:
        step("Start the local cluster with a real node (built from Go modules, no Docker)")
    else:
        step("Start the local control plane (built from Go modules, no Docker)")
    # Tests point the demo at their own cluster; users get `make cluster`'s or `make node`'s.
    if existing:
        kubeconfig, binaries = Path(existing).resolve(), controlplane.bin_dir()
        print(f"using the cluster in {kubeconfig}")
    elif with_node:
        import node

        plane = node.up(controlplane.DEFAULT_STATE_DIR)
        kubeconfig, binaries = plane.kubeconfig, plane.binaries
        print(f"kube-apiserver at {plane.server}; node {controlplane.NODE_NAME} Ready")
    else:
        plane = controlplane.up(controlplane.DEFAULT_STATE_DIR)
        kubeconfig, binaries = plane.kubeconfig, plane.binaries
        print(f"kube-apiserver at {plane.server}")
    demo = Demo(kubeconfig, binaries)
    demo.run("kubectl", "version")
    if with_node:
        demo.run("kubectl", "get", "nodes", "-o", "wide")

    step("Install the kstrata CRDs")
    demo.run("kubectl", "apply", "-k", str(REPO / "crds"))

    step("Check the examples offline, as CI would (no cluster needed)")
    config = REPO / "examples" / "config"
    kstrata = [sys.executable, "-m", "kstrata"]
    both = ["-f", str(config / "payments.yaml"), "-f", str(config / "platform-defaults.yaml")]
    demo.run(*kstrata, "validate", *both)
    demo.run(*kstrata, "render", *both, "--env", "prod")

    if with_node:
        step("Install kstrata as users do: two operator pods from its own image")
        running = demo.operator_in_cluster()
    else:
        step("Run the operator (with its admission webhook)")
        # Its home namespace, where it keeps the sealing keys (manifests/ creates it then).
        demo.run("kubectl", "create", "namespace", "kstrata-system", check=False, show=False)
        running = demo.operator()
    namespace = "kstrata-demo"
    demo.run("kubectl", "delete", "namespace", namespace, "--ignore-not-found", "--wait=true",
             show=False)  # fmt: skip
    demo.run("kubectl", "create", "namespace", namespace)
    demo.run(
        "kubectl", "label", "namespace", namespace, "kstrata.dev/environment=prod", "--overwrite"
    )
    with running as metrics_url:
        print(f"operator is live; metrics at {metrics_url}")

        step("Apply the example ConfigProfiles: the operator renders ConfigMaps")
        demo.run("kubectl", "apply", "-n", namespace, "-f", str(config))
        demo.wait_ready(namespace, "payments")
        demo.run("kubectl", "get", "configprofiles", "-n", namespace)
        demo.run(
            "kubectl", "get", "configmap", "payments-config", "-n", namespace,
            "-o", "jsonpath={.data.config\\.yaml}",
        )  # fmt: skip

        step("Seal a database password with the cluster's public key; only the operator opens it")
        sealed = demo.run(
            *kstrata, "seal", "-n", namespace, "--name", "payments-db",
            "--from-literal", f"password={DB_PASSWORD}",
            "--from-literal", "username=payments", show=False,
        )  # fmt: skip
        print(
            f"$ kstrata seal -n {namespace} --name payments-db "
            "--from-literal password=… --from-literal username=… > payments-db.yaml"
        )
        print("\n".join(line[:100] for line in sealed.splitlines()[:12]))
        print("$ kubectl apply -f payments-db.yaml")
        demo.run("kubectl", "apply", "-n", namespace, "-f", "-", input=sealed, show=False)
        demo.wait_ready(namespace, "payments-db", kind="sealedsecret")
        demo.run("kubectl", "get", "sealedsecrets.kstrata.dev", "-n", namespace)
        demo.run("kubectl", "get", "secret", "payments-db", "-n", namespace)

        step("Deploy the app; it opts in to rolling restarts on config and secret changes")
        workload = REPO / "examples" / "workloads" / "payments.yaml"
        if with_node:
            # The example's image is a placeholder: run the local toolbox instead,
            # printing what the pod was given.
            manifest = yaml.safe_load(workload.read_text())
            (container,) = manifest["spec"]["template"]["spec"]["containers"]
            container.update(image="kstrata-toolbox:dev", command=["sh", "-c", PRINT_CONFIG])
            text = yaml.safe_dump(manifest)
            print(f"$ kubectl apply -n {namespace} -f examples/workloads/payments.yaml"
                  "   # image: the local toolbox, printing its config")  # fmt: skip
            demo.run("kubectl", "apply", "-n", namespace, "-f", "-", input=text)
            wait_replica_sets(demo, namespace, 1)
            wait_pods_serving(demo, namespace, 2)
            pod_logs(demo, namespace)
        else:
            demo.run("kubectl", "apply", "-n", namespace, "-f", str(workload))
            wait_replica_sets(demo, namespace, 1)

        step("Change the prod config: a new revision, and the Deployment rolls once")
        demo.run(*kstrata, "set", "payments", "-n", namespace, "--env", "prod", "replicas=8")
        demo.wait_ready(namespace, "payments", revision=2)
        config_value(demo, namespace, kstrata, "replicas")
        wait_replica_sets(demo, namespace, 2)
        demo.run(
            "kubectl", "get", "deployment", "payments", "-n", namespace,
            "-o", "jsonpath={.spec.template.metadata.annotations.kstrata\\.dev/revisions}",
        )  # fmt: skip
        if with_node:
            print("The new pods replaced the old ones, and started with the new config:")
            wait_pods_serving(demo, namespace, 2)
            pod_logs(demo, namespace)

        step("An invalid change is refused, naming the environment and the path")
        invalid = demo.run(
            *kstrata, "set", "payments", "-n", namespace, "--env", "prod", "replicas=lots",
            check=False,
        )  # fmt: skip
        if "must be of type integer" not in invalid:
            raise SystemExit("the invalid change was not refused")
        print(f"$ kubectl apply -n {namespace} -f payments.yaml   # with replicas: many in prod")
        refused = demo.run(
            "kubectl", "apply", "-n", namespace, "-f", "-",
            input=(config / "payments.yaml").read_text().replace("replicas: 6", "replicas: many"),
            check=False, show=False,
        )  # fmt: skip
        print(refused.splitlines()[-1].split('error when patching "STDIN": ')[-1])
        if config_value(demo, namespace, kstrata, "replicas") != "8":
            raise SystemExit("the invalid change replaced the last good config")

        step("History, diff and rollback")
        demo.run(*kstrata, "history", "payments", "-n", namespace)
        demo.run(
            *kstrata, "diff", "payments", "-n", namespace, "--revision", "1", "--to-revision", "2",
            check=False,
        )  # fmt: skip
        demo.run(*kstrata, "rollback", "payments", "-n", namespace)
        demo.wait_ready(namespace, "payments", revision=3)
        if config_value(demo, namespace, kstrata, "replicas") != "6":
            raise SystemExit("the rollback did not restore the previous config")
        demo.run(*kstrata, "history", "payments", "-n", namespace)
        print("The rollback is a change like any other: the Deployment rolls again.")
        wait_replica_sets(demo, namespace, 3)

        if with_node:
            hot_reload(demo, namespace, kstrata)

        templated_value(demo, namespace, kstrata, with_node)
        reloader_migration(demo, namespace, kstrata, with_node)

        if metrics_url.startswith("/"):
            pods = demo.run("kubectl", "get", "pods", "-n", "kstrata-system", "-l",
                            "app.kubernetes.io/component=operator",
                            "-o", "jsonpath={.items[*].metadata.name}", show=False)  # fmt: skip
            text = "\n".join(
                demo.run("kubectl", "get", "--raw", metrics_url.format(pod=pod), show=False)
                for pod in pods.split()
            )
        else:
            with urllib.request.urlopen(metrics_url, timeout=5) as response:
                text = response.read().decode()
        counters = [
            line
            for line in text.splitlines()
            if line.startswith(("kstrata_reconcile_total", "kstrata_reload_rollouts_total"))
        ]
        print("\n".join(counters))

    step("Done")
    print("The control plane keeps running. Explore it with:")
    print(f"  export KUBECONFIG={kubeconfig}")
    print(f'  export PATH="{binaries}:$PATH"')
    print("Stop it with: make cluster-down")
    if with_node:
        print("kstrata stays installed; remove it with: kubectl delete -k manifests/overlays/local")
    return 0


if __name__ == "__main__":
    sys.exit(main())

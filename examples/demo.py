"""`make demo`: the whole kstrata story on the embedded local control plane.

Each step prints what it does and what it shows.  The control plane is the one
`make cluster` manages (started if needed, left running afterwards so you can
keep exploring); the operator runs as a child process for the demo only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools" / "controlplane"))

import controlplane  # noqa: E402


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
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=2)
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


def replica_sets(demo: Demo, namespace: str) -> list[str]:
    names = demo.run(
        "kubectl", "get", "replicasets", "-n", namespace, "-l", "app=payments",
        "-o", "jsonpath={.items[*].metadata.name}", show=False,
    )  # fmt: skip
    return names.split()


def wait_replica_sets(demo: Demo, namespace: str, count: int) -> None:
    """Wait until the Deployment controller has created ``count`` ReplicaSets."""
    deadline = time.monotonic() + 60
    while len(replica_sets(demo, namespace)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the Deployment did not roll out ReplicaSet number {count}")
        time.sleep(0.2)
    demo.run("kubectl", "get", "replicasets", "-n", namespace, "-l", "app=payments")


def config_value(demo: Demo, namespace: str, kstrata: list[str], key: str) -> str:
    return demo.run(*kstrata, "get", "payments", "-n", namespace, "--key", key)


def main() -> int:
    step("Start the local control plane (built from Go modules, no Docker)")
    # Tests point the demo at their own control plane; users get `make cluster`'s.
    existing = os.environ.get("KSTRATA_DEMO_KUBECONFIG")
    if existing:
        kubeconfig, binaries = Path(existing).resolve(), controlplane.bin_dir()
        print(f"using the cluster in {kubeconfig}")
    else:
        plane = controlplane.up(controlplane.DEFAULT_STATE_DIR)
        kubeconfig, binaries = plane.kubeconfig, plane.binaries
        print(f"kube-apiserver at {plane.server}")
    demo = Demo(kubeconfig, binaries)
    demo.run("kubectl", "version")

    step("Install the kstrata CRDs")
    demo.run("kubectl", "apply", "-k", str(REPO / "crds"))

    step("Check the examples offline, as CI would (no cluster needed)")
    config = REPO / "examples" / "config"
    kstrata = [sys.executable, "-m", "kstrata"]
    both = ["-f", str(config / "payments.yaml"), "-f", str(config / "platform-defaults.yaml")]
    demo.run(*kstrata, "validate", *both)
    demo.run(*kstrata, "render", *both, "--env", "prod")

    step("Run the operator (with its admission webhook)")
    # Its home namespace, where it keeps the sealing keys (manifests/ creates it in a real install).
    demo.run("kubectl", "create", "namespace", "kstrata-system", check=False, show=False)
    namespace = "kstrata-demo"
    demo.run("kubectl", "delete", "namespace", namespace, "--ignore-not-found", "--wait=true",
             show=False)  # fmt: skip
    demo.run("kubectl", "create", "namespace", namespace)
    demo.run(
        "kubectl", "label", "namespace", namespace, "kstrata.dev/environment=prod", "--overwrite"
    )
    with demo.operator() as metrics_url:
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
            "--from-literal", "password=correct-horse-battery-staple",
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

        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            counters = [
                line
                for line in response.read().decode().splitlines()
                if line.startswith(("kstrata_reconcile_total", "kstrata_reload_rollouts_total"))
            ]
        print("\n".join(counters))

    step("Done")
    print("The control plane keeps running. Explore it with:")
    print(f"  export KUBECONFIG={kubeconfig}")
    print(f'  export PATH="{binaries}:$PATH"')
    print("Stop it with: make cluster-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())

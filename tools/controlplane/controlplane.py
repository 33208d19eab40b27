#!/usr/bin/env python3
"""A real, unprivileged Kubernetes control plane on loopback, for tests and demos.

Why this exists: every claim kstrata makes about a cluster is proven against a
real kube-apiserver, with kube-controller-manager running so namespaces really
delete, garbage collection really runs and Deployments really get ReplicaSets.
No Docker, no root, no mock.

Boundary: this is a development tool.  It builds the binaries from the Go
module beside it (``go build``, cached outside the repository), generates a
throw-away PKI, starts etcd -> kube-apiserver -> kube-controller-manager on
free 127.0.0.1 ports, waits until they are ready and writes a kubeconfig with
absolute paths.  The operator package never imports it.

Two ways to run it:

* in-process (the pytest fixture): ``ControlPlane(...).start()``; the
  components die with the Python process even when it is SIGKILLed, because
  each one is started with ``PR_SET_PDEATHSIG``;
* detached (``make cluster``): ``up`` forks a small supervisor (``serve``)
  that owns the components; ``down`` stops it.  A stale previous run (a
  crashed supervisor, leftover processes or files) is cleaned up by the next
  ``up``.

Environment (read only here, at the edge):
  KSTRATA_CONTROLPLANE_CACHE  cache root (default ~/.cache/kstrata/controlplane)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import fcntl
import hashlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent
REPO_ROOT = MODULE_DIR.parent.parent
DEFAULT_STATE_DIR = REPO_ROOT / ".cluster"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
# Built with the control plane from the same module; only the node (tools/node) runs them.
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler")
# Ranges that overlap nothing this machine uses (its resolver lives in
# 10.255.0.0/16): the node's kube-proxy captures the Service range on the host.
SERVICE_CIDR = "172.29.128.0/24"
KUBERNETES_SERVICE_IP = "172.29.128.1"
LOOPBACK = "127.0.0.1"
# The one node this tool runs (tools/node): its kubelet's identity.
NODE_NAME = "kstrata-node"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


# --- building ------------------------------------------------------------


def kubernetes_version() -> str:
    """The k8s.io/kubernetes version the Go module pins (the cache is keyed by it)."""
    text = (MODULE_DIR / "go.mod").read_text()
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+)", text, re.MULTILINE)
    if not match:
        raise ControlPlaneError("tools/controlplane/go.mod does not require k8s.io/kubernetes")
    return match.group(1)


def cache_root() -> Path:
    configured = os.environ.get("KSTRATA_CONTROLPLANE_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path.home() / ".cache" / "kstrata" / "controlplane"


def bin_dir() -> Path:
    return cache_root() / kubernetes_version() / "bin"


def _build_stamp() -> str:
    """Identifies the sources and toolchain a build came from; a change rebuilds."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "tools.go", "cmd/etcd/main.go"):
        digest.update(name.encode() + b"\0" + (MODULE_DIR / name).read_bytes() + b"\0")
    go_version = subprocess.run(
        ["go", "env", "GOVERSION"], check=True, capture_output=True, text=True
    ).stdout.strip()
    digest.update(go_version.encode())
    return digest.hexdigest()


def _version_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    flags = []
    for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        flags += [f"-X '{package}.{key}={value}'" for key, value in stamp.items()]
    return " ".join(["-s", "-w", *flags])


def ensure_built(*, quiet: bool = False) -> Path:
    """Build the four binaries into the cache unless an up-to-date build is there."""
    target = bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    stamp_file = target / ".stamp"
    with _locked(target / ".build.lock"):
        stamp = _build_stamp()
        if (
            stamp_file.exists()
            and stamp_file.read_text() == stamp
            and all((target / name).exists() for name in (*BINARIES, *NODE_BINARIES))
        ):
            return target
        if shutil.which("go") is None:
            raise ControlPlaneError("Go is needed to build the local control plane (go >= 1.25)")
        if not quiet:
            print(f"building the local control plane into {target} (first run only)...", flush=True)
        started = time.monotonic()
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false -mod=readonly")
        packages = [
            "./cmd/etcd",
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kubectl",
            *(f"k8s.io/kubernetes/cmd/{name}" for name in NODE_BINARIES),
        ]
        command = ["go", "build", "-trimpath", "-ldflags", _version_ldflags(kubernetes_version())]
        result = subprocess.run(
            [*command, "-o", str(target) + "/", *packages],
            cwd=MODULE_DIR,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ControlPlaneError(
                "building the control plane failed:\n" + result.stdout + result.stderr
            )
        stamp_file.write_text(stamp)
        if not quiet:
            print(f"built in {time.monotonic() - started:.0f} s", flush=True)
    return target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- PKI -----------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "service-account.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "service-account.pub"


def generate_pki(directory: Path, address: str = LOOPBACK) -> Pki:
    """A CA, the apiserver's serving certificate, client certificates and SA keys.

    ``address`` is where the apiserver serves (127.0.0.1, or the node bridge's
    gateway when pods must reach it); its certificate names it.

    ECDSA P-256 everywhere: generation takes milliseconds, which keeps a cold
    start of the control plane fast.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = Pki(directory)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=365)

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kstrata-local-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    write_key(pki.key("ca"), ca_key)

    def issue(
        name: str,
        common_name: str,
        organizations: tuple[str, ...] = (),
        *,
        server: bool = False,
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.DNSName("kubernetes.default.svc.cluster.local"),
                        *(
                            x509.IPAddress(ipaddress.ip_address(ip))
                            for ip in sorted({LOOPBACK, address, KUBERNETES_SERVICE_IP})
                        ),
                    ]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        pki.cert(name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(pki.key(name), key)

    issue("apiserver", "kube-apiserver", server=True)
    issue("admin", "kstrata-admin", ("system:masters",))
    issue("controller-manager", "system:kube-controller-manager")
    # The node's components (tools/node), each with the identity the bootstrap
    # RBAC policy and the Node authorizer expect; the apiserver's own client
    # certificate for kubelet calls (logs, exec) is an admin.
    issue("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",))
    issue("kube-proxy", "system:kube-proxy")
    issue("scheduler", "system:kube-scheduler")
    issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",))

    sa_key = ec.generate_private_key(ec.SECP256R1())
    write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def write_kubeconfig(path: Path, server: str, pki: Pki, user: str) -> None:
    """A kubeconfig with absolute paths (kopf and kubectl use paths as written)."""
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: kstrata-local
  cluster:
    server: {server}
    certificate-authority: {pki.ca_cert.resolve()}
users:
- name: {user}
  user:
    client-certificate: {pki.cert(user).resolve()}
    client-key: {pki.key(user).resolve()}
contexts:
- name: kstrata-local
  context:
    cluster: kstrata-local
    user: {user}
current-context: kstrata-local
"""
    )
    path.chmod(0o600)


# --- processes -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: kill it when the parent goes away, even by SIGKILL.

    SIGKILL rather than SIGTERM: an orphaned kube-apiserver whose etcd died
    with it would sit in graceful shutdown for a long time, and a throw-away
    test cluster has nothing worth shutting down gracefully.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); it is not running.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _terminate(pids: list[int], marker: str, timeout: float = 15.0) -> None:
    """Stop the given processes, but only if they still belong to this state dir."""
    ours = [pid for pid in pids if _pid_alive(pid) and marker in _cmdline(pid)]
    for pid in ours:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(pid) for pid in ours):
        for pid in ours:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    for pid in ours:
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Component:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None


@dataclass
class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager running as our children."""

    state_dir: Path
    binaries: Path = field(default_factory=bin_dir)
    components: list[Component] = field(default_factory=list)
    apiserver_port: int = 0
    #: Where kube-apiserver binds and what it advertises: loopback, or an address
    #: pods can reach (the node bridge's gateway, which exists only on this machine).
    address: str = LOOPBACK

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def kubernetes_version(self) -> str:
        return kubernetes_version()

    @property
    def kubectl(self) -> Path:
        return self.binaries / "kubectl"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.apiserver_port}"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def start(self, timeout: float = 120.0) -> None:
        self.state_dir = self.state_dir.resolve()
        recover_stale(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pki = generate_pki(self.state_dir / "pki", self.address)
        logs = self.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        etcd_port, peer_port, kcm_port = free_port(), free_port(), free_port()
        self.apiserver_port = free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        write_kubeconfig(self.kubeconfig, self.server, pki, "admin")
        kcm_kubeconfig = self.state_dir / "controller-manager.kubeconfig"
        write_kubeconfig(kcm_kubeconfig, self.server, pki, "controller-manager")
        b = self.binaries
        self.components = [
            Component(
                "etcd",
                [
                    str(b / "etcd"),
                    "--name=kstrata",
                    f"--data-dir={self.state_dir / 'etcd'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-cluster=kstrata=http://127.0.0.1:{peer_port}",
                    # A throw-away test store: durability costs seconds per test run.
                    "--unsafe-no-fsync=true",
                    "--log-level=warn",
                ],
            ),
            Component(
                "kube-apiserver",
                [
                    str(b / "kube-apiserver"),
                    f"--etcd-servers={etcd_url}",
                    f"--bind-address={self.address}",
                    f"--advertise-address={self.address}",
                    f"--secure-port={self.apiserver_port}",
                    f"--cert-dir={self.state_dir / 'apiserver-certs'}",
                    f"--tls-cert-file={pki.cert('apiserver')}",
                    f"--tls-private-key-file={pki.key('apiserver')}",
                    f"--client-ca-file={pki.ca_cert}",
                    f"--service-account-key-file={pki.sa_pub}",
                    f"--service-account-signing-key-file={pki.sa_key}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    # Node + NodeRestriction: a kubelet may touch only its own Node
                    # and what its pods use, as in a real cluster.
                    "--authorization-mode=Node,RBAC",
                    "--enable-admission-plugins=NodeRestriction",
                    # kubectl logs/exec: dial the node's InternalIP, never look up its name.
                    "--kubelet-preferred-address-types=InternalIP,Hostname",
                    f"--kubelet-client-certificate={pki.cert('apiserver-kubelet-client')}",
                    f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
                    "--allow-privileged=true",
                    "--profiling=false",
                    "--v=1",
                ],
            ),
            Component(
                "kube-controller-manager",
                [
                    str(b / "kube-controller-manager"),
                    f"--kubeconfig={kcm_kubeconfig}",
                    f"--authentication-kubeconfig={kcm_kubeconfig}",
                    f"--authorization-kubeconfig={kcm_kubeconfig}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={kcm_port}",
                    f"--cert-dir={self.state_dir / 'kcm-certs'}",
                    "--leader-elect=false",
                    f"--service-account-private-key-file={pki.sa_key}",
                    f"--root-ca-file={pki.ca_cert}",
                    # Each controller acts as its own ServiceAccount with the bootstrap
                    # system:controller:* roles, as in a real cluster; the manager's own
                    # identity may do little more than mint those tokens.
                    "--use-service-account-credentials=true",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--profiling=false",
                    "--v=1",
                ],
            ),
        ]
        deadline = time.monotonic() + timeout
        try:
            self._launch(self.components[0], logs)
            _wait(lambda: _http_ok(f"{etcd_url}/health"), deadline, "etcd", self)
            self._launch(self.components[1], logs)
            _wait(self.apiserver_ready, deadline, "kube-apiserver /readyz", self)
            self._launch(self.components[2], logs)
            # The default ServiceAccount appears once the controller manager
            # is up and talking to the apiserver: proof it really works.
            _wait(self._default_service_account_exists, deadline, "kube-controller-manager", self)
        except BaseException:
            self.stop()
            raise
        self._write_state()

    def _launch(self, component: Component, logs: Path) -> None:
        log = (logs / f"{component.name}.log").open("ab")
        component.process = subprocess.Popen(
            component.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only, no Python state touched
        )
        log.close()
        self._write_state()

    def _write_state(self) -> None:
        state = {
            "supervisor": os.getpid(),
            "apiserver": self.server,
            "kubeconfig": str(self.kubeconfig),
            "pids": {c.name: c.process.pid for c in self.components if c.process},
        }
        self._state_file.write_text(json.dumps(state, indent=2))

    def stop(self) -> None:
        # Reverse order: the controller manager and apiserver before their store.
        for component in reversed(self.components):
            process = component.process
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self._state_file.unlink()

    def dead_components(self) -> list[str]:
        return [c.name for c in self.components if c.process and c.process.poll() is not None]

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Kill one component and start it again with the same flags (fault tests)."""
        component = next(c for c in self.components if c.name == name)
        if component.process and component.process.poll() is None:
            component.process.kill()
            component.process.wait(timeout=10)
        self._launch(component, self.state_dir / "logs")
        deadline = time.monotonic() + timeout
        if name == "kube-apiserver":
            _wait(self.apiserver_ready, deadline, "kube-apiserver /readyz", self)

    def _ssl_context(self) -> ssl.SSLContext:
        pki = Pki(self.state_dir / "pki")
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.cert("admin")), str(pki.key("admin")))
        return context

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPSConnection(
            self.address, self.apiserver_port, context=self._ssl_context(), timeout=5
        )
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def apiserver_ready(self) -> bool:
        try:
            status, _ = self.get("/readyz")
        except OSError:
            return False
        return status == 200

    def _default_service_account_exists(self) -> bool:
        try:
            status, _ = self.get("/api/v1/namespaces/default/serviceaccounts/default")
        except OSError:
            return False
        return status == 200


def _http_ok(url: str) -> bool:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        connection.request("GET", "/" + url.split("/", 3)[3])
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _wait(check: object, deadline: float, what: str, plane: ControlPlane) -> None:
    assert callable(check)
    while time.monotonic() < deadline:
        if check():
            return
        dead = plane.dead_components()
        if dead:
            raise ControlPlaneError(
                f"{', '.join(dead)} exited while waiting for {what}; "
                f"see {plane.state_dir / 'logs'}:\n{_log_tail(plane, dead[0])}"
            )
        time.sleep(0.1)
    raise ControlPlaneError(f"timed out waiting for {what}; logs in {plane.state_dir / 'logs'}")


def _log_tail(plane: ControlPlane, name: str, lines: int = 30) -> str:
    path = plane.state_dir / "logs" / f"{name}.log"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def recover_stale(state_dir: Path) -> None:
    """Stop whatever a previous run in this state dir left behind, then clear it."""
    state_file = state_dir / "state.json"
    if state_file.exists():
        try:
            state = json.loads(state_file.read_text())
        except ValueError:
            state = {}
        pids = [int(p) for p in state.get("pids", {}).values()]
        supervisor = state.get("supervisor")
        if supervisor and int(supervisor) != os.getpid():
            pids.insert(0, int(supervisor))
        _terminate(pids, str(state_dir))
    # Any component of ours still running was started with this path in its argv.
    _terminate(pids_of(str(state_dir)), str(state_dir))
    if state_dir.exists():
        shutil.rmtree(state_dir)


def pids_of(marker: str) -> list[int]:
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me:
            cmdline = _cmdline(int(entry.name))
            if marker in cmdline and any(name in cmdline for name in BINARIES):
                found.append(int(entry.name))
    return found


# --- detached mode (make cluster) ----------------------------------------


def serve(state_dir: Path) -> int:
    """Supervisor: own the components until SIGTERM/SIGINT, or until one dies."""
    plane = ControlPlane(state_dir)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        plane.start()
    except ControlPlaneError as exc:
        print(f"control plane failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    (plane.state_dir / "ready").write_text(plane.server)
    print(f"control plane ready at {plane.server}", flush=True)
    while not stopping:
        dead = plane.dead_components()
        if dead:
            print(f"{', '.join(dead)} exited; stopping the control plane", file=sys.stderr)
            break
        time.sleep(0.5)
    plane.stop()
    with contextlib.suppress(FileNotFoundError):
        (plane.state_dir / "ready").unlink()
    return 0


def _running(state_dir: Path) -> ControlPlane | None:
    """The detached control plane in state_dir, if it is up and healthy."""
    try:
        state = json.loads((state_dir / "state.json").read_text())
        ready = (state_dir / "ready").exists()
    except (OSError, ValueError):
        return None
    supervisor = int(state.get("supervisor", 0))
    if not ready or not supervisor or not _pid_alive(supervisor):
        return None
    host, port = state["apiserver"].removeprefix("https://").rsplit(":", 1)
    plane = ControlPlane(state_dir, address=host)
    plane.apiserver_port = int(port)
    return plane if plane.apiserver_ready() else None


def up(state_dir: Path, timeout: float = 180.0) -> ControlPlane:
    state_dir = state_dir.resolve()
    running = _running(state_dir)
    if running is not None:
        return running
    ensure_built()
    recover_stale(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir.parent / f"{state_dir.name}.supervisor.log").open("ab")
    supervisor = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "serve", "--state-dir", str(state_dir)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # survives the shell and make that started it
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = _running(state_dir)
        if running is not None:
            return running
        if supervisor.poll() is not None:
            tail = (state_dir.parent / f"{state_dir.name}.supervisor.log").read_text()[-3000:]
            raise ControlPlaneError(f"the control plane supervisor exited:\n{tail}")
        time.sleep(0.2)
    raise ControlPlaneError("timed out waiting for the control plane to become ready")


def down(state_dir: Path) -> None:
    state_dir = state_dir.resolve()
    recover_stale(state_dir)
    with contextlib.suppress(FileNotFoundError):
        (state_dir.parent / f"{state_dir.name}.supervisor.log").unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="controlplane", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build the binaries into the cache if needed")
    commands.add_parser("bin-dir", help="print the directory holding the binaries")
    for name in ("up", "down", "env", "serve"):
        command = commands.add_parser(name)
        command.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(ensure_built())
        elif args.command == "bin-dir":
            print(bin_dir())
        elif args.command == "up":
            plane = up(args.state_dir)
            print(f"# control plane ready at {plane.server}")
            print(f"export KUBECONFIG={plane.kubeconfig}")
            print(f'export PATH="{plane.binaries}:$PATH"')
        elif args.command == "down":
            down(args.state_dir)
            print("control plane stopped")
        elif args.command == "env":
            plane_or_none = _running(args.state_dir.resolve())
            if plane_or_none is None:
                print("no control plane is running; start one with `make cluster`", file=sys.stderr)
                return 1
            print(f"export KUBECONFIG={plane_or_none.kubeconfig}")
        elif args.command == "serve":
            return serve(args.state_dir)
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

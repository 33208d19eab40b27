#!/usr/bin/env python3
"""A real node for the embedded control plane: containerd, kubelet, kube-proxy, kube-scheduler.

Why this exists: kstrata's promises end inside running pods (a container
reading the config it rendered, a rollout that replaces every pod once, a
hot reload after the kubelet swaps a file).  tools/controlplane gives a real
API server but no node, so pods stay Pending.  This module adds one node on
this machine, with real containers, so the end-to-end tier (tests/e2e) and
``make node`` run kstrata the way its users do: as pods from its own image.

Boundary: a development tool, stdlib only, never imported by the operator.
It needs root (containers, a bridge, iptables); without root it says so and
stops.  It installs what it needs from Debian packages (containerd, runc, the
CNI plugins, iptables), starts the control plane with its API server on the
node bridge's gateway (an address that exists only on this machine, so pods
reach it through the ``kubernetes`` Service), then containerd with its own
state, kube-scheduler, kubelet and kube-proxy, and waits for the Node to be
Ready.  Images come from tools/images (built locally, no registry).

Containment: one node per machine (fixed bridge, addresses and paths).  Pods
get addresses in POD_CIDR on the bridge BRIDGE; nothing is masqueraded, and a
FORWARD rule drops whatever pods send anywhere but the pod network, so no
packet a pod sends leaves the machine.  Pods get no DNS resolver (the host's
lives off the machine).  Every global change (sysctls, iptables chains and
rules, the bridge, mounts, cgroups, hard-coded paths) is recorded before it is
made, in RECORD, and undone by ``stop``/``down``, which also work after a
crash of the process that started the node.

Environment (read only here, at the edge):
  KSTRATA_CONTROLPLANE_CACHE  where the binaries are (tools/controlplane)
  KSTRATA_IMAGE_CACHE         where the image tarballs are (tools/images)
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOOLS / "controlplane"))
sys.path.insert(0, str(TOOLS / "images"))

import controlplane  # noqa: E402
from controlplane import NODE_NAME, ControlPlane, ControlPlaneError  # noqa: E402

BRIDGE = "kstrata0"
POD_CIDR = "172.29.0.0/24"
GATEWAY = "172.29.0.1"
RUN_DIR = Path("/run/kstrata-node")
STATE_DIR = Path("/var/lib/kstrata-node")
RECORD = RUN_DIR / "restore.json"
CGROUP_PARENT = "kstrata-node"
KUBELET_PORT = 10250
SANDBOX_IMAGE = "docker.io/library/kstrata-pause:dev"
CNI_BIN_DIR = "/usr/lib/cni"

# Binaries the node needs, and the Debian package each comes from.
PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "ctr": "containerd",
    f"{CNI_BIN_DIR}/bridge": "containernetworking-plugins",
    "iptables": "iptables",
    "ip": "iproute2",
    "mount": "mount",
}

# Sysctls kubelet, kube-proxy and the bridge plugin may change: saved, restored.
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "net.netfilter.nf_conntrack_max",
)

# Paths containerd 1.6, runc, the CNI plugins and kubelet use whatever they
# are told: removed at the end if they did not exist before.
HARD_CODED_PATHS = (
    "/run/containerd",
    "/run/runc",
    "/run/netns",
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
    "/etc/cni",
    "/opt/cni",
    "/var/lib/kubelet",
    # The kubelet's default volume plugin directory, made at start.
    "/usr/libexec/kubernetes",
)

IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle", "raw")
OUR_CHAIN = "KSTRATA-NODE-FORWARD"


class NodeError(RuntimeError):
    """The node could not be set up, started or cleaned up."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise NodeError(
            "the node needs root (containers, a network bridge, iptables); "
            "run `make node` as root, or use kind (make kind-deploy) instead"
        )


def _run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


# --- what the node changes on the machine, recorded before and undone after ----


def _read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def _write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/sys", *name.split(".")).write_text(value)


def _iptables_rules(binary: str, table: str) -> list[str]:
    """``iptables -S`` for one table: chain declarations (-N/-P) and rules (-A)."""
    if shutil.which(binary) is None:
        return []
    result = _run(binary, "-w", "-t", table, "-S", check=False)
    return result.stdout.splitlines() if result.returncode == 0 else []


def _chains(rules: list[str]) -> set[str]:
    return {line.split()[1] for line in rules if line.startswith(("-N ", "-P "))}


def take_record() -> dict[str, object]:
    return {
        "sysctls": {name: _read_sysctl(name) for name in SYSCTLS},
        "iptables": {
            binary: {table: _iptables_rules(binary, table) for table in TABLES}
            for binary in IPTABLES
        },
        "paths": {path: os.path.lexists(path) for path in HARD_CODED_PATHS},
        "modules": sorted(_modules()),
    }


def _modules() -> set[str]:
    try:
        return {line.split()[0] for line in Path("/proc/modules").read_text().splitlines()}
    except OSError:
        return set()


def restore_iptables(before: dict[str, dict[str, list[str]]]) -> None:
    """Remove the rules and chains added since ``before``; leave everything else."""
    for binary in IPTABLES:
        for table in TABLES:
            old = before.get(binary, {}).get(table, [])
            now = _iptables_rules(binary, table)
            old_rules, old_chains = set(old), _chains(old)
            # Rules first (a chain cannot be deleted while a rule jumps to it),
            # in reverse so that a later rule never depends on an earlier one.
            for line in reversed(now):
                if line.startswith("-A ") and line not in old_rules:
                    spec = line[3:].split()
                    if spec[0] in old_chains:
                        _run(binary, "-w", "-t", table, "-D", *spec, check=False)
            new_chains = sorted(_chains(now) - old_chains)
            for chain in new_chains:
                _run(binary, "-w", "-t", table, "-F", chain, check=False)
            for chain in new_chains:
                _run(binary, "-w", "-t", table, "-X", chain, check=False)


def _mounts() -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    # Field 5 is the mount point, with octal escapes for spaces and the like.
    return [line.split()[4].encode().decode("unicode_escape") for line in lines]


def unmount_below(*prefixes: str) -> None:
    """Unmount everything mounted at or below the prefixes, deepest first."""
    for _ in range(5):
        targets = sorted(
            {m for m in _mounts() if any(m == p or m.startswith(p + "/") for p in prefixes)},
            key=lambda m: m.count("/"),
            reverse=True,
        )
        if not targets:
            return
        for target in targets:
            _run("umount", target, check=False)
            if target in _mounts():
                _run("umount", "-l", target, check=False)
    left = [m for m in _mounts() if any(m.startswith(p) for p in prefixes)]
    if left:
        raise NodeError(f"mounts left behind: {left}")


def _kill_cgroup_members() -> None:
    """SIGKILL every process left in the node's cgroups (containers whose shim died)."""
    for _ in range(3):
        pids = set()
        for procs in Path("/sys/fs/cgroup/pids", CGROUP_PARENT).rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids |= {int(pid) for pid in procs.read_text().split()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _make_cgroups() -> None:
    """The kubelet's cgroupRoot, in every v1 hierarchy (it does not create it itself)."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if hierarchy.name == "unified" or not (hierarchy / "cgroup.procs").exists():
            continue
        root = hierarchy / CGROUP_PARENT
        root.mkdir(exist_ok=True)
        # A new cpuset cgroup has no CPUs or memory nodes until given its parent's.
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / name).exists():
                (root / name).write_text((hierarchy / name).read_text())


def _remove_cgroups() -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        root = hierarchy / CGROUP_PARENT
        if not root.is_dir():
            continue
        for directory in sorted(
            (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def leftovers() -> list[str]:
    """What of the node is still on the machine (empty after a clean stop)."""
    found: list[str] = []
    markers = (str(RUN_DIR), str(STATE_DIR))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmdline = controlplane._cmdline(int(entry.name))
            if any(marker in cmdline for marker in markers):
                found.append(f"process {entry.name}: {cmdline[:120]}")
    found += [f"mount {m}" for m in _mounts() if any(m.startswith(p) for p in markers)]
    found += [f"mount {m}" for m in _mounts() if m.startswith("/run/netns/cni-")]
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"link {BRIDGE}")
    for binary in IPTABLES:
        for table in TABLES:
            for chain in _chains(_iptables_rules(binary, table)):
                if chain.startswith(("KUBE-", "KSTRATA-", "CNI-")):
                    found.append(f"{binary} -t {table} chain {chain}")
    found += [
        f"cgroup {h}/{CGROUP_PARENT}"
        for h in Path("/sys/fs/cgroup").iterdir()
        if (h / CGROUP_PARENT).exists()
    ]
    if RUN_DIR.exists():
        found.append(f"path {RUN_DIR}")
    return found


# --- configuration files ---------------------------------------------------


@dataclass
class Paths:
    """Where the node keeps what it runs: runtime under /run, state under /var/lib."""

    run: Path = RUN_DIR
    state: Path = STATE_DIR

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd" / "containerd.sock"

    @property
    def containerd_root(self) -> Path:
        # Kept between runs, like a node's image store: images load once.
        return images_cache() / "containerd-root"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state / "cni" / "net.d"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def logs(self) -> Path:
        return self.state / "logs"


def images_cache() -> Path:
    import images

    return images.cache_dir()


def containerd_config(paths: Paths) -> str:
    return f"""version = 2
root = "{paths.containerd_root}"
state = "{paths.run / "containerd" / "state"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{paths.run / "containerd" / "ttrpc.sock"}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.state / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_IMAGE}"
  # Root in this VM lacks CAP_SYS_RESOURCE: without this, runc's
  # oom_score_adj=-998 for the sandbox fails every pod.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{paths.cni_conf_dir}"
    max_conf_num = 1
"""


def cni_config(paths: Paths) -> str:
    network = ipaddress.ip_network(POD_CIDR)
    config = {
        "cniVersion": "1.0.0",
        "name": "kstrata",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                # Pods must not reach anything off this machine: no NAT, and
                # the FORWARD rule drops what is not for the pod network.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [
                        [
                            {
                                "subnet": str(network),
                                "rangeStart": str(network.network_address + 10),
                                "gateway": GATEWAY,
                            }
                        ]
                    ],
                    # No default route at all: a pod reaches the pod network
                    # on-link and the Service range through the host, nothing else.
                    "routes": [{"dst": controlplane.SERVICE_CIDR}],
                    "dataDir": str(paths.state / "cni" / "ipam"),
                },
            }
        ],
    }
    return json.dumps(config, indent=2)


def kubelet_config(paths: Paths, plane: ControlPlane, healthz_port: int) -> str:
    pki = controlplane.Pki(plane.state_dir / "pki")
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {GATEWAY}
port: {KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {pki.ca_cert}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupRoot: /{CGROUP_PARENT}
# This machine has cgroup v1; 1.35 refuses it unless told otherwise.
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{paths.containerd_socket}
# How often the kubelet re-syncs pods, and so how fast a changed ConfigMap
# reaches a mounted volume (the default is 1m).
syncFrequency: 10s
# Pods get no resolver: the host's is off this machine.
resolvConf: ""
podLogsDir: {paths.state / "pod-logs"}
staticPodPath: ""
serializeImagePulls: false
# A full-ish development disk must not evict test pods.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 110
"""


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> str:
    return f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {NODE_NAME}
bindAddress: {GATEWAY}
healthzBindAddress: 127.0.0.1:{healthz_port}
metricsBindAddress: 127.0.0.1:{metrics_port}
mode: iptables
clusterCIDR: {POD_CIDR}
nodePortAddresses: ["{GATEWAY}/32"]
iptables:
  # No route_localnet sysctl: nothing here is served on a node port on loopback.
  localhostNodePorts: false
conntrack:
  # Leave the machine's conntrack settings alone.
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"""


# --- the node ------------------------------------------------------------


@dataclass
class Node:
    """containerd, kube-scheduler, kubelet and kube-proxy for one control plane."""

    plane: ControlPlane
    paths: Paths = field(default_factory=Paths)
    components: list[controlplane.Component] = field(default_factory=list)

    def start(self, timeout: float = 180.0) -> None:
        require_root()
        deadline = time.monotonic() + timeout
        p = self.paths
        for directory in (p.run / "containerd", p.cni_conf_dir, p.kubelet_root, p.logs):
            directory.mkdir(parents=True, exist_ok=True)
        p.containerd_root.mkdir(parents=True, exist_ok=True)
        (p.state / "containerd.toml").write_text(containerd_config(p))
        (p.cni_conf_dir / "10-kstrata.conflist").write_text(cni_config(p))
        b = self.plane.binaries
        pki = controlplane.Pki(self.plane.state_dir / "pki")
        kubeconfigs = {}
        for user in ("kubelet", "kube-proxy", "scheduler"):
            kubeconfigs[user] = p.state / f"{user}.kubeconfig"
            controlplane.write_kubeconfig(kubeconfigs[user], self.plane.server, pki, user)
        free = controlplane.free_port
        (p.state / "kubelet.yaml").write_text(kubelet_config(p, self.plane, free()))
        (p.state / "kube-proxy.yaml").write_text(
            kube_proxy_config(kubeconfigs["kube-proxy"], free(), free())
        )
        scheduler_port = free()
        containerd = controlplane.Component(
            "containerd", ["containerd", "--config", str(p.state / "containerd.toml")]
        )
        self.components = [containerd]
        try:
            self._launch(containerd)
            _wait(p.containerd_socket.exists, deadline, "containerd", self)
            import images

            images.load_images(str(p.containerd_socket))
            sched = controlplane.Component(
                "kube-scheduler",
                [
                    str(b / "kube-scheduler"),
                    f"--kubeconfig={kubeconfigs['scheduler']}",
                    f"--authentication-kubeconfig={kubeconfigs['scheduler']}",
                    f"--authorization-kubeconfig={kubeconfigs['scheduler']}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={scheduler_port}",
                    f"--cert-dir={p.state / 'scheduler-certs'}",
                    "--leader-elect=false",
                    "--v=1",
                ],
            )
            kubelet = controlplane.Component(
                "kubelet",
                [
                    str(b / "kubelet"),
                    f"--config={p.state / 'kubelet.yaml'}",
                    f"--kubeconfig={kubeconfigs['kubelet']}",
                    f"--hostname-override={NODE_NAME}",
                    f"--node-ip={GATEWAY}",
                    f"--root-dir={p.kubelet_root}",
                    f"--cert-dir={p.state / 'kubelet-certs'}",
                    "--v=1",
                ],
            )
            proxy = controlplane.Component(
                "kube-proxy", [str(b / "kube-proxy"), f"--config={p.state / 'kube-proxy.yaml'}"]
            )
            for component in (sched, kubelet, proxy):
                self.components.append(component)
                self._launch(component)
            _wait(self._node_ready, deadline, "the Node to be Ready", self)
        except BaseException:
            self.stop()
            raise

    def _launch(self, component: controlplane.Component) -> None:
        log = (self.paths.logs / f"{component.name}.log").open("ab")
        component.process = subprocess.Popen(
            component.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=controlplane._die_with_parent,  # noqa: PLW1509 - prctl only
        )
        log.close()
        self._write_pids()

    def _write_pids(self) -> None:
        pids = {c.name: c.process.pid for c in self.components if c.process}
        (self.paths.run / "pids.json").write_text(json.dumps(pids))

    def dead_components(self) -> list[str]:
        return [c.name for c in self.components if c.process and c.process.poll() is not None]

    def _node_ready(self) -> bool:
        try:
            status, body = self.plane.get(f"/api/v1/nodes/{NODE_NAME}")
        except OSError:
            return False
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def stop(self) -> None:
        """Stop pods, then every component, and undo what the node changed."""
        running = {c.name: c for c in self.components if c.process and c.process.poll() is None}
        if "kubelet" in running and self.plane.apiserver_ready():
            self._drain(running)
        for name in ("kube-scheduler", "kubelet", "kube-proxy"):
            component = running.get(name)
            if component is not None and component.process is not None:
                _stop_process(component.process)
        teardown(self.paths, self.plane.binaries)
        self.components = []

    def _drain(self, running: dict[str, controlplane.Component]) -> None:
        """Let the kubelet stop every pod itself, so CNI tears its network down."""
        scheduler = running.get("kube-scheduler")
        if scheduler is not None and scheduler.process is not None:
            # No scheduler: pods their controllers make again stay Pending.
            _stop_process(scheduler.process)
        kubectl = [str(self.plane.kubectl), "--kubeconfig", str(self.plane.kubeconfig)]
        subprocess.run(
            [
                *kubectl,
                "delete",
                "pods",
                "--all-namespaces",
                "--all",
                "--force",
                "--grace-period=0",
                "--wait=false",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _running_sandboxes(self.paths):
            time.sleep(0.5)


def _stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _ctr(paths: Paths, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(
        "ctr", "--address", str(paths.containerd_socket), "-n", "k8s.io", *args, check=False
    )


def _running_sandboxes(paths: Paths) -> list[str]:
    if not paths.containerd_socket.exists():
        return []
    result = _ctr(paths, "tasks", "ls", "-q")
    return result.stdout.split() if result.returncode == 0 else []


def _wait(check: Callable[[], bool], deadline: float, what: str, node: Node) -> None:
    while time.monotonic() < deadline:
        if check():
            return
        dead = node.dead_components()
        if dead:
            log = node.paths.logs / f"{dead[0]}.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise NodeError(f"{', '.join(dead)} exited while waiting for {what}:\n{tail}")
        time.sleep(0.2)
    raise NodeError(f"timed out waiting for {what}; logs in {node.paths.logs}")


def _kill_marked(markers: tuple[str, ...]) -> None:
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me:
            cmdline = controlplane._cmdline(int(entry.name))
            if any(marker in cmdline for marker in markers):
                pids.append(int(entry.name))
    controlplane._terminate(pids, "", timeout=10)


def teardown(paths: Paths, binaries: Path | None = None) -> None:
    """Undo everything the node did, from RECORD; safe to run again, and after a crash."""
    if binaries is None:
        binaries = controlplane.bin_dir()
    # Whatever still runs in containerd: kill it (a clean stop drained it already).
    for task in _running_sandboxes(paths):
        _ctr(paths, "tasks", "kill", "-s", "SIGKILL", "--all", task)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _running_sandboxes(paths):
        time.sleep(0.2)
    if paths.containerd_socket.exists():
        for task in _ctr(paths, "tasks", "ls", "-q").stdout.split():
            _ctr(paths, "tasks", "delete", "-f", task)
        for container in _ctr(paths, "containers", "ls", "-q").stdout.split():
            _ctr(paths, "containers", "delete", container)
    kube_proxy = binaries / "kube-proxy"
    # Everything that names our paths: kubelet, kube-proxy, scheduler, containerd, shims;
    # then whatever container processes outlived their shims.
    _kill_marked((str(paths.run), str(paths.state)))
    _kill_cgroup_members()
    if kube_proxy.exists():
        _run(str(kube_proxy), "--cleanup", check=False, timeout=60)
    # Pod network namespaces the CNI plugins made, then the bridge.
    netns = Path("/run/netns")
    unmount_below(str(paths.run), str(paths.state), str(paths.containerd_root))
    if netns.is_dir():
        for entry in netns.glob("cni-*"):
            _run("umount", str(entry), check=False)
            with contextlib.suppress(OSError):
                entry.unlink()
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        _run("ip", "link", "delete", BRIDGE, check=False)
    _remove_cgroups()
    if RECORD.exists():
        record = json.loads(RECORD.read_text())
        restore_iptables(record.get("iptables", {}))
        for name, value in record.get("sysctls", {}).items():
            if value is not None and _read_sysctl(name) != value:
                _write_sysctl(name, value)
        for path, existed in record.get("paths", {}).items():
            if not existed and os.path.lexists(path):
                unmount_below(path)
                shutil.rmtree(path, ignore_errors=True)
    else:
        # Without a record only our own chain is known to be ours.
        _run("iptables", "-w", "-D", "FORWARD", "-j", OUR_CHAIN, check=False)
        _run("iptables", "-w", "-F", OUR_CHAIN, check=False)
        _run("iptables", "-w", "-X", OUR_CHAIN, check=False)
    shutil.rmtree(paths.state, ignore_errors=True)
    shutil.rmtree(paths.run, ignore_errors=True)


def install_packages() -> None:
    """The Debian packages the node runs on (apt, only for what is missing)."""
    require_root()
    import images

    images.ensure_debian_packages(PACKAGES)


def prepare_host(paths: Paths) -> None:
    """Packages, the record of the machine's state, the bridge and the FORWARD guard."""
    install_packages()
    if RECORD.exists() or leftovers():
        # A previous node that did not stop cleanly: clean it up first.
        teardown(paths)
    paths.run.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(take_record(), indent=2))
    # The bridge exists before the API server starts, which binds to its gateway.
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run(
        "ip", "addr", "add", f"{GATEWAY}/{ipaddress.ip_network(POD_CIDR).prefixlen}", "dev", BRIDGE
    )
    _run("ip", "link", "set", BRIDGE, "up")
    _make_cgroups()
    # Nothing a pod sends may be forwarded off the machine: whatever enters
    # from the bridge and is not for the pod network is dropped, ahead of
    # any ACCEPT kubelet or kube-proxy add later.
    _run("iptables", "-w", "-N", OUR_CHAIN)
    _run("iptables", "-w", "-A", OUR_CHAIN, "-i", BRIDGE, "-d", POD_CIDR, "-j", "RETURN")
    _run("iptables", "-w", "-A", OUR_CHAIN, "-i", BRIDGE, "-j", "DROP")
    _run("iptables", "-w", "-I", "FORWARD", "1", "-j", OUR_CHAIN)
    # No IPv6 forwarding from pods at all.
    if shutil.which("ip6tables"):
        _run("ip6tables", "-w", "-N", OUR_CHAIN)
        _run("ip6tables", "-w", "-A", OUR_CHAIN, "-i", BRIDGE, "-j", "DROP")
        _run("ip6tables", "-w", "-I", "FORWARD", "1", "-j", OUR_CHAIN)


def ensure_images() -> None:
    import images

    images.ensure_images()


# --- a control plane with a node, as one unit ---------------------------------


@dataclass
class Cluster:
    """The control plane (serving on the bridge's gateway) plus its node."""

    state_dir: Path
    plane: ControlPlane = field(init=False)
    node: Node = field(init=False)

    def __post_init__(self) -> None:
        self.plane = ControlPlane(self.state_dir, address=GATEWAY)
        self.node = Node(self.plane)

    def start(self) -> None:
        require_root()
        controlplane.ensure_built(quiet=True)
        ensure_images()
        prepare_host(self.node.paths)
        try:
            self.plane.start()
            self.node.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            self.node.stop()
        finally:
            self.plane.stop()


@contextlib.contextmanager
def running(state_dir: Path) -> Iterator[Cluster]:
    cluster = Cluster(state_dir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


# --- detached mode (make node) ---------------------------------------------


def serve(state_dir: Path) -> int:
    """Supervisor: own the control plane and the node until SIGTERM/SIGINT."""
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    cluster = Cluster(state_dir)
    try:
        cluster.start()
    except (ControlPlaneError, NodeError) as exc:
        print(f"the cluster with a node failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    (state_dir / "node").write_text(NODE_NAME)
    (state_dir / "ready").write_text(cluster.plane.server)
    print(f"control plane ready at {cluster.plane.server}; node {NODE_NAME} Ready", flush=True)
    while not stopping:
        dead = cluster.plane.dead_components() + cluster.node.dead_components()
        if dead:
            print(f"{', '.join(dead)} exited; stopping", file=sys.stderr, flush=True)
            break
        time.sleep(0.5)
    cluster.stop()
    for name in ("ready", "node"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()
    return 0


def up(state_dir: Path, timeout: float = 600.0) -> ControlPlane:
    require_root()
    state_dir = state_dir.resolve()
    running_plane = controlplane._running(state_dir)
    if running_plane is not None and (state_dir / "node").exists():
        return running_plane
    if running_plane is not None:
        print(
            "# replacing the running control plane: pods cannot reach one on loopback",
            file=sys.stderr,
        )
    down(state_dir)
    # Slow first-time steps happen here, in the foreground, where their output shows.
    controlplane.ensure_built()
    ensure_images()
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir.parent / f"{state_dir.name}.supervisor.log"
    log = log_path.open("ab")
    supervisor = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "serve", "--state-dir", str(state_dir)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plane = controlplane._running(state_dir)
        if plane is not None and (state_dir / "node").exists():
            return plane
        if supervisor.poll() is not None:
            raise NodeError(f"the supervisor exited:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    raise NodeError("timed out waiting for the cluster with a node")


def down(state_dir: Path) -> None:
    """Stop the detached cluster (with or without a node) and undo the node's changes."""
    state_dir = state_dir.resolve()
    state_file = state_dir / "state.json"
    with contextlib.suppress(OSError, ValueError):
        supervisor = int(json.loads(state_file.read_text()).get("supervisor", 0))
        if supervisor and controlplane._pid_alive(supervisor):
            # A graceful stop drains the pods; give it the time that takes.
            os.kill(supervisor, signal.SIGTERM)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and controlplane._pid_alive(supervisor):
                time.sleep(0.2)
    if RECORD.exists() or RUN_DIR.exists():
        require_root()
        teardown(Paths())
    controlplane.down(state_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="node", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "serve"):
        command = commands.add_parser(name)
        command.add_argument("--state-dir", type=Path, default=controlplane.DEFAULT_STATE_DIR)
    commands.add_parser("leftovers", help="list what of a node is still on this machine")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            plane = up(args.state_dir)
            print(f"# control plane ready at {plane.server}, node {NODE_NAME} Ready")
            print(f"export KUBECONFIG={plane.kubeconfig}")
            print(f'export PATH="{plane.binaries}:$PATH"')
        elif args.command == "down":
            down(args.state_dir)
            print("cluster stopped; the node's changes to this machine are undone")
        elif args.command == "serve":
            return serve(args.state_dir)
        elif args.command == "leftovers":
            found = leftovers()
            print("\n".join(found) if found else "nothing left")
            return 1 if found else 0
    except (ControlPlaneError, NodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

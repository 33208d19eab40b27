"""Reading a kubeconfig without the ``kubernetes`` client, and in-cluster credentials.

The operator connects through :func:`kstrata.kube.connection.connect`, which
no longer imports the client for the kubeconfigs an operator uses (client
certificates, tokens, inline or as files); these tests pin what it reads.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstrata.errors import UsageError
from kstrata.kube import connection
from kstrata.kube.connection import connect

CA = b"-----BEGIN CERTIFICATE-----\nnot checked when reading\n-----END CERTIFICATE-----\n"


def write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def kubeconfig(user: dict[str, Any], cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": cluster or {"server": "https://10.0.0.1:6443"}},
            {"name": "other", "cluster": {"server": "https://10.9.9.9:6443"}},
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "main", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
            {"name": "second", "context": {"cluster": "other", "user": "u"}},
        ],
        "current-context": "main",
    }


def test_client_certificate_files_are_made_absolute_next_to_the_kubeconfig(
    tmp_path: Path,
) -> None:
    config = kubeconfig(
        {"client-certificate": "pki/client.crt", "client-key": "pki/client.key"},
        {"server": "https://10.0.0.1:6443", "certificate-authority": "pki/ca.crt"},
    )
    cluster = connect(write(tmp_path / "kubeconfig", config))
    credentials = cluster.credentials
    assert credentials.server == "https://10.0.0.1:6443"
    assert credentials.ca_path == str(tmp_path / "pki/ca.crt")
    assert credentials.certificate_path == str(tmp_path / "pki/client.crt")
    assert credentials.private_key_path == str(tmp_path / "pki/client.key")
    assert credentials.verify_tls
    assert credentials.token is None
    assert cluster.default_namespace == "team-a"


def test_inline_data_goes_to_private_files(tmp_path: Path) -> None:
    key = b"-----BEGIN PRIVATE KEY-----\nsecret key material\n-----END PRIVATE KEY-----\n"
    config = kubeconfig(
        {
            "client-certificate-data": base64.b64encode(CA).decode(),
            "client-key-data": base64.b64encode(key).decode(),
        },
        {
            "server": "https://10.0.0.1:6443",
            "certificate-authority-data": base64.b64encode(CA).decode(),
        },
    )
    credentials = connect(write(tmp_path / "kubeconfig", config)).credentials
    assert credentials.private_key_path is not None
    assert credentials.ca_path is not None
    assert Path(credentials.private_key_path).read_bytes() == key
    assert Path(credentials.ca_path).read_bytes() == CA
    for path in (credentials.ca_path, credentials.private_key_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_token_and_a_named_context(tmp_path: Path) -> None:
    path = write(tmp_path / "kubeconfig", kubeconfig({"token": "t0ken"}))
    cluster = connect(path, "second")
    assert cluster.credentials.server == "https://10.9.9.9:6443"
    assert (cluster.credentials.scheme, cluster.credentials.token) == ("Bearer", "t0ken")
    assert cluster.credentials.current_token() == "t0ken"
    assert cluster.default_namespace == "default"
    assert "t0ken" not in repr(cluster)


def test_a_token_file_is_read_when_the_token_is_wanted(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    path = write(tmp_path / "kubeconfig", kubeconfig({"tokenFile": "token"}))
    credentials = connect(path).credentials
    assert credentials.token_path == str(tmp_path / "token")
    assert credentials.current_token() == "first"
    (tmp_path / "token").write_text("second\n")
    assert credentials.current_token() == "second"


def test_insecure_skip_tls_verify(tmp_path: Path) -> None:
    config = kubeconfig({}, {"server": "https://10.0.0.1:6443", "insecure-skip-tls-verify": True})
    assert not connect(write(tmp_path / "kubeconfig", config)).credentials.verify_tls


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c.update({"current-context": "missing"}), "current-context 'missing' does not"),
        (lambda c: c.pop("current-context"), "no context given and no current-context set"),
        (lambda c: c["clusters"][0]["cluster"].pop("server"), "cluster 'c' has no server"),
        (
            lambda c: c["users"][0]["user"].update({"client-key-data": "%%%"}),
            "client-key-data is not base64",
        ),
    ],
    ids=["unknown-context", "no-current-context", "no-server", "bad-base64"],
)
def test_a_broken_kubeconfig_is_a_usage_error(tmp_path: Path, change: Any, expected: str) -> None:
    config = kubeconfig({"token": "t0ken"})
    change(config)
    with pytest.raises(UsageError, match=expected) as caught:
        connect(write(tmp_path / "kubeconfig", config))
    assert "t0ken" not in str(caught.value)


def test_not_yaml_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("clusters: [\n")
    with pytest.raises(UsageError, match="not a readable kubeconfig"):
        connect(path)


def test_an_exec_plugin_goes_through_the_client_loader(tmp_path: Path) -> None:
    """The client's loader runs the plugin; its token ends up in the credentials."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        textwrap.dedent(
            """\
            import json
            print(json.dumps({
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "kind": "ExecCredential",
                "status": {"token": "from-the-plugin"},
            }))
            """
        )
    )
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable,
            "args": [str(plugin)],
            "interactiveMode": "Never",
        }
    }
    cluster = connect(write(tmp_path / "kubeconfig", kubeconfig(user)))
    assert cluster.credentials.token == "from-the-plugin"
    assert cluster.default_namespace == "team-a"


def test_in_cluster_reads_the_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("bound-token-1")
    (tmp_path / "ca.crt").write_bytes(CA)
    (tmp_path / "namespace").write_text("kstrata-system\n")
    monkeypatch.setattr(connection, "_SERVICE_ACCOUNT", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cluster = connect(None)
    assert cluster.credentials.server == "https://[fd00::1]:443"
    assert cluster.credentials.ca_path == str(tmp_path / "ca.crt")
    assert cluster.default_namespace == "kstrata-system"
    assert cluster.credentials.current_token() == "bound-token-1"
    (tmp_path / "token").write_text("bound-token-2")  # the kubelet rotated it
    assert cluster.credentials.current_token() == "bound-token-2"


def test_outside_a_pod_in_cluster_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "_SERVICE_ACCOUNT", tmp_path)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(UsageError, match="not running in a pod"):
        connect(None)


def test_connecting_with_a_certificate_kubeconfig_imports_no_client(tmp_path: Path) -> None:
    path = write(
        tmp_path / "kubeconfig",
        kubeconfig({"client-certificate": "c.crt", "client-key": "c.key", "token": "x"}),
    )
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kstrata.kube.connection import connect\n"
        "from kstrata.kube.api import KubeApi\n"
        f"KubeApi(connect(Path({str(path)!r})))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

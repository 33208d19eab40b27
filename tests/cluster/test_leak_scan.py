"""No sealed value leaks, anywhere, through any SealedSecret flow: the canary scan.

One unique random canary is sealed as the secret value (a second one in an
environment override), then every flow runs against the real control plane
with DEBUG logging: the round trip (``kstrata seal`` with ``--from-literal``,
``--merge-into`` and ``-f secret.yaml``), per-environment overrides, every
token that must not open (wrong key, a real replay into a second namespace,
another name under strict scope, two items swapped, bytes tampered, token
truncated, unknown version), an existing unowned Secret then adopted, a
replacement the API server refuses, a forbidden Secret type, key rotation,
the key Secret deleted and restored, a produced Secret deleted by someone
else, ``history``/``diff``/``rollback --dry-run``, and the CLI's error paths.

Then everything anyone could read is scanned (``support.leaks``): every
object of every listable kind in the test namespaces and the operator's
namespace (annotations, kopf's and kubectl's included, labels, status,
events of both APIs), the Namespaces, ``/metrics``, every log record of the
process and all CLI output, for the canaries raw, base64, hex and hashed.
Only the produced Secrets' ``data`` is left out, and a positive control
checks the scan does find the canaries there.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kopf._cogs.structs.references import Resource
from kubernetes import client

from kstrata.cli.main import main
from kstrata.controller.runner import OperatorContext, build_registry
from kstrata.crypto import PublicKeyBundle, generate_keypair
from support.cluster import TestCluster
from support.leaks import (
    Canary,
    CliTranscript,
    LogCapture,
    captured_logs,
    cluster_texts,
    redact,
    report,
    scan,
)
from support.operator import RunningOperator, running_operator, test_settings
from support.sealed_secrets import (
    BAD_TOKENS,
    KEY_SECRET,
    apply,
    metric,
    published_bundle,
    read_secret,
    sealed_secret,
    secret_data,
    wait_bundle,
    wait_not_ready,
    wait_ready,
)
from support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("kstrata_crds")

SECRETS = Resource(group="", version="v1", plural="secrets", kind="Secret", namespaced=True)


class Flows:
    """The test's cluster, its namespaces, and every CLI call's output."""

    def __init__(
        self,
        cluster: TestCluster,
        app: str,
        other: str,
        keys: str,
        work: Path,
        capsys: pytest.CaptureFixture[str],
        canaries: tuple[Canary, ...],
    ) -> None:
        self.cluster, self.app, self.other, self.keys = cluster, app, other, keys
        self.work = work
        self.capsys = capsys
        self.canaries = canaries
        self.cli = CliTranscript({})

    def ok(self, code: int, err: str) -> None:
        """Assert success; a failure message never shows a canary (the scan reports leaks)."""
        assert code == 0, redact(err, self.canaries)

    def kstrata(self, what: str, *argv: str) -> tuple[int, str, str]:
        """Run the CLI in-process; keep its output (and anything argparse wrote to sys.*)."""
        out, err = io.StringIO(), io.StringIO()
        code = main([*argv, "--kubeconfig", str(self.cluster.kubeconfig)], out=out, err=err)
        stray = self.capsys.readouterr()
        self.cli.record(what, code, out.getvalue() + stray.out, err.getvalue() + stray.err)
        return code, out.getvalue(), err.getvalue()

    def kstrata_any(self, what: str, *argv: str) -> int | None:
        """A command whose success is not this test's subject: only its output matters.

        A crash is recorded (exception type and text, scanned like any output)
        rather than raised, so another feature's bug cannot hide a leak here.
        """
        try:
            return self.kstrata(what, *argv)[0]
        except Exception as exc:
            stray = self.capsys.readouterr()
            self.cli.record(f"{what} crashed ({type(exc).__name__})", -1, stray.out, f"{exc}")
            return None

    def kubectl(self, what: str, *args: str, input: str | None = None, check: bool = True) -> Any:
        result = self.cluster.kubectl(*args, input=input, check=check)
        self.cli.record(f"kubectl {what}", result.returncode, result.stdout, result.stderr)
        return result

    def seal(self, what: str, *argv: str) -> str:
        code, out, err = self.kstrata(f"seal {what}", "seal", *argv)
        self.ok(code, err)
        return out

    def offline(self, what: str, *argv: str, scan_stdout: bool = True) -> tuple[int, str]:
        """Run an offline command (no kubeconfig); keep its output for the scan.

        ``scan_stdout=False`` is for the one output the user explicitly asked
        to hold values (``unseal --i-know-this-prints-secrets``): its stdout is
        returned, not recorded; its stderr is scanned like any other.
        """
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), out=out, err=err)
        stray = self.capsys.readouterr()
        recorded = out.getvalue() + stray.out if scan_stdout else stray.out
        self.cli.record(what, code, recorded, err.getvalue() + stray.err)
        return code, out.getvalue()


def _operator(
    cluster: TestCluster, namespaces: tuple[str, ...], keys: str
) -> contextlib.AbstractContextManager[RunningOperator]:
    return running_operator(cluster, namespaces=(*namespaces, keys), operator_namespace=keys)


@pytest.fixture
def other_namespace(cluster: TestCluster) -> Iterator[str]:
    with cluster.temporary_namespace(prefix="replay") as name:
        yield name


@pytest.fixture
def canaries() -> tuple[Canary, Canary]:
    """The secret value, and the value of an environment override: new for every run."""
    return Canary.new("base"), Canary.new("override")


@pytest.fixture
def operator_log(canaries: tuple[Canary, Canary]) -> Iterator[LogCapture]:
    """Every log record of this process (operator, kopf, clients) at DEBUG, for the test.

    First among the root handlers, so pytest's captured-log report and kopf's
    own stream only ever see records with the canaries redacted.
    """
    with captured_logs(
        "kopf", "kstrata", "kubernetes", "urllib3", "aiohttp", redacting=canaries
    ) as capture:
        yield capture


# --- the flows --------------------------------------------------------------


def round_trip_and_overrides(flows: Flows, base: Canary, override: Canary) -> Path:
    """``kstrata seal`` from the published keys, an override merged in, then relabel to prod."""
    ns = flows.app
    manifest = flows.work / "app.yaml"
    sealed = flows.seal(
        "--from-literal (cluster keys)",
        "--controller-namespace", flows.keys, "-n", ns, "--name", "app",
        "--from-literal", f"password={base.text}", "--from-literal", "user=admin",
    )  # fmt: skip
    manifest.write_text(sealed)
    flows.seal(
        "--env prod --merge-into",
        "--controller-namespace", flows.keys, "--env", "prod", "--merge-into", str(manifest),
        "--from-literal", f"password={override.text}",
    )  # fmt: skip
    flows.kubectl("apply app", "apply", "-n", ns, "-f", str(manifest))
    wait_ready(flows.cluster, ns, "app", revision=1)
    assert secret_data(flows.cluster, ns, "app") == {"password": base.value, "user": b"admin"}

    # Offline, from a Secret manifest, with the exported bundle.
    cert = flows.work / "cert.json"
    code, _, err = flows.kstrata(
        "keys export --out",
        "keys",
        "export",
        "--out",
        str(cert),
        "--operator-namespace",
        flows.keys,
    )
    flows.ok(code, err)
    secret_file = flows.work / "secret.yaml"
    secret_file.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "from-file",
                    "namespace": ns,
                    "annotations": {
                        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                            {"stringData": {"token": base.text}}
                        )
                    },
                },
                "stringData": {"token": base.text},
                "data": {"blob": base64.b64encode(base.value).decode()},
            }
        )
    )
    from_file = flows.seal("-f secret.yaml --cert", "--cert", str(cert), "-f", str(secret_file))
    flows.kubectl("apply from-file", "apply", "-n", ns, "-f", "-", input=from_file)
    wait_ready(flows.cluster, ns, "from-file", revision=1)
    assert secret_data(flows.cluster, ns, "from-file") == {"token": base.value, "blob": base.value}

    # The environment comes from the namespace label: prod takes the override.
    flows.kubectl("label ns prod", "label", "ns", ns, "kstrata.dev/environment=prod", "--overwrite")
    body = wait_ready(flows.cluster, ns, "app", revision=2)
    assert body["status"]["environment"] == "prod"
    assert secret_data(flows.cluster, ns, "app") == {"password": override.value, "user": b"admin"}
    return manifest


def tokens_that_do_not_open(flows: Flows, base: Canary, override: Canary, app: Path) -> None:
    ns, cluster = flows.app, flows.cluster
    bundle = published_bundle(cluster, flows.keys)

    # A real replay: the same manifest, applied in a second namespace.
    replayed = yaml.safe_load(app.read_text())
    replayed["metadata"]["namespace"] = flows.other
    flows.kubectl(
        "apply replayed", "apply", "-n", flows.other, "-f", "-", input=yaml.safe_dump(replayed)
    )
    wait_not_ready(cluster, flows.other, "app", "DecryptionFailed")
    assert not cluster.exists(cluster.core.read_namespaced_secret, "app", flows.other)

    for case, (tamper, reason, _) in BAD_TOKENS.items():
        name = f"bad-{case}"[:63]
        tokens = tamper(bundle, ns, name, base.value, override.value)
        apply(cluster, ns, sealed_secret(name, {"encryptedData": tokens}))
        wait_not_ready(cluster, ns, name, reason)
        assert not cluster.exists(cluster.core.read_namespaced_secret, name, ns)

    # Bad tokens over a good Secret leave it as it is (and the good spec comes back).
    before = read_secret(cluster, ns, "from-file")
    tamper, reason, _ = BAD_TOKENS["bytes-tampered"]
    apply(
        cluster,
        ns,
        sealed_secret(
            "from-file", {"encryptedData": tamper(bundle, ns, "from-file", base.value, base.value)}
        ),
    )
    wait_not_ready(cluster, ns, "from-file", reason)
    assert read_secret(cluster, ns, "from-file").metadata.resource_version == (
        before.metadata.resource_version
    )


def unowned_and_forbidden_secrets(flows: Flows, base: Canary) -> None:
    ns, cluster = flows.app, flows.cluster
    cert = str(flows.work / "cert.json")

    flows.kubectl(
        "create legacy", "create", "secret", "generic", "legacy", "-n", ns,
        "--from-literal=a=not-the-canary",
    )  # fmt: skip
    legacy = flows.seal(
        "legacy", "--cert", cert, "-n", ns, "--name", "legacy", "--from-literal", f"a={base.text}"
    )
    flows.kubectl("apply legacy", "apply", "-n", ns, "-f", "-", input=legacy)
    wait_not_ready(cluster, ns, "legacy", "NotOwned")
    assert secret_data(cluster, ns, "legacy") == {"a": b"not-the-canary"}
    flows.kubectl(
        "adopt legacy", "label", "secret", "legacy", "-n", ns,
        "app.kubernetes.io/managed-by=kstrata",
    )  # fmt: skip
    wait_ready(cluster, ns, "legacy", revision=1)
    assert secret_data(cluster, ns, "legacy") == {"a": base.value}

    # A replacement the API server refuses (a TLS Secret needs tls.crt and tls.key):
    # the old Secret is put back, and the server's answer is not quoted anywhere.
    refused_type = yaml.safe_load(legacy)
    refused_type["spec"]["template"] = {"type": "kubernetes.io/tls"}
    flows.kubectl(
        "apply legacy as tls", "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(refused_type)
    )
    wait_not_ready(cluster, ns, "legacy", "SecretRejected")
    assert secret_data(cluster, ns, "legacy") == {"a": base.value}

    flows.kubectl(
        "create boot", "create", "secret", "generic", "boot", "-n", ns,
        "--type=bootstrap.kubernetes.io/token", "--from-literal=token-id=abcdef",
    )  # fmt: skip
    flows.kubectl(
        "adopt boot", "label", "secret", "boot", "-n", ns, "app.kubernetes.io/managed-by=kstrata"
    )
    boot = flows.seal(
        "boot",
        "--cert",
        cert,
        "-n",
        ns,
        "--name",
        "boot",
        "--from-literal",
        f"token-id={base.text}",
    )
    flows.kubectl("apply boot", "apply", "-n", ns, "-f", "-", input=boot)
    wait_not_ready(cluster, ns, "boot", "ForbiddenSecretType")
    assert secret_data(cluster, ns, "boot") == {"token-id": b"abcdef"}

    # The CRD's CEL rule refuses a credential type outright; its message is scanned too.
    refused = yaml.safe_load(boot)
    refused["metadata"]["name"] = "sa-token"
    refused["spec"]["template"] = {"type": "kubernetes.io/service-account-token"}
    result = flows.kubectl(
        "apply sa-token", "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(refused), check=False
    )
    assert result.returncode != 0


def key_rotation(flows: Flows, base: Canary, app: Path) -> None:
    ns, cluster = flows.app, flows.cluster
    old = published_bundle(cluster, flows.keys).newest.key_id
    code, _, err = flows.kstrata(
        "keys rotate", "keys", "rotate", "--operator-namespace", flows.keys
    )
    flows.ok(code, err)
    new = wait_bundle(cluster, flows.keys, keys=2).newest.key_id
    flows.seal(
        "re-seal with the new key --merge-into",
        "--controller-namespace", flows.keys, "--merge-into", str(app),
        "--from-literal", f"user={base.text}",
    )  # fmt: skip
    flows.kubectl("apply rotated app", "apply", "-n", ns, "-f", str(app))
    body = wait_ready(cluster, ns, "app", revision=3)
    assert body["status"]["keyIds"] == sorted([old, new])
    code, _, err = flows.kstrata(
        "keys list -o json", "keys", "list", "-o", "json", "--operator-namespace", flows.keys
    )
    flows.ok(code, err)


def multi_recipient_raw_and_recovery(flows: Flows, base: Canary, app: Path) -> str:
    """Issue 15's round trips: two recipients, a raw token, a key backup and offline unseal.

    Returns the one output that holds values by request (``unseal
    --i-know-this-prints-secrets``), for the positive control.
    """
    ns = flows.app
    cert = flows.work / "cluster-cert.json"
    code, _, err = flows.kstrata(
        "keys export (multi)", "keys", "export", "--out", str(cert),
        "--operator-namespace", flows.keys,
    )  # fmt: skip
    flows.ok(code, err)
    other_cert = flows.work / "other-cluster.json"
    other_cert.write_text(
        PublicKeyBundle.of([generate_keypair(created=dt.datetime.now(dt.UTC))]).serialize()
    )
    value_file = flows.work / "value"
    value_file.write_bytes(base.value)

    # One manifest, two clusters: the other cluster's recipient first; this one opens its own.
    multi = flows.seal(
        "--cert x2", "--cert", str(other_cert), "--cert", str(cert), "-n", ns, "--name", "multi",
        "--from-file", f"password={value_file}",
    )  # fmt: skip
    flows.kubectl("apply multi", "apply", "-f", "-", input=multi)
    wait_ready(flows.cluster, ns, "multi", revision=1)
    assert secret_data(flows.cluster, ns, "multi") == {"password": base.value}
    # Sealed for the other cluster only: a clear missing-key status, no value anywhere.
    foreign = flows.seal(
        "--cert other only", "--cert", str(other_cert), "-n", ns, "--name", "foreign-only",
        "--from-file", f"password={value_file}",
    )  # fmt: skip
    flows.kubectl("apply foreign-only", "apply", "-f", "-", input=foreign)
    wait_not_ready(flows.cluster, ns, "foreign-only", "SealingKeyMissing")

    # --raw: one bare token from a file, pasted into a manifest by hand.
    token = flows.seal(
        "--raw", "--raw", "--cert", str(cert), "-n", ns, "--name", "raw", "--key", "token",
        "--from-file", str(value_file),
    ).strip()  # fmt: skip
    raw = sealed_secret("raw", {"encryptedData": {"token": token}})
    flows.kubectl("apply raw", "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(raw))
    wait_ready(flows.cluster, ns, "raw", revision=1)
    assert secret_data(flows.cluster, ns, "raw") == {"token": base.value}

    # Break-glass: the backup (a file, 0600), then offline unseal with and without the flag.
    backup = flows.work / "keys-backup.yaml"
    code, _, err = flows.kstrata(
        "keys backup", "keys", "backup", "-o", str(backup), "--operator-namespace", flows.keys
    )
    flows.ok(code, err)
    code, _ = flows.offline(
        "unseal (summary only)", "unseal", "--recovery-keys", str(backup), "-f", str(app),
        "--env", "prod", "-n", ns,
    )  # fmt: skip
    assert code == 0
    moved = yaml.safe_load(multi)
    moved["metadata"]["namespace"] = flows.other  # a replay: must not open, must not leak
    moved_file = flows.work / "moved.yaml"
    moved_file.write_text(yaml.safe_dump(moved))
    code, _ = flows.offline(
        "unseal a moved manifest", "unseal", "--recovery-keys", str(backup), "-f",
        str(moved_file), "--i-know-this-prints-secrets",
    )  # fmt: skip
    assert code == 1
    multi_file = flows.work / "multi.yaml"
    multi_file.write_text(multi)
    code, printed = flows.offline(
        "unseal --i-know-this-prints-secrets", "unseal", "--recovery-keys", str(backup),
        "-f", str(multi_file), "--i-know-this-prints-secrets", scan_stdout=False,
    )  # fmt: skip
    assert code == 0
    return printed


def history_and_diff(flows: Flows, app: Path) -> dict[str, int | None]:
    """``kstrata history | diff | rollback --dry-run``: they name items, never values."""
    ns = flows.app
    where = ["app", "-n", ns, "--kind", "secret"]
    commands = {
        "history": ["history", *where],
        "history -o json": ["history", *where, "-o", "json"],
        "diff revisions": ["diff", *where, "--revision", "1", "--to-revision", "3"],
        "diff environments": ["diff", *where, "--env", "dev", "--to-env", "prod"],
        "diff -f": ["diff", "-n", ns, "-f", str(app)],
        "diff -o json": ["diff", *where, "--revision", "1", "--to-revision", "3", "-o", "json"],
        "diff -f -o yaml": ["diff", "-n", ns, "-f", str(app), "-o", "yaml"],
        "rollback --dry-run": ["rollback", *where, "--to-revision", "1", "--dry-run"],
        "rollback -o yaml": ["rollback", *where, "--to-revision", "1", "-o", "yaml"],
    }
    return {what: flows.kstrata_any(what, *argv) for what, argv in commands.items()}


def key_secret_deleted_and_restored(flows: Flows, operator: RunningOperator, base: Canary) -> None:
    ns, cluster = flows.app, flows.cluster
    backup = cluster.core.read_namespaced_secret(KEY_SECRET, flows.keys)
    assert backup.metadata is not None
    cluster.core.delete_namespaced_secret(KEY_SECRET, flows.keys)
    wait_for(lambda: metric(operator, "kstrata_sealing_keys") == 0, what="the key loss noticed")
    later = flows.seal(
        "later (while keys are lost)",
        "--controller-namespace", flows.keys, "-n", ns, "--name", "later",
        "--from-literal", f"v={base.text}",
    )  # fmt: skip
    flows.kubectl("apply later", "apply", "-n", ns, "-f", "-", input=later)
    wait_not_ready(cluster, ns, "later", "SealingKeyMissing")
    cluster.core.create_namespaced_secret(
        flows.keys,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=KEY_SECRET, labels=backup.metadata.labels),
            type=backup.type,
            data=backup.data,
        ),
    )
    wait_ready(cluster, ns, "later", revision=1)
    assert secret_data(cluster, ns, "later") == {"v": base.value}

    # Someone deletes a produced Secret: it is written again (a new object).
    gone = read_secret(cluster, ns, "later").metadata.uid

    def rewritten() -> bool:
        again = read_secret(cluster, ns, "later")
        return bool(again.metadata.uid != gone and secret_data(cluster, ns, "later"))

    cluster.core.delete_namespaced_secret("later", ns)
    wait_for(rewritten, timeout=30, what="the deleted Secret written again")
    assert secret_data(cluster, ns, "later") == {"v": base.value}


def cli_error_paths(flows: Flows, base: Canary) -> None:
    """Every way a seal can fail with the canary in its input: no message may echo it."""
    ns, keys = flows.app, flows.keys
    bad_cert = flows.work / "bad-cert.json"
    bad_cert.write_text(f'{{"format": "{base.text}", "keys": []}}')
    garbage_cert = flows.work / "garbage-cert.json"
    garbage_cert.write_text(base.text)
    bad_secret = flows.work / "bad-secret.yaml"
    bad_secret.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "x", "namespace": ns},
                "data": {"password": base.text + "!!"},
            }
        )
    )
    forbidden_secret = flows.work / "forbidden-secret.yaml"
    forbidden_secret.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "x", "namespace": ns},
                "type": "kubernetes.io/service-account-token",
                "stringData": {"token": base.text},
            }
        )
    )
    literal = f"p={base.text}"
    where = ("-n", ns, "--name", "x")
    failing: dict[str, list[str]] = {
        "a malformed bundle file": ["--cert", str(bad_cert), *where, "--from-literal", literal],
        "a bundle file that is not json": [
            "--cert", str(garbage_cert), *where, "--from-literal", literal,
        ],
        "a missing bundle file": [
            "--cert", str(flows.work / "absent.json"), *where, "--from-literal", literal,
        ],
        "no published keys": [
            "--controller-namespace", flows.other, *where, "--from-literal", literal,
        ],
        "--from-literal without =": [
            "--controller-namespace", keys, *where, "--from-literal", base.text,
        ],
        "an invalid item key": [
            "--controller-namespace", keys, *where, "--from-literal", f"bad key!={base.text}",
        ],
        "an item given twice": [
            "--controller-namespace", keys, *where, "--from-literal", literal,
            "--from-literal", literal,
        ],
        "--from-file naming a missing path": [
            "--controller-namespace", keys, *where, "--from-file", f"p={base.text}",
        ],
        "-f with invalid base64": ["--controller-namespace", keys, "-f", str(bad_secret)],
        "-f with a forbidden type": ["--controller-namespace", keys, "-f", str(forbidden_secret)],
        "an invalid --env": [
            "--controller-namespace", keys, *where, "--env", "Not_An_Env",
            "--from-literal", literal,
        ],
        "no --name": ["--controller-namespace", keys, "-n", ns, "--from-literal", literal],
    }  # fmt: skip
    for what, argv in failing.items():
        # What they print is scanned with everything else, at the end.
        code, _, _ = flows.kstrata(f"seal error: {what}", "seal", *argv)
        assert code != 0, what


# --- the test ---------------------------------------------------------------


def test_no_canary_leaks_from_any_flow(
    cluster: TestCluster,
    namespace: str,
    other_namespace: str,
    keys_namespace: str,
    canaries: tuple[Canary, Canary],
    operator_log: LogCapture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    base, override = canaries
    flows = Flows(cluster, namespace, other_namespace, keys_namespace, tmp_path, capsys, canaries)
    with _operator(cluster, (namespace, other_namespace), keys_namespace) as operator:
        published_bundle(cluster, keys_namespace)
        code, _, err = flows.kstrata(
            "keys list", "keys", "list", "--operator-namespace", keys_namespace
        )
        flows.ok(code, err)
        app = round_trip_and_overrides(flows, base, override)
        tokens_that_do_not_open(flows, base, override, app)
        unowned_and_forbidden_secrets(flows, base)
        requested = multi_recipient_raw_and_recovery(flows, base, app)
        key_rotation(flows, base, app)
        history_codes = history_and_diff(flows, app)
        key_secret_deleted_and_restored(flows, operator, base)
        cli_error_paths(flows, base)
        metrics_text = operator.metrics()
    stray = capsys.readouterr()  # anything the operator itself printed
    dump = cluster_texts(cluster, [namespace, other_namespace, keys_namespace])

    # Positive controls: the dump, the logs and the scan itself are real.
    assert dump.produced_secrets == {
        f"{namespace}/{name}" for name in ("app", "from-file", "legacy", "later", "multi", "raw")
    }
    # The explicitly requested output of `unseal --i-know-this-prints-secrets` holds the value
    # (so the scan would see it there), and is the only output left out of the scan.
    assert scan({"requested unseal output": requested}, [base]), "unseal printed the value"
    assert {"Secret", "SealedSecret", "Event", "ConfigMap", "Namespace"} <= dump.kinds
    found = {
        (hit.canary, hit.location.split(" ")[1])
        for hit in scan(dump.produced_data, [base, override])
    }
    assert ("base", f"{namespace}/from-file") in found
    assert ("override", f"{namespace}/app") in found
    loggers = {name for name, _ in operator_log.records}
    assert any(name.startswith("kopf") for name in loggers)
    assert any(name.startswith("kstrata") for name in loggers)
    assert any("DEBUG kopf" in text for _, text in operator_log.records)
    assert any("not unsealed" in text for _, text in operator_log.records)
    assert "kstrata_reconcile_total" in metrics_text

    texts = {
        **dump.texts,
        **operator_log.texts(),
        **flows.cli.outputs,
        "/metrics": metrics_text,
        "stdout (uncaptured prints)": stray.out,
        "stderr (uncaptured prints)": stray.err,
    }
    hits = scan(texts, [base, override])
    assert not hits, report(hits)
    crashed = sorted(what for what, code in history_codes.items() if code is None)
    assert crashed == [], "history/diff/rollback must run (their output is scanned)"

    # Secrets are followed, never handled: kopf stored nothing on any of them...
    kopf_on_secrets = [
        location
        for location, text in dump.texts.items()
        if location.startswith("Secret ") and ("kopf" in location or "kopf" in text)
    ]
    assert kopf_on_secrets == []
    # ...because no change-tracking handler is registered for Secrets at all.
    registry = build_registry(OperatorContext(test_settings(), cluster.connection))
    changing = registry._changing.get_all_handlers()
    assert changing, "the registry has change handlers (SealedSecrets, ConfigProfiles)"
    assert not [h for h in changing if h.selector is not None and h.selector.check(SECRETS)]


def test_an_adopted_secret_keeps_no_kubectl_copy_of_its_values(
    cluster: TestCluster,
    namespace: str,
    keys_namespace: str,
    canaries: tuple[Canary, Canary],
    operator_log: LogCapture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The common migration: a Secret made with ``kubectl apply``, then sealed with the same value.

    kubectl keeps a copy of what it applied (``stringData`` in clear, ``data``
    in base64) in an annotation; once kstrata owns the Secret, that copy must
    not survive next to the data it describes.
    """
    base, _ = canaries
    flows = Flows(cluster, namespace, namespace, keys_namespace, tmp_path, capsys, canaries)
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "migrated"},
        "stringData": {"password": base.text},
    }
    with _operator(cluster, (namespace,), keys_namespace):
        published_bundle(cluster, keys_namespace)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
        sealed = flows.seal(
            "migrated",
            "--controller-namespace", keys_namespace, "-n", namespace, "--name", "migrated",
            "--from-literal", f"password={base.text}",
        )  # fmt: skip
        flows.kubectl("apply migrated", "apply", "-n", namespace, "-f", "-", input=sealed)
        wait_not_ready(cluster, namespace, "migrated", "NotOwned")
        flows.kubectl(
            "adopt migrated", "label", "secret", "migrated", "-n", namespace,
            "app.kubernetes.io/managed-by=kstrata",
        )  # fmt: skip
        wait_ready(cluster, namespace, "migrated", revision=1)
    dump = cluster_texts(cluster, [namespace])
    assert dump.produced_secrets == {f"{namespace}/migrated"}
    hits = scan({**dump.texts, **flows.cli.outputs}, [base])
    assert not hits, report(hits)

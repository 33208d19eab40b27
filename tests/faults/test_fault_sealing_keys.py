"""The sealing-key Secret deleted in the middle of a burst, then restored from a backup.

160 changes across 20 objects (8 rounds).  When 30% are made the key Secret
is deleted (a copy kept, as the backup docs/operations.md asks for); the
burst goes on, sealed to the published public key.  Once a SealedSecret
reports ``SealingKeyMissing`` for a change made after the deletion, and 70%
of the burst is made, the backup is created again.  The operator must have
generated no key, must unseal every waiting SealedSecret from the restored
Secret without a restart, and must have kept serving the last good Secret
meanwhile.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from support.faults import KEY_SECRET, PUBLIC_KEYS, Burst, OperatorProcess, record_recovery
from support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("kstrata_crds")]

SIZE, ROUNDS = 20, 8


def backup(secret: Any) -> dict[str, Any]:
    """What the documented backup keeps: name, labels, type and data."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret.metadata.name, "labels": secret.metadata.labels},
        "type": secret.type,
        "data": secret.data,
    }


def test_sealing_key_secret_deleted_mid_burst_and_restored(
    operator: OperatorProcess, fleet_of: Any, tmp_path: Path, namespace: str
) -> None:
    fleet = fleet_of(SIZE)
    core = fleet.cluster.core
    operator.start()
    fleet.wait_for_public_keys()
    fleet.create(tmp_path)
    fleet.wait_converged(since=time.monotonic(), rolled=False)
    saved = backup(core.read_namespaced_secret(KEY_SECRET, namespace))
    published = core.read_namespaced_config_map(PUBLIC_KEYS, namespace).data

    def key_missing_reported() -> list[str]:
        waiting = []
        for name, body in fleet.sources().items():
            meta, status = body["metadata"], body.get("status") or {}
            ready = {c["type"]: c for c in status.get("conditions") or []}.get("Ready", {})
            if (
                ready.get("reason") == "SealingKeyMissing"
                and ready.get("observedGeneration") == meta["generation"]
            ):
                waiting.append(name)
        return waiting

    with Burst(fleet, range(1, ROUNDS + 1)) as burst:
        burst.wait_progress(0.3)
        core.delete_namespaced_secret(KEY_SECRET, namespace)
        deleted = time.monotonic()
        waiting = wait_for(key_missing_reported, timeout=60, what="SealingKeyMissing")
        wait_for(
            lambda: (operator.metric("kstrata_sealed_secrets_waiting_for_keys") or 0) >= 1,
            timeout=30,
            what="the waiting SealedSecrets in the metrics",
        )
        burst.wait_progress(0.7)
        core.create_namespaced_secret(namespace, saved)
        restored = time.monotonic()
    last_change = burst.join()
    converged = fleet.wait_converged(since=restored)

    record_recovery("sealing keys deleted", "Secret missing", restored - deleted)
    record_recovery("sealing keys deleted", "restored -> converged", converged)
    record_recovery(
        "sealing keys deleted", "last change -> converged", restored + converged - last_change
    )
    print(f"waiting for the key when it was restored: {waiting}")
    # Nothing was generated or rewritten: the restored keys are the keys, as backed up.
    assert core.read_namespaced_secret(KEY_SECRET, namespace).data == saved["data"]
    assert core.read_namespaced_config_map(PUBLIC_KEYS, namespace).data == published
    log = operator.log_text()
    assert "the sealing key Secret" in log
    assert "was deleted; SealedSecrets cannot be unsealed until it is restored" in log
    assert operator.metric("kstrata_sealed_secrets_waiting_for_keys") == 0
    assert operator.starts == 1
    assert operator.running, operator.log_tail()
    verdict = fleet.verdict(tmp_path, final_value=ROUNDS + 1)
    print(f"changes: {burst.total}, {verdict}")

"""What a migration of N objects takes: ``kstrata import`` from Bitnami sealed-secrets and SOPS.

Makes N Bitnami SealedSecrets with the real ``kubeseal --cert`` (to a 4096-bit
key pair in the form Bitnami's controller stores it) and N SOPS files with the
real ``sops --encrypt --age`` (each a Secret manifest with three items), then
times, as a user would run them, each import of all N in one command:

    kstrata import sealedsecret -f ss/ --bitnami-keys backup.yaml --cert keys.json
    kstrata import -f sops/ --sops --cert keys.json

and, as the floor of the second, ``sops -d`` on the same files one after
another.  Wall times of ``--runs`` runs each; the tools are the pinned ones
(tools/gotools/tools.toml).  The numbers go into
docs/config-management-guide.md ("Coming from sealed-secrets") by hand.

    .venv/bin/python benchmarks/bench_imports.py [--objects 100] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from kstrata.crypto import PublicKeyBundle, generate_keypair  # noqa: E402
from support.secret_tools import (  # noqa: E402 (tests/ on the path first)
    bitnami_key,
    install,
    kubeseal,
    secret_manifest,
    write_backup,
)

KSTRATA = str(Path(sys.executable).parent / "kstrata")


def values(index: int) -> dict[str, str]:
    return {
        "username": f"user-{index}",
        "password": f"{index:032d}",
        "url": f"postgres://db-{index % 10}.internal:5432/app",
    }


def make_bitnami(root: Path, objects: int) -> None:
    key = bitnami_key()
    (root / "cert.pem").write_bytes(key.cert_pem)
    write_backup(root / "backup.yaml", key)
    binary = install("kubeseal")
    (root / "ss").mkdir()

    def one(index: int) -> None:
        secret = secret_manifest(f"app-{index}", f"ns-{index % 5}", values(index))
        sealed = kubeseal(binary, root / "cert.pem", secret)
        (root / "ss" / f"app-{index}.yaml").write_text(yaml.safe_dump(sealed))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, range(objects)))


def make_sops(root: Path, objects: int, sops: Path) -> None:
    age = install("age-keygen")
    subprocess.run([str(age), "-o", str(root / "age.txt")], check=True, capture_output=True)
    recipient = next(
        line.removeprefix("# public key: ")
        for line in (root / "age.txt").read_text().splitlines()
        if line.startswith("# public key: ")
    )
    (root / "plain").mkdir()
    (root / "sops").mkdir()

    def one(index: int) -> None:
        plain = root / "plain" / f"app-{index}.yaml"
        # JSON is YAML: every value stays a quoted string for sops' YAML 1.2 reader.
        plain.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": f"app-{index}", "namespace": f"ns-{index % 5}"},
                    "stringData": values(index),
                }
            )
        )
        encrypted = subprocess.run(
            [str(sops), "--disable-version-check", "--encrypt", "--age", recipient,
             "--encrypted-regex", "^(data|stringData)$", str(plain)],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        plain.unlink()
        (root / "sops" / f"app-{index}.yaml").write_bytes(encrypted)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, range(objects)))


def timed(argv: list[str], env: dict[str, str], runs: int, expect: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env)
        seconds.append(round(time.perf_counter() - started, 2))
        made = sum(1 for d in yaml.safe_load_all(out.stdout) if d)
        if made != expect:
            raise SystemExit(f"{argv[1:3]}: {made} SealedSecrets, expected {expect}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    sops = install("sops")
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as scratch:
        root = Path(scratch)
        (root / "keys.json").write_text(
            PublicKeyBundle.of([generate_keypair(created=datetime.now(UTC))]).serialize()
        )
        make_bitnami(root, args.objects)
        make_sops(root, args.objects, sops)
        env = dict(os.environ, SOPS_AGE_KEY_FILE=str(root / "age.txt"))
        env.pop("KUBECONFIG", None)
        keys = ["--cert", str(root / "keys.json")]
        result = {
            "objects": args.objects,
            "load_average": os.getloadavg()[0],
            "bitnami_seconds": timed(
                [
                    KSTRATA,
                    "import",
                    "sealedsecret",
                    "-f",
                    str(root / "ss"),
                    "--bitnami-keys",
                    str(root / "backup.yaml"),
                    *keys,
                ],
                env,
                args.runs,
                args.objects,
            ),
            "sops_seconds": timed(
                [
                    KSTRATA,
                    "import",
                    "-f",
                    str(root / "sops"),
                    "--sops",
                    "--sops-binary",
                    str(sops),
                    *keys,
                ],
                env,
                args.runs,
                args.objects,
            ),
        }
        floor = []
        for _ in range(args.runs):
            started = time.perf_counter()
            for path in sorted((root / "sops").iterdir()):
                subprocess.run(
                    [str(sops), "--disable-version-check", "-d", "--output-type", "json",
                     str(path)],
                    check=True, capture_output=True, env=env,
                )  # fmt: skip
            floor.append(round(time.perf_counter() - started, 2))
        result["sops_decrypt_alone_seconds"] = floor
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

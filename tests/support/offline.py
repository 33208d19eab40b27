"""Proof that an offline command stays offline: what it imports, run in a fresh interpreter.

``seal --cert``, ``unseal --recovery-keys`` and the secret imports with
``--cert`` must start fast and work with no cluster, so they may import
neither kopf, nor the Kubernetes client, nor kstrata's own ``kube`` and
``controller`` packages (docs/architecture.md).  Only a new interpreter shows
what a command imports, so the command runs in one, without ``KUBECONFIG``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

_PROBE = """\
import io, json, sys
from kstrata.cli.main import main
out = io.StringIO()
code = main({argv!r}, out=out, err=io.StringIO())
assert code == 0, code
assert {expected!r} in out.getvalue(), "the command did not print what it should"
print(json.dumps(sorted(
    m for m in sys.modules
    if m.split(".")[0] in ("kopf", "kubernetes")
    or m.startswith(("kstrata.kube", "kstrata.controller"))
)))
"""


def cluster_modules_imported(argv: list[str], *, expected: str = "kss1:") -> list[str]:
    """The cluster-side modules ``kstrata ARGV`` imports; it must succeed and print ``expected``."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=argv, expected=expected)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    modules: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return modules

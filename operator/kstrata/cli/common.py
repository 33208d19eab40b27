"""What every command group shares: the parser class, exit codes, cluster access, output.

Kept free of heavy imports: it is loaded by every invocation, including the
offline commands that must start in well under 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kstrata.errors import UsageError

if TYPE_CHECKING:
    from kstrata.kube.connection import Cluster

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_CLUSTER = 3

Command = Callable[[argparse.Namespace, TextIO], int]


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` maps every error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def kubeconfig_path(args: argparse.Namespace) -> Path | None:
    """The edge where KUBECONFIG is read; None means in-cluster credentials."""
    if getattr(args, "kubeconfig", None) is not None:
        return Path(args.kubeconfig)
    from_env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if from_env:
        return Path(from_env)
    default = Path.home() / ".kube" / "config"
    return default if default.exists() else None


def connect_from(args: argparse.Namespace) -> Cluster:
    """Connect to the cluster the global flags name (imports the client lazily)."""
    from kstrata.kube.connection import connect

    return connect(kubeconfig_path(args), getattr(args, "context", None))


def add_output_flag(parser: argparse.ArgumentParser, choices: tuple[str, ...]) -> None:
    parser.add_argument("-o", "--output", choices=choices, default=choices[0])


def print_data(value: Any, fmt: str, out: TextIO) -> None:
    """Print structured data as YAML or JSON, deterministically."""
    if fmt == "json":
        out.write(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return
    import yaml

    out.write(yaml.safe_dump(value, sort_keys=True, allow_unicode=True, default_flow_style=False))

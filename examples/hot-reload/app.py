"""A tiny application that reloads its configuration in-process with ``kstrata.watch``.

    python app.py --config /etc/app/config.yaml --schema schema.json [--status FILE]

It applies the configuration found at start, then every new valid version
the kubelet projects; an invalid version is reported (without its values)
and the running configuration stays.  ``--status`` writes the applied
configuration as JSON after each change, which is how demo.py watches it.
SIGTERM and SIGINT end it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from kstrata.errors import KstrataError
from kstrata.watch import Watcher


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("/etc/app/config.yaml"))
    parser.add_argument("--schema", type=Path, default=None)
    parser.add_argument("--status", type=Path, default=None)
    args = parser.parse_args()
    schema = json.loads(args.schema.read_text()) if args.schema else None

    applied = 0

    def apply(config: dict[str, Any]) -> None:
        # A real application would rebuild its clients, pools or routes here.
        nonlocal applied
        applied += 1
        print(
            f"app: configuration {applied} applied "
            f"(port {config['port']}, {len(config.get('features', []))} features)",
            flush=True,
        )
        if args.status is not None:
            tmp = args.status.with_suffix(".tmp")
            tmp.write_text(json.dumps(config, sort_keys=True))
            os.replace(tmp, args.status)  # readers never see half a status file

    def rejected(error: KstrataError) -> None:
        print(f"app: kept the running configuration: {error}", flush=True)

    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda _signum, _frame: stop.set())

    watcher = Watcher(args.config, apply, validate=schema, on_error=rejected, initial=True)
    with watcher:
        if watcher.current is None:
            print("app: no valid configuration to start with", file=sys.stderr)
            return 1
        while not stop.wait(1.0):
            pass
    print("app: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Hot reload, end to end, on your machine: no cluster needed.

    .venv/bin/python examples/hot-reload/demo.py

A temporary directory plays the ConfigMap volume and kubelet_sim.py plays
the kubelet.  Two applications read it:

* app.py reloads in-process with ``kstrata.watch``;
* sighup-app.sh knows only SIGHUP; entrypoint.sh runs it next to
  ``kstrata watch --signal HUP --pid ...`` (wrapper mode).

The demo then projects a valid change (both reload), an invalid one (both keep
their configuration; the errors name the file and the path, not the value) and
another valid one.  Every step waits for its effect with a deadline.

Set KSTRATA to the command that runs kstrata if it is not ``python -m kstrata``.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from kubelet_sim import project  # noqa: E402


def step(title: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}==> {title}{plain}", flush=True)


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.05)


def text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def main() -> int:
    kstrata = os.environ.get("KSTRATA") or shlex.join([sys.executable, "-m", "kstrata"])
    with tempfile.TemporaryDirectory(prefix="kstrata-hot-reload-") as scratch:
        work = Path(scratch)
        volume = work / "etc-app"
        logs = {name: work / f"{name}.log" for name in ("app", "wrapped")}
        status = {name: work / f"{name}.status" for name in ("app", "wrapped")}

        def publish(name: str) -> None:
            print(f"$ kubelet_sim.py {volume.name} config.yaml={name}", flush=True)
            project(volume, {"config.yaml": (HERE / name).read_bytes()})

        step("The kubelet projects config-v1.yaml into the volume")
        publish("config-v1.yaml")

        step("Start app.py (kstrata.watch in-process) and sighup-app.sh (wrapped)")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        app_argv = [sys.executable, str(HERE / "app.py"), "--config", str(volume / "config.yaml")]
        app_argv += ["--schema", str(HERE / "schema.json"), "--status", str(status["app"])]
        wrapped_env = dict(
            env,
            KSTRATA=kstrata,
            WATCH_DIR=str(volume),
            WATCH_FILE="config.yaml",
            WATCH_SCHEMA=str(HERE / "schema.json"),
            CONFIG=str(volume / "config.yaml"),
            STATUS=str(status["wrapped"]),
        )
        wrapped_argv = ["sh", str(HERE / "entrypoint.sh"), "sh", str(HERE / "sighup-app.sh")]
        # The children keep their own copies of the log descriptors.
        with logs["app"].open("w") as app_log, logs["wrapped"].open("w") as wrapped_log:
            app = subprocess.Popen(app_argv, stdout=app_log, stderr=subprocess.STDOUT, env=env)
            wrapped = subprocess.Popen(
                wrapped_argv, stdout=wrapped_log, stderr=subprocess.STDOUT, env=wrapped_env
            )
        try:
            wait_for("app.py to start", lambda: "hello" in text(status["app"]))
            wait_for("sighup-app.sh to start", lambda: "hello" in text(status["wrapped"]))
            wait_for("kstrata watch to start", lambda: "watching " in text(logs["wrapped"]))

            step("A valid change: both applications reload")
            publish("config-v2.yaml")
            wait_for("app.py to reload", lambda: "bonjour" in text(status["app"]))
            wait_for("the SIGHUP reload", lambda: "bonjour" in text(status["wrapped"]))

            step("An invalid change (port is not an integer): both keep running on v2")
            publish("config-bad.yaml")
            wait_for("app.py to refuse it", lambda: "kept the running" in text(logs["app"]))
            wait_for("kstrata watch to refuse it", lambda: "error:" in text(logs["wrapped"]))
            assert "bonjour" in text(status["app"]), "app.py must keep v2"
            assert "bonjour" in text(status["wrapped"]), "no SIGHUP for an invalid file"

            step("A valid change again: both reload")
            publish("config-v3.yaml")
            wait_for("app.py to reload", lambda: "hallo" in text(status["app"]))
            wait_for("the SIGHUP reload", lambda: "hallo" in text(status["wrapped"]))
        finally:
            step("Stop both (SIGTERM, as the kubelet does)")
            for process in (app, wrapped):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in (app, wrapped):
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
            for name, log in logs.items():
                print(f"\n--- {name} output ---\n{text(log).rstrip()}", flush=True)
    print("\ndemo: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

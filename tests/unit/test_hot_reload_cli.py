"""``kstrata watch``: real signals to a real child, --exec, --http-post, usage errors.

Most tests run the handler on a thread (``run_watch`` with a stop event) so
they are fast; one runs the whole command as a separate process to show that
SIGTERM ends it cleanly.  Every wait has a deadline and waits for an effect
(a line in a file, a recorded request), never for time.
"""

from __future__ import annotations

import argparse
import io
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from kstrata.cli import watch_cmd
from kstrata.cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, Parser
from kstrata.cli.main import exit_code_for
from kstrata.errors import KstrataError
from support.kubelet_volume import KubeletVolume
from support.waiting import wait_for

CANARY = "CANARY-2b8e41"
FAST = ("--debounce", "0.05", "--poll-interval", "0.02")

# A stand-in application: reloads on SIGHUP by appending a line to a file.
CHILD = r"""
import os, signal, sys
marker = sys.argv[1]
def on_hup(signum, frame):
    with open(marker, "a") as handle:
        handle.write("HUP\n")
signal.signal(signal.SIGHUP, on_hup)
with open(marker + ".ready", "w") as handle:
    handle.write(str(os.getpid()))
while True:
    signal.pause()
"""

# Runs the real CLI entry point with `watch` registered whether or not
# cli/main.py lists it yet (once it does, the patch is a no-op).
CLI_SHIM = r"""
import sys
from kstrata.cli import main as cli_main, watch_cmd
groups = cli_main._command_groups
if watch_cmd.register not in groups():
    cli_main._command_groups = lambda: [*groups(), watch_cmd.register]
sys.exit(cli_main.main())
"""


def parse(*argv: str) -> argparse.Namespace:
    parser = Parser(prog="kstrata")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)
    watch_cmd.register(commands)
    return parser.parse_args(["watch", *argv])


class Running:
    """``kstrata watch ...`` on a thread, with its output and exit code like main() gives."""

    def __init__(self, *argv: str) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.stop = threading.Event()
        self.code: int | None = None
        args = parse(*argv)
        self._thread = threading.Thread(target=self._main, args=(args,), daemon=True)
        self._thread.start()

    def _main(self, args: argparse.Namespace) -> None:
        try:
            self.code = watch_cmd.run_watch(args, self.out, err=self.err, stop=self.stop)
        except KstrataError as error:  # what cli.main does with it
            print(f"error: {error}", file=self.err)
            self.code = exit_code_for(error)

    def ready(self) -> Running:
        wait_for(lambda: "watching " in self.out.getvalue() or self.code is not None, timeout=10)
        assert self.code is None, self.err.getvalue()
        return self

    def finish(self, timeout: float = 10) -> int:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "kstrata watch did not end"
        assert self.code is not None
        return self.code

    def end(self) -> int:
        self.stop.set()
        return self.finish()


@pytest.fixture
def volume(tmp_path: Path) -> KubeletVolume:
    vol = KubeletVolume(tmp_path / "config")
    vol.project({"config.yaml": "port: 1\n"})
    return vol


@pytest.fixture
def child(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real process that handles SIGHUP; yields (pid, marker file)."""
    marker = tmp_path / "hup.log"
    process = subprocess.Popen([sys.executable, "-c", CHILD, str(marker)])
    try:
        ready = Path(str(marker) + ".ready")
        wait_for(lambda: ready.exists() and ready.read_text(), timeout=10, what="the child")
        yield process.pid, marker
    finally:
        process.kill()
        process.wait(timeout=10)


def hups_reach(marker: Path, count: int) -> bool:
    return hups(marker) == count


def marked(marker: Path, count: int) -> bool:
    return marker.exists() and len(marker.read_text()) == count


def hups(marker: Path) -> int:
    return marker.read_text().count("HUP") if marker.exists() else 0


# --- --signal ------------------------------------------------------------------


def test_signal_via_pidfile_reaches_a_real_process_only_after_a_valid_swap(
    tmp_path: Path, volume: KubeletVolume, child: tuple[int, Path]
) -> None:
    pid, marker = child
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{pid}\n")
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "properties": {"port": {"type": "integer"}}}')
    run = Running(
        str(volume.root),
        "--file",
        "config.yaml",
        "--schema",
        str(schema),
        "--signal",
        "HUP",
        "--pidfile",
        str(pidfile),
        "--once",
        *FAST,
    ).ready()

    # An invalid version: reported (without the value), no signal.
    volume.project({"config.yaml": f"port: {CANARY}\n"})
    wait_for(lambda: "error:" in run.err.getvalue(), timeout=10, what="the error report")
    assert "config.yaml: schema validation failed: $.port: must be of type integer" in (
        run.err.getvalue()
    )
    assert CANARY not in run.err.getvalue()
    assert hups(marker) == 0

    volume.project({"config.yaml": "port: 2\n"})
    wait_for(lambda: hups(marker) == 1, timeout=10, what="SIGHUP in the child")
    assert run.finish() == EXIT_OK
    assert f"reloaded: sent SIGHUP to process {pid}" in run.out.getvalue()
    assert hups(marker) == 1


def test_the_command_as_a_process_signals_by_pid_and_ends_cleanly_on_sigterm(
    tmp_path: Path, volume: KubeletVolume, child: tuple[int, Path]
) -> None:
    pid, marker = child
    log = tmp_path / "watch.out"
    argv = ["watch", str(volume.root), "--signal", "SIGHUP", "--pid", str(pid), *FAST]
    with open(log, "w") as out:
        watcher = subprocess.Popen(
            [sys.executable, "-c", CLI_SHIM, *argv], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: "watching " in log.read_text(), timeout=20, what="kstrata watch")
        for expected in (1, 2):
            volume.project({"config.yaml": f"port: {expected + 10}\n"})
            wait_for(partial(hups_reach, marker, expected), timeout=10, what=f"SIGHUP {expected}")
        assert watcher.poll() is None, "it keeps running after a reload"
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=10) == EXIT_OK
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert log.read_text().count("reloaded: sent SIGHUP") == 2


def test_a_missing_pidfile_fails_the_reload_naming_the_file(
    tmp_path: Path, volume: KubeletVolume
) -> None:
    pidfile = tmp_path / "nobody.pid"
    run = Running(str(volume.root), "--signal", "HUP", "--pidfile", str(pidfile), "--once", *FAST)
    run.ready()
    volume.project({"config.yaml": "port: 2\n"})
    assert run.finish() == EXIT_INVALID
    assert f"error: pidfile {pidfile} does not exist" in run.err.getvalue()


def test_a_process_that_is_gone_fails_the_reload(volume: KubeletVolume) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)
    run = Running(str(volume.root), "--signal", "HUP", "--pid", str(gone.pid), "--once", *FAST)
    run.ready()
    volume.project({"config.yaml": "port: 2\n"})
    assert run.finish() == EXIT_INVALID
    assert f"error: process {gone.pid} does not exist" in run.err.getvalue()


# --- --exec --------------------------------------------------------------------


def test_exec_runs_the_command_without_a_shell(tmp_path: Path, volume: KubeletVolume) -> None:
    marker = tmp_path / "ran"
    code = "import os, sys; open(sys.argv[1], 'w').write(os.environ['KSTRATA_WATCH_PATH'])"
    command = shlex.join([sys.executable, "-c", code, str(marker)])
    run = Running(str(volume.root), "--file", "config.yaml", "--exec", command, "--once", *FAST)
    run.ready()
    volume.project({"config.yaml": "port: 2\n"})
    assert run.finish() == EXIT_OK
    assert marker.read_text() == str(volume.root / "config.yaml")
    assert f"reloaded: ran {sys.executable}" in run.out.getvalue()


def test_a_failing_command_names_the_program_not_its_arguments(volume: KubeletVolume) -> None:
    command = shlex.join([sys.executable, "-c", f"import sys; sys.exit(3)  # {CANARY}"])
    run = Running(str(volume.root), "--exec", command, "--once", *FAST).ready()
    volume.project({"config.yaml": "port: 2\n"})
    assert run.finish() == EXIT_INVALID
    assert f"error: command {sys.executable} exited with status 3" in run.err.getvalue()
    assert CANARY not in run.err.getvalue()


def test_a_command_that_overruns_its_timeout_is_killed(volume: KubeletVolume) -> None:
    command = shlex.join([sys.executable, "-c", "import time; time.sleep(60)"])
    run = Running(str(volume.root), "--exec", command, "--timeout", "0.3", "--once", *FAST).ready()
    volume.project({"config.yaml": "port: 2\n"})
    assert run.finish() == EXIT_INVALID
    assert "did not finish within 0.3 s" in run.err.getvalue()


# --- --http-post ---------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    requests: list[tuple[str, str]]
    status = 204

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        type(self).requests.append((self.command, self.path))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[type[_Recorder], str]]:
    handler = type("Handler", (_Recorder,), {"requests": [], "status": 204})
    httpd = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_post_reaches_a_local_endpoint(
    volume: KubeletVolume, server: tuple[type[_Recorder], str]
) -> None:
    handler, base = server
    url = f"{base}/-/reload?token={CANARY}"
    run = Running(str(volume.root), "--http-post", url, "--once", *FAST).ready()
    assert handler.requests == []
    volume.project({"config.yaml": "port: 2\n"})
    assert run.finish() == EXIT_OK
    assert handler.requests == [("POST", f"/-/reload?token={CANARY}")]
    assert f"reloaded: POST {base}/-/reload answered HTTP 204" in run.out.getvalue()
    assert CANARY not in run.out.getvalue(), "the query string may hold a token"


def test_an_http_error_fails_the_reload(
    volume: KubeletVolume, server: tuple[type[_Recorder], str]
) -> None:
    handler, base = server
    handler.status = 500
    run = Running(str(volume.root), "--http-post", f"{base}/reload", "--once", *FAST).ready()
    volume.project({"config.yaml": "port: 2\n"})
    assert run.finish() == EXIT_INVALID
    assert f"error: POST {base}/reload answered HTTP 500" in run.err.getvalue()


# --- running until stopped, and usage -------------------------------------------


def test_without_once_it_keeps_reloading_until_stopped(
    tmp_path: Path, volume: KubeletVolume
) -> None:
    marker = tmp_path / "count"
    code = "import sys; open(sys.argv[1], 'a').write('x')"
    command = shlex.join([sys.executable, "-c", code, str(marker)])
    run = Running(str(volume.root), "--exec", command, *FAST).ready()
    for count in (1, 2, 3):
        volume.project({"config.yaml": f"port: {count + 1}\n"})
        wait_for(
            partial(marked, marker, count),
            timeout=10,
            what=f"reload {count}",
        )
    assert run.end() == EXIT_OK


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--signal", "HUP"], "--signal needs --pid PID or --pidfile FILE"),
        (["--exec", "true", "--pid", "1"], "--pid and --pidfile only go with --signal"),
        (["--signal", "NOPE", "--pid", "1"], "unknown signal (give a name"),
        (["--signal", "HUP", "--pid", "0"], "--pid must be > 0"),
        (["--signal", "HUP", "--pid", "1", "--pidfile", "x"], "not allowed with argument"),
        (["--http-post", "file:///etc/passwd"], "must be an absolute http:// or https:// URL"),
        (["--exec", "true", "--schema", "s.json"], "--schema needs --file KEY"),
        (["--exec", "true", "--file", "../etc/passwd"], "--file must name a key inside DIR"),
        (["--exec", "'unbalanced"], "the command line is malformed"),
        (["--exec", "true", "--debounce", "-1"], "must be a finite number of seconds >= 0"),
        (["--exec", "true", "--poll-interval", "0"], "must be more than 0 seconds"),
        ([], "one of the arguments --signal --exec --http-post is required"),
    ],
)
def test_usage_errors(volume: KubeletVolume, argv: list[str], message: str) -> None:
    code, error = invoke_refused(str(volume.root), *argv)
    assert code == EXIT_USAGE
    assert message in error


def test_a_directory_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    code, error = invoke_refused(str(tmp_path / "absent"), "--exec", "true")
    assert code == EXIT_USAGE
    assert error.endswith("absent is not a directory")


def invoke_refused(*argv: str) -> tuple[int, str]:
    """Run a command line that must be refused before it starts watching."""
    stop = threading.Event()
    stop.set()  # should it start watching after all, it returns at once (and the test fails)
    try:
        code = watch_cmd.run_watch(parse(*argv), io.StringIO(), err=io.StringIO(), stop=stop)
    except KstrataError as error:  # as cli.main maps it
        return exit_code_for(error), str(error)
    return code, ""

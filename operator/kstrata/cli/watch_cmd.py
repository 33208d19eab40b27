"""``kstrata watch``: reload an application when its mounted ConfigMap or Secret changes.

For applications that cannot embed :mod:`kstrata.watch` (any language, any
binary that reloads on SIGHUP or on an HTTP call), this runs beside them, as a
sidecar container (``shareProcessNamespace: true``, the application's pid in
a pidfile on a shared ``emptyDir``) or inside the application container as a
wrapper, and performs one reload action per new, fully projected, valid
version of the volume: a signal, a command or an HTTP POST.

Only the shell lives here: flags become one :class:`kstrata.watch.Watcher`
and one action from the same module; everything that touches files,
processes or the network is there.  ``kstrata.watch`` (which loads PyYAML) is
imported inside the handler, so registering this group costs the other
commands nothing at start-up.  Status lines go to ``out``; problems go to
stderr as they happen (the watcher keeps running), and with ``--once`` a
failed action is the command's error (exit code 1).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, TextIO

from kstrata.cli.common import EXIT_OK, Subcommands, flags
from kstrata.errors import InvalidSchemaError, KstrataError, UsageError

if TYPE_CHECKING:
    import threading

    from kstrata.domain.jsonvalue import JSONObject

#: How much longer than one action's time limit ``stop`` waits for the watcher thread.
_STOP_GRACE = 5.0

_EPILOG = """\
exactly one action:
  --signal SIG --pid PID       signal a process (a wrapper knows its child's pid)
  --signal SIG --pidfile FILE  signal the process whose pid FILE holds (read at each reload)
  --exec CMD                   run CMD (split like a shell would, but no shell runs it)
  --http-post URL              POST to URL (e.g. http://127.0.0.1:9090/-/reload)

The action runs only after the kubelet has swapped in a complete new version
(the ..data symlink), the watched file (--file) or files have parsed (YAML, JSON,
.env, .properties by extension) and passed --schema, and the content actually
changed.  Runs until SIGTERM or SIGINT (or the first action, with --once).
"""


def register(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "watch",
        help="run a reload action when a mounted ConfigMap/Secret changes",
        description="Watch a ConfigMap/Secret volume; reload an application on each valid change.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("directory", metavar="DIR", type=Path, help="the volume's mount directory")
    parser.add_argument(
        "--file",
        dest="key",
        metavar="KEY",
        default=None,
        help="watch (parse and validate) only this key; default: any file in DIR",
    )
    parser.add_argument(
        "--schema", type=Path, metavar="FILE", default=None, help="JSON Schema for --file"
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--signal", metavar="SIG", default=None, help="HUP, SIGHUP or 1")
    action.add_argument(
        "--exec", dest="exec_command", metavar="CMD", default=None, help="run CMD (no shell)"
    )
    action.add_argument("--http-post", metavar="URL", default=None, help="POST to URL")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--pid", type=int, metavar="PID", default=None, help="for --signal")
    target.add_argument(
        "--pidfile", type=Path, metavar="FILE", default=None, help="for --signal; read each time"
    )
    parser.add_argument(
        "--debounce",
        type=_seconds,
        default=0.5,
        metavar="SECONDS",
        help="wait for this much quiet after a change (default 0.5)",
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_seconds,
        default=0.2,
        metavar="SECONDS",
        help="how often to look at the volume (default 0.2)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="time limit for --exec and --http-post (default 30)",
    )
    parser.add_argument(
        "--once", action="store_true", help="exit after the first reload (exit 1 if it failed)"
    )
    parser.set_defaults(handler=_watch)


def _seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("must be a finite number of seconds >= 0")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _say(stream: TextIO, line: str) -> None:
    print(line, file=stream, flush=True)


def _check_key(key: str) -> None:
    parts = PurePosixPath(key).parts
    # Keys are names inside the volume: never absolute, never ".." (which is
    # also where the kubelet keeps its own bookkeeping).
    if not parts or key.startswith("/") or any(part.startswith("..") for part in parts):
        raise UsageError(f"--file must name a key inside DIR, not {key!r}")


def _load_schema(path: Path) -> JSONObject:
    from kstrata.domain.documents import load_documents
    from kstrata.domain.jsonvalue import DEFAULT_LIMITS
    from kstrata.files import read_bounded

    data = read_bounded(path, DEFAULT_LIMITS.max_bytes, what="--schema")
    documents = load_documents(data, source=str(path))
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise InvalidSchemaError(f"{path}: a JSON Schema must be one object")
    return documents[0]


Action = Callable[[], str]


@dataclass(frozen=True)
class _WatchFlags:
    """What ``watch`` reads of its flags (see :func:`kstrata.cli.common.flags`)."""

    directory: Path
    key: str | None
    schema: Path | None
    signal: str | None
    exec_command: str | None
    http_post: str | None
    pid: int | None
    pidfile: Path | None
    debounce: float
    poll_interval: float
    timeout: float
    once: bool


def _build_action(args: _WatchFlags, watched: Path) -> tuple[Action, str]:
    """The reload action and a description of it, or a UsageError for bad combinations."""
    from kstrata import watch_actions as hot

    if args.signal is None and (args.pid is not None or args.pidfile is not None):
        raise UsageError("--pid and --pidfile only go with --signal")
    if args.signal is not None:
        sig = hot.parse_signal(args.signal)
        pid = args.pid
        pidfile = args.pidfile
        if pid is None and pidfile is None:
            raise UsageError("--signal needs --pid PID or --pidfile FILE")
        if pid is not None and pid <= 0:
            raise UsageError(f"--pid must be > 0, not {pid}")

        def send() -> str:
            sent_to = hot.send_signal(sig, pid=pid, pidfile=pidfile)
            return f"sent {sig.name} to process {sent_to}"

        whom = f"process {pid}" if pid is not None else f"the process in {pidfile}"
        return send, f"send {sig.name} to {whom}"
    if args.exec_command is not None:
        import shlex

        try:
            argv = shlex.split(args.exec_command)
        except ValueError:
            raise UsageError("--exec: the command line is malformed (unbalanced quotes?)") from None
        if not argv:
            raise UsageError("--exec: the command is empty")
        # The command learns what changed from the environment, not from a value.
        env = dict(os.environ, KSTRATA_WATCH_PATH=str(watched))
        timeout = args.timeout

        def execute() -> str:
            hot.run_command(argv, timeout=timeout, env=env)
            return f"ran {argv[0]}"

        return execute, f"run {argv[0]}"
    # argparse requires one of --signal, --exec and --http-post.
    assert args.http_post is not None
    url = args.http_post
    shown = hot.check_post_url(url)

    def post() -> str:
        status = hot.http_post(url, timeout=args.timeout)
        return f"POST {shown} answered HTTP {status}"

    return post, f"POST {shown}"


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (the kubelet stopping the pod) and SIGINT end the watch cleanly."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        # Only the main thread may install handlers (tests run us on a thread).
        yield
        return
    previous = {
        number: signal.signal(number, lambda _signum, _frame: stop.set())
        for number in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _watch(args: argparse.Namespace, out: TextIO) -> int:
    return run_watch(args, out)


def run_watch(
    parsed: argparse.Namespace,
    out: TextIO,
    *,
    err: TextIO | None = None,
    stop: threading.Event | None = None,
) -> int:
    """The ``kstrata watch`` handler.

    ``err`` (default: stderr at the time of each report) receives problems as
    they happen; ``stop`` lets a caller on another thread (a test) end the watch.
    """
    import threading

    from kstrata import watch as hot

    args = flags(_WatchFlags, parsed)
    directory = args.directory
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    watched = directory
    if args.key is not None:
        _check_key(args.key)
        watched = directory / args.key
    elif args.schema is not None:
        raise UsageError("--schema needs --file KEY: a schema describes one file")
    action, description = _build_action(args, watched)
    schema = _load_schema(args.schema) if args.schema is not None else None
    stop = stop if stop is not None else threading.Event()
    failures: list[KstrataError] = []

    def report(error: KstrataError) -> None:
        # Messages from kstrata.errors name files and paths, never values.
        _say(err if err is not None else sys.stderr, f"error: {error}")

    def reload(_config: object) -> None:
        try:
            done = action()
        except KstrataError as error:
            failures.append(error)
            report(error)
        else:
            _say(out, f"reloaded: {done}")
        finally:
            if args.once:
                stop.set()

    watcher = hot.Watcher(
        watched,
        reload,
        validate=schema,
        debounce=args.debounce,
        poll_interval=args.poll_interval,
        on_error=report,
    )
    with _stop_on_signals(stop):
        watcher.start()
        try:
            _say(out, f"watching {watched}: on each valid change, {description}")
            # A bounded wait, so a signal handler's stop.set() is seen promptly.
            while not stop.wait(1.0):
                pass
        finally:
            watcher.stop(timeout=args.timeout + _STOP_GRACE)
    if args.once and failures:
        raise failures[-1]
    return EXIT_OK

"""What ``kstrata watch`` does when a new valid version arrives: signal, command, POST.

Why a module of its own: ``kstrata.watch`` is also a library for
applications (``Watcher``, ``watch``), which hand each version to a callback
and need none of this.  The ``kstrata watch`` command (``kstrata.cli.watch_cmd``)
turns a change into one of these actions instead: a signal to a process (by
pid or pidfile, read each time), a command run with a timeout, or an HTTP
POST to a local endpoint.  Each failure is a ``KstrataError`` with reason
``ReloadFailed`` whose message names the process, command or URL (its query
and credentials left out), never a configuration value.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from kstrata.errors import (
    KstrataError,
    UsageError,
)
from kstrata.files import read_regular

_MAX_PIDFILE_BYTES: Final = 64


def _action_failed(message: str) -> KstrataError:
    return KstrataError(message, reason="ReloadFailed")


def parse_signal(name: str) -> signal.Signals:
    """``HUP``, ``SIGHUP`` or ``1`` -> ``signal.SIGHUP``."""
    text = name.strip().upper()
    try:
        if text.isdigit():
            return signal.Signals(int(text))
        return signal.Signals[text if text.startswith("SIG") else "SIG" + text]
    except (KeyError, ValueError):
        hint = "give a name such as HUP or SIGHUP, or a number"
        raise UsageError(f"unknown signal ({hint})") from None


def read_pidfile(path: Path) -> int:
    """The process id in ``path`` (read each time: the process may have restarted)."""
    try:
        data = read_regular(path, _MAX_PIDFILE_BYTES, shown=f"pidfile {path}")
    except FileNotFoundError:
        raise _action_failed(f"pidfile {path} does not exist") from None
    except OSError as exc:
        raise _action_failed(f"pidfile {path}: cannot read ({exc.strerror})") from None
    except KstrataError as error:
        raise _action_failed(error.message) from None
    text = data.decode("ascii", "replace").strip()
    if not text.isdigit() or int(text) <= 0:
        raise _action_failed(f"pidfile {path} does not hold a process id")
    return int(text)


def send_signal(sig: signal.Signals, *, pid: int | None = None, pidfile: Path | None = None) -> int:
    """Send ``sig`` to ``pid`` or to the process ``pidfile`` names; return the pid."""
    if (pid is None) == (pidfile is None):
        raise UsageError("give exactly one of pid and pidfile")
    target = pid if pid is not None else read_pidfile(pidfile) if pidfile is not None else 0
    if target <= 0:
        # kill(0, ...) and kill(-1, ...) signal whole process groups.
        raise UsageError(f"process id must be > 0, not {target}")
    where = f" (from pidfile {pidfile})" if pidfile is not None else ""
    try:
        os.kill(target, sig)
    except ProcessLookupError:
        raise _action_failed(f"process {target}{where} does not exist") from None
    except PermissionError:
        raise _action_failed(
            f"not permitted to signal process {target}{where} (a sidecar needs "
            "shareProcessNamespace: true and the same user as the application)"
        ) from None
    return target


def run_command(
    argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> None:
    """Run ``argv`` (no shell) and require exit status 0 within ``timeout`` seconds.

    The command gets its own session so that on timeout its whole process
    group is killed, not just the first process.  Its output is inherited.
    Errors name the program (``argv[0]``), not its arguments.
    """
    if not argv:
        raise UsageError("the command is empty")
    program = argv[0]
    try:
        process = subprocess.Popen(  # noqa: S603 - argv is the operator's own, no shell
            list(argv),
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise _action_failed(f"command not found: {program}") from None
    except PermissionError:
        raise _action_failed(f"command is not executable: {program}") from None
    try:
        status = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise _action_failed(f"command {program} did not finish within {timeout:g} s") from None
    if status != 0:
        raise _action_failed(f"command {program} exited with status {status}")


def _safe_url(url: str) -> str:
    # The query string or user info may carry a token: messages show neither.
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_post_url(url: str) -> str:
    """Refuse anything but an absolute http(s) URL; return its safe display form."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise UsageError("the URL is malformed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("the URL must be an absolute http:// or https:// URL")
    return _safe_url(url)


def http_post(url: str, *, timeout: float, body: bytes = b"") -> int:
    """POST ``body`` to ``url`` and require a 2xx answer; return the status.

    Proxies are never used: a reload endpoint lives in the same pod, and a
    cluster-wide HTTP_PROXY must not receive it.
    """
    shown = check_post_url(url)
    # The scheme was checked above: only http and https reach urlopen.
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
    request.add_header("User-Agent", "kstrata-watch")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        raise _action_failed(f"POST {shown} answered HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        why = reason.strerror if isinstance(reason, OSError) and reason.strerror else None
        raise _action_failed(f"POST {shown} failed ({why or type(reason).__name__})") from None
    except (OSError, TimeoutError) as exc:
        raise _action_failed(f"POST {shown} failed ({type(exc).__name__})") from None
    if not 200 <= status < 300:
        raise _action_failed(f"POST {shown} answered HTTP {status}")
    return status

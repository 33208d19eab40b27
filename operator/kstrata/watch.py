"""Hot reload: follow a mounted ConfigMap or Secret and hand over each new *valid* version.

Why this exists: the kubelet updates ConfigMap and Secret volumes in place
(not ``subPath`` mounts), but an application only notices if it re-reads
them, and re-reading at the wrong moment, or swallowing a broken edit, is how
a config change takes a service down.  This module does the watching once,
carefully, for two users: applications (``Watcher``/``watch``, in-process)
and the ``kstrata watch`` command (``kstrata.cli.watch_cmd``), which runs as a
sidecar or wrapper and turns a change into a signal, a command or an HTTP
POST with the helpers in :mod:`kstrata.watch_actions`.

How the kubelet writes a volume (its ``AtomicWriter``): the mount directory
holds a timestamped directory ``..2026_11_23_10_00_00.123456789/`` with the
real files, a symlink ``..data -> ..2026_...`` and per-key symlinks
``config.yaml -> ..data/config.yaml``.  An update writes a *new* timestamped
directory completely, points ``..data_tmp`` at it, renames ``..data_tmp`` over
``..data`` (atomic) and then removes the old directory.  So:

* With ``..data`` present, the only change signal is a new ``..data`` target.
  Files are read through that target directory, never while it is still
  being written (a half-written file in a not-yet-linked directory is
  invisible to us), and if the directory vanishes mid-read because the next
  swap already happened, that read is discarded and retried: not an error.
* Without ``..data`` (a plain directory or file: hostPath, a local run),
  a change is a change of ``stat`` (inode, size, mtime, ctime); the content is
  read once the stat has been stable for the debounce period and again after
  the read.  That is best effort: writers should write a temporary file and
  rename it, as the kubelet does.

Why polling and not inotify: inotify is not in the standard library (kstrata
adds no runtime dependencies for this), it does not work reliably across
every volume type, and what we poll is tiny: one ``readlink`` and one ``stat``
per interval (default 0.2 s), a few microseconds of CPU.  The kubelet itself
only syncs volumes every minute or so, so the added latency is noise.

Then, in this order, with nothing skipped: debounce (a burst of swaps yields
one reload, with the last content), read (bounded size), parse (by file
extension by default: YAML and JSON through :mod:`kstrata.domain.documents`,
``.env`` and ``.properties`` with :mod:`kstrata.domain.flat_formats`, anything
else as text), validate (a callable or a JSON Schema through
:mod:`kstrata.domain.schema`) and only then the callback, and only if the
parsed content actually differs from the current one.  A file that fails any
step is reported through ``on_error`` (default: the ``kstrata.watch`` logger)
and the previous configuration stays current.

Boundary: this module does file-system reads, sends signals, runs commands
and makes HTTP requests; it imports neither kopf nor the Kubernetes client,
and reports problems only as :mod:`kstrata.errors` classes whose messages
name files, paths, keys and process ids, never a configuration value.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeAlias

from kstrata.domain.documents import load_json, load_yaml
from kstrata.domain.flat_formats import decode_text, parse_env, parse_properties
from kstrata.domain.jsonvalue import DEFAULT_LIMITS, JSONValue
from kstrata.errors import (
    InputLimitError,
    InvalidInputError,
    KstrataError,
    UsageError,
)
from kstrata.files import read_regular

__all__ = [
    "PARSERS",
    "Watcher",
    "parse_auto",
    "parse_env",
    "parse_properties",
    "watch",
]

logger = logging.getLogger(__name__)

#: What a parser gets: the file's bytes and its name for messages (the path as
#: mounted, e.g. ``/etc/app/config.yaml``, not the timestamped directory).
ParseFunction = Callable[[bytes, str], object]
#: A validator accepts the parsed config by returning anything but ``False``
#: and rejects it by returning ``False`` or raising.  The config is ``Any``
#: here: it is whatever the application's own parser returns, and a validator
#: or callback declares the type it knows (``object`` would refuse those).
ValidateFunction = Callable[[Any], object]
Callback = Callable[[Any], object]
#: What :func:`parse_auto` makes of a file.
AutoParsed: TypeAlias = "JSONValue | dict[str, str] | bytes"
ErrorHandler = Callable[[KstrataError], object]

DATA_LINK: Final = "..data"
DEFAULT_DEBOUNCE: Final = 0.5
DEFAULT_POLL_INTERVAL: Final = 0.2
#: A volume is a handful of keys; this bounds a directory-mode read.
MAX_FILES: Final = 1024
_MAX_BYTES: Final = DEFAULT_LIMITS.max_bytes


# --- parsing ---------------------------------------------------------------


def _parse_yaml(data: bytes, source: str) -> JSONValue:
    return load_yaml(data, source=source)


def _parse_json(data: bytes, source: str) -> JSONValue:
    return load_json(data, source=source)


def _parse_bytes(data: bytes, _source: str) -> bytes:
    return data


#: Parsers by name, for ``parse="yaml"`` and friends.  ``"auto"`` picks one
#: per file by its extension (see :func:`parse_auto`).
PARSERS: Final[Mapping[str, ParseFunction]] = {
    "yaml": _parse_yaml,
    "json": _parse_json,
    "env": parse_env,
    "properties": parse_properties,
    "text": decode_text,
    "bytes": _parse_bytes,
}


def parse_auto(data: bytes, source: str) -> AutoParsed:
    """Parse by the file's extension: YAML, JSON, ``.env``, ``.properties``, else raw.

    "Raw" is ``str`` for UTF-8 files and ``bytes`` otherwise: a Secret may
    hold a keystore or a DER certificate, and watching its directory must not
    fail on that.  (``parse="text"`` insists on UTF-8.)
    """
    name = source.rsplit("/", 1)[-1].lower()
    if name.endswith((".yaml", ".yml")):
        return _parse_yaml(data, source)
    if name.endswith(".json"):
        return _parse_json(data, source)
    if name == ".env" or name.endswith(".env"):
        return parse_env(data, source)
    if name.endswith(".properties"):
        return parse_properties(data, source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _resolve_parser(parse: str | ParseFunction) -> ParseFunction:
    if callable(parse):
        return parse
    if parse == "auto":
        return parse_auto
    try:
        return PARSERS[parse]
    except KeyError:
        known = ", ".join(["auto", *PARSERS])
        raise UsageError(f"unknown parser {parse!r} (known: {known})") from None


def _resolve_validator(
    validate: ValidateFunction | Mapping[str, JSONValue] | None,
) -> ValidateFunction | None:
    if validate is None:
        return None
    if isinstance(validate, Mapping):
        from kstrata.domain import schema as schema_module

        frozen = dict(validate)
        # Compile now: a broken schema is a programming error to raise at
        # start-up (InvalidSchemaError), not a reload failure to log forever.
        schema_module.check_schema(frozen)

        def check_with_schema(config: JSONValue) -> None:
            schema_module.check(frozen, config)

        return check_with_schema
    if callable(validate):
        return validate
    raise UsageError("validate must be a callable, a JSON Schema mapping or None")


# --- errors ------------------------------------------------------------------


def _with_source(error: KstrataError, source: str) -> KstrataError:
    """The same error, its message prefixed with the file it is about (a copy)."""
    if error.message.startswith(source):
        return error
    # Not copy.copy: that re-runs __init__ with the message as its argument,
    # which breaks subclasses whose __init__ takes something else (violations).
    named = type(error).__new__(type(error))
    named.__dict__.update(error.__dict__)
    named.message = f"{source}: {error.message}"
    named.args = (named.message,)
    return named


def _foreign(source: str, what: str, exc: BaseException, reason: str) -> KstrataError:
    # A third-party or user exception's text may quote the value that failed
    # (int("hunter2") does), so only its type is kept.
    return InvalidInputError(f"{source}: the {what} raised {type(exc).__name__}", reason=reason)


# --- reading the volume -------------------------------------------------------


class _Moved(Exception):
    """The volume changed while we read it: not an error, look again next poll."""


Token = tuple[object, ...]


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_regular(path: str, source: str) -> bytes:
    # Regular files only, opened without blocking (a FIFO someone placed here
    # must not hang the watcher), at most _MAX_BYTES of them.
    try:
        return read_regular(path, _MAX_BYTES, shown=source)
    except UsageError as error:
        raise InvalidInputError(error.message) from None


def _digest(files: Mapping[str, bytes]) -> str:
    hasher = hashlib.sha256()
    for name in sorted(files):
        for part in (name.encode("utf-8", "surrogateescape"), files[name]):
            hasher.update(len(part).to_bytes(8, "big"))
            hasher.update(part)
    return hasher.hexdigest()


def _fingerprint(value: object) -> str | None:
    """A digest that tells ``1``, ``1.0`` and ``true`` apart (``==`` does not)."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _same_config(old: object, new: object) -> bool:
    old_print, new_print = _fingerprint(old), _fingerprint(new)
    if old_print is not None and new_print is not None:
        return old_print == new_print
    return type(old) is type(new) and old == new


class Watcher:
    """Watch one file (or every file of a directory) of a mounted volume.

    ``path`` is a file inside a ConfigMap/Secret volume (the callback gets
    that file, parsed) or the volume directory itself (the callback gets a
    dict from each key to its parsed file; a validator sees that dict).

    ``start()`` loads the current version synchronously (so ``current`` is
    set when it returns, or ``None`` with the problem reported if the file is
    missing or invalid) and polls on a daemon thread; ``run()`` polls in the
    calling thread until ``stop`` is set.  The callback, validator and
    ``on_error`` run on the polling thread, one at a time.  By default the
    callback is not called for the version found at start (pass
    ``initial=True`` to get that too); afterwards it is called once per new,
    valid, different configuration.  Exceptions from the callback are
    reported through ``on_error`` (by type only) and the configuration counts
    as delivered: the watcher keeps running and does not retry.

    ``clock`` exists for tests that step the watcher with :meth:`poll`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        callback: Callback,
        *,
        parse: str | ParseFunction = "auto",
        validate: ValidateFunction | Mapping[str, JSONValue] | None = None,
        debounce: float = DEFAULT_DEBOUNCE,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_error: ErrorHandler | None = None,
        initial: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not debounce >= 0:
            raise UsageError("debounce must be a number of seconds >= 0")
        if not poll_interval > 0:
            raise UsageError("poll_interval must be a number of seconds > 0")
        self.path = Path(path)
        if self.path.is_dir():
            self._dir, self._key = self.path, None
        else:
            self._dir, self._key = self.path.parent, self.path.name
        self._callback = callback
        self._parse = _resolve_parser(parse)
        self._validate = _resolve_validator(validate)
        self._debounce = float(debounce)
        self._poll_interval = float(poll_interval)
        self._on_error = on_error
        self._deliver_initial = initial
        self._clock = clock

        self._lock = threading.Lock()  # guards what other threads read
        self._poll_lock = threading.Lock()  # one poll at a time
        self._current: object = None
        self._generation = 0
        self._last_error: KstrataError | None = None
        self._polls = 0

        self._loaded = False  # the start-up version has been looked at
        self._seen: Token | None = None  # last token read (valid or not)
        self._pending: tuple[Token, float] | None = None  # token waiting out the debounce
        self._applied_digest: str | None = None  # digest of the current config's raw bytes
        self._observe_problem: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what other threads may read -------------------------------------

    @property
    def current(self) -> Any:
        """The last valid configuration (``None`` until one was loaded)."""
        # Any, as for Callback: the type is the application's parser's.
        with self._lock:
            return self._current

    @property
    def generation(self) -> int:
        """How many configurations have been adopted, counting the start-up one."""
        with self._lock:
            return self._generation

    @property
    def last_error(self) -> KstrataError | None:
        """The most recent problem reported; cleared when a new version is adopted."""
        with self._lock:
            return self._last_error

    @property
    def polls(self) -> int:
        """Completed polls: lets tests and probes wait for progress, not for time."""
        with self._lock:
            return self._polls

    # --- running -----------------------------------------------------------

    def start(self) -> Watcher:
        """Load the current version, then poll on a daemon thread.  Returns ``self``."""
        if self._thread is not None:
            raise UsageError("this Watcher has already been started")
        self._stop.clear()
        self.load()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name=f"kstrata-watch:{self.path}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the polling thread and wait for it (a running callback finishes first)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def run(self, stop: threading.Event | None = None) -> None:
        """Poll in this thread until ``stop`` is set (``None``: until :meth:`stop`)."""
        stop = stop if stop is not None else self._stop
        self.load()
        while not stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - see below
                # The watcher must outlive a faulty on_error handler; poll()
                # itself reports every expected failure.  Type only: the text
                # of a foreign exception may quote a value.
                logger.error(  # noqa: TRY400 - a traceback would carry the exception's text
                    "kstrata watch: unexpected %s while polling", type(exc).__name__
                )
            stop.wait(self._poll_interval)

    def load(self) -> None:
        """Look at the version present now, once (``start``/``run`` call this)."""
        with self._poll_lock:
            self._load()

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        # A swap racing the very first read is retried a few times, so that
        # the start-up version is not mistaken for a change.
        for _attempt in range(5):
            token = self._observe_or_report()
            if token is None or self._settle(token, initial=True) or self._seen == token:
                return

    def poll(self) -> bool:
        """One step: look, wait out the debounce, load.  True if a new config was adopted."""
        with self._poll_lock:
            try:
                return self._poll()
            finally:
                with self._lock:
                    self._polls += 1

    def _poll(self) -> bool:
        if not self._loaded:
            self._load()
            return False
        token = self._observe_or_report()
        if token is None:
            return False
        if token == self._seen:
            self._pending = None
            return False
        now = self._clock()
        if self._pending is None or self._pending[0] != token:
            # A new change (or a change of a change): the debounce restarts,
            # so a burst of swaps ends in one reload of the last one.
            self._pending = (token, now)
        if now - self._pending[1] < self._debounce:
            return False
        return self._settle(token, initial=False)

    # --- observing -----------------------------------------------------------

    def _describe(self) -> str:
        return str(self.path)

    def _source(self, key: str) -> str:
        return str(self._dir / key)

    def _observe(self) -> Token:
        """A cheap token that changes whenever the content may have changed."""
        target = self._data_target()
        if target is not None:
            try:
                inode = os.stat(os.path.join(self._dir, target)).st_ino
            except FileNotFoundError:
                inode = -1
            return ("kubelet", target, inode)
        if self._key is not None:
            try:
                st = os.stat(self._dir / self._key)
            except FileNotFoundError:
                return ("file", None)
            return ("file", _stat_key(st))
        entries: list[tuple[str, tuple[int, int, int, int]]] = []
        with os.scandir(self._dir) as listing:
            for entry in listing:
                # Dot files are editor and tool droppings in a plain directory.
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                entries.append((entry.name, _stat_key(entry.stat())))
                if len(entries) > MAX_FILES:
                    break
        return ("dir", tuple(sorted(entries)))

    def _data_target(self) -> str | None:
        try:
            return os.readlink(self._dir / DATA_LINK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # ..data exists but is not a symlink
                return None
            raise

    def _observe_or_report(self) -> Token | None:
        try:
            token = self._observe()
        except OSError as exc:
            problem = f"{self._describe()}: cannot watch ({exc.strerror or type(exc).__name__})"
            # Reported once per distinct problem, not five times a second.
            if problem != self._observe_problem:
                self._observe_problem = problem
                self._report(InvalidInputError(problem, reason="WatchFailed"))
            return None
        self._observe_problem = None
        return token

    def _read(self, token: Token) -> dict[str, bytes]:
        """The files of the version ``token`` names, as bytes, keyed by key."""
        kubelet = token[0] == "kubelet"
        root = os.path.join(self._dir, str(token[1])) if kubelet else str(self._dir)
        try:
            files = self._read_files(root)
        except (OSError, KstrataError) as exc:
            # Reading the old directory of a swap that just happened fails
            # (the kubelet removes it): that is "look again", not an error.
            if self._observe_quietly() != token:
                raise _Moved from None
            if isinstance(exc, KstrataError):
                raise
            if isinstance(exc, FileNotFoundError):
                raise InvalidInputError(
                    f"{self._describe()}: does not exist", reason="FileNotFound"
                ) from None
            raise InvalidInputError(
                f"{self._describe()}: cannot read ({exc.strerror or type(exc).__name__})",
                reason="ReadFailed",
            ) from None
        # A plain file may have been written while we read it: only a read
        # bracketed by the same stat counts.  (Free for kubelet volumes.)
        if self._observe_quietly() != token:
            raise _Moved
        return files

    def _observe_quietly(self) -> Token | None:
        try:
            return self._observe()
        except OSError:
            return None

    def _read_files(self, root: str) -> dict[str, bytes]:
        if self._key is not None:
            path = os.path.join(root, self._key)
            return {self._key: _read_regular(path, self._source(self._key))}
        files: dict[str, bytes] = {}
        if root == str(self._dir):
            with os.scandir(root) as listing:
                names = sorted(
                    entry.name
                    for entry in listing
                    if not entry.name.startswith(".") and entry.is_file()
                )
        else:
            # Inside a kubelet's timestamped directory every file is a key
            # (keys may start with one dot; the kubelet forbids "..").
            names = []
            for folder, subfolders, filenames in os.walk(root):
                subfolders.sort()
                relative = os.path.relpath(folder, root)
                for filename in sorted(filenames):
                    names.append(filename if relative == "." else f"{relative}/{filename}")
        if len(names) > MAX_FILES:
            raise InputLimitError(f"{self._describe()}: more than {MAX_FILES} files")
        for name in names:
            files[name] = _read_regular(os.path.join(root, name), self._source(name))
        return files

    # --- loading -------------------------------------------------------------

    def _parse_and_validate(self, files: Mapping[str, bytes]) -> object:
        parsed: dict[str, object] = {}
        for name, data in files.items():
            source = self._source(name)
            try:
                parsed[name] = self._parse(data, source)
            except KstrataError as error:
                raise _with_source(error, source) from None
            except Exception as exc:  # noqa: BLE001 - user parsers may raise anything
                raise _foreign(source, "parser", exc, "ParseFailed") from None
        config = parsed[self._key] if self._key is not None else parsed
        if self._validate is not None:
            source = self._describe()
            try:
                verdict = self._validate(config)
            except KstrataError as error:
                raise _with_source(error, source) from None
            except Exception as exc:  # noqa: BLE001 - user validators may raise anything
                raise _foreign(source, "validator", exc, "ValidationFailed") from None
            if verdict is False:
                raise InvalidInputError(f"{source}: rejected by the validator", reason="Rejected")
        return config

    def _settle(self, token: Token, *, initial: bool) -> bool:
        """Read, parse and validate the version ``token`` names; adopt it if new."""
        try:
            files = self._read(token)
        except _Moved:
            self._pending = None
            return False
        except KstrataError as error:
            self._seen, self._pending = token, None
            self._report(error)
            return False
        self._seen, self._pending = token, None
        return self._adopt(files, initial=initial)

    def _adopt(self, files: Mapping[str, bytes], *, initial: bool) -> bool:
        digest = _digest(files)
        if digest == self._applied_digest:
            # The very same bytes (a touch, or a revert after a bad version).
            with self._lock:
                self._last_error = None
            return False
        try:
            config = self._parse_and_validate(files)
        except KstrataError as error:
            self._report(error)
            return False
        with self._lock:
            unchanged = self._generation > 0 and _same_config(self._current, config)
            self._applied_digest = digest
            if unchanged:
                return False  # reformatted, reordered or re-commented: same meaning
            self._current = config
            self._generation += 1
            self._last_error = None
            generation = self._generation
        logger.info("kstrata watch: %s: configuration %d adopted", self._describe(), generation)
        if initial and not self._deliver_initial:
            return True
        self._deliver(config)
        return True

    def _deliver(self, config: object) -> None:
        try:
            self._callback(config)
        except KstrataError as error:
            self._report(error)
        except Exception as exc:  # noqa: BLE001 - the callback is the application's code
            self._report(
                KstrataError(
                    f"{self._describe()}: the reload callback raised {type(exc).__name__}",
                    reason="ReloadFailed",
                )
            )

    def _report(self, error: KstrataError) -> None:
        with self._lock:
            self._last_error = error
        if self._on_error is None:
            logger.warning("kstrata watch: %s (keeping the previous configuration)", error)
            return
        self._on_error(error)


def watch(
    path: str | os.PathLike[str],
    callback: Callback,
    *,
    parse: str | ParseFunction = "auto",
    validate: ValidateFunction | Mapping[str, JSONValue] | None = None,
    debounce: float = DEFAULT_DEBOUNCE,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    on_error: ErrorHandler | None = None,
    initial: bool = False,
    stop: threading.Event | None = None,
) -> None:
    """Watch ``path`` in this thread until ``stop`` is set; see :class:`Watcher`.

    Blocks forever when ``stop`` is ``None`` (until KeyboardInterrupt).
    """
    Watcher(
        path,
        callback,
        parse=parse,
        validate=validate,
        debounce=debounce,
        poll_interval=poll_interval,
        on_error=on_error,
        initial=initial,
    ).run(stop if stop is not None else threading.Event())

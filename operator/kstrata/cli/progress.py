"""A progress line for long CLI operations: on a terminal only, silent in a pipe.

Waiting for the operator after ``rollback`` or ``set``, or writing many
workloads with ``migrate reloader --apply``, can take tens of seconds; a
person at a terminal should see that something is happening, while CI logs
and scripts reading stderr must get nothing extra.  So the line is written
only when the stream is a TTY, rewritten in place with a carriage return
(padded with spaces rather than terminal escape codes, which ``TERM=dumb``
lacks), and erased when the operation ends, so the messages printed after it
start on a clean line.

The app layer never writes to the terminal: its long functions take a
``progress`` callback (``Callable[[str], None]``) and this module supplies
one.  Messages name objects and counts, never a value.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import TextIO, TypeVar

T = TypeVar("T")


class Progress:
    """Callable progress reporter; a no-op unless ``stream`` (default: stderr) is a TTY."""

    def __init__(self, stream: TextIO | None = None) -> None:
        # Looked up now, not at import: tests and callers may redirect sys.stderr.
        self._stream = stream if stream is not None else sys.stderr
        self.live = _is_terminal(self._stream)
        self._width = 0

    def __call__(self, message: str) -> None:
        if not self.live:
            return
        line = message.replace("\n", " ").replace("\r", " ")
        # Pad over the longer line it replaces: no escape codes needed.
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        # What the terminal now shows: this line, or the padding over a longer one.
        self._width = max(self._width, len(line))

    def done(self) -> None:
        """Erase the line, so whatever is printed next starts at column 0."""
        if self.live and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.done()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or not a real file
        return False


def with_progress(function: Callable[..., T]) -> Callable[..., T]:
    """``function`` called with ``progress=`` a :class:`Progress` on stderr, erased after.

    The line is erased also when ``function`` raises, so the error message
    ``main`` prints starts on a clean line.
    """

    def call(*args: object, **kwargs: object) -> T:
        with Progress() as progress:
            return function(*args, progress=progress, **kwargs)

    return call

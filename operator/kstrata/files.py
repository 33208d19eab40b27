"""The one way kstrata reads a file or standard input: bounded before it is read.

Every path a user names (``-f``, ``--cert``, ``--from-file``, ``--merge-into``,
``--env-file``, settings files, ``--schema``, a pidfile, a watched volume) is
read here, so one rule holds everywhere:

* at most ``limit + 1`` bytes are ever read, so a file (or a stream on
  standard input) larger than the limit costs ``limit`` bytes of memory and
  ends in an ``InputLimitError`` naming it and the limit, never a
  ``MemoryError``;
* only regular files are opened, without blocking (``O_NONBLOCK``), so a
  device such as ``/dev/zero``, a FIFO or a directory is refused at once with
  an error that says so, instead of an endless read or a hang; ``-`` (where a
  command allows it) is standard input, bounded the same way.

Which limit applies is the caller's: documents use the document loader's
``DEFAULT_LIMITS.max_bytes``, plaintexts the sealing limit, key bundles theirs.

Which files ``-f`` names is decided here too (:func:`expand_files`), once for
every command that takes ``-f FILE|DIR``.

And every file a command writes for the user (a key backup, a public key
bundle, ``--merge-into``, ``--in-place``, ``--output-dir``) is written by
:func:`write_atomically`: whole or not at all, with its mode set before the
first byte, so a crash or a full disk never leaves half a key file or a
readable copy of one.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

from kstrata.errors import InputLimitError, UsageError

__all__ = [
    "MANIFEST_SUFFIXES",
    "STDIN",
    "describe",
    "expand_files",
    "read_bounded",
    "read_regular",
    "write_atomically",
]

#: The path that means standard input where a command accepts it.
STDIN = "-"

#: The files a directory given to ``-f`` contributes: kubectl's manifest endings.
MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")


def describe(path: Path | str) -> str:
    """How messages name ``path`` (``<stdin>`` for ``-``)."""
    return "<stdin>" if str(path) == STDIN else str(path)


def read_regular(path: Path | str, limit: int, *, shown: str | None = None) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Raises ``UsageError`` for anything but a regular file, ``InputLimitError``
    above ``limit``, and lets ``OSError`` (missing file, no permission)
    through for the caller to word.  ``shown`` names the file in messages
    (default: the path).
    """
    shown = str(path) if shown is None else shown
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise UsageError(
                f"{shown}: not a regular file (only regular files of at most {limit} bytes "
                "are read; devices, pipes and directories are not)"
            )
        if status.st_size > limit:
            raise _too_large(shown, limit)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise _too_large(shown, limit)
    return data


def read_bounded(
    path: Path | str,
    limit: int,
    *,
    what: str | None = None,
    show_path: bool = True,
    stdin: bool = False,
) -> bytes:
    """Read a file a user named, or standard input for ``-`` when ``stdin`` allows it.

    Messages say ``what`` (a flag, such as ``--cert``) and the path; with
    ``show_path=False`` only ``what`` (a path typed as ``KEY=PATH`` may be a
    value typed by mistake).  A file that cannot be opened is a
    ``UsageError``; see :func:`read_regular` for the rest.
    """
    name = describe(path)
    shown = " ".join(part for part in (what, name if show_path else None) if part) or name
    if stdin and str(path) == STDIN:
        data: bytes = sys.stdin.buffer.read(limit + 1)
        if len(data) > limit:
            raise _too_large(shown, limit)
        return data
    try:
        return read_regular(path, limit, shown=shown)
    except OSError as exc:
        raise UsageError(f"cannot read {shown}: {exc.strerror or 'error'}") from None


def expand_files(
    paths: Sequence[Path],
    *,
    recursive: bool = False,
    suffixes: tuple[str, ...] = MANIFEST_SUFFIXES,
    wanted: Callable[[Path], bool] | None = None,
) -> list[Path]:
    """``-f`` arguments as files to read: one rule for every command that takes them.

    * ``-`` (standard input) and a path that is not a directory stay as given,
      whatever their ending: a file the user named is read (or its absence
      reported by the reader), never skipped.
    * A directory contributes its regular files (symbolic links to files
      included) whose names end in one of ``suffixes`` and that ``wanted``
      accepts, sorted by path (kubectl's order).  Without ``recursive`` only
      the directory's own files count, as kubectl's ``-f DIR`` without ``-R``;
      with it, every directory below too, never following a symbolic link to
      a directory (no loops).  The bulk ``seal`` and the secret imports take
      a tree of manifests (a kustomization's layout), so they ask for it.
    * A directory that contributes no file is a ``UsageError`` naming it: a
      wrong path or layout is said at once instead of ending in "nothing
      found" further on.
    """
    files: list[Path] = []
    for path in paths:
        if str(path) == STDIN or not path.is_dir():
            files.append(path)
            continue
        found = sorted(
            p
            for p in _directory_files(path, recursive)
            if p.name.endswith(suffixes) and (wanted is None or wanted(p))
        )
        if not found:
            endings = (
                ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}"
                if len(suffixes) > 1
                else suffixes[0]
            )
            below = " or below it" if recursive else ""
            raise UsageError(f"{path}: no {endings} files to read in the directory{below}")
        files += found
    return files


def _directory_files(directory: Path, recursive: bool) -> Iterator[Path]:
    """The regular files in ``directory`` (and below it when ``recursive``)."""
    if not recursive:
        yield from (p for p in directory.iterdir() if p.is_file())
        return
    for parent, subdirectories, names in os.walk(directory):
        subdirectories.sort()  # os.walk does not follow links to directories
        yield from (p for p in (Path(parent) / n for n in names) if p.is_file())


def write_atomically(path: Path, text: str, *, mode: int = 0o600, exclusive: bool = False) -> None:
    """Put ``text`` at ``path`` so that no reader ever sees half a file or a wider mode.

    The text goes to a temporary file beside the target (``mkstemp`` creates it
    0600; it is set to ``mode`` before a byte is written), is synced, and then
    takes the target's name in one step: ``os.replace`` over the file that is
    there (behind a symlink, its target, so the rename stays in one
    directory), or, with ``exclusive``, a hard link, which fails with
    ``FileExistsError`` when the name exists, so nothing is ever overwritten.
    The temporary file never outlives the call.  ``OSError`` is the caller's
    to word: only it knows which flag named the path.
    """
    import contextlib
    import tempfile  # only the commands that write files pay for it

    target = path if exclusive else path.resolve()
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            # Stated, not left to mkstemp's default, so the guarantee rests on no default.
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(temporary, target)
        else:
            os.replace(temporary, target)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)  # after a link (or a failure); gone already after a replace
    with contextlib.suppress(OSError):
        # Make the new name durable too (best effort: not every filesystem allows it).
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _too_large(shown: str, limit: int) -> InputLimitError:
    return InputLimitError(f"{shown}: larger than the limit of {limit} bytes")

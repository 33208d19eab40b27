"""'Did you mean ...?': refusing a near miss with the name that was probably meant.

Why a module of its own: ``set`` (key paths, environments), ``get``,
``render`` and ``diff`` (environments) all refuse a name that is not there
and suggest the closest one that is; one wording, one similarity cut-off.
Pure: no cluster, no kopf, so the offline commands may use it.  Suggestions
are names (environments, key paths), never values.
"""

from __future__ import annotations

from collections.abc import Iterable

from kstrata.errors import UsageError

#: difflib's ratio below which a known name is not offered as the intended one.
CUTOFF = 0.6


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known name most like ``word``, if any is close enough."""
    import difflib  # only on a miss: render checks every --env here, and most are right

    matches = difflib.get_close_matches(word, sorted(set(known)), n=1, cutoff=CUTOFF)
    return matches[0] if matches else None


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``" (did you mean prod?)"``, or "" when nothing known is close to ``word``."""
    match = closest(word, known)
    return f" (did you mean {match}?)" if match else ""


def check_environment_declared(environment: str, declared: Iterable[str], what: str) -> None:
    """``UsageError`` unless ``environment`` is one ``what`` declares or may render for.

    An environment no overlay, pin, label or default names would silently
    render the base values: almost always a typo (``prodd``) or the wrong
    profile.
    """
    names = sorted(set(declared))
    if environment in names:
        return
    raise UsageError(
        f"environment {environment} is not declared by {what}{did_you_mean(environment, names)}; "
        f"declared: {', '.join(names) or 'none'}"
    )


__all__ = ["CUTOFF", "check_environment_declared", "closest", "did_you_mean"]

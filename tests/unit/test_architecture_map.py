"""docs/architecture.md's module map names every module of the package, and only those.

The map is how a newcomer finds where a change belongs; a module added, moved
or removed without the map following would send them to the wrong place.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "kstrata"
DOC = REPO / "docs" / "architecture.md"


def modules() -> set[str]:
    """Every module of the package, dotted, without the ``kstrata.`` prefix."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        found.add(".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    return found


def mapped() -> list[str]:
    """The names in the map's first column (``a``, ``a, b`` or a pattern like ``cli.*_cmd``)."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        cell = line.split("|")[1].strip() if line.startswith("|") else ""
        if cell in {"", "module"} or set(cell) <= {"-"}:
            continue
        names += re.findall(r"`([^`]+)`", cell)
    return names


def test_every_module_is_in_the_map() -> None:
    names = mapped()
    missing = sorted(m for m in modules() if not any(fnmatch.fnmatch(m, n) for n in names))
    assert missing == [], f"add these to docs/architecture.md's module map: {missing}"


def test_every_name_in_the_map_is_a_module() -> None:
    known = modules()
    stale = sorted(n for n in mapped() if not fnmatch.filter(known, n))
    assert stale == [], f"docs/architecture.md's module map names what no longer exists: {stale}"

"""No module but ``kstrata.wellknown`` spells a name kstrata shares with the cluster.

Every string constant (docstrings aside) in every module under ``kstrata`` is
checked: it must not equal a value ``kstrata.wellknown`` defines, and it must
not look like a ``kstrata.dev/...`` label or annotation key (whole string, or a
literal part of an f-string such as ``f"kstrata.dev/reload={x}"``) that
wellknown lacks.  A reason that belongs to an error class is that class's
``reason`` attribute in ``kstrata/errors.py``, its one home, and is not checked
here; reasons no error class owns are in wellknown and are.
Byte strings (the crypto formats' domain-separation labels) are not names in
the cluster and are not checked either.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import kstrata
from kstrata import wellknown

PACKAGE = Path(kstrata.__file__).parent

#: Label- or annotation-looking: the key, possibly followed by ``=`` (a selector).
LABEL_LIKE = re.compile(r"(?:[a-z0-9-]+\.)*kstrata\.dev/[-A-Za-z0-9_.]*=?")

#: Where an equal string means something else, each with its reason.
NOT_A_CLUSTER_NAME: dict[tuple[str, str], str] = {
    ("cli/main.py", "kstrata"): "the program's name in usage lines",
    ("cli/migrate_cmd.py", "kstrata"): "a dry run's report line: what kstrata would set",
}


def well_known_values() -> dict[str, str]:
    """Each value wellknown defines, with one of its names."""
    values: dict[str, str] = {}
    for name, value in vars(wellknown).items():
        if name.isupper() and isinstance(value, str):
            values.setdefault(value, name)
    return values


def docstring_nodes(tree: ast.Module) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def spellings(source: str, values: dict[str, str], module: str) -> list[str]:
    tree = ast.parse(source)
    skip = docstring_nodes(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if id(node) in skip or (module, node.value) in NOT_A_CLUSTER_NAME:
            continue
        where = f"{module}:{node.lineno}: {node.value!r}"
        if node.value in values:
            found.append(f"{where} is wellknown.{values[node.value]}")
        elif LABEL_LIKE.fullmatch(node.value):
            found.append(f"{where} looks like a label key: add it to wellknown")
    return found


def test_no_module_spells_a_well_known_name() -> None:
    values = well_known_values()
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module != "wellknown.py":
            found += spellings(path.read_text(encoding="utf-8"), values, module)
    assert found == [], "spelled outside kstrata/wellknown.py:\n" + "\n".join(found)


def test_the_check_sees_plain_strings_and_f_string_parts_but_not_docstrings() -> None:
    source = '''"""kstrata.dev/reload in a docstring is prose."""
GROUP = "kstrata.dev"
def f(x):
    """Mentions "kstrata.dev/profile"."""
    return f"kstrata.dev/unknown-key={x}", "see the kstrata.dev/reload annotation", b"kstrata.dev/x"
'''
    found = spellings(source, well_known_values(), "m.py")
    assert found == [
        "m.py:2: 'kstrata.dev' is wellknown.GROUP",
        "m.py:5: 'kstrata.dev/unknown-key=' looks like a label key: add it to wellknown",
    ]


def test_api_version_is_group_and_version() -> None:
    assert f"{wellknown.GROUP}/{wellknown.VERSION}" == wellknown.API_VERSION

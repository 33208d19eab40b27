"""The user documentation stays honest: every claim a test can check is checked here.

* docs/crd-reference.md is generated from ``kstrata.domain.crds`` and current,
  and names every field path of both CRDs' spec and status;
* every CLI command registered in the real parser has a section in the
  guide's CLI reference that names each of its flags;
* every ``kstrata ...`` line in a fenced shell block of README.md and
  docs/*.md parses with the real parser; every offline one (render,
  validate, seal --cert, completion, import -f, unseal, version, operator
  settings, --help) runs in a shell, exactly as printed, in a temporary copy
  of the clone, with the exit code and the output the docs show; every
  other one names the test that runs it (COVERED_ELSEWHERE), so a new
  documented command is either run or accounted for;
* every fenced YAML block holding a kstrata manifest either validates offline
  or is a byte-identical copy of a file under examples/ (the block is
  preceded by ``<!-- from examples/PATH -->``);
* the migration and GitOps examples the guide points at do what the guide says.

Fast and pure: no cluster, no network (the offline commands run as
subprocesses).  The cluster side of the examples is tests/examples/ (every
examples/config profile reaches Ready there).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from kstrata.app.offline import validate_files
from kstrata.cli.main import build_parser
from kstrata.domain.crds import all_crds, validate_structure
from kstrata.errors import KstrataError

REPO = Path(__file__).resolve().parents[2]
DOCS_DIR = REPO / "docs"
GUIDE = DOCS_DIR / "config-management-guide.md"
OPERATIONS = DOCS_DIR / "operations.md"
CRD_REFERENCE = DOCS_DIR / "crd-reference.md"
EXAMPLES = REPO / "examples"
MARKDOWN = [REPO / "README.md", *sorted(DOCS_DIR.glob("*.md"))]

SHELL_LANGUAGES = {"sh", "shell", "bash", "console"}
YAML_LANGUAGES = {"yaml", "yml"}
FROM_COMMENT = re.compile(r"^<!--\s*from\s+(\S+)\s*-->$")


# --- reading markdown ------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its text and its label."""

    source: Path
    line: int
    language: str
    text: str
    #: The path in a ``<!-- from PATH -->`` comment right above the block, if any.
    copied_from: str | None

    @property
    def where(self) -> str:
        return f"{self.source.relative_to(REPO)}:{self.line}"


def fenced_blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    previous = ""
    while index < len(lines):
        stripped = lines[index].strip()
        if stripped.startswith("```"):
            fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
            language = stripped[len(fence) :].strip().split(" ")[0].lower()
            start = index + 1
            end = start
            while end < len(lines) and not lines[end].strip().startswith(fence):
                end += 1
            match = FROM_COMMENT.match(previous)
            text = "".join(line + "\n" for line in lines[start:end])
            yield Block(path, start, language, text, match.group(1) if match else None)
            index = end + 1
            previous = ""
            continue
        if stripped:
            previous = stripped
        index += 1


def all_blocks(languages: set[str]) -> list[Block]:
    return [
        block for path in MARKDOWN for block in fenced_blocks(path) if block.language in languages
    ]


def sections(path: Path) -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading of the same or a higher level."""
    lines = path.read_text(encoding="utf-8").splitlines()
    headings = [
        (i, len(m.group(1)), m.group(2).strip())
        for i, line in enumerate(lines)
        if (m := re.match(r"^(#{1,6})\s+(.*)$", line))
    ]
    found: dict[str, str] = {}
    for number, (start, level, title) in enumerate(headings):
        end = next((i for i, lvl, _ in headings[number + 1 :] if lvl <= level), len(lines))
        found[title] = "\n".join(lines[start + 1 : end])
    return found


# --- the CRD reference -----------------------------------------------------


def load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up in sys.modules.
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def schema_paths(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Field paths derived here independently of the generator, in the notation the docs use."""
    for name, sub in node.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from schema_paths(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        key = {
            "environments": "<environment>",
            "matchLabels": "<key>",
            "labels": "<key>",
            "annotations": "<key>",
        }.get(path.rsplit(".", 1)[-1], "<item>")
        yield f"{path}.{key}", node["additionalProperties"]
        yield from schema_paths(node["additionalProperties"], f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield f"{path}[]", node["items"]
        yield from schema_paths(node["items"], f"{path}[]")


#: The CRDs as plain trees to walk (``domain.crds`` types them as JSONObject).
CRD_TREES: list[dict[str, Any]] = all_crds()
CRD_FIELDS = [
    pytest.param(
        crd["spec"]["names"]["kind"], path, node, id=f"{crd['spec']['names']['kind']}:{path}"
    )
    for crd in CRD_TREES
    for top in ("spec", "status")
    for path, node in schema_paths(
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][top], top
    )
]


def test_crd_reference_is_up_to_date() -> None:
    gen = load_tool("gen_crd_docs")
    assert not gen.stale(CRD_REFERENCE), "run .venv/bin/python tools/gen_crd_docs.py"
    assert gen.main(["--check", "--out", str(CRD_REFERENCE)]) == 0


def test_crd_reference_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    gen = load_tool("gen_crd_docs")
    stale = tmp_path / "crd-reference.md"
    stale.write_text(CRD_REFERENCE.read_text(encoding="utf-8").replace("spec.base", "spec.bas"))
    assert gen.main(["--check", "--out", str(stale)]) == 1
    assert gen.main(["--out", str(stale)]) == 0
    assert gen.main(["--check", "--out", str(stale)]) == 0


def test_there_are_crd_fields_to_check() -> None:
    paths = {param.values[1] for param in CRD_FIELDS}
    assert {"spec.base", "spec.reload.targets[].selector.matchLabels", "status.revision"} <= paths
    assert "spec.encryptedData.<item>" in paths


@pytest.mark.parametrize(("kind", "path", "node"), CRD_FIELDS)
def test_every_crd_field_is_in_the_reference(kind: str, path: str, node: dict[str, Any]) -> None:
    section = sections(CRD_REFERENCE)[kind]
    rows = [line for line in section.splitlines() if line.startswith(f"| `{path}` |")]
    assert len(rows) == 1, f"{kind} {path} is not in docs/crd-reference.md exactly once"
    description = str(node.get("description", "")).replace("|", "\\|")
    assert description in rows[0]


def test_the_guide_links_the_crd_reference() -> None:
    assert "(crd-reference.md)" in GUIDE.read_text(encoding="utf-8")


# --- the CLI reference -----------------------------------------------------


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse offers no public walk over subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf_commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    children = subcommands(parser)
    if not children and prefix:
        yield " ".join(prefix), parser
    for name, child in children.items():
        yield from leaf_commands(child, (*prefix, name))


def documented_names(parser: argparse.ArgumentParser) -> list[str]:
    """Every flag spelling and every positional's metavar (or name), --help aside."""
    names: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            names += action.option_strings
        else:
            metavar = action.metavar if isinstance(action.metavar, str) else action.dest
            names.append(metavar)
    return names


COMMANDS = list(leaf_commands(build_parser()))


def test_the_parser_has_the_commands_the_docs_describe() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"render", "validate", "seal", "keys rotate", "operator run", "watch"} <= names


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


@pytest.mark.parametrize(("command", "parser"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_and_flag_is_in_the_cli_reference(
    command: str, parser: argparse.ArgumentParser
) -> None:
    found = sections(GUIDE)
    heading = f"`kstrata {command}`"
    assert heading in found, f"the guide has no section '{heading}'"
    missing = [name for name in documented_names(parser) if not _mentions(found[heading], name)]
    assert not missing, f"{heading} does not document {missing}"


def test_the_global_flags_and_exit_codes_are_documented() -> None:
    found = sections(GUIDE)
    text = found["Global flags and exit codes"]
    for name in documented_names(build_parser()):
        if name != "COMMAND":
            assert _mentions(text, name), name
    from kstrata.cli import common

    for code in (common.EXIT_OK, common.EXIT_INVALID, common.EXIT_USAGE, common.EXIT_CLUSTER):
        assert re.search(rf"^\| `{code}` \|", text, re.MULTILINE), code


# --- command lines in the docs ---------------------------------------------

_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "&", "2>", "(", ")", "<("}


def kstrata_command_lines(block: Block) -> Iterator[str]:
    """Shell lines of the block (continuations joined, console prompts stripped)."""
    pending = ""
    for raw in block.text.splitlines():
        line = raw.rstrip()
        if block.language == "console":
            if not (line.startswith("$ ") or pending):
                continue
            line = line.removeprefix("$ ")
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""


def kstrata_invocations(line: str) -> Iterator[list[str]]:
    """The argv of every kstrata invocation on one shell line."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError as error:
        raise AssertionError(f"unparseable shell line {line!r}: {error}") from None
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token not in _OPERATORS:
            segment.append(token)
            continue
        words, segment = segment, []
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]  # VAR=value before a command sets its environment
        if words and Path(words[0]).name in ("kstrata", "kubectl-kstrata"):
            yield words[1:]
        elif words[:2] == ["kubectl", "kstrata"]:
            yield words[2:]
        elif Path(words[0] if words else "").name.startswith("python") and words[1:3] == [
            "-m",
            "kstrata",
        ]:
            yield words[3:]


DOCUMENTED_ARGVS = [
    (block, argv)
    for block in all_blocks(SHELL_LANGUAGES)
    for line in kstrata_command_lines(block)
    for argv in kstrata_invocations(line)
]
COMMAND_LINES = [
    pytest.param(argv, id=f"{block.where}:{' '.join(argv)[:60]}")
    for block, argv in DOCUMENTED_ARGVS
]


def test_the_docs_show_every_command_at_least_once() -> None:
    shown = {" ".join(argv[:2]) for _, argv in DOCUMENTED_ARGVS} | {
        argv[0] for _, argv in DOCUMENTED_ARGVS if argv
    }
    missing = [name for name, _ in COMMANDS if name not in shown]
    assert not missing, f"no example in the docs runs {missing}"


@pytest.mark.parametrize("argv", COMMAND_LINES)
def test_every_documented_command_line_parses(argv: list[str]) -> None:
    if "-h" in argv or "--help" in argv or "--version" in argv:
        with pytest.raises(SystemExit) as exit_request:
            build_parser().parse_args(argv)
        assert exit_request.value.code in (0, None)
        return
    try:
        args = build_parser().parse_args(argv)
    except KstrataError as error:
        pytest.fail(f"kstrata {shlex.join(argv)}: {error}")
    assert callable(args.handler)


# --- every offline command in the docs runs, as printed ----------------------

#: Documented kstrata commands not run here, each with the test that runs it
#: (against a cluster, or, for ``watch``, a projected volume).  Keyed by the
#: argv as the docs print it: a new documented command that is neither
#: offline (run below) nor listed here fails
#: test_every_documented_command_is_run_or_covered.
COVERED_ELSEWHERE: dict[str, str] = {
    # README's Quick start, run line by line in a fresh clone on the real node.
    "operator run --config-dir config --environment dev": "tests/e2e/test_readme_walk.py",
    "list -n shop": "tests/e2e/test_readme_walk.py",
    "get payments -n shop --key replicas": "tests/e2e/test_readme_walk.py",
    "set payments -n shop --env prod replicas=8": "tests/e2e/test_readme_walk.py",
    "history payments -n shop": "tests/e2e/test_readme_walk.py",
    "rollback payments -n shop": "tests/e2e/test_readme_walk.py",
    "seal -n hello --name greeting --from-literal message=hello-from-a-sealed-secret": (
        "tests/e2e/test_readme_walk.py"
    ),
    "reseal -f deploy/ --in-place": "tests/unit/cli/test_cli_reseal.py (through main(argv))",
    # The operator itself.
    "operator run": "tests/cluster/test_operator_runs.py (python -m kstrata operator run)",
    "operator run -n team-a -n team-b --standalone": (
        "tests/unit/cli/test_operator_cmd.py (the flags' settings); "
        "tests/cluster/test_operator_runs.py (the process)"
    ),
    # Profiles on a cluster.
    "list -n payments": (
        "tests/cluster/test_cli_profiles.py::test_list_shows_what_the_operator_reported"
    ),
    "get payments -n payments": "tests/cluster/test_cli_profiles.py",
    "get payments -n payments --env staging -o json": (
        "tests/cluster/test_cli_profiles.py::test_get_environment_precedence"
    ),
    "get payments -n payments --key database.host": (
        "tests/cluster/test_cli_profiles.py::test_get_key_prints_scalars_plain_and_subtrees_as_data"
    ),
    "set payments replicas=8 -n payments --env prod --dry-run": (
        "tests/cluster/test_cli_profiles.py::test_set_dry_run_prints_the_result_and_writes_nothing"
    ),
    "set payments database.pool=30 -n payments --env prod": (
        "tests/cluster/test_cli_profiles.py::test_set_writes_typed_values_and_a_change_cause_without_values"
    ),
    "import configmap/orders-config -n shop --name orders": (
        "tests/cluster/test_cli_profiles.py::test_import_configmap_round_trip_adopts_without_writing_data"
    ),
    "migrate reloader -n shop --apply": "tests/cluster/test_reload_parity.py",
    "migrate reloader -A": "tests/cluster/test_reload_parity.py",
    # Keys and sealing against the cluster's keys.
    "keys export --out keys.json": "tests/cluster/test_sealing_keys.py",
    "keys list": "tests/cluster/test_sealing_keys.py",
    "keys rotate": "tests/cluster/test_sealing_keys.py",
    "keys backup -o kstrata-keys.backup.yaml": "tests/cluster/test_sealing_keys.py",
    # Offline, but piped from kubectl (not part of the unit tier).
    "seal --cert keys.json -f -": (
        "tests/cluster/test_cli_seal_cluster.py::test_the_namespace_comes_from_the_kubeconfig_context"
    ),
    # Offline, but reads a Bitnami controller's key backup and its SealedSecrets.
    "import sealedsecret -f sealed/ --bitnami-keys bitnami-keys.yaml --cert keys.json "
    "--output-dir kss/": "tests/unit/cli/test_cli_import_bitnami.py",
    # History, diff and rollback.
    "history payments -n payments": "tests/cluster/test_cli_history.py",
    "diff payments -n payments": "tests/cluster/test_cli_history.py",
    "diff payments -n payments --revision 1 --to-revision 3": "tests/cluster/test_cli_history.py",
    "diff payments -n payments --env staging --to-env prod": "tests/cluster/test_cli_history.py",
    "diff -f examples/config/payments.yaml -n payments": "tests/cluster/test_cli_history.py",
    "diff payments-db -n payments": (
        "tests/cluster/test_cli_history.py::test_sealed_secret_history_diff_and_rollback_never_show_values"
    ),
    "rollback payments -n payments --dry-run": "tests/cluster/test_cli_history.py",
    "rollback payments -n payments": "tests/cluster/test_cli_history.py",
    "rollback payments -n payments --to-revision 1 -o yaml": "tests/cluster/test_cli_history.py",
    "rollback payments -n payments -o yaml": "tests/cluster/test_cli_history.py",
    # Long-running: follows a mounted directory until stopped.
    "watch /etc/payments --file config.yaml --signal HUP --pidfile /run/app/app.pid": (
        "tests/unit/test_hot_reload_cli.py"
    ),
    "watch /etc/payments --http-post http://127.0.0.1:9090/-/reload": (
        "tests/unit/test_hot_reload_cli.py::test_http_post_reaches_a_local_endpoint"
    ),
}

#: What a command in an ``sh`` block prints, where the docs show it in the
#: block after it (a copy of this file, checked by the YAML-block test).
SHOWN_AS_FILE = {
    "import -f examples/migration/checkout/config.yaml --env "
    "staging=examples/migration/checkout/config.staging.yaml --env "
    "prod=examples/migration/checkout/config.prod.yaml --full --name checkout": (
        "examples/config/checkout.yaml"
    ),
}


def runs_offline(argv: list[str]) -> bool:
    """Needs no cluster: kstrata answers from files, flags and its own code."""
    if not argv or "-h" in argv or "--help" in argv:
        return True
    if argv[0] in ("render", "validate", "completion", "version", "unseal"):
        return True
    if argv[:2] == ["operator", "settings"]:
        return True
    if argv[0] == "seal":
        return any(word == "--cert" or word.startswith("--cert=") for word in argv)
    if argv[0] == "import":
        return "-f" in argv or "--filename" in argv
    return False


@dataclass(frozen=True)
class DocLine:
    """One shell line of the docs that runs kstrata, and what the docs say it does."""

    block: Block
    line: str
    argvs: tuple[tuple[str, ...], ...]
    #: The output a console block shows under it (None: not shown).
    shown: str | None
    exit_code: int

    @property
    def offline(self) -> bool:
        return all(
            runs_offline(list(argv)) and shlex.join(argv) not in COVERED_ELSEWHERE
            for argv in self.argvs
        )


def console_steps(block: Block) -> list[tuple[str, str]]:
    """A console block's ``$ `` lines (continuations joined) and the output under each."""
    steps: list[tuple[str, str]] = []
    pending: str | None = None
    for raw in block.text.splitlines():
        if pending is not None:
            if raw.endswith("\\"):
                pending += raw[:-1] + " "
                continue
            steps.append((pending + raw, ""))
            pending = None
            continue
        if raw.startswith("$ "):
            if raw.endswith("\\"):
                pending = raw[2:-1] + " "
                continue
            steps.append((raw[2:], ""))
        elif steps:
            line, output = steps[-1]
            steps[-1] = (line, output + raw + "\n")
    return steps


def doc_lines(path: Path) -> list[DocLine]:
    found: list[DocLine] = []
    for block in fenced_blocks(path):
        if block.language not in SHELL_LANGUAGES:
            continue
        if block.language == "console":
            steps: list[tuple[str, str | None]] = list(console_steps(block))
        else:
            steps = [(line, None) for line in kstrata_command_lines(block)]
        for index, (line, shown) in enumerate(steps):
            argvs = tuple(tuple(argv) for argv in kstrata_invocations(line))
            if not argvs:
                continue
            code = 0
            after = steps[index + 1] if index + 1 < len(steps) else None
            if after is not None and after[0].strip() == "echo $?":
                code = int(str(after[1]).strip())
            found.append(DocLine(block, line, argvs, shown, code))
    return found


DOC_LINES = {path: doc_lines(path) for path in MARKDOWN}


def test_the_docs_have_offline_and_cluster_commands() -> None:
    lines = [line for found in DOC_LINES.values() for line in found]
    offline = [line for line in lines if line.offline]
    assert len(offline) >= 15
    assert {line.argvs[0][0] for line in offline} >= {
        "render", "validate", "seal", "completion", "import", "version", "unseal", "operator",
    }  # fmt: skip
    assert any(line.shown for line in offline)
    assert any(line.exit_code == 1 for line in offline)
    assert any("*" in line.line for line in offline)  # a shell glob, as users type


def test_every_documented_command_is_run_or_covered() -> None:
    """A kstrata command in the docs runs below, or names the test that runs it."""
    unaccounted = sorted(
        {
            f"{line.block.where}: kstrata {shlex.join(argv)}"
            for found in DOC_LINES.values()
            for line in found
            for argv in line.argvs
            if not runs_offline(list(argv)) and shlex.join(argv) not in COVERED_ELSEWHERE
        }
    )
    assert not unaccounted, (
        "run these in a test and add them to COVERED_ELSEWHERE with its name:\n"
        + "\n".join(unaccounted)
    )


def test_every_covered_elsewhere_entry_is_in_the_docs_and_its_test_exists() -> None:
    documented = {
        shlex.join(argv) for found in DOC_LINES.values() for line in found for argv in line.argvs
    }
    stale = sorted(set(COVERED_ELSEWHERE) - documented)
    assert not stale, f"no longer in the docs: {stale}"
    for where in COVERED_ELSEWHERE.values():
        for reference in re.findall(r"tests/\S+\.py(?:::\w+)?", where):
            file, _, function = reference.partition("::")
            assert (REPO / file).is_file(), reference
            if function:
                assert f"def {function}(" in (REPO / file).read_text(encoding="utf-8"), reference


def _canaries() -> dict[str, str]:
    """File contents the docs' commands read; none may appear in what they print."""
    return {
        name: f"canary-{name}-{uuid.uuid4().hex}"
        for name in ("password.txt", "db-password.txt", "api-key.txt", "prod.crt", "prod.key")
    }


def _workspace(root: Path, canaries: dict[str, str]) -> dict[str, str]:
    """A temporary copy of what the docs' offline commands read, plus what a user has at hand.

    The examples and the operator's settings as in the repository; the
    operator's public keys (``keys.json``, as ``kstrata keys export`` writes
    them) and its key backup (as ``kstrata keys backup`` writes it); the
    files the docs seal; SealedSecrets to recover; a fish completions
    directory in a temporary ``$HOME``.  Returns the environment to run in.
    """
    import base64
    from datetime import UTC, datetime

    from kstrata.crypto import FingerprintKey, KeyRing, PublicKeyBundle, generate_keypair

    shutil.copytree(EXAMPLES, root / "examples")
    shutil.copytree(REPO / "config", root / "config")
    created = datetime.now(UTC)
    keypair = generate_keypair(created=created)
    (root / "keys.json").write_text(PublicKeyBundle.of([keypair]).serialize(), encoding="utf-8")
    data = {
        name: base64.b64encode(entry).decode()
        for name, entry in KeyRing((keypair,)).to_secret_data().items()
    }
    data["fingerprint-key.json"] = base64.b64encode(
        FingerprintKey.generate(created=created).to_secret_entry()
    ).decode()
    backup = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kstrata-sealing-keys", "namespace": "kstrata-system"},
        "type": "Opaque",
        "data": data,
    }
    (root / "kstrata-keys.backup.yaml").write_text(yaml.safe_dump(backup), encoding="utf-8")
    for name, value in canaries.items():
        (root / name).write_text(value, encoding="utf-8")
    tls = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "payments-tls", "labels": {"app": "payments"}},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": canaries["prod.crt"], "tls.key": canaries["prod.key"]},
    }
    (root / "tls-secret.yaml").write_text(yaml.safe_dump(tls), encoding="utf-8")
    bin_dir = Path(sys.executable).parent  # where the installed kstrata script is
    home = root / "home"
    (home / ".config" / "fish" / "completions").mkdir(parents=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("KUBECONFIG", None)
    secrets = root / "deploy" / "secrets"
    secrets.mkdir(parents=True)
    for name, source in (("sealed.yaml", root), ("db.yaml", secrets)):
        sealed = subprocess.run(
            ["kstrata", "seal", "--cert", "keys.json", "-n", "payments", "--name", "db",
             "--from-file", "password=./db-password.txt"],
            cwd=root, env=env, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        (source / name).write_text(sealed, encoding="utf-8")
    return env


def _shell_for(line: str) -> list[str]:
    """bash, or zsh where the line's comment says it is for zsh (after compinit, as it says)."""
    comment = re.search(r"\s#\s*(.*)$", line)
    if comment and re.match(r"zsh\b", comment.group(1)):
        zsh = _installed("zsh")
        return [str(zsh), "-c", f"autoload -U compinit && compinit -u\n{line}"]
    return ["bash", "-c", line]


def _installed(name: str) -> Path:
    """A pinned package from tools/gotools/tools.toml (apt, as root), installed if missing."""
    installer = REPO / "tools" / "gotools" / "install.py"
    result = subprocess.run(
        [sys.executable, str(installer), name], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"tools/gotools/install.py {name}: {result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1])


def _without_leading_comment_lines(text: str) -> str:
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


DOCS_WITH_OFFLINE_LINES = [
    pytest.param(path, id=str(path.relative_to(REPO)))
    for path, found in DOC_LINES.items()
    if any(line.offline for line in found)
]


@pytest.mark.parametrize("path", DOCS_WITH_OFFLINE_LINES)
def test_offline_doc_commands_run_as_printed(path: Path, tmp_path: Path) -> None:
    """Each offline line, pasted into a shell in a copy of the clone, in the doc's order.

    It must exit as the doc says (0, or what a following ``$ echo $?``
    shows) and print what a console block shows under it, byte for byte;
    nothing it prints may hold a value it sealed.
    """
    canaries = _canaries()
    env = _workspace(tmp_path, canaries)
    failures: list[str] = []
    printed: dict[str, str] = {}
    for line in DOC_LINES[path]:
        if not line.offline:
            continue
        result = subprocess.run(
            _shell_for(line.line),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )
        where = f"{line.block.where}: {line.line}"
        printed[where] = result.stdout
        if result.returncode != line.exit_code:
            failures.append(f"{where}\n  exit {result.returncode}, not {line.exit_code}:\n"
                            f"{result.stdout[-2000:]}")  # fmt: skip
            continue
        if line.shown is not None and result.stdout != line.shown:
            failures.append(f"{where}\n  printed:\n{result.stdout}  the doc shows:\n{line.shown}")
        key = shlex.join(line.argvs[0])
        if key in SHOWN_AS_FILE:
            expected = (REPO / SHOWN_AS_FILE[key]).read_text(encoding="utf-8")
            if result.stdout != _without_leading_comment_lines(expected):
                failures.append(f"{where}\n  does not print {SHOWN_AS_FILE[key]}")
    assert not failures, "\n\n".join(failures)
    leaked = [where for where, out in printed.items() if any(v in out for v in canaries.values())]
    assert not leaked, f"a sealed value was printed by: {leaked}"


def test_offline_runs_would_catch_a_wrong_exit_code_or_output(tmp_path: Path) -> None:
    """The checks above can fail: a line whose shown output or exit code is wrong."""
    block = Block(
        REPO / "README.md",
        1,
        "console",
        "$ kstrata version\nkstrata 0.0.0-not-this\n$ echo $?\n0\n",
        None,
    )
    (line,) = [
        DocLine(block, text, tuple(tuple(a) for a in kstrata_invocations(text)), shown, 0)
        for text, shown in console_steps(block)
        if text != "echo $?"
    ]
    env = _workspace(tmp_path, _canaries())
    result = subprocess.run(
        _shell_for(line.line), cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == line.exit_code
    assert result.stdout != line.shown
    assert line.offline
    assert not DocLine(block, "kstrata list", (("list",),), None, 0).offline


def test_the_command_line_extraction_finds_what_it_should() -> None:
    block = Block(REPO, 1, "console", "$ FOO=1 kstrata get a \\\n  --key b | jq .\nout\n", None)
    lines = list(kstrata_command_lines(block))
    assert [argv for line in lines for argv in kstrata_invocations(line)] == [
        ["get", "a", "--key", "b"]
    ]
    # KEY=VALUE words after the command are arguments, not environment settings.
    assert list(kstrata_invocations("A=1 kstrata set app x=1 -n b")) == [
        ["set", "app", "x=1", "-n", "b"]
    ]
    assert list(kstrata_invocations("source <(kstrata completion bash)  # bash")) == [
        ["completion", "bash"]
    ]
    assert list(kstrata_invocations("kubectl kstrata list -A && python -m kstrata version")) == [
        ["list", "-A"],
        ["version"],
    ]


# --- YAML manifests in the docs --------------------------------------------


def kstrata_documents(text: str) -> list[dict[str, Any]]:
    return [
        doc
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("kstrata.dev/")
    ]


YAML_BLOCK_LIST = all_blocks(YAML_LANGUAGES)
YAML_BLOCKS = [pytest.param(block, id=block.where) for block in YAML_BLOCK_LIST]


def test_there_are_copied_and_validated_examples() -> None:
    assert len([block for block in YAML_BLOCK_LIST if block.copied_from]) >= 3
    assert any(kstrata_documents(b.text) for b in YAML_BLOCK_LIST if not b.copied_from)


@pytest.mark.parametrize("block", YAML_BLOCKS)
def test_every_yaml_block_is_a_copy_or_validates(block: Block, tmp_path: Path) -> None:
    if block.copied_from is not None:
        source = REPO / block.copied_from
        assert source.is_file(), f"{block.where}: {block.copied_from} does not exist"
        assert block.copied_from.startswith("examples/"), "copies come from examples/"
        assert block.text == source.read_text(encoding="utf-8"), (
            f"{block.where} differs from {block.copied_from}"
        )
        return
    documents = kstrata_documents(block.text)
    for document in documents:
        violations = validate_structure(document, source=block.where)
        assert not violations, f"{block.where}: {[v.path + ': ' + v.message for v in violations]}"
    if any(doc.get("kind") == "ConfigProfile" for doc in documents):
        manifest = tmp_path / "block.yaml"
        manifest.write_text(block.text, encoding="utf-8")
        # The shipped examples serve as bases, so a block may extend platform-defaults.
        bases = sorted((EXAMPLES / "config").glob("*.yaml"))
        problems = validate_files([manifest, *bases], None)
        assert not problems, f"{block.where}: {[p.describe() for p in problems]}"


def test_offline_validation_of_blocks_can_fail(tmp_path: Path) -> None:
    bad = "apiVersion: kstrata.dev/v1alpha1\nkind: ConfigProfile\nmetadata: {name: x}\nspec:\n"
    bad += "  base: {a: 1}\n  schema: {properties: {a: {type: string}}}\n  bogus: 1\n"
    (document,) = kstrata_documents(bad)
    assert [v.path for v in validate_structure(document, source="x")] == ["spec.bogus"]
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(bad.replace("  bogus: 1\n", ""), encoding="utf-8")
    assert validate_files([manifest], None)


# --- what the examples the guide points at do ------------------------------


def _without_leading_comments(text: str) -> str:
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def test_the_per_environment_files_import_into_the_checkout_example() -> None:
    from kstrata.app.profile_import import import_files

    folder = EXAMPLES / "migration" / "checkout"
    result = import_files(
        folder / "config.yaml",
        [("staging", folder / "config.staging.yaml"), ("prod", folder / "config.prod.yaml")],
        name="checkout",
        namespace=None,
        full=True,
    )
    expected = (EXAMPLES / "config" / "checkout.yaml").read_text(encoding="utf-8")
    assert result.manifest == _without_leading_comments(expected)


def test_the_hand_made_config_map_imports_into_the_orders_example() -> None:
    from kstrata.app.profile_import import import_config_map
    from support.fake_api import FakeApi

    config_map = yaml.safe_load((EXAMPLES / "migration" / "orders-configmap.yaml").read_text())
    api = FakeApi({("configmaps", "shop", "orders-config"): config_map})
    result = import_config_map(api, "shop", "orders-config", profile_name="orders")
    assert api.writes == []  # an import reads; it writes nothing to the cluster
    expected = (EXAMPLES / "migration" / "orders.yaml").read_text(encoding="utf-8")
    assert result.manifest == _without_leading_comments(expected)
    (hint,) = result.hints
    guide = GUIDE.read_text(encoding="utf-8")
    assert f"hint: {hint}\n" in guide
    assert "kubectl annotate configmap orders-config -n shop kstrata.dev/adopt=true\n" in guide


def test_the_invalid_example_fails_exactly_as_the_guide_shows() -> None:
    # The guide shows the path relative to the repository, as typed there.
    relative = Path("examples/invalid/payments.yaml")
    problems = validate_files([REPO / relative], None)
    lines = [p.describe().replace(str(REPO / relative), str(relative)) for p in problems]
    assert len(lines) == 3
    guide = GUIDE.read_text(encoding="utf-8")
    shown = "$ kstrata validate -f examples/invalid/payments.yaml\n" + "".join(
        line + "\n" for line in lines
    )
    assert shown in guide


def test_the_argo_cd_example_ignores_exactly_what_kstrata_writes() -> None:
    from kstrata.kube.api import WORKLOADS
    from kstrata.wellknown import HISTORY_ANNOTATION, REVISION_ANNOTATION, REVISIONS_ANNOTATION

    def pointer(*parts: str) -> str:
        return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)

    application = yaml.safe_load((EXAMPLES / "gitops" / "argocd-application.yaml").read_text())
    ignored = {
        (rule["group"], rule["kind"]): set(rule["jsonPointers"])
        for rule in application["spec"]["ignoreDifferences"]
    }
    workload = {
        pointer("metadata", "annotations", REVISIONS_ANNOTATION),
        pointer("spec", "template", "metadata", "annotations", REVISIONS_ANNOTATION),
    }
    for resource in WORKLOADS:
        assert ignored.pop((resource.group, resource.kind)) == workload
    history = {
        pointer("metadata", "annotations", REVISION_ANNOTATION),
        pointer("metadata", "annotations", HISTORY_ANNOTATION),
    }
    for kind in ("ConfigProfile", "SealedSecret"):
        assert history <= ignored.pop(("kstrata.dev", kind))
    assert not ignored
    assert "RespectIgnoreDifferences=true" in application["spec"]["syncPolicy"]["syncOptions"]


# --- operations.md ----------------------------------------------------------


def _metrics() -> dict[str, Any]:
    from prometheus_client import Counter, Gauge, Histogram
    from prometheus_client.core import GaugeMetricFamily

    import kstrata.metrics

    found: dict[str, Any] = {}
    for value in vars(kstrata.metrics).values():
        if isinstance(value, Counter | Gauge | Histogram):
            suffix = "_total" if isinstance(value, Counter) else ""
            found[value._name + suffix] = value
    # Counted at scrape by a collector of its own: its family says type and labels.
    (family,) = kstrata.metrics.OBJECTS.describe()
    assert isinstance(family, GaugeMetricFamily)
    found[family.name] = _Described(family.type, tuple(family._labelnames))
    return found


class _Described:
    """A collector's metric family, shaped like a metric object for the checks below."""

    def __init__(self, kind: str, labels: tuple[str, ...]) -> None:
        self.kind, self._labelnames = kind, labels


def test_every_metric_is_in_the_operations_table() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    metrics = _metrics()
    assert len(metrics) >= 10
    for name, metric in metrics.items():
        rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, name
        cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
        kind = metric.kind if isinstance(metric, _Described) else type(metric).__name__.lower()
        assert cells[1] == kind, name
        assert set(metric._labelnames) <= set(re.findall(r"`(\w+)`", cells[2])), name


def test_every_metric_the_docs_mention_exists() -> None:
    metrics = _metrics()
    known = set(metrics)
    for name, metric in metrics.items():
        if type(metric).__name__ == "Histogram":
            known |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    mentioned = {
        name
        for path in MARKDOWN
        for name in re.findall(r"\bkstrata_[a-z_]+\b", path.read_text(encoding="utf-8"))
    }
    assert "kstrata_operator_up" in mentioned
    assert mentioned <= known, sorted(mentioned - known)


def test_every_operator_setting_is_in_the_operations_table() -> None:
    from dataclasses import fields

    from kstrata.settings import Settings

    text = OPERATIONS.read_text(encoding="utf-8")
    run = dict(leaf_commands(build_parser()))["operator run"]
    flags = set(documented_names(run))
    for setting in fields(Settings):
        if setting.name == "extra":
            continue
        rows = [line for line in text.splitlines() if line.startswith(f"| `{setting.name}` |")]
        assert len(rows) == 1, setting.name
        flag_cell = rows[0].strip("|").split("|")[2]
        for flag in re.findall(r"`(-[-\w]+)`", flag_cell):
            assert flag in flags, f"{setting.name}: {flag} is not a flag of kstrata operator run"


EXAMPLE_MANIFESTS = sorted(
    path
    for path in EXAMPLES.rglob("*.yaml")
    if "invalid" not in path.relative_to(EXAMPLES).parts
    and kstrata_documents(path.read_text(encoding="utf-8"))
)


def test_there_are_example_manifests() -> None:
    names = {path.relative_to(EXAMPLES).as_posix() for path in EXAMPLE_MANIFESTS}
    assert {"config/payments.yaml", "config/checkout.yaml", "migration/orders.yaml"} <= names


@pytest.mark.parametrize(
    "path", EXAMPLE_MANIFESTS, ids=[p.relative_to(EXAMPLES).as_posix() for p in EXAMPLE_MANIFESTS]
)
def test_every_example_manifest_validates_offline(path: Path) -> None:
    for document in kstrata_documents(path.read_text(encoding="utf-8")):
        assert not validate_structure(document, source=str(path))
    bases = sorted((EXAMPLES / "config").glob("*.yaml"))
    problems = validate_files([path, *[base for base in bases if base != path]], None)
    assert not problems, [problem.describe() for problem in problems]


# --- links -------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_github_anchor_matches_githubs_rules() -> None:
    assert github_anchor("The operator's settings") == "the-operators-settings"
    assert github_anchor("History, diff and rollback") == "history-diff-and-rollback"
    assert github_anchor("`kstrata keys list`") == "kstrata-keys-list"


def prose(path: Path) -> str:
    """The text outside fenced blocks and inline code, where links live."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


LINKS = [
    (path, target)
    for path in MARKDOWN
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(path))
    if not target.startswith(("http://", "https://"))
]


@pytest.mark.parametrize(
    ("source", "target"),
    LINKS,
    ids=[f"{p.relative_to(REPO)}->{t}" for p, t in LINKS],
)
def test_every_relative_link_resolves(source: Path, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    linked = (source.parent / file_part).resolve() if file_part else source
    assert linked.exists(), f"{source.relative_to(REPO)} links to missing {file_part}"
    if anchor and linked.suffix == ".md":
        anchors = {github_anchor(title) for title in sections(linked)}
        assert anchor in anchors, (
            f"{source.relative_to(REPO)}: no heading #{anchor} in {linked.name}"
        )


def _known_reasons() -> set[str]:
    import kstrata.errors
    from kstrata import wellknown

    found = {
        str(value.reason)
        for value in vars(kstrata.errors).values()
        if isinstance(value, type) and issubclass(value, kstrata.errors.KstrataError)
    }
    # The reasons no error class owns (test_wellknown keeps them out of other modules).
    found |= {str(value) for name, value in vars(wellknown).items() if name.endswith("_REASON")}
    for source in (REPO / "operator" / "kstrata").rglob("*.py"):
        found |= set(re.findall(r'reason="([A-Za-z]+)"', source.read_text(encoding="utf-8")))
    return found


def test_every_reason_in_the_troubleshooting_table_exists() -> None:
    table = sections(OPERATIONS)["An object is not Ready"]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {
        reason for row in rows for reason in re.findall(r"`([A-Za-z]+)`", row.split("|")[1])
    }
    assert len(documented) >= 10
    assert documented <= _known_reasons(), sorted(documented - _known_reasons())

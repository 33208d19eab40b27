"""``kstrata __complete``: commands, flags and choices read from the parser, offline.

The hidden command is what the completion scripts call at each TAB; these
tests pin its protocol (a directive line, then candidates) and that it follows
the parser, so a new flag is completed without anyone touching a list.
Names from a cluster are tested against the real control plane in
tests/cluster/test_cli_completion.py, the scripts in real shells in
test_completion_shells.py.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kstrata.app.completion import NAMED_OBJECTS, NAMES_DEADLINE, SHELLS, complete, script
from kstrata.cli.common import Parser
from kstrata.cli.completion_cmd import TIMEOUT_VARIABLE, _deadline
from kstrata.cli.main import COMMAND_GROUPS, build_parser, main
from kstrata.kube import api, names
from kstrata.kube.names import contexts, read_target


@pytest.fixture(autouse=True)
def no_kubeconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No cluster at all: $KUBECONFIG names nothing and $HOME has no ~/.kube/config."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def run(*words: str) -> list[str]:
    out, err = io.StringIO(), io.StringIO()
    assert main(["__complete", *words], out=out, err=err) == 0
    assert err.getvalue() == ""
    return out.getvalue().splitlines()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_is_offered_and_the_hidden_one_is_not() -> None:
    assert run("") == ["words", *COMMAND_GROUPS]
    assert "__complete" not in run("")


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["ge"], ["get"]),
        (["r"], ["render", "rollback", "reseal"]),
        (["keys", "r"], ["rotate"]),
        (["operator", ""], ["run", "settings"]),
        (["--kubeconfig", "k", "--context", "c", "v"], ["validate", "version"]),
        (["frobnicate", ""], []),
    ],
)
def test_commands_and_subcommands(words: list[str], expected: list[str]) -> None:
    assert run(*words) == ["words", *expected]


def test_every_flag_of_every_command_comes_from_its_parser() -> None:
    """Walk the real parser: each (sub)command offers exactly its own option strings."""

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> int:
        checked = 0
        children = subcommands(parser)
        if path and not children:
            options = [
                option
                for action in parser._actions
                if action.help is not argparse.SUPPRESS  # hidden flags stay hidden
                for option in action.option_strings
            ]
            assert run(*path, "-") == ["words", *options], path
            checked += 1
        for name, child in children.items():
            checked += walk(child, [*path, name])
        return checked

    assert walk(build_parser(None), []) >= len(COMMAND_GROUPS)


def test_a_flag_added_to_a_parser_is_completed_without_a_list_to_update() -> None:
    parser = Parser(prog="kstrata")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)
    brand_new = commands.add_parser("brand-new", help="x")
    brand_new.add_argument("--shiny-flag", choices=("on", "off"))
    assert complete(parser, ["brand-new", "--sh"], None).words == ["--shiny-flag"]
    assert complete(parser, ["brand-new", "--shiny-flag", ""], None).words == ["on", "off"]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["render", "-o", ""], ["yaml", "json", "env", "properties"]),
        (["render", "--output", "j"], ["json"]),
        (["render", "--out", "p"], ["properties"]),  # argparse's unique prefix
        (["render", "--output=j"], ["--output=json"]),  # zsh and fish keep --opt=value whole
        (["render", "--output", "=", "j"], ["json"]),  # bash splits it at "="
        (["render", "--output", "="], ["yaml", "json", "env", "properties"]),
        (["history", "--kind", ""], ["profile", "secret"]),
        (["completion", ""], list(SHELLS)),
        (["completion", "f"], ["fish"]),
        (["operator", "run", "--log-level", "w"], ["warning"]),
        (["keys", "rotate", "--suite", "ml"], ["mlkem768-x25519"]),
    ],
)
def test_choices(words: list[str], expected: list[str]) -> None:
    assert run(*words) == ["words", *expected]


@pytest.mark.parametrize(
    ("words", "directive"),
    [
        (["render", "-f", ""], "files"),
        (["render", "--filename=x"], "files"),
        (["seal", "--cert", "c"], "files"),
        (["get", "x", "--kubeconfig", ""], "files"),
        (["watch", ""], "dirs"),
        (["operator", "run", "--config-dir", ""], "dirs"),
    ],
)
def test_paths_are_left_to_the_shell(words: list[str], directive: str) -> None:
    assert run(*words) == [directive]


def test_after_a_flag_value_the_next_word_is_a_flag_again() -> None:
    assert "--env" in run("render", "-o", "json", "")
    assert run("render", "-f", "x.yaml", "--e") == ["words", "--env"]


def test_no_cluster_means_no_names_and_no_error() -> None:
    assert run("get", "") == ["words"]
    assert run("history", "-n", "") == ["words"]
    assert run("get", "--context", "") == ["words"]


def test_the_named_objects_table_matches_the_parser() -> None:
    """Each command said to take a kstrata object's NAME has that positional."""
    commands = subcommands(build_parser(None))
    for command in NAMED_OBJECTS:
        positionals = [a.metavar for a in commands[command]._actions if not a.option_strings]
        assert positionals[0] == "NAME", command


def test_contexts_come_from_the_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(json.dumps(kubeconfig_with({"token": "t"})))
    assert contexts(kubeconfig) == ["main", "other"]
    assert run("list", "--kubeconfig", str(kubeconfig), "--context", "o") == ["words", "other"]
    assert run("list", "--kubeconfig", str(kubeconfig), "--context=m") == [
        "words",
        "--context=main",
    ]


def kubeconfig_with(user: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "main",
        "contexts": [
            {"name": "main", "context": {"cluster": "c", "user": "u", "namespace": "team"}},
            {"name": "other", "context": {"cluster": "c", "user": "u"}},
        ],
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": "https://127.0.0.1:6443/", "certificate-authority": "ca"},
            }
        ],
        "users": [{"name": "u", "user": user}],
    }


def test_the_kubeconfig_is_read_without_the_kubernetes_client(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    (tmp_path / "token").write_text("from-a-file\n")
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_with({"tokenFile": "token"})))
    target = read_target(kubeconfig)
    assert target is not None
    assert (target.server, target.namespace, target.ca_path, target.token) == (
        "https://127.0.0.1:6443",
        "team",
        str(tmp_path / "ca"),
        "from-a-file",
    )
    other = read_target(kubeconfig, "other")
    assert other is not None
    assert other.namespace == "default"
    assert "from-a-file" not in repr(target)  # credentials stay out of reprs


@pytest.mark.parametrize(
    "user",
    [
        {"exec": {"command": "aws", "args": ["eks", "get-token"]}},
        {"auth-provider": {"name": "oidc"}},
    ],
)
def test_plugins_are_never_run_for_a_completion(tmp_path: Path, user: dict[str, object]) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_with(user)))
    assert read_target(kubeconfig) is None


@pytest.mark.parametrize("content", ["", "[1, 2]", "{current-context: gone}", ": : :"])
def test_a_broken_kubeconfig_gives_nothing(tmp_path: Path, content: str) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(content)
    assert read_target(kubeconfig) is None
    assert run("get", "--kubeconfig", str(kubeconfig), "") == ["words"]


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_prints_the_script(shell: str) -> None:
    out = io.StringIO()
    assert main(["completion", shell], out=out) == 0
    assert out.getvalue() == script(shell)
    assert "__complete" in out.getvalue()
    assert "kubectl-kstrata" in out.getvalue()


def test_completion_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "Examples:" in shown
    assert "  source <(kstrata completion bash)\n" in shown


def test_an_unknown_shell_is_a_usage_error() -> None:
    err = io.StringIO()
    assert main(["completion", "tcsh"], out=io.StringIO(), err=err) == 2
    assert "tcsh" not in err.getvalue()  # usage errors never repeat what was typed


def test_complete_imports_neither_kopf_nor_the_kubernetes_client() -> None:
    """What a TAB costs: no kopf, no client, even when a lookup is attempted."""
    code = (
        "import sys, io\n"
        "from kstrata.cli.main import main\n"
        "main(['__complete', 'get', '--kubeconfig', '/nonexistent', ''], out=io.StringIO())\n"
        "main(['__complete', 'render', '-'], out=io.StringIO())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_the_listing_paths_are_the_api_modules_paths() -> None:
    """names.py keeps its own copies (importing kube.api costs a TAB too much); equal."""
    assert names.CONFIG_PROFILES.path("ns") == api.CONFIG_PROFILES.path("ns")
    assert names.SEALED_SECRETS.path("ns") == api.SEALED_SECRETS.path("ns")
    assert names.NAMESPACES.path("ns") == api.NAMESPACES.path()


def test_a_tab_imports_no_http_client_stack() -> None:
    code = (
        "import sys, io\n"
        "from kstrata.cli.main import main\n"
        "main(['__complete', 'get', '--kubeconfig', '/nonexistent', ''], out=io.StringIO())\n"
        "import kstrata.kube.names\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'urllib3', 'requests', 'kopf',"
        " 'kubernetes', 'aiohttp'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.5", 0.5),
        ("3", 3.0),
        ("", NAMES_DEADLINE),
        ("soon", NAMES_DEADLINE),
        ("0", NAMES_DEADLINE),
        ("-1", NAMES_DEADLINE),
        ("nan", NAMES_DEADLINE),
        ("inf", NAMES_DEADLINE),
        ("600", NAMES_DEADLINE),
    ],
)
def test_the_deadline_can_be_widened_within_reason(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: float
) -> None:
    monkeypatch.setenv(TIMEOUT_VARIABLE, value)
    assert _deadline() == expected


def test_kubectls_plugin_completion_format() -> None:
    """``__complete --kubectl``: candidates, then cobra's directive (kubectl 1.26+)."""
    out = io.StringIO()
    assert main(["__complete", "--kubectl", "ge"], out=out) == 0
    assert out.getvalue() == "get\n:4\n"
    out = io.StringIO()
    assert main(["__complete", "--kubectl", "watch", ""], out=out) == 0
    assert out.getvalue() == ":16\n"


def test_kubectl_complete_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    from kstrata.cli.completion_cmd import kubectl_complete

    monkeypatch.setattr(sys, "argv", ["kubectl_complete-kstrata", "completion", "z"])
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with pytest.raises(SystemExit) as exit_request:
        kubectl_complete()
    assert (exit_request.value.code, out.getvalue()) == (0, "zsh\n:4\n")

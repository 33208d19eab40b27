"""``kstrata completion bash|zsh|fish`` in the real shells, driven without a person.

bash is the machine's own; zsh and fish are the Debian packages pinned in
tools/gotools/tools.toml, installed by tools/gotools/install.py (apt, root) when
missing.  Three ways in, each the shell's own completion machinery:

* bash and zsh run interactively on a pseudo-terminal: the test types a line
  and TAB, then a key bound to a function that writes the line editor's buffer
  (``$READLINE_LINE``, ``$BUFFER``) to a file.  What TAB inserted is what a
  person would see; for bash this includes readline's own split of
  ``--output=js`` at ``=``.
* bash's function is also called directly with ``COMP_WORDS``/``COMP_CWORD``
  to read every candidate of an ambiguous word (``COMPREPLY``).
* zsh's ``compadd`` is wrapped (it calls the builtin) to record candidates.
* fish answers ``complete -C 'kstrata ...'`` with its candidates.

The scripts call ``kstrata __complete``: the venv's ``kstrata`` is first on PATH.
No cluster here, so no names (tests/cluster/test_cli_completion.py has those).
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kstrata.app.completion import script
from kstrata.cli.main import build_parser
from support.waiting import wait_for

REPO = Path(__file__).resolve().parents[3]
INSTALLER = REPO / "tools" / "gotools" / "install.py"
VENV_BIN = Path(sys.executable).parent
SHOW_KEY = b"\x14"  # Ctrl-T, bound to "write the buffer to a file"


def installed(name: str) -> Path:
    result = subprocess.run(
        [sys.executable, str(INSTALLER), name], capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        pytest.fail(f"tools/gotools/install.py {name} failed:\n{result.stderr}", pytrace=False)
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def zsh() -> Path:
    return installed("zsh")


@pytest.fixture(scope="module")
def fish() -> Path:
    return installed("fish")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with known files, no kubeconfig anywhere, the venv's kstrata on PATH.

    The shells' own files (scripts, rc files, logs) go beside it, in $HOME.
    """
    work = tmp_path / "work"
    work.mkdir()
    (work / "profile.yaml").write_text("x: 1\n")
    (work / "configs").mkdir()
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ZDOTDIR", str(tmp_path))
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    return work


def scripts(directory: Path) -> dict[str, Path]:
    found = {}
    for shell in ("bash", "zsh", "fish"):
        path = directory.parent / f"kstrata.{shell}"
        path.write_text(script(shell))
        found[shell] = path
    return found


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


# --- a line typed into an interactive shell on a pseudo-terminal ------------------------


class Terminal:
    """An interactive shell on a pty; ``tab`` types a line, TAB, and reads the buffer back."""

    def __init__(self, argv: list[str], log: Path, cwd: Path) -> None:
        self.log = log
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env={**os.environ, "TERM": "dumb"},
            start_new_session=True,
        )
        os.close(slave)
        self.seen = b""
        self._wait(lambda: b"READY" in self.seen, "the shell to start")

    def _drain(self) -> None:
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.seen += chunk

    def _wait(self, done: object, what: str) -> None:
        def probe() -> bool:
            self._drain()
            return bool(done())  # type: ignore[operator]

        wait_for(probe, timeout=20, what=what)

    def tab(self, line: str) -> str:
        """Type ``line``, TAB, then the show key; return the buffer; clear the line."""
        before = self.log.read_text() if self.log.exists() else ""
        os.write(self.master, line.encode() + b"\t" + SHOW_KEY)
        self._wait(
            lambda: self.log.exists() and len(self.log.read_text()) > len(before),
            f"the buffer after {line!r} TAB",
        )
        buffer = self.log.read_text()[len(before) :].split("BUFFER:", 1)[1].rstrip("\n")
        os.write(self.master, b"\x15")  # Ctrl-U: kill the line for the next one
        return buffer

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self.master)


@pytest.fixture
def bash_terminal(workdir: Path) -> Iterator[Terminal]:
    completion = scripts(workdir)["bash"]
    log = workdir.parent / "buffer.log"
    rc = workdir.parent / "bashrc"
    rc.write_text(
        f"PS1='$ '\nsource {completion}\n"
        f'bind -x \'"\\C-t": printf "BUFFER:%s\\n" "$READLINE_LINE" >> {log}\'\n'
        "echo READY\n"
    )
    terminal = Terminal(["bash", "--noprofile", "--rcfile", str(rc), "-i"], log, workdir)
    yield terminal
    terminal.close()


@pytest.fixture
def zsh_terminal(zsh: Path, workdir: Path) -> Iterator[Terminal]:
    completion = scripts(workdir)["zsh"]
    log = workdir.parent / "buffer.log"
    (workdir.parent / ".zshrc").write_text(
        "PS1='%% '\n"
        "autoload -U compinit && compinit -u -D\n"
        f"source {completion}\n"
        f'compadd() {{ print -rl -- CANDIDATES "$@" >> {workdir.parent / "compadd.log"}; '
        'builtin compadd "$@" }\n'
        f'_show_buffer() {{ print -r -- "BUFFER:$BUFFER" >> {log} }}\n'
        "zle -N _show_buffer\nbindkey '^T' _show_buffer\n"
        "print READY\n"
    )
    terminal = Terminal([str(zsh), "-i"], log, workdir)
    yield terminal
    terminal.close()


@pytest.mark.parametrize(
    ("line", "after_tab"),
    [
        ("kstrata ge", "kstrata get "),
        ("kstrata completion fi", "kstrata completion fish "),
        ("kstrata render --out", "kstrata render --output "),
        ("kstrata render --output=pr", "kstrata render --output=properties "),
        ("kstrata render -o js", "kstrata render -o json "),
        ("kstrata operator run --log-level w", "kstrata operator run --log-level warning "),
        ("kstrata render -f prof", "kstrata render -f profile.yaml "),
        ("kstrata watch con", "kstrata watch configs/"),
        ("kubectl-kstrata keys ro", "kubectl-kstrata keys rotate "),
    ],
)
def test_bash_tab_completes_the_line(bash_terminal: Terminal, line: str, after_tab: str) -> None:
    assert bash_terminal.tab(line) == after_tab


@pytest.mark.parametrize(
    ("line", "after_tab"),
    [
        ("kstrata ge", "kstrata get "),
        ("kstrata completion fi", "kstrata completion fish "),
        ("kstrata render --out", "kstrata render --output "),
        ("kstrata render --output=pr", "kstrata render --output=properties "),
        ("kstrata operator run --log-level w", "kstrata operator run --log-level warning "),
        ("kstrata render -f prof", "kstrata render -f profile.yaml "),
        ("kstrata watch con", "kstrata watch configs/"),
        ("kubectl-kstrata keys ro", "kubectl-kstrata keys rotate "),
    ],
)
def test_zsh_tab_completes_the_line(zsh_terminal: Terminal, line: str, after_tab: str) -> None:
    assert zsh_terminal.tab(line) == after_tab


def test_zsh_offers_every_candidate_of_an_ambiguous_word(
    zsh_terminal: Terminal, workdir: Path
) -> None:
    assert zsh_terminal.tab("kstrata render --output=") == "kstrata render --output="
    recorded = (workdir.parent / "compadd.log").read_text().split("CANDIDATES\n")
    ours = [block.splitlines() for block in recorded if block.startswith("-Q\n--\n")]
    assert ours[-1][2:] == ["--output=yaml", "--output=json", "--output=env", "--output=properties"]


# --- bash's function called directly: every candidate ----------------------------------


def bash_candidates(workdir: Path, *comp_words: str) -> list[str]:
    """COMPREPLY for COMP_WORDS (as readline splits them) with the cursor on the last word."""
    program = (
        'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
        '_kstrata_complete; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        ["bash", "-c", program, "bash", str(scripts(workdir)["bash"]), *comp_words],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=workdir,
        check=True,
    )
    return [line for line in result.stdout.splitlines() if line]


@pytest.mark.parametrize(
    ("comp_words", "expected"),
    [
        (["kstrata", "r"], ["render", "reseal", "rollback"]),
        (["kstrata", "history", "--kind", ""], ["profile", "secret"]),
        (["kstrata", "render", "--output", "=", ""], ["yaml", "json", "env", "properties"]),
        (["kstrata", "render", "--output", "="], ["=yaml", "=json", "=env", "=properties"]),
        (["kstrata", "render", "-f", "x.yaml", "--e"], ["--env"]),
        (["kstrata", "render", "-f", ""], ["configs", "profile.yaml"]),
        (["kstrata", "get", ""], []),
    ],
)
def test_bash_candidates(workdir: Path, comp_words: list[str], expected: list[str]) -> None:
    assert sorted(bash_candidates(workdir, *comp_words)) == sorted(expected)


# --- fish: complete -C -----------------------------------------------------------------


def fish_candidates(fish: Path, workdir: Path, line: str) -> list[str]:
    result = subprocess.run(
        [
            str(fish),
            "--no-config",
            "-c",
            "source $argv[1]; complete -C $argv[2]",
            str(scripts(workdir)["fish"]),
            line,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=workdir,
        check=True,
    )
    assert result.stderr == ""
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("kstrata ge", ["get"]),
        ("kstrata r", ["render", "reseal", "rollback"]),
        ("kstrata completion ", ["bash", "fish", "zsh"]),
        (
            "kstrata render --output=",
            [f"--output={f}" for f in ("env", "json", "properties", "yaml")],
        ),
        ("kstrata render -o j", ["json"]),
        ("kstrata operator run --log-", ["--log-format", "--log-level"]),
        ("kstrata render -f prof", ["profile.yaml"]),
        ("kstrata watch con", ["configs/\tDirectory"]),  # fish describes directories
        ("kstrata get ", []),
    ],
)
def test_fish_complete(fish: Path, workdir: Path, line: str, expected: list[str]) -> None:
    assert sorted(fish_candidates(fish, workdir, line)) == sorted(expected)


def test_fish_subcommands_are_the_parsers(fish: Path, workdir: Path) -> None:
    """Whatever `keys` has today, exactly, and under the plugin's name too."""
    commands = subcommands(build_parser(["keys"]))["keys"]
    expected = sorted(subcommands(commands))
    assert "rotate" in expected
    assert sorted(fish_candidates(fish, workdir, "kubectl-kstrata keys ")) == expected


def test_zsh_parses_the_script(zsh: Path, workdir: Path) -> None:
    result = subprocess.run(
        [str(zsh), "-n", str(scripts(workdir)["zsh"])], capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_a_tab_costs_no_visible_time_offline(workdir: Path) -> None:
    """Recorded, and bounded loosely: Python's start on a busy shared machine varies."""
    timings = []
    for _ in range(5):
        started = time.monotonic()
        subprocess.run(
            [str(VENV_BIN / "kstrata"), "__complete", "render", "--output", ""],
            capture_output=True,
            check=True,
            timeout=30,
        )
        timings.append(time.monotonic() - started)
    timings.sort()
    print(
        f"kstrata __complete (flags, offline): min {timings[0] * 1000:.0f} ms, "
        f"median {timings[2] * 1000:.0f} ms"
    )
    assert timings[0] < 1.0

"""Hostile input to the CLI: endless files, huge files, pipes, slow patterns.

Every path a command reads is bounded before it is read (``kstrata.files``):
``/dev/zero``, a FIFO, a file one byte over the limit and too much standard
input each end in a clear error that names the path and the limit, at once
and in little memory.  A schema pattern that makes Python's ``re`` backtrack
for minutes is decided by ``kstrata validate`` in a fraction of a second, and
the offline CLI loads the regex engine only when a schema has a pattern.
"""

from __future__ import annotations

import io
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kstrata.app import history_commands
from kstrata.cli.main import main
from kstrata.domain.jsonvalue import DEFAULT_LIMITS
from kstrata.errors import InputLimitError, UsageError

LIMIT = DEFAULT_LIMITS.max_bytes
BUNDLE = "bundle.json"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def seal_argv(*extra: str) -> list[str]:
    return ["seal", "-n", "apps", "--name", "db", "--cert", BUNDLE, *extra]


# Every command that reads a path the user names, with that path set to {path}.
READERS = {
    "render -f": ["render", "-f", "{path}"],
    "validate -f": ["validate", "-f", "{path}"],
    "import -f": ["import", "-f", "{path}"],
    "import --env": ["import", "-f", "base.yaml", "--env", "prod={path}"],
    "seal -f": [*seal_argv("-f", "{path}")],
    "seal --from-file": [*seal_argv("--from-file", "key={path}")],
    "seal --merge-into": [*seal_argv("--from-literal", "a=b", "--merge-into", "{path}")],
    "seal --cert": [
        "seal",
        "-n",
        "apps",
        "--name",
        "db",
        "--cert",
        "{path}",
        "--from-literal",
        "a=b",
    ],
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text("a: 1\n")
    (tmp_path / BUNDLE).write_text("{}")
    return tmp_path


def argv_for(command: str, path: str) -> list[str]:
    return [part.replace("{path}", path) for part in READERS[command]]


def limited_run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``kstrata`` in a child limited to 1 GiB of address space, with a deadline."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [sys.executable, "-m", "kstrata", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=20,
        preexec_fn=limit_memory,
        check=False,
    )


@pytest.mark.parametrize("command", sorted(READERS))
def test_dev_zero_fails_fast_with_a_clear_message(workdir: Path, command: str) -> None:
    # Through a symbolic link with a YAML name, so import's file type check passes too.
    (workdir / "zero.yaml").symlink_to("/dev/zero")
    started = time.monotonic()
    result = limited_run(argv_for(command, "zero.yaml"), workdir)
    assert time.monotonic() - started < 10
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "MemoryError" not in result.stderr
    assert "not a regular file" in result.stderr
    assert re.search(r"of at most \d+ bytes are read", result.stderr)  # the limit is named
    if command != "seal --from-file":  # KEY=PATH: the path may be a mistyped value
        assert "zero.yaml" in result.stderr


def test_dev_zero_itself(workdir: Path) -> None:
    result = limited_run(["validate", "-f", "/dev/zero"], workdir)
    assert result.returncode == 2
    assert result.stderr == (
        f"error: /dev/zero: not a regular file (only regular files of at most {LIMIT} bytes "
        "are read; devices, pipes and directories are not)\n"
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize("command", sorted(READERS))
def test_a_fifo_is_refused_without_waiting_for_a_writer(workdir: Path, command: str) -> None:
    fifo = workdir / "pipe.yaml"
    os.mkfifo(fifo)
    code, _, err = run(*argv_for(command, str(fifo)))
    assert code == 2
    assert "not a regular file" in err


@pytest.mark.parametrize("command", ["render -f", "validate -f", "import -f", "seal -f"])
def test_a_file_one_byte_over_the_limit_is_refused_unread(workdir: Path, command: str) -> None:
    big = workdir / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(LIMIT + 1)  # sparse: reading it would take the limit in memory
    code, _, err = run(*argv_for(command, str(big)))
    assert code == 1
    assert f"{big}: larger than the limit of {LIMIT} bytes" in err


def test_standard_input_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.BytesIO(b"#" * (LIMIT + 10))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stream))
    code, _, err = run("validate", "-f", "-")
    assert code == 1
    assert f"<stdin>: larger than the limit of {LIMIT} bytes" in err
    assert stream.tell() <= LIMIT + 1 + io.DEFAULT_BUFFER_SIZE


def test_standard_input_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = (
        "apiVersion: kstrata.dev/v1alpha1\nkind: ConfigProfile\nmetadata: {name: a}\n"
        "spec: {base: {x: 1}, output: {format: yaml}}\n"
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(profile.encode())))
    assert run("render", "-f", "-") == (0, "x: 1\n", "")


def test_diff_file_is_read_the_same_way(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a regular file"):
        history_commands._read_resource_file(Path("/dev/zero"))
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(LIMIT + 1)
    with pytest.raises(InputLimitError, match="larger than the limit"):
        history_commands._read_resource_file(big)


def test_properties_with_too_many_keys_are_refused(workdir: Path) -> None:
    many = workdir / "many.properties"
    many.write_text("".join(f"k{i}=v\n" for i in range(DEFAULT_LIMITS.max_nodes + 1)))
    code, _, err = run("import", "-f", str(many))
    assert code == 1
    assert f"more than {DEFAULT_LIMITS.max_nodes} keys" in err


def test_a_deeply_dotted_property_key_is_no_recursion_error(workdir: Path) -> None:
    deep = workdir / "deep.properties"
    deep.write_text("a" + ".a" * 5000 + "=1\n")
    code, out, err = run("import", "-f", str(deep))
    assert "Traceback" not in err
    assert "RecursionError" not in err
    assert code == 0, err
    assert "kind: ConfigProfile" in out


# --- schema patterns ------------------------------------------------------------

SLOW_PATTERN_PROFILE = """\
apiVersion: kstrata.dev/v1alpha1
kind: ConfigProfile
metadata: {name: evil}
spec:
  schema:
    type: object
    properties:
      name: {type: string, pattern: "^(a+)+$"}
    patternProperties:
      "^(a+)+$": {type: integer}
  base:
    name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!
    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!: 1
  output: {format: yaml}
"""


@pytest.mark.timeout(30)
def test_validate_decides_a_catastrophic_pattern_at_once(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text(SLOW_PATTERN_PROFILE)
    # CPU time: backtracking would burn minutes of it; a loaded machine only adds wall time.
    started = time.process_time()
    code, out, _ = run("validate", "-f", str(path))
    assert time.process_time() - started < 1.0
    assert code == 1
    assert "$.name: must match the pattern" in out
    assert "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!" not in out  # the value is never shown


def test_a_backreference_is_an_invalid_schema_in_validate(tmp_path: Path) -> None:
    path = tmp_path / "backref.yaml"
    path.write_text(SLOW_PATTERN_PROFILE.replace("^(a+)+$", "^(a)\\\\1$", 1))
    code, out, _ = run("validate", "-f", str(path))
    assert code == 1
    assert "spec.schema $.properties.name.pattern" in out
    assert "backreference" in out


@pytest.mark.parametrize(
    ("pattern", "loaded"), [(None, False), ("^[a-z]+$", True)], ids=["no pattern", "pattern"]
)
def test_the_regex_engine_loads_only_for_a_pattern(
    tmp_path: Path, pattern: str | None, loaded: bool
) -> None:
    rule = f", pattern: {pattern!r}" if pattern else ""
    path = tmp_path / "app.yaml"
    path.write_text(
        "apiVersion: kstrata.dev/v1alpha1\nkind: ConfigProfile\nmetadata: {name: a}\n"
        f"spec:\n  schema: {{type: object, properties: {{x: {{type: string{rule}}}}}}}\n"
        "  base: {x: abc}\n  output: {format: yaml}\n"
    )
    probe = (
        "import io, sys\n"
        "from kstrata.cli.main import main\n"
        f"assert main(['render', '-f', {str(path)!r}], out=io.StringIO()) == 0\n"
        "print('re2' in sys.modules, 'jsonschema' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [str(loaded), "False"]

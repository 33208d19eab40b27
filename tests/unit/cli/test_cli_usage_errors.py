"""Usage errors name the problem, never the value typed.

argparse quotes what it could not use.  A mistyped flag before a secret
(``kstrata seal ... --from-literl password=CANARY``) would print the secret
to a CI log.  Each case below puts a canary where argparse used to echo it and
checks that neither the canary nor its base64 or hex form is printed, and
that the message still says what is wrong.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

from kstrata.cli.main import COMMAND_GROUPS, EXIT_USAGE, main

CANARY = "CANARY-s3cr3t-value"
SEAL = ["seal", "-n", "apps", "--name", "db", "--cert", "bundle.json"]


def run(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue() + err.getvalue()


def assert_no_canary(text: str) -> None:
    raw = CANARY.encode()
    for form in (CANARY, base64.b64encode(raw).decode(), raw.hex(), "s3cr3t"):
        assert form not in text


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        # unknown arguments
        ([*SEAL, f"password={CANARY}"], "1 unrecognized argument"),
        ([*SEAL, "--from-literal", "a=b", f"password={CANARY}", CANARY], "2 unrecognized"),
        (["render", "-f", "x.yaml", CANARY], "1 unrecognized argument"),
        (["validate", "-f", "x.yaml", CANARY, "-f", "y.yaml"], "1 unrecognized argument after"),
        # misspelt options
        ([*SEAL, "--from-literl", f"password={CANARY}"], "did you mean --from-literal?"),
        ([*SEAL, f"--from-literl=password={CANARY}"], "did you mean --from-literal?"),
        ([*SEAL, f"--from-literl={CANARY}"], "1 unrecognized argument (not shown"),
        ([*SEAL, f"-p{CANARY}"], "1 unrecognized argument"),
        ([*SEAL, f"--{CANARY}"], "1 unrecognized argument"),
        # ambiguous prefixes
        ([*SEAL, f"--from={CANARY}"], "ambiguous option: --from could match"),
        (["seal", f"--nam={CANARY}"], "ambiguous option: --nam could match"),
        # bad choices
        ([*SEAL, "--scope", CANARY], "argument --scope: invalid choice (choose from strict"),
        ([*SEAL, "-o", CANARY], "argument -o/--output: invalid choice"),
        ([CANARY], "argument COMMAND: invalid choice"),
        (["operator", "run", "--log-level", CANARY], "argument --log-level: invalid choice"),
        (["keys", CANARY], "invalid choice"),
        # values of the wrong type
        (["rollback", "app", "--timeout", CANARY], "argument --timeout: invalid float value"),
        (["diff", "app", "--revision", CANARY], "argument --revision: a revision number"),
        (["watch", "/d", "--exec", "true", "--pid", CANARY], "argument --pid: invalid int"),
        (["watch", "/d", "--debounce", CANARY], "argument --debounce: not a number of seconds"),
        (["watch", "/d", "--debounce", f"-{CANARY}"], "argument --debounce"),
        # explicit values for flags that take none
        (["operator", "run", f"--no-webhook={CANARY}"], "ignored explicit argument"),
        (["list", f"-A={CANARY}"], "ignored explicit argument"),
    ],
)
def test_usage_errors_do_not_repeat_values(argv: list[str], says: str) -> None:
    code, printed = run(*argv)
    assert code == EXIT_USAGE
    assert says in printed
    assert_no_canary(printed)


@pytest.mark.parametrize("command", sorted(COMMAND_GROUPS))
def test_no_command_echoes_an_unknown_flag_value(command: str) -> None:
    code, printed = run(command, f"--bogus={CANARY}", CANARY)
    assert code == EXIT_USAGE
    assert_no_canary(printed)


def test_an_unknown_signal_is_not_echoed(tmp_path: Path) -> None:
    code, printed = run("watch", str(tmp_path), "--signal", CANARY, "--pid", "1")
    assert code == EXIT_USAGE
    assert "unknown signal" in printed
    assert_no_canary(printed)

"""The short fuzzing tier of ``make test``: each target for a few seconds.

Every target first replays its whole committed corpus (tests/fuzz/corpus/
<target>/, seeds and past findings), then mutates for ``KSTRATA_FUZZ_SECONDS``
(default 10) with coverage guidance.  A crash fails the test with the input's
path; ``make fuzz`` runs the same targets for longer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fuzz.runner import CORPUS, TARGET_NAMES, run_target

pytest.importorskip("atheris", reason="atheris has a wheel for Linux x86_64 only")

pytestmark = pytest.mark.fuzz

SECONDS = int(os.environ.get("KSTRATA_FUZZ_SECONDS", "10"))


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    seeds = len(list((CORPUS / target).iterdir()))
    result = run_target(target, SECONDS, tmp_path)
    print(result.summary())
    assert result.ok, (
        f"{result.summary()}\ncrashing inputs: {', '.join(result.artifacts) or 'none written'}\n"
        f"{result.log[-4000:]}"
    )
    # It really ran: the corpus replayed, then mutations beyond it.
    assert result.executions > seeds

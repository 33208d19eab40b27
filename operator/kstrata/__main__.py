"""``python -m kstrata``: the same as the ``kstrata`` command."""

from kstrata.cli.main import run

run()

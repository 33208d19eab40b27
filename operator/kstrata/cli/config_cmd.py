"""``kstrata render`` and ``kstrata validate``: offline, for CI and pre-commit.

Neither imports kopf or the Kubernetes client (a test checks ``sys.modules``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from kstrata.cli.common import EXIT_INVALID, EXIT_OK

FORMATS = ("yaml", "json", "env", "properties")


def register(commands: Any) -> None:
    render = commands.add_parser(
        "render",
        help="render a ConfigProfile from files, offline",
        description="Print the file a ConfigProfile renders into its ConfigMap. The first "
        "profile of the first file is rendered; profiles in further files serve as bases "
        "for spec.extends.",
    )
    render.add_argument("-f", "--filename", dest="files", type=Path, action="append", required=True)
    render.add_argument("--env", default=None, help="environment (default: spec.environment, dev)")
    render.add_argument("-o", "--output", choices=FORMATS, default=None, help="output format")
    render.set_defaults(handler=_render)

    validate = commands.add_parser(
        "validate",
        help="validate ConfigProfiles in files, offline",
        description="Check every ConfigProfile in the files: structure, overlays, extends, and "
        "the schema for every declared environment. One line per problem; exit 1 if any.",
    )
    validate.add_argument(
        "-f", "--filename", dest="files", type=Path, action="append", required=True
    )
    validate.add_argument("--env", default=None, help="check only this environment")
    validate.set_defaults(handler=_validate)


def _render(args: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.offline import render_files

    out.write(render_files(args.files, args.env, args.output))
    return EXIT_OK


def _validate(args: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.offline import validate_files

    problems = validate_files(args.files, args.env)
    for problem in problems:
        print(problem.describe(), file=out)
    return EXIT_INVALID if problems else EXIT_OK

"""``kstrata render`` and ``kstrata validate``: offline, for CI and pre-commit.

Neither imports kopf or the Kubernetes client (a test checks ``sys.modules``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kstrata.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    FilesAction,
    Subcommands,
    flags,
    kubernetes_list,
    print_data,
)
from kstrata.files import expand_files

FORMATS = ("yaml", "json", "env", "properties")


def register(commands: Subcommands) -> None:
    render = commands.add_parser(
        "render",
        help="render a ConfigProfile from files, offline",
        description="Print the file a ConfigProfile renders into its ConfigMap. The first "
        "profile of the first file is rendered; profiles in further files serve as bases "
        "for spec.extends. --env must be an environment the profile may render for "
        "(declared, pinned, or dev).",
    )
    _files_flag(render)
    render.add_argument("--env", default=None, help="environment (default: spec.environment, dev)")
    render.add_argument("-o", "--output", choices=FORMATS, default=None, help="output format")
    render.set_defaults(handler=_render)

    validate = commands.add_parser(
        "validate",
        help="validate ConfigProfiles in files, offline",
        description="Check every ConfigProfile in the files: structure, overlays, extends, and "
        "the schema for every declared environment. One line per problem; exit 1 if any.",
    )
    _files_flag(validate)
    validate.add_argument("--env", default=None, help="check only this environment")
    validate.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json"),
        default=None,
        help="the problems as data: a Kubernetes List (empty when valid)",
    )
    validate.set_defaults(handler=_validate)


def _files_flag(parser: argparse.ArgumentParser) -> None:
    # kubectl's -f: repeatable, several files after one -f (a shell glob), directories.
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        nargs="+",
        action=FilesAction,
        required=True,
        metavar="FILE",
        help="files or directories (their .yaml, .yml and .json files); '-' is stdin",
    )


@dataclass(frozen=True)
class _Flags:
    """What ``render`` and ``validate`` read (see :func:`kstrata.cli.common.flags`)."""

    files: list[Path]
    env: str | None
    output: str | None


def _render(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.offline import render_files

    args = flags(_Flags, parsed)
    out.write(render_files(expand_files(args.files), args.env, args.output))
    return EXIT_OK


def _validate(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.app.offline import validate_files

    args = flags(_Flags, parsed)
    problems = validate_files(expand_files(args.files), args.env)
    if args.output:
        items = [
            {
                "source": problem.source,
                "profile": problem.profile,
                "environment": problem.environment,
                "path": problem.path,
                "message": problem.message,
            }
            for problem in problems
        ]
        print_data(kubernetes_list(items), args.output, out)
        return EXIT_INVALID if problems else EXIT_OK
    for problem in problems:
        print(problem.describe(), file=out)
    return EXIT_INVALID if problems else EXIT_OK

"""``kstrata version``, ``kstrata operator run`` and ``kstrata operator settings``.

This is the edge where the operator's settings are assembled: the settings
directory and environment come from ``--config-dir``/``--environment`` or the
``KSTRATA_CONFIG_DIR``/``KSTRATA_ENVIRONMENT`` variables (read here and
nowhere else), the files are loaded by :func:`kstrata.settings.load_settings`,
and flags for individual settings override them.  Precedence, highest first:
explicit flags, the environment's overlay, ``base.yaml``, the dataclass
defaults.  Without a settings directory only the defaults and flags apply.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final, TextIO

from kstrata import __version__
from kstrata.cli.common import (
    EXIT_OK,
    Subcommands,
    add_output_flag,
    flags,
    kubeconfig_path,
    print_data,
)
from kstrata.errors import SettingsError

if TYPE_CHECKING:
    from kstrata.settings import Settings

CONFIG_DIR_ENV: Final = "KSTRATA_CONFIG_DIR"
ENVIRONMENT_ENV: Final = "KSTRATA_ENVIRONMENT"


@dataclass(frozen=True, kw_only=True)
class _SettingsFlags:
    """What ``operator run`` and ``operator settings`` read (see ``cli.common.flags``)."""

    config_dir: Path | None
    environment: str | None
    namespaces: list[str] | None
    all_namespaces: bool
    standalone: bool | None
    default_environment: str | None
    operator_namespace: str | None
    metrics_address: str | None
    liveness: str | None
    log_level: str | None
    log_format: str | None
    webhook_address: str | None
    webhook_url: str | None
    no_webhook: bool
    reseal_address: str | None
    reseal_recipients: list[str]
    kubeconfig: Path | None = None
    context: str | None = None

    def values(self) -> dict[str, str | None]:
        """Flags that set one setting each when given, by settings field."""
        return {
            "default_environment": self.default_environment,
            "operator_namespace": self.operator_namespace,
            "metrics_address": self.metrics_address,
            "liveness_endpoint": self.liveness,
            "log_level": self.log_level,
            "log_format": self.log_format,
            "webhook_address": self.webhook_address,
            "webhook_url": self.webhook_url,
            "reseal_address": self.reseal_address,
        }


@dataclass(frozen=True, kw_only=True)
class _ShowSettingsFlags(_SettingsFlags):
    output: str


def register(commands: Subcommands) -> None:
    version = commands.add_parser("version", help="print the kstrata version")
    version.add_argument(
        "-o", "--output", choices=("yaml", "json"), default=None, help="as data (kubectl's shape)"
    )
    version.set_defaults(handler=_version)

    operator = commands.add_parser("operator", help="run the operator")
    operator_commands = operator.add_subparsers(
        dest="operator_command", parser_class=type(operator)
    )
    operator_commands.required = True
    run = operator_commands.add_parser("run", help="run the operator (kopf) in the foreground")
    _add_settings_flags(run)
    # SUPPRESS: when absent here, the value given before the subcommand survives.
    run.add_argument("--kubeconfig", type=Path, default=argparse.SUPPRESS, help="kubeconfig")
    run.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    run.set_defaults(handler=_operator_run)

    show = operator_commands.add_parser(
        "settings",
        help="print the operator's effective settings and exit",
        description="Print the settings `kstrata operator run` would use with the same "
        "flags: base.yaml, the environment's overlay, then the flags.  Offline: no cluster "
        "is contacted, so the rule that switches the webhook off outside a cluster is not "
        "applied here.",
    )
    _add_settings_flags(show)
    add_output_flag(show, ("yaml", "json"))
    show.set_defaults(handler=_operator_settings)


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    files = parser.add_argument_group("settings files")
    files.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"settings directory with base.yaml, <environment>.yaml and config.schema.yaml "
        f"(default: ${CONFIG_DIR_ENV}; without one, the built-in defaults apply)",
    )
    files.add_argument(
        "--environment",
        default=None,
        metavar="ENV",
        help=f"which overlay of the settings directory to use (default: ${ENVIRONMENT_ENV})",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        default=None,
        help="watch only this namespace (repeatable); default: cluster-wide",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch all namespaces (default)"
    )
    parser.add_argument(
        "--standalone",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run without kopf peering (one replica only)",
    )
    parser.add_argument("--default-environment", default=None)
    parser.add_argument("--operator-namespace", default=None)
    parser.add_argument("--metrics-address", default=None, help="host:port for /metrics")
    parser.add_argument("--liveness", default=None, help="liveness endpoint URL")
    parser.add_argument(
        "--webhook-address", default=None, help="host:port the admission webhook listens on"
    )
    parser.add_argument(
        "--webhook-url",
        default=None,
        help="base URL the API server calls (outside a cluster); default: the in-cluster Service",
    )
    parser.add_argument("--no-webhook", action="store_true", help="serve no admission webhook")
    parser.add_argument(
        "--reseal-address", default=None, help="host:port of the reseal endpoint (kstrata reseal)"
    )
    parser.add_argument(
        "--reseal-recipient",
        dest="reseal_recipients",
        action="append",
        default=[],
        metavar="KEY_ID",
        help="another cluster's key id kstrata reseal --cert may seal to (repeatable)",
    )
    parser.add_argument("--log-level", choices=("debug", "info", "warning"), default=None)
    parser.add_argument("--log-format", choices=("text", "json"), default=None)


def _version(args: argparse.Namespace, out: TextIO) -> int:
    output: str | None = args.output
    if output:
        import platform

        # As `kubectl version -o json` nests it: scripts read .clientVersion.gitVersion.
        version = {"gitVersion": __version__, "pythonVersion": platform.python_version()}
        print_data({"clientVersion": version}, output, out)
        return EXIT_OK
    print(f"kstrata {__version__}", file=out)
    return EXIT_OK


def _settings_files(args: _SettingsFlags) -> tuple[Path, str] | None:
    """The settings directory and environment to load, or None for the defaults."""
    config_dir = args.config_dir
    if config_dir is None and os.environ.get(CONFIG_DIR_ENV):
        config_dir = Path(os.environ[CONFIG_DIR_ENV])
    environment = args.environment or os.environ.get(ENVIRONMENT_ENV) or None
    if config_dir is None:
        if environment is not None:
            raise SettingsError(
                f"an environment was chosen (--environment or ${ENVIRONMENT_ENV}) but no "
                f"settings directory: pass --config-dir or set ${CONFIG_DIR_ENV}"
            )
        return None
    if environment is None:
        from kstrata.settings import available_environments

        available = ", ".join(available_environments(config_dir)) if config_dir.is_dir() else ""
        raise SettingsError(
            f"settings directory {config_dir}: no environment chosen: pass --environment or "
            f"set ${ENVIRONMENT_ENV} (available: {available or 'none'})"
        )
    return config_dir, environment


def _flag_overrides(args: _SettingsFlags) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if args.namespaces:
        overrides["namespaces"] = tuple(args.namespaces)
    elif args.all_namespaces:
        overrides["namespaces"] = ()
    if args.standalone is not None:
        overrides["standalone"] = args.standalone
    for name, value in args.values().items():
        if value is not None:
            overrides[name] = value
    if args.no_webhook:
        overrides["webhook_address"] = None
    if args.reseal_recipients:
        overrides["reseal_recipients"] = tuple(args.reseal_recipients)
    return overrides


def effective_settings(args: _SettingsFlags) -> Settings:
    """Defaults, then the settings files (if any), then the flags given."""
    from kstrata.settings import Settings, load_settings

    files = _settings_files(args)
    settings = Settings() if files is None else load_settings(*files)
    return settings.with_overrides(**_flag_overrides(args))


def _operator_run(parsed: argparse.Namespace, out: TextIO) -> int:
    args = flags(_SettingsFlags, parsed)
    # Settings first: invalid settings stop start-up before kopf or the client load.
    settings = effective_settings(args)
    kubeconfig = kubeconfig_path(args)
    if kubeconfig is not None and settings.webhook_address and not settings.webhook_url:
        # Outside a cluster the API server cannot reach the in-cluster Service the
        # default configuration names; registering it would block every apply.
        print(
            "admission webhook disabled outside the cluster; pass --webhook-url to enable it",
            file=sys.stderr,
        )
        settings = settings.with_overrides(webhook_address=None)
    from kstrata.kube.connection import connect

    # Connect first: only a kubeconfig with an exec plugin or auth provider
    # needs the kubernetes client, and then it is imported before kopf.
    cluster = connect(kubeconfig, args.context)
    runner = operator_imports()
    # Room in the transport's pool for every operator thread that can call at
    # once (the CLI's default keeps a few); known only once kopf's settings can
    # be read, and nothing is connected before run().
    cluster = cluster.with_pool_size(runner.api_threads(settings))
    runner.run(runner.OperatorContext(settings=settings, cluster=cluster))
    return EXIT_OK


def operator_imports() -> ModuleType:
    """Import the operator (kopf and the handlers) without the ``kubernetes`` client.

    kopf imports ``kubernetes`` whenever it is installed (for its model
    type checks and its piggybacking login), ~40 MiB and ~0.45 s the
    operator has no use for: kstrata talks to the API through its own
    transport and logs kopf in itself.  A ``None`` in ``sys.modules`` makes
    that import fail, which kopf treats as "not installed".  Only when
    nothing has imported the client already (a test process, or a
    kubeconfig that needed it), and only in the operator process: this
    function is its entry.
    """
    if "kubernetes" not in sys.modules:
        sys.modules["kubernetes"] = None  # type: ignore[assignment]
    from kstrata.controller import runner

    return runner


def _operator_settings(parsed: argparse.Namespace, out: TextIO) -> int:
    from kstrata.settings import BASE_FILE, settings_document

    args = flags(_ShowSettingsFlags, parsed)
    settings = effective_settings(args)
    document = settings_document(settings)
    if args.output == "json":
        out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    import yaml

    files = _settings_files(args)
    sources = ["defaults"]
    if files is not None:
        config_dir, environment = files
        sources += [str(config_dir / BASE_FILE), str(config_dir / f"{environment}.yaml")]
    if _flag_overrides(args):
        sources.append("flags")
    out.write(
        f"# effective kstrata operator settings from {', then '.join(sources)} (later wins)\n"
    )
    out.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return EXIT_OK

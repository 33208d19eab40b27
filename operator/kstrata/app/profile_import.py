"""``kstrata import``: a ConfigMap or files on disk as a ConfigProfile that reproduces them.

Why a module of its own: import is a use case of its own (half of what
``kstrata.app.profile_commands`` used to hold), with its own promise: a
manifest is printed only after the domain renderer has proven that it
reproduces the existing configuration byte for byte; otherwise the error
says what would be lost (comments, blank lines, key order, formatting) and
prints nothing.  The one new piece of configuration logic it needs,
``merge_diff`` (the inverse of RFC 7386's ``merge_patch``, for ``--full``),
lives in ``kstrata.domain.merge``; ``.env``/``.properties`` are read by
``kstrata.watch``'s parsers, the same the hot reload uses.

Boundary: the cluster only through ``KubeClient``; loading, merging, rendering
and environment choice from ``kstrata.domain``.  Messages name ConfigMaps,
keys, files, environments and line numbers, never configuration values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kstrata.app.command_toolkit import (
    check_environment_flag,
    check_name,
)
from kstrata.domain.documents import load_yaml
from kstrata.domain.environments import (
    DEFAULT_ENVIRONMENT,
)
from kstrata.domain.jsonvalue import (
    DEFAULT_LIMITS,
    JSONObject,
)
from kstrata.domain.merge import merge_diff, merge_patch, null_member, same_json
from kstrata.domain.profile import (
    ProfileSpec,
    is_object_name,
    parse_profile_manifest,
    render_profile,
)
from kstrata.domain.readback import candidates
from kstrata.domain.render import (
    DEFAULT_KEYS,
    EXTENSION_FORMATS,
    FORMATS,
    OutputFormat,
    env_key,
    format_for,
    is_configmap_key,
    render_text,
)
from kstrata.errors import (
    DocumentError,
    InvalidInputError,
    MergeError,
    UsageError,
)
from kstrata.files import read_bounded
from kstrata.kube.api import (
    CONFIG_MAPS,
    KubeClient,
)
from kstrata.wellknown import (
    ADOPT_ANNOTATION,
    API_VERSION,
    CONFIG_PROFILE_KIND,
)

_COMMENT_PREFIXES: Final[dict[str, tuple[str, ...]]] = {
    "yaml": ("#",),
    "json": (),
    "env": ("#",),
    "properties": ("#", "!"),
}


# --- import ----------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    """A ConfigProfile manifest proven to reproduce its source, plus advice for stderr."""

    manifest: str
    hints: tuple[str, ...] = ()


def _first_difference(source: str, rendered: str) -> int:
    theirs, ours = source.splitlines(keepends=True), rendered.splitlines(keepends=True)
    for number, (a, b) in enumerate(zip(theirs, ours, strict=False), start=1):
        if a != b:
            return number
    return min(len(theirs), len(ours)) + 1


def _not_exact(what: str, source: str, rendered: str, fmt: OutputFormat) -> InvalidInputError:
    """Why ``source`` is not what kstrata renders: names lines and causes, never content."""
    lines = source.splitlines()
    reasons: list[str] = []
    prefixes = _COMMENT_PREFIXES[fmt]
    # YAML and dotenv also end a plain value at " #" (properties keep it as text).
    inline = fmt in ("yaml", "env")
    if prefixes and any(
        line.lstrip().startswith(prefixes) or (inline and " #" in line) for line in lines
    ):
        reasons.append("it has comments, which a ConfigProfile cannot keep")
    if any(not line.strip() for line in lines):
        reasons.append("it has blank lines")
    if source and not source.endswith("\n"):
        reasons.append("it does not end with a newline")
    if source.startswith("\ufeff"):
        reasons.append("it starts with a byte order mark")
    if fmt == "env":
        # kstrata derives env names from config paths; other spellings cannot come back.
        odd = [
            number
            for number, line in enumerate(lines, start=1)
            if "=" in line
            and not line.lstrip().startswith("#")
            and env_key((line.split("=", 1)[0].strip(),)) != line.split("=", 1)[0]
        ]
        if odd:
            reasons.append(
                f"the name on line {odd[0]} is not in kstrata's env form "
                "(upper case, '_' for every other character)"
            )
    if not reasons and sorted(lines) == sorted(rendered.splitlines()):
        reasons.append("its keys are not in the sorted order kstrata renders")
    if not reasons:
        reasons.append(
            f"its formatting differs from kstrata's canonical {fmt} rendering "
            "(sorted keys, fixed indentation, quoting and number spelling)"
        )
    return InvalidInputError(
        f"{what} cannot be reproduced byte for byte: {'; '.join(reasons)} "
        f"(first difference at line {_first_difference(source, rendered)}); nothing was "
        "imported. Rewrite it as 'kstrata render' prints it, or keep managing it by hand",
        reason="NotReproducible",
    )


def _read_config(
    text: str, fmt: OutputFormat, what: str, *, allow_nulls: bool = False
) -> JSONObject:
    """The configuration ``text`` renders from, verified to render back to ``text`` exactly."""
    readings = candidates(text, fmt, what)
    if not allow_nulls:
        found = null_member(readings[0])
        if found is not None:
            raise MergeError(
                f"{what}: {found} is null, and a null-valued leaf cannot be expressed in a "
                "ConfigProfile (a merge patch deletes keys set to null); remove it or give "
                "it a value",
                reason="NotReproducible",
            )
    for config in readings:
        if render_text(config, fmt) == text:
            return config
    raise _not_exact(what, text, render_text(readings[0], fmt), fmt)


def _manifest_text(manifest: JSONObject) -> str:
    # The domain's YAML renderer: sorted keys, no line folding, literal blocks
    # for multi-line text; deterministic, and read back below to prove it.
    return render_text(manifest, "yaml")


def _reparsed(text: str) -> ProfileSpec:
    """The spec the printed manifest text holds, read back as ``kubectl apply`` would send it."""
    manifest = parse_profile_manifest(load_yaml(text, source="the generated manifest"))
    return manifest.spec


def _render_for(spec: ProfileSpec, name: str, environment: str | None) -> dict[str, str]:
    """ConfigMap data the operator would write, for ``environment`` or for no overlay."""
    if environment is None:
        spec = dataclasses.replace(spec, environments={})
        environment = DEFAULT_ENVIRONMENT
    return render_profile(spec, name, environment, lambda _name: None).rendered.data


def import_config_map(
    api: KubeClient, namespace: str, name: str, *, profile_name: str | None = None
) -> ImportResult:
    """A ConfigProfile manifest that renders exactly the ConfigMap's current data.

    The ConfigMap must hold one configuration file (a key ending in .yaml,
    .yml, .json, .env or .properties), optionally with the flattened env keys
    ``flattenKeys`` adds, and that file must be in kstrata's canonical
    rendering; otherwise ``InvalidInputError`` says why.
    """

    check_name(namespace, "the namespace")
    check_name(name, "the ConfigMap name")
    profile_name = profile_name or name
    check_name(profile_name, "--name")
    where = f"ConfigMap {namespace}/{name}"
    config_map = api.get(CONFIG_MAPS, namespace, name)
    if config_map.get("binaryData"):
        keys = ", ".join(sorted(config_map["binaryData"]))
        raise InvalidInputError(
            f"{where} has binaryData ({keys}); a ConfigProfile renders text only",
            reason="NotReproducible",
        )
    data: dict[str, str] = dict(config_map.get("data") or {})
    files = [key for key in sorted(data) if format_for(key) is not None]
    if len(files) != 1:
        listed = ", ".join(sorted(data)) or "none"
        raise InvalidInputError(
            f"{where} has keys ({listed}) that are not one configuration file: a ConfigProfile "
            "renders exactly one file (.yaml, .yml, .json, .env or .properties), plus its "
            "flattened env keys with flattenKeys",
            reason="NotReproducible",
        )
    key = files[0]
    fmt = format_for(key)
    assert fmt is not None
    config = _read_config(data[key], fmt, f"{where} key {key}")
    output: JSONObject = {"configMapName": name, "format": fmt, "key": key}
    if len(data) > 1:
        output["flattenKeys"] = True
    manifest: JSONObject = {
        "apiVersion": API_VERSION,
        "kind": CONFIG_PROFILE_KIND,
        "metadata": {"name": profile_name, "namespace": namespace},
        "spec": {"base": config, "output": output},
    }
    text = _manifest_text(manifest)
    rendered = _render_for(_reparsed(text), profile_name, None)
    if rendered != data:
        others = ", ".join(sorted(set(data) - {key}))
        raise InvalidInputError(
            f"{where}: the keys besides {key} ({others}) are not the flattened env keys "
            f"kstrata derives from {key}; the ConfigMap cannot be reproduced",
            reason="NotReproducible",
        )
    annotations = (config_map.get("metadata") or {}).get("annotations") or {}
    if annotations.get(ADOPT_ANNOTATION) == "true":
        return ImportResult(text)
    hint = (
        f"the operator takes over an existing ConfigMap only when asked: before applying, run "
        f"kubectl annotate configmap {name} -n {namespace} {ADOPT_ANNOTATION}=true"
    )
    return ImportResult(text, (hint,))


def _read_file(path: Path) -> str:
    # Bounded like every document: .env and .properties files included.
    raw = read_bounded(path, DEFAULT_LIMITS.max_bytes)
    try:
        # Strict: a BOM or another encoding would not survive the round trip.
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{path}: not valid UTF-8 (byte offset {exc.start})") from None


def _format_of_file(path: Path) -> OutputFormat:
    fmt = format_for(path.name)
    if fmt is None:
        raise UsageError(
            f"{path}: unknown file type (expected one of "
            f"{', '.join(sorted(EXTENSION_FORMATS))}; formats {', '.join(FORMATS)})"
        )
    return fmt


def _environment_files(environments: Sequence[tuple[str, Path]]) -> None:
    names = [environment for environment, _ in environments]
    for environment in names:
        check_environment_flag(environment)
    duplicates = sorted({e for e in names if names.count(e) > 1})
    if duplicates:
        raise UsageError(f"--env {duplicates[0]} is given more than once")


def _read_overlay(path: Path) -> JSONObject:
    """An overlay file: any format, formatting need not survive, null (delete) allowed.

    An overlay is not a file anyone reads as configuration, so unlike the base
    it is not held to the canonical rendering; an empty file means no changes.
    """
    text = _read_file(path)
    fmt = _format_of_file(path)
    if fmt == "yaml" and load_yaml(text, source=str(path)) is None:
        return {}
    return candidates(text, fmt, str(path))[0]


def _full_overlay(base_config: JSONObject, fmt: OutputFormat, path: Path) -> tuple[JSONObject, str]:
    """The minimal overlay turning the base into the complete file ``path``, and its text."""
    env_format = _format_of_file(path)
    if env_format != fmt:
        raise InvalidInputError(
            f"--full: {path} is {env_format} but the base is {fmt}; "
            "a ConfigProfile renders every environment in one format",
            reason="NotReproducible",
        )
    text = _read_file(path)
    target = _read_config(text, fmt, str(path))
    patch = merge_diff(base_config, target)
    assert isinstance(patch, dict)
    return patch, text


def _prove_files(
    text: str,
    *,
    name: str,
    key: str,
    fmt: OutputFormat,
    base: tuple[Path, JSONObject],
    overlays: dict[str, JSONObject],
    intended: dict[str, tuple[Path, str]],
) -> None:
    """Read the printed manifest back and render every environment: it must match exactly."""
    reparsed = _reparsed(text)
    base_path, base_config = base
    checks: list[tuple[str | None, str, str]] = [(None, str(base_path), _read_file(base_path))]
    checks += [(env, str(path), expected) for env, (path, expected) in intended.items()]
    for environment, what, expected in checks:
        rendered = _render_for(reparsed, name, environment)[key]
        if rendered != expected:
            label = f"environment {environment} ({what})" if environment else what
            raise _not_exact(label, expected, rendered, fmt)
    if not same_json(reparsed.base, base_config) or any(
        not same_json(reparsed.environments.get(env, {}), overlay)
        for env, overlay in overlays.items()
    ):
        raise InvalidInputError(
            "the generated manifest does not read back as the same profile; nothing was "
            "imported (please report this as a kstrata bug)",
            reason="NotReproducible",
        )


def import_files(
    base: Path,
    environments: Sequence[tuple[str, Path]] = (),
    *,
    name: str | None = None,
    namespace: str | None = None,
    full: bool = False,
) -> ImportResult:
    """A ConfigProfile manifest whose base is ``base`` and whose overlays come from files.

    By default each environment file is an RFC 7386 overlay on the base.  With
    ``full`` each one is a complete configuration file and the overlay is the
    minimal merge patch from the base to it.  The base (and, with ``full``,
    every environment file) must be in kstrata's canonical rendering, and each
    environment must render back to its intended configuration; otherwise
    ``InvalidInputError`` says why and nothing is printed.
    """
    fmt = _format_of_file(base)
    profile_name = name if name is not None else base.name.split(".", 1)[0]
    if not is_object_name(profile_name):
        raise UsageError(
            "--name: a ConfigProfile name (lower-case letters, digits, '-' and '.') is needed; "
            "the base file's name is not one"
        )
    if namespace is not None:
        check_name(namespace, "the namespace")
    _environment_files(environments)

    base_config = _read_config(_read_file(base), fmt, str(base))
    overlays: dict[str, JSONObject] = {}
    # What each environment must render to: the file itself (--full), or the
    # base merged with the overlay, rendered in the base's format.
    intended: dict[str, tuple[Path, str]] = {}
    for environment, path in environments:
        if full:
            overlay, expected = _full_overlay(base_config, fmt, path)
        else:
            overlay = _read_overlay(path)
            merged = merge_patch(base_config, overlay)
            assert isinstance(merged, dict)
            expected = render_text(merged, fmt)
        overlays[environment] = overlay
        intended[environment] = (path, expected)

    key = base.name if is_configmap_key(base.name) else DEFAULT_KEYS[fmt]
    spec: JSONObject = {"base": base_config, "output": {"format": fmt, "key": key}}
    if overlays:
        spec["environments"] = dict(sorted(overlays.items()))
    metadata: JSONObject = {"name": profile_name}
    if namespace is not None:
        metadata["namespace"] = namespace
    manifest: JSONObject = {
        "apiVersion": API_VERSION,
        "kind": CONFIG_PROFILE_KIND,
        "metadata": metadata,
        "spec": spec,
    }
    text = _manifest_text(manifest)
    _prove_files(
        text,
        name=profile_name,
        key=key,
        fmt=fmt,
        base=(base, base_config),
        overlays=overlays,
        intended=intended,
    )
    return ImportResult(text)

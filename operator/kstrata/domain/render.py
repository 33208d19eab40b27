"""Rendering a merged configuration into ConfigMap data, byte-for-byte stable.

The rendered bytes are hashed into the revision digest, so the same
configuration must always render to the same bytes, whatever the key order
it was built in: every format sorts object keys and fixes every formatting
choice explicitly (no library defaults that could drift).

Formats:

* ``yaml``: block style, sorted keys, Unicode kept, no line folding, no
  anchors; multi-line strings as literal blocks.
* ``json``: sorted keys, two-space indent, Unicode kept, trailing newline.
* ``env``: dotenv lines ``A_B_C=value`` from flattened paths (upper-cased,
  every non-alphanumeric character becomes ``_``, array items ``A_0``, a
  leading digit gets a ``_`` prefix), values quoted only when needed (see
  :func:`env_value`).  Empty objects and arrays have no leaves: no lines.
* ``properties``: Java properties ``a.b.c=value`` (array items ``a[0]``),
  escaped exactly as ``java.util.Properties.store`` does, so the file is
  plain ASCII and loads the same in any JVM.

``flattenKeys`` adds each flattened ``env`` key as its own ConfigMap entry so
a pod can use ``envFrom``.  Two paths that flatten to one key, or data over
the 1 MiB ConfigMap limit, are ``RenderError``s that name paths and sizes,
never values.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import yaml

from kstrata.domain.jsonvalue import JSONObject, JSONScalar, JSONValue, PathPart, json_path
from kstrata.errors import RenderError

OutputFormat: TypeAlias = Literal["yaml", "json", "env", "properties"]
FORMATS: Final[tuple[OutputFormat, ...]] = ("yaml", "json", "env", "properties")
#: File extensions a ConfigMap key or an imported file may have, and their formats.
EXTENSION_FORMATS: Final[dict[str, OutputFormat]] = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".env": "env",
    ".properties": "properties",
}


def format_for(name: str) -> OutputFormat | None:
    """The output format a file or ConfigMap key name implies, by extension."""
    lowered = name.lower()
    for extension, fmt in EXTENSION_FORMATS.items():
        if lowered.endswith(extension):
            return fmt
    return None


DEFAULT_KEYS: Final[dict[OutputFormat, str]] = {
    "yaml": "config.yaml",
    "json": "config.json",
    "env": "config.env",
    "properties": "config.properties",
}
#: Kubernetes' limit on a ConfigMap's data: keys plus values, in bytes.
MAX_CONFIGMAP_BYTES: Final = 1024 * 1024
MAX_CONFIGMAP_KEY_LENGTH: Final = 253

_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+\Z")


def is_configmap_key(key: str) -> bool:
    """True if ``key`` is a valid ConfigMap data key."""
    return (
        len(key) <= MAX_CONFIGMAP_KEY_LENGTH
        and key != "."
        # The kubelet reserves "..name" for its own symlinks in projected volumes.
        and not key.startswith("..")
        and _CONFIGMAP_KEY.match(key) is not None
    )


@dataclass(frozen=True)
class OutputSpec:
    """``spec.output``: where and how the merged configuration is written."""

    #: ``None`` means the profile's own name.
    config_map_name: str | None = None
    format: OutputFormat = "yaml"
    #: ``None`` means the format's default (``config.yaml`` and so on).
    key: str | None = None
    flatten_keys: bool = False

    @property
    def file_key(self) -> str:
        return self.key if self.key is not None else DEFAULT_KEYS[self.format]


@dataclass(frozen=True)
class RenderedConfig:
    """ConfigMap data for one merged configuration."""

    data: dict[str, str]
    #: SHA-256 (hex) of the canonical JSON of ``data``: the revision content hash.
    digest: str
    #: Bytes counted against the ConfigMap limit (UTF-8 keys plus values).
    size: int
    #: The data key holding the rendered file.
    key: str


# --- scalars and flattening ----------------------------------------------


def canonical_scalar(value: JSONScalar) -> str:
    """The one text form of a scalar in env, properties and flattened keys."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _leaves(
    value: JSONValue, path: tuple[PathPart, ...] = ()
) -> Iterator[tuple[tuple[PathPart, ...], JSONScalar]]:
    # Sorted keys and index order: the line order is part of the rendered bytes.
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _leaves(value[key], (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


_NON_ALNUM = re.compile(r"[^A-Za-z0-9]")


def env_key(path: tuple[PathPart, ...]) -> str:
    """``("server", "tls-port")`` -> ``SERVER_TLS_PORT``; ``("hosts", 0)`` -> ``HOSTS_0``."""
    key = "_".join(_NON_ALNUM.sub("_", str(part)).upper() or "_" for part in path)
    # Environment variable names cannot start with a digit.
    return "_" + key if key[:1].isdigit() else key


def properties_key(path: tuple[PathPart, ...]) -> str:
    """``("a", "b", 0, "c")`` -> ``a.b[0].c`` (the Spring Boot convention for lists)."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(("." if out else "") + part)
    return "".join(out)


def _flatten(
    config: JSONObject, make_key: Callable[[tuple[PathPart, ...]], str], what: str
) -> list[tuple[str, tuple[PathPart, ...], JSONScalar]]:
    seen: dict[str, tuple[PathPart, ...]] = {}
    out: list[tuple[str, tuple[PathPart, ...], JSONScalar]] = []
    for path, value in _leaves(config):
        key = make_key(path)
        previous = seen.get(key)
        if previous is not None:
            first, second = sorted((json_path(previous), json_path(path)))
            raise RenderError(
                f"{what} key {key} is produced by both {first} and {second}; rename one of them"
            )
        seen[key] = path
        out.append((key, path, value))
    return out


def flatten_env(config: JSONObject) -> dict[str, str]:
    """Flattened ``env`` keys and their canonical (unquoted) values."""
    return {key: canonical_scalar(value) for key, _, value in _flatten(config, env_key, "env")}


# --- env -----------------------------------------------------------------

_ENV_PLAIN = re.compile(r"[A-Za-z0-9_./:@+,=-]+\Z")
_ENV_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _is_control(ch: str) -> bool:
    return ord(ch) < 0x20 or ord(ch) == 0x7F


def env_value(text: str, path: tuple[PathPart, ...] = ()) -> str:
    """Quote ``text`` for a dotenv file only when needed.

    * plain when made only of characters no loader treats specially;
    * else single quotes when the text has no ``'``, ``\\`` or control
      character: taken literally by shells, python-dotenv, node's dotenv and
      Compose alike, with no ``$`` expansion;
    * else double quotes with the dotenv escapes ``\\\\ \\" \\n \\r \\t``.
      Other control characters have no portable spelling: ``RenderError``.
    """
    if text == "" or _ENV_PLAIN.match(text):
        return text
    if "'" not in text and "\\" not in text and not any(_is_control(ch) for ch in text):
        return f"'{text}'"
    out = ['"']
    for ch in text:
        escaped = _ENV_ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif _is_control(ch):
            raise RenderError(
                f"env format cannot represent the control character in {json_path(path)}"
            )
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _render_env(config: JSONObject) -> str:
    lines = [
        f"{key}={env_value(value, path) if isinstance(value, str) else canonical_scalar(value)}\n"
        for key, path, value in _flatten(config, env_key, "env")
    ]
    return "".join(lines)


# --- properties ----------------------------------------------------------

_PROPERTIES_ESCAPES: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}


_PROPERTIES_SPECIAL = re.compile(r"[\\\t\n\r\f=:#!]|[^\x20-\x7e]")


def properties_escape(text: str, *, is_key: bool) -> str:
    """Escape like ``java.util.Properties.saveConvert`` with Unicode escaping on."""
    if (
        _PROPERTIES_SPECIAL.search(text) is None
        and not text.startswith(" ")
        and not (is_key and " " in text)
    ):
        return text
    out: list[str] = []
    # Java works on UTF-16 code units: characters beyond the BMP become a
    # surrogate pair of \\uXXXX escapes.
    units = text.encode("utf-16-le", "surrogatepass")
    for index in range(0, len(units), 2):
        code = units[index] | (units[index + 1] << 8)
        ch = chr(code)
        if 61 < code < 127:
            out.append("\\\\" if ch == "\\" else ch)
        elif ch == " ":
            out.append("\\ " if (index == 0 or is_key) else " ")
        elif ch in _PROPERTIES_ESCAPES:
            out.append(_PROPERTIES_ESCAPES[ch])
        elif ch in "=:#!":
            out.append("\\" + ch)
        elif code < 0x20 or code > 0x7E:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    return "".join(out)


def _render_properties(config: JSONObject) -> str:
    return "".join(
        f"{properties_escape(key, is_key=True)}="
        f"{properties_escape(canonical_scalar(value), is_key=False)}\n"
        for key, _, value in _flatten(config, properties_key, "properties")
    )


# --- yaml and json -------------------------------------------------------

# libyaml's emitter when available: several times faster.  The pure-Python
# emitter spells a few strings differently (characters beyond the BMP, empty
# keys), so the fallback would change digests once; PyYAML's wheels bundle
# libyaml, so in practice every installation uses the same emitter.
# Any: the base is chosen at import time, which no static type can name.
_BaseDumper: Any = yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper


class _Dumper(_BaseDumper):  # type: ignore[misc]
    def ignore_aliases(self, data: object) -> bool:
        # Never emit anchors: a reader should not need to resolve aliases.
        return True


def _represent_str(dumper: yaml.representer.BaseRepresenter, data: str) -> yaml.ScalarNode:
    # Multi-line text (certificates, scripts) reads far better as a literal
    # block; the emitter falls back to quoting when a block cannot hold it.
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def _render_yaml(config: JSONObject) -> str:
    text: str = yaml.dump(
        config,
        Dumper=_Dumper,
        default_flow_style=False,
        sort_keys=True,
        allow_unicode=True,
        indent=2,
        width=1 << 30,
        line_break="\n",
        explicit_start=False,
        explicit_end=False,
    )
    return text


def _render_json(config: JSONObject) -> str:
    return json.dumps(config, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


_RENDERERS: Final = {
    "yaml": _render_yaml,
    "json": _render_json,
    "env": _render_env,
    "properties": _render_properties,
}


def render_text(config: JSONObject, fmt: OutputFormat) -> str:
    """The configuration file in one format."""
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise RenderError(f"unknown output format (expected one of {', '.join(FORMATS)})")
    try:
        return renderer(config)
    except RenderError:
        raise
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise RenderError(
            f"configuration cannot be rendered as {fmt}: it holds a value that is not JSON"
        ) from exc


def data_digest(data: dict[str, str]) -> str:
    """SHA-256 (hex) of the canonical JSON form of ConfigMap data."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def render(config: JSONObject, output: OutputSpec) -> RenderedConfig:
    """Render ``config`` as ConfigMap data according to ``output``."""
    file_key = output.file_key
    if not is_configmap_key(file_key):
        raise RenderError("spec.output.key is not a valid ConfigMap key")
    data = {file_key: render_text(config, output.format)}
    if output.flatten_keys:
        for key, value in flatten_env(config).items():
            if key == file_key:
                raise RenderError(f"flattened key {key} collides with spec.output.key")
            if len(key) > MAX_CONFIGMAP_KEY_LENGTH:
                raise RenderError(
                    f"flattened key is longer than {MAX_CONFIGMAP_KEY_LENGTH} characters: "
                    f"{key[:64]}..."
                )
            data[key] = value
    try:
        size = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in data.items())
    except UnicodeEncodeError:
        raise RenderError("configuration holds text that is not valid Unicode") from None
    if size > MAX_CONFIGMAP_BYTES:
        raise RenderError(
            f"rendered ConfigMap data is {size} bytes, over the limit of "
            f"{MAX_CONFIGMAP_BYTES} bytes"
        )
    return RenderedConfig(
        data=dict(sorted(data.items())), digest=data_digest(data), size=size, key=file_key
    )
